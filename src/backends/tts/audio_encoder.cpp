#include "backends/tts/audio_encoder.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <format>
#include <memory>
#include <vector>

#include <samplerate.h>
#include <sndfile.h>

namespace statim::tts {
namespace {

constexpr std::array<FormatInfo, 6> kFormats = {{
    {AudioFormat::kWav, "wav", "audio/wav", 0},
    {AudioFormat::kFlac, "flac", "audio/flac", 0},
    {AudioFormat::kOgg, "ogg", "audio/ogg", 0},
    {AudioFormat::kOpus, "opus", "audio/opus", 24000},
    {AudioFormat::kMp3, "mp3", "audio/mpeg", 0},
    {AudioFormat::kPcm, "pcm", "audio/pcm", 24000},
}};

int sndfileFormat(AudioFormat f) {
  switch (f) {
    case AudioFormat::kWav: return SF_FORMAT_WAV | SF_FORMAT_PCM_16;
    case AudioFormat::kFlac: return SF_FORMAT_FLAC | SF_FORMAT_PCM_16;
    case AudioFormat::kOgg: return SF_FORMAT_OGG | SF_FORMAT_VORBIS;
    case AudioFormat::kOpus: return SF_FORMAT_OGG | SF_FORMAT_OPUS;
    case AudioFormat::kMp3: return SF_FORMAT_MPEG | SF_FORMAT_MPEG_LAYER_III;
    case AudioFormat::kPcm: return SF_FORMAT_RAW | SF_FORMAT_PCM_16 | SF_ENDIAN_LITTLE;
  }
  return 0;
}

// A growable in-memory file for libsndfile's virtual I/O. Writers seek back to patch headers
// (WAV sizes, FLAC STREAMINFO), so writes past the end extend and writes inside overwrite.
struct MemoryFile {
  std::string data;
  sf_count_t pos = 0;

