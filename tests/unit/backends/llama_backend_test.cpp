#include "backends/llama/llama_backend.h"

#include <cstdlib>
#include <format>

#include <gtest/gtest.h>

#include "../test_util.h"

namespace statim {
namespace {

class NoCancel final : public JobControl {
 public:
  bool cancelled() const override { return cancel_after >= 0 && ++polls > cancel_after; }
  void progress(const nlohmann::json&) override {}
  int cancel_after = -1;
  mutable int polls = 0;
};

// The shared test models folder (../shared/models beside the checkout), overridable.
std::filesystem::path sharedModels() {
  if (const char* p = std::getenv("STATIM_SHARED_MODELS")) return p;
  return std::filesystem::path(STATIM_SOURCE_DIR) / ".." / "shared" / "models";
}

class LlamaBackendTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    auto out = dir_->path() / "tiny.gguf";
    auto cmd = std::format("python3 {}/tests/fixtures/make_tiny_gguf.py {} > {}/gen.log 2>&1", STATIM_SOURCE_DIR,
                           out.string(), dir_->path().string());
    if (std::system(cmd.c_str()) == 0) tiny_ = out;
  }
  static void TearDownTestSuite() { delete dir_; }

  std::shared_ptr<LoadedModel> load(const std::filesystem::path& file,
                                    nlohmann::json params = {{"n_ctx", 256}, {"threads", 2}}) {
    ModelConfig c{.id = "t", .type = "completion", .file = file, .params = std::move(params)};
    EXPECT_TRUE(llamaBackend().validateConfig(c));
    auto m = llamaBackend().load(c);
    EXPECT_TRUE(m) << m.error().message;
    return m ? *m : nullptr;
  }

  Result<nlohmann::json> run(LoadedModel& model, std::string prompt, nlohmann::json params) {
    auto session = model.newSession();
    EXPECT_TRUE(session);
    Job job{.id = 1, .model = "t", .type = "completion", .prompt = std::move(prompt), .params = std::move(params)};
    NoCancel control;
    return (*session)->run(job, control);
  }

  static inline testing::TempDir* dir_ = nullptr;
  static inline std::filesystem::path tiny_;
};

TEST_F(LlamaBackendTest, GeneratesExactlyMaxTokensGreedilyAndDeterministically) {
  ASSERT_FALSE(tiny_.empty()) << "fixture generation failed; see " << dir_->path() / "gen.log";
  auto model = load(tiny_);
  ASSERT_TRUE(model);
  auto a = run(*model, "Hello world", {{"max_tokens", 12}, {"temperature", 0}});
  auto b = run(*model, "Hello world", {{"max_tokens", 12}, {"temperature", 0}});
  ASSERT_TRUE(a) << a.error().message;
  ASSERT_TRUE(b) << b.error().message;
  EXPECT_EQ((*a)["tokens_out"], 12);  // the fixture never emits EOS
  EXPECT_EQ((*a)["finish_reason"], "length");
  EXPECT_GT((*a)["tokens_in"].get<int>(), 1);
  EXPECT_FALSE((*a)["text"].get<std::string>().empty());
  EXPECT_EQ((*a)["text"], (*b)["text"]);
  EXPECT_GT((*a)["tokens_per_s"].get<double>(), 0.0);
}

TEST_F(LlamaBackendTest, SeededSamplingIsReproducible) {
  ASSERT_FALSE(tiny_.empty());
  auto model = load(tiny_);
  nlohmann::json p = {{"max_tokens", 16}, {"temperature", 1.5}, {"top_k", 0}, {"top_p", 1.0}, {"seed", 1234}};
  auto a = run(*model, "Once", p);
  auto b = run(*model, "Once", p);
  ASSERT_TRUE(a && b);
  EXPECT_EQ((*a)["text"], (*b)["text"]);
}

TEST_F(LlamaBackendTest, StopStringEndsAndIsNotIncluded) {
  ASSERT_FALSE(tiny_.empty());
  auto model = load(tiny_);
  auto full = run(*model, "Hello", {{"max_tokens", 24}, {"temperature", 0}});
  ASSERT_TRUE(full);
  std::string text = (*full)["text"];
  ASSERT_GT(text.size(), 8u);
  // A stop string from the middle of the greedy output, likely spanning tokens.
  std::string stop = text.substr(text.size() / 2, 3);
  auto cut = run(*model, "Hello", {{"max_tokens", 24}, {"temperature", 0}, {"stop", nlohmann::json::array({stop})}});
  ASSERT_TRUE(cut);
  EXPECT_EQ((*cut)["text"], text.substr(0, text.find(stop)));
  EXPECT_EQ((*cut)["finish_reason"], "stop");
}

