#include "backends/llama/llama_backend.h"

#include <format>
#include <fstream>
#include <mutex>

#include "backends/llama/llama_session.h"
#include "backends/params.h"
#include "core/logging.h"

namespace statim {
namespace llama {

void initOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    // libllama logs a lot at info level; keep warnings and errors, in our log.
    llama_log_set(
        [](ggml_log_level level, const char* text, void*) {
          if (level != GGML_LOG_LEVEL_ERROR && level != GGML_LOG_LEVEL_WARN) return;
          std::string line = "llama: " + std::string(text);
          while (!line.empty() && (line.back() == '\n' || line.back() == ' ')) line.pop_back();
          if (level == GGML_LOG_LEVEL_ERROR)
            log::error(line);
          else
            log::warn(line);
        },
        nullptr);
    ggml_backend_load_all();
    llama_backend_init();
  });
}

namespace {

// GGUF files start with the magic "GGUF"; checking it first turns a wrong file into a clear error
// instead of a deep libllama failure.
Result<void> checkGguf(const std::filesystem::path& file) {
  std::error_code ec;
  if (!std::filesystem::exists(file, ec))
    return fail(Error::backend(std::format("model file not found: {}", file.string())));
  std::ifstream in(file, std::ios::binary);
  char magic[4] = {};
  if (!in.read(magic, 4)) return fail(Error::backend(std::format("cannot read model file {}", file.string())));
  if (std::string_view(magic, 4) != "GGUF") {
    return fail(Error::backend(std::format("{} is not a GGUF file (bad magic)", file.string())));
  }
  return ok();
}

class LlamaModel final : public LoadedModel {
 public:
  LlamaModel(std::shared_ptr<llama_model> model, SessionOptions options)
      : model_(std::move(model)), options_(options) {}
  Result<std::unique_ptr<Session>> newSession() override {
    auto s = LlamaSession::create(model_, options_);
    if (!s) return fail(s.error());
    return std::unique_ptr<Session>(std::move(*s));
  }
  nlohmann::json describe() const override {
    char desc[256] = {};
    llama_model_desc(model_.get(), desc, sizeof desc);
    return {{"description", desc},
            {"n_params", llama_model_n_params(model_.get())},
            {"n_ctx_train", llama_model_n_ctx_train(model_.get())},
            {"n_ctx", options_.n_ctx},
            {"n_vocab", llama_vocab_n_tokens(llama_model_get_vocab(model_.get()))}};
  }

 private:
  std::shared_ptr<llama_model> model_;
  SessionOptions options_;
};

class LlamaBackend final : public Backend {
 public:
  std::string_view name() const override { return "llama"; }
  std::vector<std::string> jobTypes() const override { return {"completion"}; }

  Result<void> validateParams(std::string_view, const nlohmann::json& p) const override {
    if (auto r = params::onlyKnown(p, {"max_tokens", "temperature", "top_k", "top_p", "seed", "stop"}, "params"); !r)
      return r;
    if (auto r = params::integer(p, "max_tokens", 1, 32768, "params"); !r) return r;
    if (auto r = params::number(p, "temperature", 0.0, 10.0, "params"); !r) return r;
    if (auto r = params::integer(p, "top_k", 0, 100000, "params"); !r) return r;
    if (auto r = params::number(p, "top_p", 0.0, 1.0, "params"); !r) return r;
    if (auto r = params::integer(p, "seed", 0, 4294967295LL, "params"); !r) return r;
    return params::stringOrList(p, "stop", 16, 256, "params");
  }

  Result<void> validateConfig(const ModelConfig& c) const override {
    if (c.file.empty()) return fail(Error::invalid("the llama backend needs 'file' (a GGUF model)", "file"));
    if (auto r = params::onlyKnown(c.params, {"n_ctx", "n_batch", "threads"}, "params"); !r) return r;
    if (auto r = params::integer(c.params, "n_ctx", 16, 1 << 20, "params"); !r) return r;
    if (auto r = params::integer(c.params, "n_batch", 1, 1 << 16, "params"); !r) return r;
    return params::integer(c.params, "threads", 0, 1024, "params");
  }

  Result<std::shared_ptr<LoadedModel>> load(const ModelConfig& c) const override {
    if (auto r = checkGguf(c.file); !r) return fail(r.error());
    initOnce();
    auto mp = llama_model_default_params();
    mp.load_mode = LLAMA_LOAD_MODE_MMAP;
    llama_model* raw = llama_model_load_from_file(c.file.c_str(), mp);
    if (!raw)
      return fail(Error::backend(
          std::format("libllama could not load {} (corrupt or unsupported GGUF; see the log)", c.file.string())));
    std::shared_ptr<llama_model> model(raw, ModelDeleter{});
    SessionOptions o;
    int n_ctx_train = llama_model_n_ctx_train(raw);
    o.n_ctx = c.params.value("n_ctx", std::min(2048, n_ctx_train > 0 ? n_ctx_train : 2048));
    o.n_batch = c.params.value("n_batch", 512);
    o.threads = c.params.value("threads", 0);
    // Fail at load, not at the first job, if a context cannot be made.
    auto probe = LlamaSession::create(model, o);
    if (!probe) return fail(probe.error());
    o.n_ctx = (*probe)->contextSize();
    return std::make_shared<LlamaModel>(std::move(model), o);
  }
};

}  // namespace
}  // namespace llama

const Backend& llamaBackend() {
  static const llama::LlamaBackend backend;
  return backend;
}

}  // namespace statim
