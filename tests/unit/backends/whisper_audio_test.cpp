// Audio decoding for the whisper backend: every container libsndfile writes here (WAV, FLAC,
// OGG Vorbis, MP3) comes back mono at 16 kHz with the right length; bad files fail by name.
#include "backends/media/audio.h"

#include <cmath>
#include <numbers>

#include <gtest/gtest.h>
#include <sndfile.h>

#include "../test_util.h"

namespace statim {
namespace {

// Writes `seconds` of a 440 Hz sine (channel c scaled by gains[c]) in the given format.
std::filesystem::path writeSine(const testing::TempDir& dir, const std::string& name, int format, int rate,
                                std::vector<float> gains, double seconds) {
  auto path = dir.path() / name;
  SF_INFO info{};
  info.samplerate = rate;
  info.channels = static_cast<int>(gains.size());
  info.format = format;
  SNDFILE* f = sf_open(path.c_str(), SFM_WRITE, &info);
  EXPECT_NE(f, nullptr) << sf_strerror(nullptr);
  if (!f) return path;
  auto frames = static_cast<size_t>(seconds * rate);
  std::vector<float> data(frames * gains.size());
  for (size_t i = 0; i < frames; ++i) {
    float v = 0.5f * static_cast<float>(std::sin(2 * std::numbers::pi * 440.0 * static_cast<double>(i) / rate));
    for (size_t c = 0; c < gains.size(); ++c) data[i * gains.size() + c] = v * gains[c];
  }
  EXPECT_EQ(sf_writef_float(f, data.data(), static_cast<sf_count_t>(frames)), static_cast<sf_count_t>(frames));
  sf_close(f);
  return path;
}

// Upward zero crossings per second: the tone's frequency survives resampling.
double frequency(const audio::Pcm& pcm) {
  int crossings = 0;
  for (size_t i = 1; i < pcm.samples.size(); ++i) crossings += pcm.samples[i - 1] < 0 && pcm.samples[i] >= 0;
  return crossings / pcm.seconds();
}

struct Case {
  const char* name;
  int format;
  int rate;
  double tolerance_s;  // lossy codecs pad a little
};

// Found by tests/fuzz/fuzz_media: one stereo frame at 44.1 kHz resampled to no sample at all, and
// the decoder answered an empty recording as a success.
TEST(WhisperAudio, AudioTooShortToResampleIsRefused) {
  testing::TempDir dir;
  auto path = writeSine(dir, "one-frame.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_16, 44100, {1.0f, 1.0f}, 1.0 / 44100);
  auto pcm = audio::decodeFile(path, "speech", 16000, 60);
  ASSERT_FALSE(pcm) << pcm->samples.size() << " samples";
  EXPECT_EQ(pcm.error().message, "input 'speech' is too short: 1 sample(s) at 44100 Hz, less than one at 16000 Hz");
}

TEST(WhisperAudio, EveryContainerDecodesToMono16kOfTheRightLength) {
  testing::TempDir dir;
  for (Case c : {Case{"a.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_16, 44100, 0.001},
                 Case{"a.flac", SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 22050, 0.001},
                 Case{"a.ogg", SF_FORMAT_OGG | SF_FORMAT_VORBIS, 48000, 0.01},
                 Case{"a.mp3", SF_FORMAT_MPEG | SF_FORMAT_MPEG_LAYER_III, 44100, 0.08}}) {
    SCOPED_TRACE(c.name);
    auto path = writeSine(dir, c.name, c.format, c.rate, {1.0f}, 2.0);
    auto pcm = audio::decodeFile(path, "speech", 16000, 60);
    ASSERT_TRUE(pcm) << pcm.error().message;
    EXPECT_EQ(pcm->rate, 16000);
    EXPECT_EQ(pcm->source_rate, c.rate);
    EXPECT_EQ(pcm->source_channels, 1);
    EXPECT_NEAR(pcm->seconds(), 2.0, c.tolerance_s);
    EXPECT_NEAR(frequency(*pcm), 440, 5);
    float peak = 0;
    for (float v : pcm->samples) peak = std::max(peak, std::abs(v));
    EXPECT_NEAR(peak, 0.5, 0.08);
  }
}

TEST(WhisperAudio, StereoIsDownmixedByAveraging) {
  testing::TempDir dir;
  // Left and right in opposite phase cancel out; left alone comes through at half level.
  auto cancel = audio::decodeFile(writeSine(dir, "anti.wav", SF_FORMAT_WAV | SF_FORMAT_FLOAT, 16000, {1, -1}, 1), "a",
                                  16000, 60);
  ASSERT_TRUE(cancel);
  EXPECT_EQ(cancel->source_channels, 2);
  EXPECT_EQ(cancel->samples.size(), 16000u);
  for (float v : cancel->samples) ASSERT_NEAR(v, 0, 1e-6);
  auto left = audio::decodeFile(writeSine(dir, "left.wav", SF_FORMAT_WAV | SF_FORMAT_FLOAT, 16000, {1, 0}, 1), "a",
                                16000, 60);
  ASSERT_TRUE(left);
  float peak = 0;
  for (float v : left->samples) peak = std::max(peak, std::abs(v));
  EXPECT_NEAR(peak, 0.25, 0.01);
}

TEST(WhisperAudio, GarbageEmptyAndTooLongFailNamingTheInput) {
  testing::TempDir dir;
  auto garbage = audio::decodeFile(dir.write("g.wav", "RIFF\x24\x00\x00\x00WAVEfmt this is not audio at all"), "speech",
                                   16000, 60);
  ASSERT_FALSE(garbage);
  EXPECT_NE(garbage.error().message.find("input 'speech' could not be decoded as audio"), std::string::npos)
      << garbage.error().message;
  EXPECT_EQ(garbage.error().field, "inputs.speech");
  EXPECT_EQ(garbage.error().code, ErrorCode::kInvalidArgument);

  auto empty = audio::decodeFile(writeSine(dir, "e.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_16, 16000, {1}, 0), "speech",
                                 16000, 60);
  ASSERT_FALSE(empty);
  EXPECT_NE(empty.error().message.find("input 'speech' contains no audio samples"), std::string::npos);

  auto longer = audio::decodeFile(writeSine(dir, "l.flac", SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 8000, {1}, 3), "speech",
                                  16000, 2.5);
  ASSERT_FALSE(longer);
  EXPECT_NE(longer.error().message.find("input 'speech' is longer than 2.5 s"), std::string::npos)
      << longer.error().message;

  auto missing = audio::decodeFile(dir.path() / "nope.wav", "speech", 16000, 60);
  ASSERT_FALSE(missing);
}

TEST(WhisperAudio, ResampleScalesTheLength) {
  std::vector<float> in(8000, 0.25f);
  auto up = audio::resample(in, 8000, 16000);
  ASSERT_TRUE(up);
  EXPECT_NEAR(static_cast<double>(up->size()), 16000, 2);
  EXPECT_NEAR((*up)[8000], 0.25, 1e-3);  // a constant stays constant away from the edges
  auto same = audio::resample(in, 16000, 16000);
  ASSERT_TRUE(same);
  EXPECT_EQ(*same, in);
  EXPECT_FALSE(audio::resample(in, 0, 16000));
}

}  // namespace
}  // namespace statim
