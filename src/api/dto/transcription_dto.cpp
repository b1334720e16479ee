#include "api/dto/transcription_dto.h"

#include <cmath>
#include <format>

namespace statim::api {
namespace {

// Subtitle cues carry the text without whisper's leading space, one line per cue.
std::string cueText(const nlohmann::json& segment) {
  std::string text = segment.value("text", "");
  auto first = text.find_first_not_of(" \n");
  auto last = text.find_last_not_of(" \n");
  if (first == std::string::npos) return {};
  text = text.substr(first, last - first + 1);
  // A blank line would end the cue early in both formats.
  for (size_t at; (at = text.find("\n\n")) != std::string::npos;) text.erase(at, 1);
  return text;
}

const nlohmann::json& segmentsOf(const nlohmann::json& result) {
  static const nlohmann::json kNone = nlohmann::json::array();
  auto it = result.find("segments");
  return it != result.end() && it->is_array() ? *it : kNone;
}

}  // namespace

Result<TranscriptFormat> parseTranscriptFormat(const std::string& s) {
  if (s == "json") return TranscriptFormat::kJson;
  if (s == "text") return TranscriptFormat::kText;
  if (s == "verbose_json") return TranscriptFormat::kVerboseJson;
  if (s == "srt") return TranscriptFormat::kSrt;
  if (s == "vtt") return TranscriptFormat::kVtt;
  return fail(Error::invalid(
      std::format("'response_format' must be one of json, text, verbose_json, srt, vtt (got '{}')", s.substr(0, 64)),
      "response_format"));
}

std::string subtitleTime(double seconds, char decimal) {
  auto ms = static_cast<long long>(std::llround(std::max(0.0, seconds) * 1000));
  return std::format("{:02}:{:02}:{:02}{}{:03}", ms / 3600000, ms / 60000 % 60, ms / 1000 % 60, decimal, ms % 1000);
}

std::string toSrt(const nlohmann::json& result) {
  std::string out;
  int n = 0;
  for (auto& s : segmentsOf(result)) {
    out += std::format("{}\n{} --> {}\n{}\n\n", ++n, subtitleTime(s.value("start", 0.0), ','),
                       subtitleTime(s.value("end", 0.0), ','), cueText(s));
  }
  return out;
}

std::string toVtt(const nlohmann::json& result) {
  std::string out = "WEBVTT\n\n";
  for (auto& s : segmentsOf(result)) {
    out += std::format("{} --> {}\n{}\n\n", subtitleTime(s.value("start", 0.0), '.'),
                       subtitleTime(s.value("end", 0.0), '.'), cueText(s));
  }
  return out;
}

nlohmann::json toVerboseJson(const nlohmann::json& result) {
  nlohmann::json segments = nlohmann::json::array();
  int id = 0;
  for (auto& s : segmentsOf(result)) {
    segments.push_back(
        {{"id", id++}, {"start", s.value("start", 0.0)}, {"end", s.value("end", 0.0)}, {"text", s.value("text", "")}});
  }
  return {{"task", "transcribe"},
          {"language", result.value("language", "")},
          {"duration", result.value("duration", 0.0)},
          {"text", result.value("text", "")},
          {"segments", std::move(segments)}};
}

}  // namespace statim::api
