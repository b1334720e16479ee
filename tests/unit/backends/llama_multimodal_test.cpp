// Images in chat jobs (params.mmproj): the random-weight text model of make_tiny_gguf.py with the
// random-weight LLaVA-style projector of make_tiny_mmproj.py. What the batch session generates
// for a prompt with images must be what libmtmd's own reference evaluation of the same prompt
// (mtmd_helper_eval_chunks into a fresh context, then greedy decoding) generates.
#include <cmath>
#include <cstdlib>
#include <format>
#include <fstream>
#include <map>

#include <gtest/gtest.h>
#include <mtmd-helper.h>
#include <mtmd.h>

#include "../test_util.h"
#include "backends/diffusion/png.h"
#include "backends/llama/chat.h"
#include "backends/llama/llama_backend.h"
#include "backends/llama/tokenize.h"
#include "core/media_type.h"

namespace statim {
namespace {

class Quiet final : public JobControl {
 public:
  bool cancelled() const override { return false; }
  void progress(const nlohmann::json&) override {}
  Result<JobFile> saveArtifact(const std::string&, const std::string&, std::string_view) override {
    return fail(Error::internal("no artifacts"));
  }
};

class LlamaMultimodalTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    auto d = dir_->path().string();
    auto cmd = std::format(
        "python3 {0}/tests/fixtures/make_tiny_gguf.py {1}/tiny.gguf > {1}/gen.log 2>&1 && "
        "python3 {0}/tests/fixtures/make_tiny_mmproj.py {1}/mmproj.gguf >> {1}/gen.log 2>&1 && "
        "python3 {0}/tests/fixtures/make_tiny_mmproj.py {1}/audio.gguf --audio >> {1}/gen.log 2>&1",
        STATIM_SOURCE_DIR, d);
    ok_ = std::system(cmd.c_str()) == 0;
  }
  static void TearDownTestSuite() { delete dir_; }

  static std::filesystem::path dir() { return dir_->path(); }

  std::shared_ptr<LoadedModel> load(nlohmann::json params, int parallel = 1) {
    ModelConfig c{.id = "vl", .type = "completion", .file = dir() / "tiny.gguf", .params = std::move(params),
                  .parallel = parallel, .dir = dir()};
    auto v = llamaBackend().validateConfig(c);
    EXPECT_TRUE(v) << v.error().message;
    auto m = llamaBackend().load(c);
    EXPECT_TRUE(m) << m.error().message;
    return m ? *m : nullptr;
  }

  // A w x h PNG of a gradient whose colours depend on `seed`, written as an input file.
  static JobFile image(const std::string& name, int seed, int w = 40, int h = 30) {
    std::vector<std::uint8_t> px;
    for (int y = 0; y < h; ++y) {
      for (int x = 0; x < w; ++x) {
        px.push_back(static_cast<std::uint8_t>((x * 6 + seed * 50) % 256));
        px.push_back(static_cast<std::uint8_t>((y * 8 + seed * 90) % 256));
        px.push_back(static_cast<std::uint8_t>((x * y + seed * 30) % 256));
      }
    }
    auto png = diffusion::encodePng(px, w, h);
    EXPECT_TRUE(png);
    return file(name, *png);
  }
  static JobFile file(const std::string& name, const std::string& bytes) {
    auto path = dir() / (name + std::to_string(counter_++));
    std::ofstream(path, std::ios::binary) << bytes;
    return {.name = name, .content_type = sniffContentType(bytes), .bytes = static_cast<std::int64_t>(bytes.size()),
            .sha256 = "", .path = path};
  }

  static Job chat(JobId id, nlohmann::json content, std::vector<JobFile> inputs, int max_tokens = 10) {
    Job j{.id = id, .model = "vl", .type = "chat", .prompt = ""};
    j.params = {{"max_tokens", max_tokens},
                {"temperature", 0},
                {"messages", nlohmann::json::array({{{"role", "user"}, {"content", std::move(content)}}})}};
    j.inputs = std::move(inputs);
    return j;
  }