TEST_F(LlamaBackendTest, PromptLongerThanContextIsAClearError) {
  ASSERT_FALSE(tiny_.empty());
  auto model = load(tiny_, {{"n_ctx", 32}, {"n_batch", 16}});
  std::string prompt;
  for (int i = 0; i < 1000; ++i) prompt += "the world ";
  auto r = run(*model, prompt, {{"max_tokens", 4}});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("but the model's context holds"), std::string::npos) << r.error().message;
  // A prompt that fits but spans several batches still runs.
  prompt.resize(300);
  auto ok = run(*model, prompt, {{"max_tokens", 4}});
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ((*ok)["tokens_out"], 4);
}

TEST_F(LlamaBackendTest, CancellationStopsGeneration) {
  ASSERT_FALSE(tiny_.empty());
  auto model = load(tiny_);
  auto session = model->newSession();
  Job job{.id = 1,
          .model = "t",
          .type = "completion",
          .prompt = "Hello",
          .params = {{"max_tokens", 200}, {"temperature", 0}}};
  NoCancel control;
  control.cancel_after = 5;
  auto r = (*session)->run(job, control);
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)["finish_reason"], "cancelled");
  EXPECT_LT((*r)["tokens_out"].get<int>(), 200);
}

TEST_F(LlamaBackendTest, MissingAndCorruptFilesFailWithReasons) {
  testing::TempDir dir;
  ModelConfig missing{.id = "m", .type = "completion", .file = dir.path() / "none.gguf"};
  auto r = llamaBackend().load(missing);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, std::format("model file not found: {}", (dir.path() / "none.gguf").string()));

  auto garbage = dir.write("garbage.gguf", std::string(1000, 'z'));
  r = llamaBackend().load({.id = "g", .type = "completion", .file = garbage});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("is not a GGUF file"), std::string::npos) << r.error().message;

  auto truncated = dir.write("truncated.gguf", std::string("GGUF\x03\x00\x00\x00", 8) + std::string(100, '\0'));
  r = llamaBackend().load({.id = "t", .type = "completion", .file = truncated});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("could not load"), std::string::npos) << r.error().message;
}

TEST_F(LlamaBackendTest, ParamValidationNamesTheField) {
  auto& b = llamaBackend();
  struct Case {
    nlohmann::json params;
    std::string message;
  };
  for (auto& c : std::vector<Case>{
           {{{"temperature", -1}}, "'params.temperature' must be between 0 and 10"},
           {{{"max_tokens", "many"}}, "'params.max_tokens' must be an integer"},
           {{{"max_tokens", 0}}, "'params.max_tokens' must be between 1 and 32768"},
           {{{"top_p", 1.5}}, "'params.top_p' must be between 0 and 1"},
           {{{"seed", -3}}, "'params.seed' must be between 0 and 4294967295"},
           {{{"stop", 5}},
            "'params.stop' must be a non-empty string or a list of at most 16 non-empty strings of at most 256 bytes"},
           {{{"bogus", 1}},
            "unknown field 'params.bogus' (allowed: max_tokens, temperature, top_k, top_p, seed, stop)"},
       }) {
    auto r = b.validateParams("completion", c.params);
    ASSERT_FALSE(r) << c.params.dump();
    EXPECT_EQ(r.error().message, c.message);
  }
  EXPECT_TRUE(b.validateParams("completion", {{"max_tokens", 5}, {"stop", {"a", "b"}}, {"seed", 4294967295LL}}));
}

// The real TinyStories model from ../shared/models, when present.
TEST_F(LlamaBackendTest, Stories260kKnownAnswer) {
  auto file = sharedModels() / "llm" / "stories260K.gguf";
  if (!std::filesystem::exists(file)) GTEST_SKIP() << "real model absent: " << file << " (set STATIM_SHARED_MODELS)";
  auto model = load(file, {{"n_ctx", 512}, {"threads", 2}});
  ASSERT_TRUE(model);
  auto r = run(*model, "Once upon a time", {{"max_tokens", 40}, {"temperature", 0}});
  ASSERT_TRUE(r) << r.error().message;
  std::string text = (*r)["text"];
  EXPECT_EQ(text.rfind(", there was a little girl named Lily. She loved to play outside in the park.", 0), 0u) << text;
}

}  // namespace
}  // namespace statim
