#include "backends/llama/llama_backend.h"

#include <cstdlib>
#include <format>
#include <map>
#include <set>

#include <gtest/gtest.h>

#include "../test_util.h"

namespace statim {
namespace {

class NoCancel final : public JobControl {
 public:
  bool cancelled() const override { return cancel_after >= 0 && ++polls > cancel_after; }
  void progress(const nlohmann::json&) override {}
  Result<JobFile> saveArtifact(const std::string&, const std::string&, std::string_view) override {
    return fail(Error::internal("the llama backend saves no artifacts"));
  }
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
                                    nlohmann::json params = {{"n_ctx", 256}, {"threads", 2}}, int parallel = 1,
                                    std::string type = "completion") {
    ModelConfig c{.id = "t", .type = type, .file = file, .params = std::move(params), .parallel = parallel};
    EXPECT_TRUE(llamaBackend().validateConfig(c));
    auto m = llamaBackend().load(c);
    EXPECT_TRUE(m) << m.error().message;
    return m ? *m : nullptr;
  }

  // Runs jobs through one batch session together; returns their results in job order.
  std::vector<Result<nlohmann::json>> runBatch(LoadedModel& model, std::vector<Job> jobs,
                                               std::vector<NoCancel>* controls = nullptr) {
    EXPECT_TRUE(model.batched());
    auto session = model.newBatchSession();
    EXPECT_TRUE(session) << session.error().message;
    std::vector<NoCancel> own(jobs.size());
    auto& ctl = controls ? *controls : own;
    std::map<JobId, Result<nlohmann::json>> results;
    for (size_t i = 0; i < jobs.size(); ++i) {
      if (auto r = (*session)->add(jobs[i], ctl[i]); !r) results.emplace(jobs[i].id, fail(r.error()));
    }
    for (int steps = 0; (*session)->active() > 0 && steps < 100000; ++steps) {
      (*session)->step([&](BatchOutcome o) { results.emplace(o.id, std::move(o.result)); });
    }
    std::vector<Result<nlohmann::json>> out;
    for (auto& j : jobs) out.push_back(results.contains(j.id) ? results.at(j.id) : fail(Error::internal("no outcome")));
    return out;
  }

  Result<nlohmann::json> run(LoadedModel& model, std::string prompt, nlohmann::json params) {
    Job job{.id = 1, .model = "t", .type = "completion", .prompt = std::move(prompt), .params = std::move(params)};
    return runBatch(model, {job})[0];
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
  std::vector<NoCancel> controls(1);
  controls[0].cancel_after = 5;
  Job job{.id = 1,
          .model = "t",
          .type = "completion",
          .prompt = "Hello",
          .params = {{"max_tokens", 200}, {"temperature", 0}}};
  auto r = runBatch(*model, {job}, &controls)[0];
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)["finish_reason"], "cancelled");
  EXPECT_LT((*r)["tokens_out"].get<int>(), 200);
}

// params.n: each choice is its own sequence and samples with seed + its index, so choice i is what a
// one-choice job with seed + i generates; with 2 sequences, the third choice waits for a free one.
TEST_F(LlamaBackendTest, ChoicesAreSequencesSeededByTheirIndex) {
  ASSERT_FALSE(tiny_.empty());
  auto model = load(tiny_, {{"n_ctx", 256}, {"threads", 2}}, 2);
  nlohmann::json p = {{"max_tokens", 10}, {"temperature", 1.3}, {"top_k", 0}, {"seed", 77}};
  Job job{.id = 1, .model = "t", .type = "completion", .prompt = "Once upon a time", .params = p};
  job.params["n"] = 3;
  auto session = model->newBatchSession();
  ASSERT_TRUE(session);
  NoCancel control;
  ASSERT_TRUE((*session)->add(job, control));
  EXPECT_EQ((*session)->capacity(), 2);
  EXPECT_EQ((*session)->active(), 3);  // two sequences, and the choice waiting for one
  std::vector<BatchOutcome> outcomes;
  while ((*session)->active() > 0) (*session)->step([&](BatchOutcome o) { outcomes.push_back(std::move(o)); });
  ASSERT_EQ(outcomes.size(), 1u);  // one outcome for the job, once every choice has ended
  ASSERT_TRUE(outcomes[0].result) << outcomes[0].result.error().message;
  const auto& r = *outcomes[0].result;
  ASSERT_EQ(r["choices"].size(), 3u);
  std::set<std::string> texts;
  for (int i = 0; i < 3; ++i) {
    nlohmann::json one = p;
    one["seed"] = 77 + i;
    auto alone = run(*model, "Once upon a time", one);
    ASSERT_TRUE(alone);
    EXPECT_EQ(r["choices"][i]["index"], i);
    EXPECT_EQ(r["choices"][i]["text"], (*alone)["text"]) << "choice " << i;
    EXPECT_EQ(r["choices"][i]["finish_reason"], "length");
    texts.insert(r["choices"][i]["text"].get<std::string>());
  }
  EXPECT_EQ(texts.size(), 3u);
  EXPECT_EQ(r["text"], r["choices"][0]["text"]);
  EXPECT_EQ(r["tokens_out"], 30);
}