  // Runs the jobs together through one batch session (all added before the first step).
  static std::map<JobId, Result<nlohmann::json>> runTogether(LoadedModel& m, const std::vector<Job>& jobs) {
    auto session = m.newBatchSession();
    EXPECT_TRUE(session) << session.error().message;
    std::vector<Quiet> controls(jobs.size());
    std::map<JobId, Result<nlohmann::json>> out;
    for (size_t i = 0; i < jobs.size(); ++i) {
      if (auto r = (*session)->add(jobs[i], controls[i]); !r) out.emplace(jobs[i].id, fail(r.error()));
    }
    for (int steps = 0; (*session)->active() > 0 && steps < 10000; ++steps) {
      (*session)->step([&](BatchOutcome o) { out.emplace(o.id, std::move(o.result)); });
    }
    return out;
  }

  // libmtmd's reference: the job's rendered prompt and images through mtmd_helper_eval_chunks in
  // a fresh single-sequence context, then `n` greedy tokens, one llama_decode each.
  static std::string reference(const Job& job, int n, const std::string& mmproj = "mmproj.gguf") {
    llama::initOnce();
    auto mp = llama_model_default_params();
    llama_model* model = llama_model_load_from_file((dir() / "tiny.gguf").c_str(), mp);
    auto cp = llama_context_default_params();
    cp.n_ctx = 256;
    cp.n_threads = cp.n_threads_batch = 2;
    llama_context* ctx = llama_init_from_model(model, cp);
    auto mcp = mtmd_context_params_default();
    mcp.use_gpu = false;
    mcp.n_threads = 2;
    mcp.warmup = false;
    mtmd_context* mtmd = mtmd_init_from_file((dir() / mmproj).c_str(), model, mcp);
    // The prompt text as llama.cpp's own tools would write it: each image a marker.
    nlohmann::json messages = nlohmann::json::array();
    std::vector<mtmd_bitmap*> bitmaps;
    for (const auto& m : job.params["messages"]) {
      std::string text;
      for (const auto& part : m["content"]) {
        if (part["type"] == "text") {
          text += part["text"].get<std::string>();
          continue;
        }
        text += mtmd_default_marker();
        for (const auto& f : job.inputs) {
          if (f.name == part["input"].get<std::string>()) {
            bitmaps.push_back(mtmd_helper_bitmap_init_from_file(mtmd, f.path.c_str(), false,
                                                                mtmd_helper_init_opt_default())
                                  .bitmap);
          }
        }
      }
      messages.push_back({{"role", m["role"]}, {"content", text}});
    }
    auto rendered = llama::renderChat(model, "", messages);
    EXPECT_TRUE(rendered);
    mtmd_input_text in{rendered->c_str(), rendered->size(), true, true};
    mtmd_input_chunks* chunks = mtmd_input_chunks_init();
    EXPECT_EQ(mtmd_tokenize(mtmd, chunks, &in, const_cast<const mtmd_bitmap**>(bitmaps.data()), bitmaps.size()), 0);
    llama_pos n_past = 0;
    EXPECT_EQ(mtmd_helper_eval_chunks(mtmd, ctx, chunks, 0, 0, 256, true, &n_past), 0);
    const llama_vocab* vocab = llama_model_get_vocab(model);
    std::string out;
    for (int i = 0; i < n; ++i) {
      const float* logits = llama_get_logits_ith(ctx, -1);
      llama_token best = 0;
      for (llama_token t = 1; t < llama_vocab_n_tokens(vocab); ++t) {
        if (logits[t] > logits[best]) best = t;
      }
      out += llama::tokenPiece(vocab, best);
      llama_batch b = llama_batch_get_one(&best, 1);
      EXPECT_EQ(llama_decode(ctx, b), 0);
    }
    for (auto* b : bitmaps) mtmd_bitmap_free(b);
    mtmd_input_chunks_free(chunks);
    mtmd_free(mtmd);
    llama_free(ctx);
    llama_model_free(model);
    return out;
  }

