// Audio input for speech models: any file libsndfile reads (WAV, FLAC, OGG Vorbis/Opus, MP3)
// decoded to 32-bit float, downmixed to mono and resampled (libsamplerate) to the rate a model
// wants. Plain functions, no shared state: safe from any thread.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "statim/error.h"

namespace statim::audio {

struct Pcm {
  std::vector<float> samples;  // mono, in [-1, 1]
  int rate = 0;                // samples per second
  int source_rate = 0;         // the file's rate before resampling
  int source_channels = 0;
  double seconds() const { return rate > 0 ? static_cast<double>(samples.size()) / rate : 0.0; }
};

// Decodes the file at `path` to mono `rate` Hz. `name` is the input's name, for messages (and the
// error's field, "inputs.<name>"). Fails on bytes libsndfile cannot decode, on a file without a
// single sample, and on audio longer than `max_seconds` (checked while reading, so an hour-long
// file is not decoded whole just to be refused).
Result<Pcm> decodeFile(const std::filesystem::path& path, const std::string& name, int rate, double max_seconds);

// Resamples mono `in` from `from` Hz to `to` Hz (returned as is when the rates are equal).
Result<std::vector<float>> resample(const std::vector<float>& in, int from, int to);

}  // namespace statim::audio