// A job added while other jobs' choices fill the batch waits for a sequence (the scheduler adds
// while capacity() > active(), counting jobs, not choices): it is not refused.
TEST_F(LlamaBackendTest, AJobAddedWhileChoicesFillTheBatchWaitsForASequence) {
  ASSERT_FALSE(tiny_.empty());
  auto model = load(tiny_, {{"n_ctx", 256}, {"threads", 2}}, 2);
  auto session = model->newBatchSession();
  ASSERT_TRUE(session);
  Job a{.id = 1, .model = "t", .type = "completion", .prompt = "Hello", .params = {{"max_tokens", 6}, {"n", 2}}};
  Job b{
      .id = 2, .model = "t", .type = "completion", .prompt = "Once", .params = {{"max_tokens", 6}, {"temperature", 0}}};
  NoCancel ca, cb;
  ASSERT_TRUE((*session)->add(a, ca));
  ASSERT_TRUE((*session)->add(b, cb));
  EXPECT_EQ((*session)->active(), 3);
  std::map<JobId, Result<nlohmann::json>> out;
  while ((*session)->active() > 0) (*session)->step([&](BatchOutcome o) { out.emplace(o.id, std::move(o.result)); });
  ASSERT_EQ(out.size(), 2u);
  ASSERT_TRUE(out.at(1) && out.at(2));
  EXPECT_EQ((*out.at(1))["choices"].size(), 2u);
  auto alone = run(*model, "Once", b.params);
  ASSERT_TRUE(alone);
  EXPECT_EQ((*out.at(2))["text"], (*alone)["text"]);
}

TEST_F(LlamaBackendTest, CancellingAJobOfSeveralChoicesEndsThemAllOnce) {
  ASSERT_FALSE(tiny_.empty());
  auto model = load(tiny_, {{"n_ctx", 256}, {"threads", 2}}, 2);
  Job job{.id = 7, .model = "t", .type = "completion", .prompt = "Hello", .params = {{"max_tokens", 200}, {"n", 4}}};
  std::vector<NoCancel> controls(1);
  controls[0].cancel_after = 6;
  auto r = runBatch(*model, {job}, &controls)[0];
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ((*r)["choices"].size(), 4u);
  for (const auto& c : (*r)["choices"]) EXPECT_EQ(c["finish_reason"], "cancelled");
  EXPECT_LT((*r)["tokens_out"].get<int>(), 400);
}

// Continuous batching must not change greedy results: 6 jobs decoded together (different
// prompts and lengths, one long enough to need several prompt chunks) give the text each gives alone.
TEST_F(LlamaBackendTest, BatchedGreedyEqualsSingle) {
  ASSERT_FALSE(tiny_.empty());
  auto single = load(tiny_, {{"n_ctx", 256}, {"threads", 2}});
  auto batched = load(tiny_, {{"n_ctx", 256}, {"n_batch", 32}, {"threads", 2}}, 4);
  std::vector<Job> jobs;
  std::string long_prompt;
  for (int i = 0; i < 20; ++i) long_prompt += "the world of water ";
  std::vector<std::string> prompts = {"Hello", "Once upon a time", long_prompt, "I think", "The", "What people say"};
  for (size_t i = 0; i < prompts.size(); ++i) {
    jobs.push_back({.id = static_cast<JobId>(i + 1),
                    .model = "t",
                    .type = "completion",
                    .prompt = prompts[i],
                    .params = {{"max_tokens", 8 + 3 * static_cast<int>(i)}, {"temperature", 0}}});
  }
  // 6 jobs, capacity 4: two wait for free slots and join the running batch.
  auto session = batched->newBatchSession();
  ASSERT_TRUE(session);
  std::vector<NoCancel> controls(jobs.size());
  std::map<JobId, nlohmann::json> together;
  size_t next = 0;
  while (together.size() < jobs.size()) {
    while (next < jobs.size() && (*session)->active() < (*session)->capacity()) {
      ASSERT_TRUE((*session)->add(jobs[next], controls[next]));
      ++next;
    }
    (*session)->step([&](BatchOutcome o) {
      ASSERT_TRUE(o.result) << o.result.error().message;
      together[o.id] = *o.result;
    });
  }
  for (auto& job : jobs) {
    auto alone = runBatch(*single, {job})[0];
    ASSERT_TRUE(alone);
    EXPECT_EQ(together[job.id]["text"], (*alone)["text"]) << "job " << job.id;
    EXPECT_EQ(together[job.id]["tokens_out"], job.params["max_tokens"]);
  }
}

