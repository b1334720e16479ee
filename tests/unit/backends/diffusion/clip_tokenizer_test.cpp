#include "backends/diffusion/clip_tokenizer.h"

#include <cstdlib>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "../../test_util.h"
#include "backends/diffusion/clip_text.h"
#include "backends/diffusion/clip_unicode.h"

namespace statim::diffusion {
namespace {

std::filesystem::path sharedModels() {
  if (const char* p = std::getenv("STATIM_SHARED_MODELS")) return p;
  return std::filesystem::path(STATIM_SOURCE_DIR) / ".." / "shared" / "models";
}

std::string utf8(std::u32string_view s) {
  std::string out;
  for (char32_t c : s) unicode::appendUtf8(c, out);
  return out;
}

std::vector<std::string> pieces(std::u32string_view cleaned) {
  std::vector<std::string> out;
  for (auto p : clip::preTokenize(cleaned)) out.push_back(utf8(p));
  return out;
}

// Expected values below come from CPython 3.14's html.unescape / str.lower, e.g.
//   python3 -c 'import html; print([hex(ord(c)) for c in html.unescape("&notit;")])'
TEST(ClipText, HtmlUnescapeFollowsPython) {
  auto unescape = [](std::string_view s) { return utf8(clip::htmlUnescape(unicode::decodeUtf8(s))); };
  EXPECT_EQ(unescape("&amp;lt;"), "&lt;");  // one pass: CLIP unescapes twice for this
  EXPECT_EQ(unescape("&ampxyz"), "&xyz");   // HTML5 names without ';'
  EXPECT_EQ(unescape("&AMP"), "&");
  EXPECT_EQ(unescape("&lt&gt;"), "<>");
  EXPECT_EQ(unescape("&notit;"), "\u00ACit;");  // longest known prefix
  EXPECT_EQ(unescape("&bogus;"), "&bogus;");
  EXPECT_EQ(unescape("&NotNestedGreaterGreater;"), "\u2AA2\u0338");  // two code points
  EXPECT_EQ(unescape("&#128;"), "\u20AC");  // windows-1252 fix-up
  EXPECT_EQ(unescape("&#x1F431;"), "\U0001F431");
  EXPECT_EQ(unescape("&#65"), "A");
  EXPECT_EQ(unescape("&#13;"), "\r");
  EXPECT_EQ(unescape("&#0;"), "\uFFFD");
  EXPECT_EQ(unescape("&#xD800;"), "\uFFFD");
  EXPECT_EQ(unescape("&#99999999999999999999;"), "\uFFFD");
  EXPECT_EQ(unescape("x&#1;y"), "xy");  // dropped
  EXPECT_EQ(unescape("&#x;"), "&#x;");
  EXPECT_EQ(unescape("&#;"), "&#;");
  EXPECT_EQ(unescape("a&b & c&"), "a&b & c&");
}

TEST(ClipText, CleanCollapsesWhiteSpaceAndLowerCases) {
  EXPECT_EQ(utf8(clip::cleanText("  A\u00A0B\u2003\tC \n ")), "a b c");
  EXPECT_EQ(utf8(clip::cleanText("\u00C9COLE \u0130 \u03A3")), "\u00E9cole i\u0307 \u03C3");
  EXPECT_EQ(utf8(clip::cleanText("&amp;lt;b&amp;gt;")), "<b>");  // unescaped twice
  EXPECT_EQ(utf8(clip::cleanText("a&nbsp;&nbsp;b")), "a b");      // entities before whitespace
  EXPECT_EQ(utf8(clip::cleanText("bad \xFF\xC3 utf8")), "bad \uFFFD\uFFFD utf8");
  EXPECT_EQ(utf8(clip::cleanText(" \t\n")), "");
}

TEST(ClipText, PreTokenizeMatchesClipsRegex) {
  using V = std::vector<std::string>;
  EXPECT_EQ(pieces(U"don't stop, it's 3:45pm"), (V{"don", "'t", "stop", ",", "it", "'s", "3", ":", "4", "5", "pm"}));
  EXPECT_EQ(pieces(U"a!!'s"), (V{"a", "!!'", "s"}));  // the punctuation run swallows the quote
  EXPECT_EQ(pieces(U"we'll we've i'm i'd they're 'x"), (V{"we", "'ll", "we", "'ve", "i", "'m", "i", "'d", "they", "'re", "'", "x"}));
  EXPECT_EQ(pieces(U"<|startoftext|>x<|endoftext|>"), (V{"<|startoftext|>", "x", "<|endoftext|>"}));
  EXPECT_EQ(pieces(U"!<|endoftext|>"), (V{"!<|", "endoftext", "|>"}));
  EXPECT_EQ(pieces(U"caf\u00E9 \u732B\u732B 12\u00BD"), (V{"caf\u00E9", "\u732B\u732B", "1", "2", "\u00BD"}));
  EXPECT_EQ(pieces(U"it'\u017F"), (V{"it", "'\u017F"}));  // re.IGNORECASE: U+017F folds to 's'
  EXPECT_EQ(pieces(U"\U0001F431\U0001F680 ok"), (V{"\U0001F431\U0001F680", "ok"}));
  EXPECT_TRUE(pieces(U"").empty());
}

// A hand-made vocabulary: BPE merges by rank, "</w>" on the last symbol, unknown -> <|endoftext|>.
class TinyClipTokenizer : public ::testing::Test {
 protected:
  void SetUp() override {
    nlohmann::json vocab = {{"a", 0},      {"b", 1},         {"c", 2},       {"a</w>", 3},
                            {"b</w>", 4},  {"c</w>", 5},     {"ab", 6},      {"abc</w>", 7},
                            {"bc</w>", 8}, {"<|startoftext|>", 9}, {"<|endoftext|>", 10}, {"!", 11}};
    vocab_ = dir_.write("vocab.json", vocab.dump());
    // Rank 0 "b c</w>" beats rank 1 "a b": "abc" -> a + bc</w> (both merges apply left to right).
    merges_ = dir_.write("merges.txt", "#version: 0.2\nb c</w>\na b\nab c</w>\n");
  }
  testing::TempDir dir_;
  std::filesystem::path vocab_, merges_;
};

TEST_F(TinyClipTokenizer, MergesByRank) {
  auto tok = ClipTokenizer::load(vocab_, merges_);
  ASSERT_TRUE(tok) << tok.error().message;
  EXPECT_EQ(tok->startId(), 9);
  EXPECT_EQ(tok->endId(), 10);
  EXPECT_EQ(tok->encode("abc"), (std::vector<std::int32_t>{0, 8}));     // a + bc</w>, never ab
  EXPECT_EQ(tok->encode("ab"), (std::vector<std::int32_t>{0, 4}));      // no merge "a b</w>"
  EXPECT_EQ(tok->encode("c b"), (std::vector<std::int32_t>{5, 4}));
  EXPECT_EQ(tok->encode("abd"), (std::vector<std::int32_t>{6, 10}));   // "d</w>" unknown -> <|endoftext|>
  EXPECT_EQ(tok->idOf("!"), 11);
  EXPECT_EQ(tok->idOf("nope"), std::nullopt);
}

TEST_F(TinyClipTokenizer, LoadErrorsNameTheFile) {
  auto missing = ClipTokenizer::load(dir_.path() / "none.json", merges_);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("none.json"), std::string::npos) << missing.error().message;

