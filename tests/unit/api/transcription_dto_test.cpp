// Renderings of a transcription for POST /v1/audio/transcriptions: SubRip and WebVTT exactly per
// their formats, verbose_json, and the response_format check.
#include "api/dto/transcription_dto.h"

#include <gtest/gtest.h>

namespace statim::api {
namespace {

const nlohmann::json kResult = {
    {"text", "And so my fellow Americans, ask not."},
    {"language", "en"},
    {"duration", 3725.25},
    {"segments",
     {{{"start", 0.0}, {"end", 2.5}, {"text", " And so my fellow Americans,"}},
      {{"start", 3723.5}, {"end", 3725.2504}, {"text", " ask not."}}}}};

TEST(TranscriptionDto, SubtitleTimes) {
  EXPECT_EQ(subtitleTime(0, ','), "00:00:00,000");
  EXPECT_EQ(subtitleTime(3723.5, ','), "01:02:03,500");
  EXPECT_EQ(subtitleTime(3723.5, '.'), "01:02:03.500");
  EXPECT_EQ(subtitleTime(59.9996, '.'), "00:01:00.000");  // rounds to the millisecond, carrying
  EXPECT_EQ(subtitleTime(-1, ','), "00:00:00,000");
  EXPECT_EQ(subtitleTime(100 * 3600 + 1.001, ','), "100:00:01,001");
}

TEST(TranscriptionDto, SrtIsNumberedCuesWithCommaTimes) {
  EXPECT_EQ(toSrt(kResult),
            "1\n00:00:00,000 --> 00:00:02,500\nAnd so my fellow Americans,\n\n"
            "2\n01:02:03,500 --> 01:02:05,250\nask not.\n\n");
  EXPECT_EQ(toSrt({{"text", ""}}), "");
}

TEST(TranscriptionDto, VttHasTheHeaderAndDotTimes) {
  EXPECT_EQ(toVtt(kResult),
            "WEBVTT\n\n"
            "00:00:00.000 --> 00:00:02.500\nAnd so my fellow Americans,\n\n"
            "01:02:03.500 --> 01:02:05.250\nask not.\n\n");
  EXPECT_EQ(toVtt({{"text", ""}}), "WEBVTT\n\n");
}

TEST(TranscriptionDto, ABlankLineInsideACueIsRemoved) {
  nlohmann::json r = {{"segments", {{{"start", 1.0}, {"end", 2.0}, {"text", " one\n\ntwo "}}}}};
  EXPECT_EQ(toSrt(r), "1\n00:00:01,000 --> 00:00:02,000\none\ntwo\n\n");
}

TEST(TranscriptionDto, VerboseJson) {
  auto v = toVerboseJson(kResult);
  EXPECT_EQ(v["task"], "transcribe");
  EXPECT_EQ(v["language"], "en");
  EXPECT_EQ(v["duration"], 3725.25);
  EXPECT_EQ(v["text"], kResult["text"]);
  ASSERT_EQ(v["segments"].size(), 2u);
  EXPECT_EQ(v["segments"][1], (nlohmann::json{{"id", 1}, {"start", 3723.5}, {"end", 3725.2504}, {"text", " ask not."}}));
}

TEST(TranscriptionDto, ResponseFormats) {
  EXPECT_EQ(parseTranscriptFormat("srt").value(), TranscriptFormat::kSrt);
  EXPECT_EQ(parseTranscriptFormat("verbose_json").value(), TranscriptFormat::kVerboseJson);
  auto bad = parseTranscriptFormat("docx");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().field, "response_format");
  EXPECT_NE(bad.error().message.find("json, text, verbose_json, srt, vtt (got 'docx')"), std::string::npos);
}

}  // namespace
}  // namespace statim::api
