// The tts backend's contract without HTTP: voice names resolve against the installed espeak-ng
// voices, params and manifests are checked with the field named, and a synthesis is real audio
// that a cancellation stops early.
#include <gtest/gtest.h>

#include "backends/tts/espeak_engine.h"
#include "backends/tts/tts_backend.h"

namespace statim {
namespace {

tts::EspeakEngine& engine() {
  auto e = tts::EspeakEngine::instance();
  EXPECT_TRUE(e) << (e ? "" : e.error().message);
  return **e;
}

TEST(TtsBackendTest, VoiceNamesResolveToInstalledVoiceFilesCaseInsensitively) {
  auto& e = engine();
  EXPECT_EQ(e.sampleRate(), 22050);
  EXPECT_EQ(e.resolve("en-us", "voice").value(), "gmw/en-US");
  EXPECT_EQ(e.resolve("EN-US+F3", "voice").value(), "gmw/en-US+f3");
  EXPECT_EQ(e.resolve("en-gb+m4", "voice").value(), "gmw/en+m4") << "a language, then a variant";
  EXPECT_EQ(e.resolve("de", "voice").value(), "gmw/de");
  auto bad = e.resolve("klingon", "params.voice");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().field, "params.voice");
  EXPECT_NE(bad.error().message.find("unknown voice 'klingon'"), std::string::npos) << bad.error().message;
  auto bad_variant = e.resolve("en+zz", "voice");
  ASSERT_FALSE(bad_variant);
  EXPECT_NE(bad_variant.error().message.find("unknown voice variant 'zz'"), std::string::npos);
  auto names = e.voiceNames();
  EXPECT_NE(std::ranges::find(names, "fr"), names.end());
}

TEST(TtsBackendTest, SynthesisIsAudioAndStopsWhenAsked) {
  auto& e = engine();
  tts::SpeechRequest req{"Hello there. This is a test.", "en-us", 175, 50};
  int sentences = 0;
  auto full = e.synthesize(req, [] { return false; }, [&](int) { ++sentences; });
  ASSERT_TRUE(full) << full.error().message;
  EXPECT_FALSE(full->cancelled);
  EXPECT_GT(full->samples.size(), 22050u) << "over a second of speech";
  EXPECT_GE(sentences, 2);
  int polls = 0;
  auto stopped = e.synthesize(req, [&] { return ++polls >= 2; }, {});
  ASSERT_TRUE(stopped);
  EXPECT_TRUE(stopped->cancelled);
  EXPECT_LT(stopped->samples.size(), full->samples.size() / 2);
  auto again = e.synthesize(req, [] { return false; }, {});
  ASSERT_TRUE(again);
  EXPECT_NEAR(static_cast<double>(again->samples.size()), static_cast<double>(full->samples.size()), 2205)
      << "the engine is whole after an abort";
}

TEST(TtsBackendTest, ParamsAndManifestsAreCheckedNamingTheField) {
  const Backend& b = ttsBackend();
  EXPECT_TRUE(b.validateParams("speech", {{"voice", "de"}, {"speed", 200}, {"pitch", 0}, {"format", "mp3"}}));
  auto expect_error = [&](const nlohmann::json& p, const std::string& field, const std::string& text) {
    auto r = b.validateParams("speech", p);
    ASSERT_FALSE(r) << p.dump();
    EXPECT_EQ(r.error().field, field);
    EXPECT_NE(r.error().message.find(text), std::string::npos) << r.error().message;
  };
  expect_error({{"speed", 79}}, "params.speed", "between 80 and 450 (words per minute)");
  expect_error({{"pitch", -1}}, "params.pitch", "between 0 and 100");
  expect_error({{"format", "aac"}}, "params.format", "one of wav, flac, ogg, opus, mp3, pcm");
  expect_error({{"rate", 1}}, "params.rate", "unknown field");
  ModelConfig two{"t", "speech", {}, nlohmann::json::object(), 2};
  auto r = b.validateConfig(two);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("parallel must be 1"), std::string::npos);
  ModelConfig one{"t", "speech", {}, {{"voice", "en-us"}, {"max_chars", 50}}, 1};
  EXPECT_TRUE(b.validateConfig(one));
  auto model = b.load(one);
  ASSERT_TRUE(model) << model.error().message;
  NewJob job{.model = "t", .type = "speech", .prompt = std::string(51, 'a')};
  auto too_long = (*model)->checkJob(job);
  ASSERT_FALSE(too_long);
  EXPECT_EQ(too_long.error().field, "prompt");
  EXPECT_NE(too_long.error().message.find("'prompt' has 51 characters; model 't' speaks at most 50"),
            std::string::npos);
}

}  // namespace
}  // namespace statim
