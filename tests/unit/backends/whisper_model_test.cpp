// The whisper backend's own checks: the model file walk (a vocabulary-only or truncated file is
// refused with a reason) and UTF-8 clean-up of decoded text.
#include <cstdlib>

#include <gtest/gtest.h>

#include "../test_util.h"
#include "backends/whisper/model_file.h"
#include "backends/whisper/transcribe.h"

namespace statim {
namespace {

std::filesystem::path sharedModels() {
  if (const char* p = std::getenv("STATIM_SHARED_MODELS")) return p;
  return std::filesystem::path(STATIM_SOURCE_DIR) / ".." / "shared" / "models";
}

TEST(WhisperModelFile, VocabularyOnlyFileIsRefusedWithAReason) {
  auto path = sharedModels() / "whisper" / "vocab-only-for-tests-ggml-tiny.en.bin";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " is absent";
  auto h = whisper_file::inspect(path);
  ASSERT_FALSE(h);
  EXPECT_NE(h.error().message.find("no weights (0 of 167 tensors)"), std::string::npos) << h.error().message;
}

TEST(WhisperModelFile, NotAModelAndTruncatedHeader) {
  testing::TempDir dir;
  auto junk = whisper_file::inspect(dir.write("junk.bin", "definitely not a model"));
  ASSERT_FALSE(junk);
  EXPECT_NE(junk.error().message.find("bad magic"), std::string::npos);
  auto cut = whisper_file::inspect(dir.write("cut.bin", std::string("lmgg\x01\x02", 6)));
  ASSERT_FALSE(cut);
  EXPECT_NE(cut.error().message.find("truncated in the header"), std::string::npos) << cut.error().message;
  EXPECT_FALSE(whisper_file::inspect(dir.path() / "missing.bin"));
}

TEST(WhisperText, InvalidUtf8BecomesReplacementCharacters) {
  EXPECT_EQ(whisper::validUtf8("plain"), "plain");
  EXPECT_EQ(whisper::validUtf8("caf\xc3\xa9"), "caf\xc3\xa9");
  EXPECT_EQ(whisper::validUtf8("half \xe2\x82"), "half \xef\xbf\xbd\xef\xbf\xbd");  // a euro sign cut short
  EXPECT_EQ(whisper::validUtf8("\xc0\xaf"), "\xef\xbf\xbd\xef\xbf\xbd");                // overlong '/'
  EXPECT_EQ(whisper::validUtf8("\xf0\x9f\x98\x80"), "\xf0\x9f\x98\x80");                // emoji
}

}  // namespace
}  // namespace statim