// The prompt cache: a sequence keeps its KV when its job ends, and the next job on the session whose
// prompt starts the same way decodes only the rest - with the same greedy text as a fresh session.
TEST_F(LlamaBackendTest, APromptSharingAPrefixWithAnEarlierJobDecodesOnlyTheRest) {
  ASSERT_FALSE(tiny_.empty());
  auto model = load(tiny_, {{"n_ctx", 512}, {"n_batch", 64}, {"threads", 2}}, 2);
  std::string shared;
  for (int i = 0; i < 30; ++i) shared += "the world of water ";
  auto job = [](JobId id, std::string prompt) {
    return Job{.id = id,
               .model = "t",
               .type = "completion",
               .prompt = std::move(prompt),
               .params = {{"max_tokens", 10}, {"temperature", 0}}};
  };
  auto session = model->newBatchSession();
  ASSERT_TRUE(session);
  auto runOn = [&](BatchSession& s, const Job& j) {
    NoCancel control;
    EXPECT_TRUE(s.add(j, control));
    std::optional<nlohmann::json> out;
    for (int steps = 0; !out && steps < 10000; ++steps) {
      s.step([&](BatchOutcome o) {
        EXPECT_TRUE(o.result) << o.result.error().message;
        if (o.result) out = *o.result;
      });
    }
    return out.value_or(nlohmann::json::object());
  };
  auto a = runOn(**session, job(1, shared + "and the cat"));
  EXPECT_LE(a["tokens_cached"].get<int>(), 1);  // (at most the BOS token of a fresh sequence)
  auto b = runOn(**session, job(2, shared + "and the dog"));
  auto again = runOn(**session, job(3, shared + "and the dog"));
  const int in = b["tokens_in"];
  EXPECT_GT(b["tokens_cached"].get<int>(), in - 8) << "the shared words come from the cache";
  EXPECT_LT(b["tokens_cached"].get<int>(), in);
  EXPECT_EQ(again["tokens_cached"], in - 1) << "the same prompt again: all but its last token";
  for (const auto& [cached, id] : {std::pair{b, 2}, std::pair{again, 3}}) {
    auto fresh = model->newBatchSession();
    ASSERT_TRUE(fresh);
    auto cold = runOn(**fresh, job(id, shared + "and the dog"));
    EXPECT_EQ(cold["tokens_cached"].get<int>(), 0);
    EXPECT_EQ(cached["text"], cold["text"]) << "job " << id;
  }
}

TEST_F(LlamaBackendTest, ChatUsesTheModelTemplate) {
  ASSERT_FALSE(tiny_.empty());
  auto model = load(tiny_, {{"n_ctx", 256}, {"threads", 2}}, 2);
  Job chat{.id = 1,
           .model = "t",
           .type = "chat",
           .prompt = "hi",
           .params = {
               {"messages", {{{"role", "system"}, {"content", "Be brief."}}, {{"role", "user"}, {"content", "Hello"}}}},
               {"max_tokens", 6},
               {"temperature", 0}}};
  // The same text as a completion of the ChatML rendering.
  Job completion{
      .id = 2,
      .model = "t",
      .type = "completion",
      .prompt = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n",
      .params = {{"max_tokens", 6}, {"temperature", 0}}};
  auto r = runBatch(*model, {chat, completion});
  ASSERT_TRUE(r[0]) << r[0].error().message;
  ASSERT_TRUE(r[1]) << r[1].error().message;
  EXPECT_EQ((*r[0])["text"], (*r[1])["text"]);
  EXPECT_EQ((*r[0])["tokens_in"], (*r[1])["tokens_in"]);
}

