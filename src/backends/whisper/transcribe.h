// One whisper_full run on a session's state: job params -> whisper_full_params, callbacks ->
// job events and cancellation, segments -> the result object.
#pragma once

#include <string>

#include <nlohmann/json.hpp>
#include <whisper.h>

#include "backends/media/audio.h"
#include "statim/backend.h"

namespace statim::whisper {

struct Options {  // from the manifest
  int threads = 4;
  double max_seconds = 600;
};

// Transcribes `pcm` (mono, 16 kHz). On cancellation returns the segments decoded so far with
// "finish_reason": "cancelled".
Result<nlohmann::json> transcribe(whisper_context* ctx, whisper_state* state, const Options& options,
                                  const nlohmann::json& params, const audio::Pcm& pcm, JobControl& control);

// Replaces invalid UTF-8 (a multi-byte character split between tokens) with U+FFFD.
std::string validUtf8(std::string_view s);

}  // namespace statim::whisper
