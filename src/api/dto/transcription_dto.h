// POST /v1/audio/transcriptions (OpenAI-compatible) <-> a `transcription` job, and the renderings
// of a finished job's result: json, text, verbose_json, srt and vtt.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "statim/error.h"

namespace statim::api {

enum class TranscriptFormat { kJson, kText, kVerboseJson, kSrt, kVtt };

// "json" | "text" | "verbose_json" | "srt" | "vtt"; the error names the field response_format.
Result<TranscriptFormat> parseTranscriptFormat(const std::string& s);

// 3723.5 s -> "01:02:03,500" (SubRip, `decimal` ',') or "01:02:03.500" (WebVTT, '.').
std::string subtitleTime(double seconds, char decimal);

// From a transcription result ({"text", "language", "duration", "segments": [{start, end, text}]}):
std::string toSrt(const nlohmann::json& result);
std::string toVtt(const nlohmann::json& result);
nlohmann::json toVerboseJson(const nlohmann::json& result);

}  // namespace statim::api
