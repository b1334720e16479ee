#include "backends/llama/text_output.h"

#include <gtest/gtest.h>

namespace statim::llama {
namespace {

TEST(TextOutput, StopStringAcrossTokensIsCutAndNeverStreamed) {
  TextOutput out({"STOP"});
  std::string streamed;
  for (std::string piece : {"Hello", " wor", "ld ST", "O"}) {
    EXPECT_FALSE(out.append(piece));
    streamed += out.takeStreamable(false);
  }
  EXPECT_EQ(streamed, "Hello world ");  // "STO" is held back: it may become the stop string
  EXPECT_TRUE(out.append("P and more"));
  EXPECT_EQ(out.text(), "Hello world ");
  streamed += out.takeStreamable(true);
  EXPECT_EQ(streamed, "Hello world ");
}

TEST(TextOutput, HeldBackTextIsReleasedWhenItDoesNotBecomeAStop) {
  TextOutput out({"STOP"});
  out.append("abc ST");
  EXPECT_EQ(out.takeStreamable(false), "abc ");
  out.append("ART");
  EXPECT_EQ(out.takeStreamable(false), "START");
  EXPECT_EQ(out.takeStreamable(true), "");
}

// A tool call's text stays in the output but out of the stream, and so does the whitespace
// before it; a tail that may open one waits; without a call everything is streamed in the end.
TEST(TextOutput, TextFromTheWithheldMarkerOnIsNeverStreamed) {
  TextOutput out({}, "<tool_call>");
  std::string streamed;
  for (std::string piece : {"Let me", " look.\n", "<tool", "_call>{\"name\"", ": \"f\"}</tool_call>"}) {
    out.append(piece);
    streamed += out.takeStreamable(false);
  }
  streamed += out.takeStreamable(true);
  EXPECT_EQ(streamed, "Let me look.");
  EXPECT_EQ(out.text(), "Let me look.\n<tool_call>{\"name\": \"f\"}</tool_call>");

  TextOutput plain({}, "<tool_call>");
  plain.append("a <tool");
  EXPECT_EQ(plain.takeStreamable(false), "a");
  plain.append("s> b ");
  EXPECT_EQ(plain.takeStreamable(false), " <tools> b");
  EXPECT_EQ(plain.takeStreamable(true), " ");
}

TEST(TextOutput, EarliestOfSeveralStopsWins) {
  TextOutput out({"world", "lo"});
  EXPECT_TRUE(out.append("Hello world"));
  EXPECT_EQ(out.text(), "Hel");
}

TEST(TextOutput, SplitUtf8IsNotStreamedUntilComplete) {
  TextOutput out({});
  out.append("caf\xC3");  // first byte of é
  EXPECT_EQ(out.takeStreamable(false), "caf");
  out.append("\xA9!");
  EXPECT_EQ(out.takeStreamable(false), "\xC3\xA9!");
  EXPECT_EQ(completeUtf8Prefix("\xF0\x9F\x90"), 0u);
  EXPECT_EQ(completeUtf8Prefix("a\xF0\x9F\x90\xB1"), 5u);
}

}  // namespace
}  // namespace statim::llama