  static inline testing::TempDir* dir_ = nullptr;
  static inline bool ok_ = false;
  static inline int counter_ = 0;
};

TEST_F(LlamaMultimodalTest, ImagePromptsGenerateWhatLibmtmdsReferenceGenerates) {
  ASSERT_TRUE(ok_) << "fixture generation failed; see " << dir() / "gen.log";
  auto m = load({{"n_ctx", 256}, {"n_batch", 32}, {"threads", 2}, {"mmproj", "mmproj.gguf"}}, 4);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->describe()["input_media"], (nlohmann::json{{"image", true}, {"audio", false}}));
  auto red = image("photo", 1), blue = image("photo", 2), wide = image("wide", 3, 64, 20);
  nlohmann::json text = {{"type", "text"}, {"text", "What is in the picture? Describe the colours."}};
  auto img = [](const char* name) { return nlohmann::json{{"type", "image"}, {"input", name}}; };
  std::vector<Job> jobs = {
      chat(1, {text, img("photo")}, {red}),
      chat(2, {text, img("photo")}, {blue}),
      // Two images, text between and after them (n_batch 32: the text is fed in several steps).
      chat(3, {img("photo"), {{"type", "text"}, {"text", "and then the second one, which is wider:"}}, img("wide"), text},
           {red, wide}),
      // A text-only chat in the same batch.
      chat(4, {text}, {}),
  };
  auto together = runTogether(*m, jobs);
  for (const auto& job : jobs) {
    ASSERT_TRUE(together.at(job.id)) << together.at(job.id).error().message;
    const auto& r = *together.at(job.id);
    EXPECT_EQ(r["tokens_out"], 10);
    if (job.id == 4) continue;
    EXPECT_EQ(r["text"], reference(job, 10)) << "job " << job.id;
  }
  // The image is 16 embeddings (32x32 pixels in 8x8 patches) in the prompt, in place of nothing.
  EXPECT_EQ((*together.at(1))["tokens_in"].get<int>(), (*together.at(4))["tokens_in"].get<int>() + 16);
  // Another image, another answer.
  EXPECT_NE((*together.at(1))["text"], (*together.at(2))["text"]);
}

// 1 s of a 440 Hz tone, 16 kHz mono 16-bit PCM, as a WAV file.
std::string toneWav(int samples = 16000) {
  std::string pcm;
  for (int i = 0; i < samples; ++i) {
    auto v = static_cast<std::int16_t>(8000 * std::sin(2 * 3.14159265 * 440 * i / 16000.0));
    pcm.append(reinterpret_cast<const char*>(&v), 2);
  }
  auto u32 = [](std::uint32_t x) { return std::string(reinterpret_cast<const char*>(&x), 4); };
  auto u16 = [](std::uint16_t x) { return std::string(reinterpret_cast<const char*>(&x), 2); };
  return "RIFF" + u32(36 + static_cast<std::uint32_t>(pcm.size())) + "WAVEfmt " + u32(16) + u16(1) + u16(1) +
         u32(16000) + u32(32000) + u16(2) + u16(16) + "data" + u32(static_cast<std::uint32_t>(pcm.size())) + pcm;
}