  auto bad_json = ClipTokenizer::load(dir_.write("bad.json", "{\"a\": "), merges_);
  ASSERT_FALSE(bad_json);
  EXPECT_NE(bad_json.error().message.find("bad.json is not a JSON object"), std::string::npos);

  auto bad_id = ClipTokenizer::load(dir_.write("badid.json", R"({"a": "x"})"), merges_);
  ASSERT_FALSE(bad_id);
  EXPECT_NE(bad_id.error().message.find("the id of token \"a\""), std::string::npos) << bad_id.error().message;

  auto no_special = ClipTokenizer::load(dir_.write("nospecial.json", R"({"a": 0, "<|startoftext|>": 1})"), merges_);
  ASSERT_FALSE(no_special);
  EXPECT_NE(no_special.error().message.find("no <|endoftext|> token"), std::string::npos);

  auto no_merges = ClipTokenizer::load(vocab_, dir_.write("empty.txt", "#version: 0.2\n"));
  ASSERT_FALSE(no_merges);
  EXPECT_NE(no_merges.error().message.find("empty.txt has no merges"), std::string::npos);
}

class RealClipTokenizer : public ::testing::Test {
 protected:
  // Loaded once for the suite (a few seconds under the sanitizers).
  static void SetUpTestSuite() {
    auto dir = sharedModels() / "clip-tokenizer";
    if (!std::filesystem::exists(dir / "vocab.json") || !std::filesystem::exists(dir / "merges.txt")) return;
    auto tok = ClipTokenizer::load(dir / "vocab.json", dir / "merges.txt");
    if (!tok) {
      load_error_ = new std::string(tok.error().message);
      return;
    }
    shared_ = new ClipTokenizer(std::move(*tok));
  }
  static void TearDownTestSuite() {
    delete shared_;
    shared_ = nullptr;
    delete load_error_;
    load_error_ = nullptr;
  }
  void SetUp() override {
    dir_ = sharedModels() / "clip-tokenizer";
    ASSERT_EQ(load_error_, nullptr) << *load_error_;
    if (!shared_) GTEST_SKIP() << "the real CLIP tokenizer files are absent: " << dir_ << " (set STATIM_SHARED_MODELS)";
    tok_ = shared_;
  }
  std::vector<std::int32_t> withSpecials(std::string_view text) const {
    std::vector<std::int32_t> ids{tok_->startId()};
    auto body = tok_->encode(text);
    ids.insert(ids.end(), body.begin(), body.end());
    ids.push_back(tok_->endId());
    return ids;
  }
  static inline ClipTokenizer* shared_ = nullptr;
  static inline std::string* load_error_ = nullptr;
  std::filesystem::path dir_;
  const ClipTokenizer* tok_ = nullptr;
};

// Every case of expected_ids.json (ids from the reference tokenizer, with start and end).
TEST_F(RealClipTokenizer, MatchesEveryExpectedCase) {
  auto file = dir_ / "expected_ids.json";
  if (!std::filesystem::exists(file)) GTEST_SKIP() << "absent: " << file;
  std::ifstream in(file);
  auto cases = nlohmann::json::parse(in);
  ASSERT_GE(cases.size(), 10u);
  for (const auto& c : cases) {
    std::string text = c.at("text");
    auto expected = c.at("ids").get<std::vector<std::int32_t>>();
    EXPECT_EQ(withSpecials(text), expected) << "text: " << text;
    // Untruncated, padded: the same ids then end-token padding.
    auto model = tok_->encodeForModel(text, tok_->endId(), 77);
    ASSERT_EQ(model.size(), 77u);
    EXPECT_TRUE(std::equal(expected.begin(), expected.end(), model.begin())) << "text: " << text;
  }
}

TEST_F(RealClipTokenizer, KnownIds) {
  EXPECT_EQ(tok_->startId(), 49406);
  EXPECT_EQ(tok_->endId(), 49407);
  EXPECT_EQ(tok_->idOf("!"), 0);  // SD 2.x / SDXL's second tokenizer pads with "!"
  EXPECT_EQ(tok_->idOf("cat</w>"), 2368);
  EXPECT_EQ(tok_->encode(""), std::vector<std::int32_t>{});
  // Special tokens in the raw text map to their ids; Hugging Face splits on them before
  // cleaning, so "!" stays a token of its own.
  auto bang = *tok_->idOf("!</w>");
  EXPECT_EQ(tok_->encode("a<|endoftext|>b"), (std::vector<std::int32_t>{320, 49407, *tok_->idOf("b</w>")}));
  EXPECT_EQ(tok_->encode("!<|startoftext|>"), (std::vector<std::int32_t>{bang, 49406}));
  // ... and once unescaped, the regex still recognises them (as one piece, never split).
  EXPECT_EQ(tok_->encode("&lt;|endoftext|&gt;"), (std::vector<std::int32_t>{49407}));
  // The cache gives the same answer the second time.
  EXPECT_EQ(tok_->encode("An astronaut riding a horse"), tok_->encode("An astronaut riding a horse"));
}

TEST_F(RealClipTokenizer, EncodeForModelPadsAndTruncates) {
  auto ids = tok_->encodeForModel("a photo of a cat", tok_->endId());
  std::vector<std::int32_t> expected{49406, 320, 1125, 539, 320, 2368, 49407};
  expected.resize(77, 49407);
  EXPECT_EQ(ids, expected);

  std::int32_t bang = *tok_->idOf("!");
  ids = tok_->encodeForModel("a photo of a cat", bang);
  std::vector<std::int32_t> expected_bang{49406, 320, 1125, 539, 320, 2368, 49407};
  expected_bang.resize(77, bang);
  EXPECT_EQ(ids, expected_bang);

  std::string long_prompt;
  for (int i = 0; i < 100; ++i) long_prompt += "cat ";
  ids = tok_->encodeForModel(long_prompt, bang);
  ASSERT_EQ(ids.size(), 77u);
  EXPECT_EQ(ids.front(), 49406);
  EXPECT_EQ(ids.back(), 49407);  // the end token survives truncation, last
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 2368), 75);

  ids = tok_->encodeForModel("a photo of a cat", bang, 5);
  EXPECT_EQ(ids, (std::vector<std::int32_t>{49406, 320, 1125, 539, 49407}));
  ids = tok_->encodeForModel("", bang, 4);
  EXPECT_EQ(ids, (std::vector<std::int32_t>{49406, 49407, bang, bang}));
}