  static MemoryFile& of(void* p) { return *static_cast<MemoryFile*>(p); }
  static sf_count_t length(void* p) { return static_cast<sf_count_t>(of(p).data.size()); }
  static sf_count_t seek(sf_count_t offset, int whence, void* p) {
    auto& f = of(p);
    sf_count_t base = whence == SEEK_CUR ? f.pos : whence == SEEK_END ? static_cast<sf_count_t>(f.data.size()) : 0;
    if (base + offset < 0) return -1;
    f.pos = base + offset;
    return f.pos;
  }
  static sf_count_t read(void* out, sf_count_t count, void* p) {
    auto& f = of(p);
    if (f.pos >= static_cast<sf_count_t>(f.data.size())) return 0;
    sf_count_t n = std::min<sf_count_t>(count, static_cast<sf_count_t>(f.data.size()) - f.pos);
    std::memcpy(out, f.data.data() + f.pos, static_cast<size_t>(n));
    f.pos += n;
    return n;
  }
  static sf_count_t write(const void* in, sf_count_t count, void* p) {
    auto& f = of(p);
    size_t end = static_cast<size_t>(f.pos + count);
    if (end > f.data.size()) f.data.resize(end);
    std::memcpy(f.data.data() + f.pos, in, static_cast<size_t>(count));
    f.pos += count;
    return count;
  }
  static sf_count_t tell(void* p) { return of(p).pos; }
};

SF_VIRTUAL_IO memoryIo() {
  return {MemoryFile::length, MemoryFile::seek, MemoryFile::read, MemoryFile::write, MemoryFile::tell};
}

struct SndfileCloser {
  void operator()(SNDFILE* f) const { sf_close(f); }
};
using SndfilePtr = std::unique_ptr<SNDFILE, SndfileCloser>;

// Band-limited rate conversion (libsamplerate; its fastest sinc is plenty for speech at a
// 22.05 -> 24 kHz step); only for the formats with a fixed rate.
Result<std::vector<std::int16_t>> resample(std::span<const std::int16_t> in, int from, int to) {
  std::vector<float> src(in.size()), dst(static_cast<size_t>(std::ceil(in.size() * double(to) / from)) + 64);
  src_short_to_float_array(in.data(), src.data(), static_cast<int>(in.size()));
  SRC_DATA d{};
  d.data_in = src.data();
  d.input_frames = static_cast<long>(src.size());
  d.data_out = dst.data();
  d.output_frames = static_cast<long>(dst.size());
  d.src_ratio = double(to) / from;
  d.end_of_input = 1;
  if (int rc = src_simple(&d, SRC_SINC_FASTEST, 1); rc != 0) {
    return fail(Error::backend(std::format("resampling {} Hz -> {} Hz failed: {}", from, to, src_strerror(rc))));
  }
  std::vector<std::int16_t> out(static_cast<size_t>(d.output_frames_gen));
  src_float_to_short_array(dst.data(), out.data(), static_cast<int>(out.size()));
  return out;
}

}  // namespace

std::span<const FormatInfo> audioFormats() { return kFormats; }

std::optional<FormatInfo> findFormat(std::string_view name) {
  for (auto& f : kFormats) {
    if (f.name == name) return f;
  }
  return std::nullopt;
}

std::string formatNames() {
  std::string out;
  for (auto& f : kFormats) out += (out.empty() ? "" : ", ") + std::string(f.name);
  return out;
}

Result<EncodedAudio> encodeAudio(std::span<const std::int16_t> samples, int sample_rate, const FormatInfo& format) {
  if (sample_rate <= 0) return fail(Error::internal("encodeAudio: sample rate must be positive"));
  std::vector<std::int16_t> converted;
  int rate = sample_rate;
  if (format.fixed_rate != 0 && format.fixed_rate != sample_rate) {
    auto r = resample(samples, sample_rate, format.fixed_rate);
    if (!r) return fail(r.error());
    converted = std::move(*r);
    samples = converted;
    rate = format.fixed_rate;
  }
  MemoryFile file;
  SF_VIRTUAL_IO io = memoryIo();
  SF_INFO info{};
  info.samplerate = rate;
  info.channels = 1;
  info.format = sndfileFormat(format.format);
  SndfilePtr out(sf_open_virtual(&io, SFM_WRITE, &info, &file));
  if (!out) {
    return fail(Error::backend(
        std::format("libsndfile cannot write {} at {} Hz: {}", format.name, rate, sf_strerror(nullptr))));
  }
  sf_count_t written =
      samples.empty() ? 0 : sf_write_short(out.get(), samples.data(), static_cast<sf_count_t>(samples.size()));
  if (written != static_cast<sf_count_t>(samples.size())) {
    return fail(Error::backend(std::format("libsndfile wrote {} of {} samples as {}: {}", written, samples.size(),
                                           format.name, sf_strerror(out.get()))));
  }
  // Closing flushes the encoder and patches the header: the bytes are complete only after it.
  if (int rc = sf_close(out.release()); rc != 0) {
    return fail(Error::backend(
        std::format("libsndfile could not finish the {} stream: {}", format.name, sf_error_number(rc))));
  }
  return EncodedAudio{std::move(file.data), rate, static_cast<std::int64_t>(samples.size())};
}

Result<DecodedInfo> decodeInfo(std::string_view bytes) {
  MemoryFile file{std::string(bytes), 0};
  SF_VIRTUAL_IO io = memoryIo();
  SF_INFO info{};
  SndfilePtr in(sf_open_virtual(&io, SFM_READ, &info, &file));
  if (!in) return fail(Error::invalid(std::format("libsndfile cannot read the audio: {}", sf_strerror(nullptr))));
  DecodedInfo out{0, info.samplerate, info.channels, info.format & SF_FORMAT_TYPEMASK, info.format & SF_FORMAT_SUBMASK};
  // Count what actually decodes: lossy containers only estimate `frames` in their header.
  std::vector<short> chunk(4096 * std::max(1, info.channels));
  for (sf_count_t n; (n = sf_readf_short(in.get(), chunk.data(), 4096)) > 0;) out.frames += n;
  return out;
}

}  // namespace statim::tts