TEST_F(LlamaBackendTest, ChatWithoutTemplateIsAClearError) {
  auto file = sharedModels() / "llm" / "stories260K.gguf";
  if (!std::filesystem::exists(file)) GTEST_SKIP() << "real model absent: " << file;
  auto model = load(file, {{"n_ctx", 256}});
  Job chat{.id = 1,
           .model = "t",
           .type = "chat",
           .prompt = "hi",
           .params = {{"messages", {{{"role", "user"}, {"content", "Hello"}}}}}};
  auto r = runBatch(*model, {chat})[0];
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("this model has no chat template"), std::string::npos) << r.error().message;
}

TEST_F(LlamaBackendTest, EmbeddingsAreNormalisedAndDeterministic) {
  ASSERT_FALSE(tiny_.empty());
  auto model = load(tiny_, {{"n_ctx", 256}, {"threads", 2}}, 1, "embedding");
  ASSERT_FALSE(model->batched());
  auto session = model->newSession();
  ASSERT_TRUE(session);
  NoCancel control;
  Job job{.id = 1,
          .model = "t",
          .type = "embedding",
          .prompt = "x",
          .params = {{"input", {"Hello world", "Hello world", "Something else"}}}};
  auto r = (*session)->run(job, control);
  ASSERT_TRUE(r) << r.error().message;
  auto& v = (*r)["embeddings"];
  ASSERT_EQ(v.size(), 3u);
  EXPECT_EQ((*r)["dimensions"], 64);
  ASSERT_EQ(v[0].size(), 64u);
  auto dot = [](const nlohmann::json& a, const nlohmann::json& b) {
    double d = 0;
    for (size_t i = 0; i < a.size(); ++i) d += a[i].get<double>() * b[i].get<double>();
    return d;
  };
  EXPECT_NEAR(dot(v[0], v[0]), 1.0, 1e-5);
  EXPECT_NEAR(dot(v[0], v[1]), 1.0, 1e-5);  // same text, same vector
  EXPECT_EQ(v[0], v[1]);
  EXPECT_LT(dot(v[0], v[2]), 0.9999);
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
            "unknown field 'params.bogus' (allowed: max_tokens, temperature, top_k, top_p, min_p, repeat_penalty, "
            "repeat_last_n, presence_penalty, frequency_penalty, seed, n, stop, grammar, logprobs, top_logprobs, "
            "response_format, user)"},
           {{{"min_p", 2}}, "'params.min_p' must be between 0 and 1"},
           {{{"presence_penalty", 3}}, "'params.presence_penalty' must be between -2 and 2"},
           {{{"response_format", {{"type", "xml"}}}},
            "'params.response_format.type' must be text, json_object or json_schema (got 'xml')"},
           // libllama's parser would loop (practically) forever on the first (a fuzz find).
           {{{"grammar", "roz ::= ite[a-z]{8,7} "}},
            "the grammar's repetition '{8,7}' (at byte 16) has a minimum above its maximum"},
           {{{"grammar", "root ::= \"{9,1}\" [{}] x{3,2} # {5,1}\n"}},
            "the grammar's repetition '{3,2}' (at byte 23) has a minimum above its maximum"},
           // libllama skips comments and newlines inside the braces: so does the check.
           {{{"grammar", "root ::= (\"a\"{8,#9\n7})"}},
            "the grammar's repetition '{8,#9\n7}' (at byte 13) has a minimum above its maximum"},
           {{{"grammar", "root ::= (\"a\"{8#,9\n,7})"}},
            "the grammar's repetition '{8#,9\n,7}' (at byte 13) has a minimum above its maximum"},
           {{{"grammar", "root ::= [a-z]{0,99999999999999999999}"}},
            "the grammar's repetition '{0,99999999999999999999}' (at byte 14) repeats more than 2000 times, which "
            "is not supported"},
       }) {
    auto r = b.validateParams("completion", c.params);
    ASSERT_FALSE(r) << c.params.dump();
    EXPECT_EQ(r.error().message, c.message);
  }
  EXPECT_TRUE(b.validateParams("completion", {{"max_tokens", 5}, {"stop", {"a", "b"}}, {"seed", 4294967295LL}}));
  EXPECT_TRUE(b.validateParams("completion", {{"grammar", "root ::= [a-z]{2,2000} \"{3,1}\" x{3} y{1,}"}}));
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
