// The tts backend's encoder: every format is written in memory by libsndfile and reads back as
// what it claims, with the length it was given.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numbers>
#include <vector>

#include <gtest/gtest.h>
#include <sndfile.h>

#include "backends/tts/audio_encoder.h"

namespace statim::tts {
namespace {

constexpr int kRate = 22050;

// 1.5 s of a 440 Hz tone at half scale: enough for lossy codecs to keep something.
std::vector<std::int16_t> tone(int frames = kRate * 3 / 2) {
  std::vector<std::int16_t> out(frames);
  for (int i = 0; i < frames; ++i) {
    out[i] = static_cast<std::int16_t>(16000 * std::sin(2 * std::numbers::pi * 440 * i / kRate));
  }
  return out;
}

std::uint32_t le32(const std::string& b, size_t at) {
  std::uint32_t v;
  std::memcpy(&v, b.data() + at, 4);
  return v;
}
std::uint16_t le16(const std::string& b, size_t at) {
  std::uint16_t v;
  std::memcpy(&v, b.data() + at, 2);
  return v;
}

TEST(TtsEncoderTest, WavHeaderStatesMono16BitAtTheRateAndHoldsEverySample) {
  auto samples = tone();
  auto wav = encodeAudio(samples, kRate, *findFormat("wav"));
  ASSERT_TRUE(wav) << wav.error().message;
  const std::string& b = wav->bytes;
  ASSERT_GE(b.size(), 44u);
  EXPECT_EQ(b.substr(0, 4), "RIFF");
  EXPECT_EQ(le32(b, 4), b.size() - 8) << "RIFF size";
  EXPECT_EQ(b.substr(8, 4), "WAVE");
  EXPECT_EQ(b.substr(12, 4), "fmt ");
  EXPECT_EQ(le16(b, 20), 1) << "PCM";
  EXPECT_EQ(le16(b, 22), 1) << "channels";
  EXPECT_EQ(le32(b, 24), static_cast<std::uint32_t>(kRate)) << "sample rate";
  EXPECT_EQ(le32(b, 28), static_cast<std::uint32_t>(kRate * 2)) << "byte rate";
  EXPECT_EQ(le16(b, 32), 2) << "block align";
  EXPECT_EQ(le16(b, 34), 16) << "bits per sample";
  // The data chunk holds exactly the samples, byte for byte.
  auto data = b.find("data");
  ASSERT_NE(data, std::string::npos);
  EXPECT_EQ(le32(b, data + 4), samples.size() * 2);
  EXPECT_EQ(std::memcmp(b.data() + data + 8, samples.data(), samples.size() * 2), 0);
  EXPECT_EQ(wav->sample_rate, kRate);
  EXPECT_EQ(wav->frames, static_cast<std::int64_t>(samples.size()));
}

struct Expect {
  const char* name;
  int major, sub;
  const char* magic;  // the file's first bytes
  int rate;
  double tolerance_s;  // lossy codecs pad or trim a frame's worth
};

TEST(TtsEncoderTest, EachFormatDecodesBackAsItselfWithTheSameLength) {
  auto samples = tone();
  const double seconds = static_cast<double>(samples.size()) / kRate;
  for (const Expect& e : {Expect{"wav", SF_FORMAT_WAV, SF_FORMAT_PCM_16, "RIFF", kRate, 0},
                          Expect{"flac", SF_FORMAT_FLAC, SF_FORMAT_PCM_16, "fLaC", kRate, 0},
                          Expect{"ogg", SF_FORMAT_OGG, SF_FORMAT_VORBIS, "OggS", kRate, 0.01},
                          Expect{"opus", SF_FORMAT_OGG, SF_FORMAT_OPUS, "OggS", 24000, 0.03},
                          Expect{"mp3", SF_FORMAT_MPEG, SF_FORMAT_MPEG_LAYER_III, "", kRate, 0.06}}) {
    SCOPED_TRACE(e.name);
    auto enc = encodeAudio(samples, kRate, *findFormat(e.name));
    ASSERT_TRUE(enc) << enc.error().message;
    EXPECT_EQ(enc->sample_rate, e.rate);
    if (*e.magic) {
      EXPECT_EQ(enc->bytes.substr(0, std::strlen(e.magic)), e.magic);
    }
    auto info = decodeInfo(enc->bytes);
    ASSERT_TRUE(info) << info.error().message;
    EXPECT_EQ(info->channels, 1);
    EXPECT_EQ(info->sample_rate, e.rate);
    EXPECT_EQ(info->major_format, e.major);
    EXPECT_EQ(info->sub_format, e.sub);
    double decoded = static_cast<double>(info->frames) / info->sample_rate;
    if (e.tolerance_s == 0) {
      EXPECT_EQ(info->frames, static_cast<std::int64_t>(samples.size()));
    } else {
      EXPECT_NEAR(decoded, seconds, e.tolerance_s);
    }
  }
}

TEST(TtsEncoderTest, Mp3IsAnMpegStreamWithAnId3TagOrAFrameSync) {
  auto mp3 = encodeAudio(tone(), kRate, *findFormat("mp3"));
  ASSERT_TRUE(mp3);
  const auto& b = mp3->bytes;
  bool id3 = b.starts_with("ID3");
  bool sync = static_cast<unsigned char>(b[0]) == 0xFF && (static_cast<unsigned char>(b[1]) & 0xE0) == 0xE0;
  EXPECT_TRUE(id3 || sync) << "starts with " << std::hex << int(static_cast<unsigned char>(b[0]));
  EXPECT_LT(b.size(), tone().size() * 2 / 4) << "mp3 compresses";
}

TEST(TtsEncoderTest, PcmIsRaw16BitLittleEndianAt24kHz) {
  auto samples = tone(kRate);  // exactly one second
  auto pcm = encodeAudio(samples, kRate, *findFormat("pcm"));
  ASSERT_TRUE(pcm) << pcm.error().message;
  EXPECT_EQ(pcm->sample_rate, 24000);
  EXPECT_EQ(pcm->bytes.size() % 2, 0u);
  EXPECT_NEAR(static_cast<double>(pcm->bytes.size()) / 2, 24000, 24) << "one second at 24 kHz";
  EXPECT_EQ(pcm->frames * 2, static_cast<std::int64_t>(pcm->bytes.size()));
  // Still the tone: the peak survives resampling.
  std::int16_t peak = 0;
  for (size_t i = 0; i + 1 < pcm->bytes.size(); i += 2) {
    peak = std::max<std::int16_t>(peak, static_cast<std::int16_t>(le16(pcm->bytes, i)));
  }
  EXPECT_NEAR(peak, 16000, 800);
}

TEST(TtsEncoderTest, EmptyAudioStillMakesAValidFile) {
  auto wav = encodeAudio({}, kRate, *findFormat("wav"));
  ASSERT_TRUE(wav);
  auto info = decodeInfo(wav->bytes);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->frames, 0);
}

TEST(TtsEncoderTest, FormatsAreListedAndUnknownOnesAreNotFound) {
  EXPECT_EQ(formatNames(), "wav, flac, ogg, opus, mp3, pcm");
  EXPECT_FALSE(findFormat("aac"));
  EXPECT_FALSE(findFormat("WAV"));
  EXPECT_EQ(findFormat("mp3")->content_type, "audio/mpeg");
  auto bad = decodeInfo("not audio at all, just words");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("cannot read"), std::string::npos);
}

}  // namespace
}  // namespace statim::tts