TEST_F(LlamaMultimodalTest, AudioPromptsGenerateWhatLibmtmdsReferenceGenerates) {
  ASSERT_TRUE(ok_);
  auto m = load({{"n_ctx", 256}, {"threads", 2}, {"mmproj", "audio.gguf"}}, 2);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->describe()["input_media"], (nlohmann::json{{"image", false}, {"audio", true}}));
  nlohmann::json text = {{"type", "text"}, {"text", "What do you hear?"}};
  Job heard = chat(1, {text, {{"type", "audio"}, {"input", "clip"}}}, {file("clip", toneWav())});
  Job plain = chat(2, {text}, {});
  auto together = runTogether(*m, {heard, plain});
  ASSERT_TRUE(together.at(1)) << together.at(1).error().message;
  ASSERT_TRUE(together.at(2));
  // 30 embeddings per (started) 30 s window of audio, in place of nothing.
  EXPECT_EQ((*together.at(1))["tokens_in"].get<int>(), (*together.at(2))["tokens_in"].get<int>() + 30);
  EXPECT_EQ((*together.at(1))["text"], reference(heard, 10, "audio.gguf"));
  // An image to an audio-only projector; a clip of one sample (libmtmd would abort on it).
  NewJob n{.model = "vl", .type = "chat"};
  n.params = chat(3, {text, {{"type", "image"}, {"input", "photo"}}}, {}).params;
  n.inputs = {image("photo", 1)};
  EXPECT_NE(m->checkJob(n).error().message.find("this model's projector takes no images"), std::string::npos);
  // A clip of one sample (libmtmd would abort on it) is padded with silence to a second.
  n.params = heard.params;
  n.inputs = {file("clip", toneWav(1))};
  EXPECT_TRUE(m->checkJob(n)) << m->checkJob(n).error().message;
  auto one = m->promptTokens(n);
  ASSERT_TRUE(one);
  EXPECT_EQ(static_cast<int>(one->size()), (*together.at(1))["tokens_in"].get<int>());
}

// The prompt cache and images: a sequence's KV is reused up to where its prompt and the new one
// differ, an image counting as the same only when it is the same picture; the next turn of a chat
// about a picture decodes neither the picture nor the earlier turns again, and answers as a fresh
// session does.
TEST_F(LlamaMultimodalTest, TheCacheReusesAnImageOnlyWhenItIsTheSamePicture) {
  ASSERT_TRUE(ok_);
  auto m = load({{"n_ctx", 256}, {"threads", 2}, {"mmproj", "mmproj.gguf"}});
  ASSERT_TRUE(m);
  auto session = m->newBatchSession();
  ASSERT_TRUE(session);
  nlohmann::json text = {{"type", "text"}, {"text", "A long question about the picture that follows it"}};
  nlohmann::json photo = {{"type", "image"}, {"input", "photo"}};
  auto red = image("photo", 1), blue = image("photo", 2);
  auto run = [&](Job job) {
    Quiet q;
    nlohmann::json out;
    EXPECT_TRUE((*session)->add(job, q));
    while ((*session)->active() > 0) {
      (*session)->step([&](BatchOutcome o) {
        EXPECT_TRUE(o.result) << o.result.error().message;
        if (o.result) out = *o.result;
      });
    }
    return out;
  };
  auto r0 = run(chat(1, {text, photo}, {red}));
  auto r1 = run(chat(2, {text, photo}, {blue}));
  auto r2 = run(chat(3, {text, photo}, {red}));
  Job next = chat(4, {text, photo}, {red});
  next.params["messages"].push_back({{"role", "assistant"}, {"content", r2["text"]}});
  next.params["messages"].push_back({{"role", "user"}, {"content", "And the colours?"}});
  auto r3 = run(next);

  NewJob n{.model = "vl", .type = "chat", .params = chat(1, {text, photo}, {red}).params, .inputs = {red}};
  auto tokens = m->promptTokens(n);
  ASSERT_TRUE(tokens);
  auto before_image = std::ranges::find_if(*tokens, [](int t) { return t < 0; }) - tokens->begin();
  EXPECT_GT(before_image, 5);
  EXPECT_EQ(r0["tokens_cached"], 0);
  EXPECT_EQ(r1["tokens_cached"], before_image);  // another picture: up to it
  EXPECT_EQ(r2["tokens_cached"], before_image);  // (the sequence held the blue one)
  EXPECT_NE(r0["text"], r1["text"]);
  EXPECT_EQ(r0["text"], r2["text"]);
  // The next turn: the picture, the question and the answer come from the cache.
  EXPECT_GE(r3["tokens_cached"].get<int>(), r2["tokens_in"].get<int>());
  auto fresh = runTogether(*m, {next}).at(4);
  ASSERT_TRUE(fresh);
  EXPECT_EQ((*fresh)["tokens_cached"], 0);
  EXPECT_EQ(r3["text"], (*fresh)["text"]);
}

