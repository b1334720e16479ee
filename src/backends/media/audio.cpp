#include "backends/media/audio.h"

#include <algorithm>
#include <cmath>
#include <format>
#include <memory>

#include <samplerate.h>
#include <sndfile.h>

namespace statim::audio {
namespace {

struct SndfileCloser {
  void operator()(SNDFILE* f) const { sf_close(f); }
};
using SndfilePtr = std::unique_ptr<SNDFILE, SndfileCloser>;

Error inputError(const std::string& name, std::string what) {
  return Error::invalid(std::format("input '{}' {}", name, what), "inputs." + name);
}

}  // namespace

Result<std::vector<float>> resample(const std::vector<float>& in, int from, int to) {
  if (from <= 0 || to <= 0) return fail(Error::invalid(std::format("cannot resample from {} Hz to {} Hz", from, to)));
  if (from == to || in.empty()) return in;
  double ratio = static_cast<double>(to) / from;
  std::vector<float> out(static_cast<size_t>(std::ceil(in.size() * ratio)) + 16);
  SRC_DATA data{};
  data.data_in = in.data();
  data.input_frames = static_cast<long>(in.size());
  data.data_out = out.data();
  data.output_frames = static_cast<long>(out.size());
  data.src_ratio = ratio;
  // Medium sinc quality: clean enough for speech models, several times faster than the best.
  if (int rc = src_simple(&data, SRC_SINC_MEDIUM_QUALITY, 1); rc != 0) {
    return fail(Error::backend(std::format("resampling {} Hz -> {} Hz failed: {}", from, to, src_strerror(rc))));
  }
  out.resize(static_cast<size_t>(data.output_frames_gen));
  return out;
}

Result<Pcm> decodeFile(const std::filesystem::path& path, const std::string& name, int rate, double max_seconds) {
  SF_INFO info{};
  SndfilePtr file(sf_open(path.c_str(), SFM_READ, &info));
  if (!file) {
    return fail(inputError(name, std::format("could not be decoded as audio: {}", sf_strerror(nullptr))));
  }
  if (info.channels <= 0 || info.samplerate <= 0) {
    return fail(inputError(name, std::format("has an invalid format ({} channels at {} Hz)", info.channels, info.samplerate)));
  }
  // Integer formats come out scaled to [-1, 1]; float files are taken as they are, then clipped.
  sf_command(file.get(), SFC_SET_NORM_FLOAT, nullptr, SF_TRUE);
  const auto max_frames = static_cast<sf_count_t>(max_seconds * info.samplerate);
  std::vector<float> mono;
  if (info.frames > 0 && info.frames <= max_frames) mono.reserve(static_cast<size_t>(info.frames));
  constexpr sf_count_t kChunk = 16384;
  std::vector<float> buf(static_cast<size_t>(kChunk * info.channels));
  for (;;) {
    sf_count_t got = sf_readf_float(file.get(), buf.data(), kChunk);
    if (got <= 0) break;
    for (sf_count_t i = 0; i < got; ++i) {
      float sum = 0;
      for (int c = 0; c < info.channels; ++c) sum += buf[static_cast<size_t>(i * info.channels + c)];
      float v = sum / static_cast<float>(info.channels);
      mono.push_back(std::isfinite(v) ? std::clamp(v, -1.0f, 1.0f) : 0.0f);
    }
    if (static_cast<sf_count_t>(mono.size()) > max_frames) {
      return fail(inputError(name, std::format("is longer than {:g} s, the most this model takes (max_seconds)", max_seconds)));
    }
  }
  if (sf_error(file.get()) != SF_ERR_NO_ERROR && mono.empty()) {
    return fail(inputError(name, std::format("could not be decoded as audio: {}", sf_strerror(file.get()))));
  }
  if (mono.empty()) return fail(inputError(name, "contains no audio samples"));
  auto resampled = resample(mono, info.samplerate, rate);
  if (!resampled) return fail(resampled.error());
  // A few frames at a higher rate can resample to none (found by tests/fuzz/fuzz_media).
  if (resampled->empty()) {
    return fail(inputError(name, std::format("is too short: {} sample(s) at {} Hz, less than one at {} Hz", mono.size(),
                                             info.samplerate, rate)));
  }
  return Pcm{std::move(*resampled), rate, info.samplerate, info.channels};
}

}  // namespace statim::audio
