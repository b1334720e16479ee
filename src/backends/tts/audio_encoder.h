// Encoding synthesised speech (16-bit mono PCM) into the file formats a speech job can ask for,
// in memory, with libsndfile (sf_open_virtual): no temp files, no extra codec libraries.
// Pure functions; safe to call from any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "statim/error.h"

namespace statim::tts {

enum class AudioFormat { kWav, kFlac, kOgg, kOpus, kMp3, kPcm };

struct FormatInfo {
  AudioFormat format;
  std::string_view name;          // "wav": the `format` param and the artifact's extension
  std::string_view content_type;  // "audio/wav"
  // Opus only knows 8/12/16/24/48 kHz, and OpenAI's raw `pcm` is 24 kHz: those two are
  // resampled to this rate; 0 keeps the synthesiser's rate.
  int fixed_rate = 0;
};

// The formats, in the order error messages list them.
std::span<const FormatInfo> audioFormats();
std::optional<FormatInfo> findFormat(std::string_view name);
// "wav, flac, ogg, opus, mp3, pcm"
std::string formatNames();

struct EncodedAudio {
  std::string bytes;
  int sample_rate = 0;   // of the encoded stream (differs from the input for opus and pcm)
  std::int64_t frames = 0;  // samples written per channel
};

// Encodes mono 16-bit samples at `sample_rate`. wav and flac are 16-bit PCM, ogg is Vorbis,
// opus is Ogg Opus, mp3 is MPEG-2 Layer III, pcm is raw signed 16-bit little-endian.
Result<EncodedAudio> encodeAudio(std::span<const std::int16_t> samples, int sample_rate, const FormatInfo& format);

// What libsndfile reads back from encoded bytes (tests and sanity checks): frames decoded by
// reading the whole stream, its rate and channels, and libsndfile's major/sub format.
struct DecodedInfo {
  std::int64_t frames = 0;
  int sample_rate = 0;
  int channels = 0;
  int major_format = 0;  // SF_FORMAT_WAV, ...
  int sub_format = 0;    // SF_FORMAT_PCM_16, ...
};
Result<DecodedInfo> decodeInfo(std::string_view bytes);

}  // namespace statim::tts