TEST_F(LlamaMultimodalTest, MediaErrorsNameTheProblem) {
  ASSERT_TRUE(ok_);
  auto plain = load({{"n_ctx", 256}, {"threads", 2}});
  auto vl = load({{"n_ctx", 256}, {"threads", 2}, {"mmproj", "mmproj.gguf"}});
  ASSERT_TRUE(plain && vl);
  auto check = [](LoadedModel& m, const Job& j) {
    NewJob n{.model = j.model, .type = j.type, .prompt = j.prompt, .params = j.params};
    n.inputs = j.inputs;
    auto r = m.checkJob(n);
    return r ? std::string("ok") : r.error().message;
  };
  nlohmann::json part = {{"type", "image"}, {"input", "photo"}};
  auto photo = image("photo", 1);
  EXPECT_EQ(check(*vl, chat(1, {part}, {photo})), "ok");
  EXPECT_NE(check(*plain, chat(1, {part}, {photo})).find("takes no images: its manifest names no params.mmproj"),
            std::string::npos);
  EXPECT_NE(check(*vl, chat(1, {part}, {})).find("the messages name the input 'photo', which the job does not have"),
            std::string::npos);
  // Bytes that are not an image (a text file; a PNG cut short).
  auto text_file = file("photo", "just some text, not a picture");
  EXPECT_NE(check(*vl, chat(1, {part}, {text_file})).find("input 'photo' is not an image this model reads"),
            std::string::npos);
  std::string png = diffusion::encodePng(std::vector<std::uint8_t>(12 * 12 * 3, 7), 12, 12).value();
  auto cut = file("photo", png.substr(0, 40));
  EXPECT_NE(check(*vl, chat(1, {part}, {cut})).find("input 'photo' is not an image this model reads"),
            std::string::npos);
  // Audio where the projector has no audio encoder.
  nlohmann::json audio_part = {{"type", "audio"}, {"input", "clip"}};
  EXPECT_EQ(check(*vl, chat(1, {audio_part}, {file("clip", toneWav(1600))})),
            "this model's projector takes no audio (input 'clip')");
  // Images go in user messages.
  Job assistant = chat(1, {part}, {photo});
  assistant.params["messages"][0]["role"] = "assistant";
  auto v = llamaBackend().validateParams("chat", assistant.params);
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().message, "'messages[0].content[0]': images and audio go in user messages");
  EXPECT_TRUE(llamaBackend().validateParams("chat", chat(1, {part}, {photo}).params));
  // The marker written as text would be taken for an image.
  nlohmann::json marker = {{"type", "text"}, {"text", std::string("look: ") + mtmd_default_marker()}};
  EXPECT_NE(check(*vl, chat(1, {marker, part}, {photo})).find("remove it from the text"), std::string::npos);
  // A projector made for another text model.
  ASSERT_EQ(std::system(std::format("python3 {}/tests/fixtures/make_tiny_mmproj.py {} --n-embd-text 128 >/dev/null 2>&1",
                                    STATIM_SOURCE_DIR, (dir() / "other.gguf").string())
                            .c_str()),
            0);
  ModelConfig c{.id = "vl", .type = "completion", .file = dir() / "tiny.gguf",
                .params = {{"n_ctx", 256}, {"mmproj", "other.gguf"}}, .dir = dir()};
  auto loaded = llamaBackend().load(c);
  ASSERT_FALSE(loaded);
  EXPECT_NE(loaded.error().message.find("makes embeddings of 128 values but this model reads 64 (an mmproj made for "
                                        "another model)"),
            std::string::npos)
      << loaded.error().message;
  c.params["mmproj"] = "missing.gguf";
  EXPECT_NE(llamaBackend().load(c).error().message.find("not found"), std::string::npos);
}

}  // namespace
}  // namespace statim