TEST_F(RealClipTokenizer, LongInputs) {
  // One 5,000-letter word (BPE is quadratic in a word's length) and a 20,000-word prompt (the
  // model encoding stops after 75 tokens): both finish, and the model input keeps its shape.
  std::string word(5000, 'q');
  for (std::size_t i = 0; i < word.size(); i += 7) word[i] = static_cast<char>('a' + i % 26);
  auto ids = tok_->encodeForModel(word, tok_->endId());
  ASSERT_EQ(ids.size(), 77u);
  EXPECT_EQ(ids.front(), 49406);
  EXPECT_NE(ids[75], 49407);  // the word alone fills the 75 slots
  EXPECT_EQ(ids.back(), 49407);
  EXPECT_GT(tok_->encode(word).size(), 75u);

  std::string prompt;
  for (int i = 0; i < 20000; ++i) prompt += "red fox ";
  ids = tok_->encodeForModel(prompt, 0);
  ASSERT_EQ(ids.size(), 77u);
  EXPECT_EQ(ids[1], *tok_->idOf("red</w>"));
  EXPECT_EQ(ids[2], *tok_->idOf("fox</w>"));
  EXPECT_EQ(ids.back(), 49407);
}

TEST(ClipTokenizerEmpty, DefaultConstructedIsEmpty) {
  ClipTokenizer empty;
  EXPECT_TRUE(empty.encode("a cat").empty());
  EXPECT_EQ(empty.idOf("!"), std::nullopt);
}

TEST_F(RealClipTokenizer, ConcurrentEncodesAgree) {
  const std::string text = "Café déjà vu — naïve résumé, supercalifragilisticexpialidocious";
  auto expected = tok_->encode(text);
  std::vector<std::vector<std::int32_t>> got(4);
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < got.size(); ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) got[t] = tok_->encode(text + (i % 2 ? "" : " x"));
      got[t] = tok_->encode(text);
    });
  }
  for (auto& th : threads) th.join();
  for (const auto& g : got) EXPECT_EQ(g, expected);
}

}  // namespace
}  // namespace statim::diffusion
