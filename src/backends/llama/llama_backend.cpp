#include "backends/llama/llama_backend.h"

#include <format>
#include <fstream>
#include <mutex>

#include "backends/llama/batch_session.h"
#include "backends/llama/chat.h"
#include "backends/llama/embedding_session.h"
#include "backends/llama/sampling.h"
#include "backends/llama/tokenize.h"
#include "backends/llama/tools.h"
#include "backends/params.h"
#include "core/logging.h"

namespace statim {
namespace llama {

void ggmlLogToOurs(ggml_log_level level, const char* text, void*) {
  if (level != GGML_LOG_LEVEL_ERROR && level != GGML_LOG_LEVEL_WARN) return;
  std::string line = "llama: " + std::string(text);
  while (!line.empty() && (line.back() == '\n' || line.back() == ' ')) line.pop_back();
  if (level == GGML_LOG_LEVEL_ERROR)
    log::error(line);
  else
    log::warn(line);
}

void initOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    // libllama logs a lot at info level; keep warnings and errors, in our log.
    llama_log_set(ggmlLogToOurs, nullptr);
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
  LlamaModel(std::shared_ptr<llama_model> model, ContextOptions options, std::string type, int parallel)
      : model_(std::move(model)), options_(std::move(options)), type_(std::move(type)), parallel_(parallel) {}

  bool batched() const override { return type_ != "embedding"; }
  // ggml runs each graph on an OpenMP team of options_.threads.
  ComputeUse computeUse() const override { return {.threads = options_.threads, .openmp = true}; }
  Result<std::unique_ptr<BatchSession>> newBatchSession() override {
    auto s = LlamaBatchSession::create(model_, options_, parallel_);
    if (!s) return fail(s.error());
    return std::unique_ptr<BatchSession>(std::move(*s));
  }
  Result<std::unique_ptr<Session>> newSession() override {
    auto s = EmbeddingSession::create(model_, options_);
    if (!s) return fail(s.error());
    return std::unique_ptr<Session>(std::move(*s));
  }
  Result<std::vector<std::int32_t>> promptTokens(const NewJob& job) const override {
    auto prompt = jobPrompt(model_.get(), options_, job.type, job.prompt, job.params, job.inputs);
    if (!prompt) return fail(prompt.error());
    return std::move(prompt->tokens);
  }
  Result<std::vector<std::int32_t>> tokenize(const std::string& text, bool add_special) const override {
    return llama::tokenize(model_.get(), text, add_special);
  }
  Result<std::vector<std::string>> tokenPieces(const std::vector<std::int32_t>& tokens) const override {
    const llama_vocab* vocab = llama_model_get_vocab(model_.get());
    const int n_vocab = llama_vocab_n_tokens(vocab);
    std::vector<std::string> out;
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (tokens[i] < 0 || tokens[i] >= n_vocab) {
        return fail(Error::invalid(
            std::format("tokens[{}] is {}: the model's vocabulary has ids 0..{}", i, tokens[i], n_vocab - 1),
            std::format("tokens[{}]", i)));
      }
      out.push_back(llama::tokenPiece(vocab, tokens[i]));
    }
    return out;
  }
  Result<void> checkJob(const NewJob& job) const override {
    if (job.type == "embedding") return ok();
    // (Images and audio are read and preprocessed here too: one that is not what it claims is a 400.)
    auto prompt = jobPrompt(model_.get(), options_, job.type, job.prompt, job.params, job.inputs);
    if (!prompt) return fail(prompt.error());
    if (static_cast<int>(prompt->tokens.size()) >= options_.n_ctx) {
      return fail(Error::invalid(std::format("the prompt is {} tokens but the model's context holds {} per job "
                                             "(manifest params.n_ctx); shorten the prompt",
                                             prompt->tokens.size(), options_.n_ctx),
                                 job.type == "chat" ? "messages" : "prompt"));
    }
    {
      // Builds the sampler once: a grammar that does not parse is refused now.
      auto sampling = readSampling(job.params, options_.tool_format);
      if (!sampling) return fail(sampling.error());
      if (!sampling->grammar.empty()) {
        sampling->grammar_trigger.clear();  // a grammar that waits for a trigger must parse too
        if (auto s = makeSampler(model_.get(), *sampling); !s) return fail(s.error());
      }
    }
    return ok();
  }

  nlohmann::json describe() const override {
    char desc[256] = {};
    llama_model_desc(model_.get(), desc, sizeof desc);
    return {{"description", desc},
            {"n_params", llama_model_n_params(model_.get())},
            {"n_ctx_train", llama_model_n_ctx_train(model_.get())},
            {"n_ctx", options_.n_ctx},
            {"n_embd", llama_model_n_embd(model_.get())},
            {"n_vocab", llama_vocab_n_tokens(llama_model_get_vocab(model_.get()))},
            {"chat_template",
             !options_.chat_template.empty() || llama_model_chat_template(model_.get(), nullptr) != nullptr},
            {"tool_format", toString(options_.tool_format)},
            {"input_media", {{"image", options_.mm && options_.mm->vision()}, {"audio", options_.mm && options_.mm->audio()}}}};
  }

 private:
  std::shared_ptr<llama_model> model_;
  ContextOptions options_;
  std::string type_;
  int parallel_;
};

Result<void> validateEmbeddingInput(const nlohmann::json& p) {
  if (auto r = params::onlyKnown(p, {"input"}, "params"); !r) return r;
  auto it = p.find("input");
  if (it == p.end()) return ok();
  auto bad = [] {
    return fail(Error::invalid("'params.input' must be a non-empty string or a list of 1..2048 non-empty strings",
                               "params.input"));
  };
  if (it->is_string()) return it->get_ref<const std::string&>().empty() ? bad() : ok();
  if (!it->is_array() || it->empty() || it->size() > 2048) return bad();
  for (auto& x : *it) {
    if (!x.is_string() || x.get_ref<const std::string&>().empty()) return bad();
  }
  return ok();
}

class LlamaBackend final : public Backend {
 public:
  std::string_view name() const override { return "llama"; }
  std::vector<std::string> jobTypes() const override { return {"completion", "chat", "embedding"}; }
  std::vector<std::string> servedTypes(std::string_view manifest_type) const override {
    if (manifest_type == "embedding") return {"embedding"};
    return {"completion", "chat"};  // one generative model serves both
  }
  // A chat's images and audio (models with params.mmproj), named by its messages' content parts.
  std::vector<std::string> inputTypes(std::string_view type) const override {
    if (type != "chat") return {};
    return {"image/png", "image/jpeg", "audio/wav", "audio/mpeg", "audio/flac", "audio/ogg"};
  }
  bool inputsOptional(std::string_view) const override { return true; }

  nlohmann::json paramsSchema(std::string_view type, const nlohmann::json&) const override {
    // (An embedding job's `input` is the request's own field; messages and tools likewise.)
    return type == "embedding" ? nlohmann::json::object() : samplingSchema();
  }

  Result<void> validateParams(std::string_view type, const nlohmann::json& p) const override {
    if (type == "embedding") return validateEmbeddingInput(p);
    if (type == "chat") {
      // `response`: what the Responses API keeps with its jobs (the input items as given, ...); not read here.
      if (auto r = validateSampling(p, {"messages", "tools", "tool_choice", "parallel_tool_calls", "response"}); !r) {
        return r;
      }
      if (auto r = p.find("response"); r != p.end() && !r->is_object()) {
        return fail(Error::invalid("'params.response' must be an object", "params.response"));
      }
      if (auto r = validateMessages(p); !r) return r;
      return validateTools(p);
    }
    return validateSampling(p, {});
  }

  Result<void> validateConfig(const ModelConfig& c) const override {
    if (c.file.empty()) return fail(Error::invalid("the llama backend needs 'file' (a GGUF model)", "file"));
    if (auto r = params::onlyKnown(c.params, {"n_ctx", "n_batch", "threads", "chat_template", "tool_format", "mmproj"},
                                   "params");
        !r) {
      return r;
    }
    if (auto r = params::string(c.params, "mmproj", 4096, "params"); !r) return r;
    if (c.type == "embedding" && c.params.contains("mmproj")) {
      return fail(Error::invalid("'params.mmproj' is for chat models, not embedding models", "params.mmproj"));
    }
    if (auto f = c.params.find("tool_format");
        f != c.params.end() && (!f->is_string() || (*f != "auto" && !parseToolFormat(f->get<std::string>())))) {
      return fail(Error::invalid("'params.tool_format' must be auto, hermes, llama3 or mistral", "params.tool_format"));
    }
    if (auto r = params::integer(c.params, "n_ctx", 16, 1 << 20, "params"); !r) return r;
    if (auto r = params::integer(c.params, "n_batch", 1, 1 << 16, "params"); !r) return r;
    if (auto r = params::string(c.params, "chat_template", 1 << 16, "params"); !r) return r;
    return params::integer(c.params, "threads", 0, 1024, "params");
  }

  Result<std::shared_ptr<LoadedModel>> load(const ModelConfig& c) const override {
    if (auto r = checkGguf(c.file); !r) return fail(r.error());
    initOnce();
    auto mp = llama_model_default_params();
    mp.load_mode = LLAMA_LOAD_MODE_MMAP;
    llama_model* raw = llama_model_load_from_file(c.file.c_str(), mp);
    if (!raw) {
      return fail(Error::backend(
          std::format("libllama could not load {} (corrupt or unsupported GGUF; see the log)", c.file.string())));
    }
    std::shared_ptr<llama_model> model(raw, ModelDeleter{});
    ContextOptions o;
    int n_ctx_train = llama_model_n_ctx_train(raw);
    o.n_ctx = c.params.value("n_ctx", std::min(2048, n_ctx_train > 0 ? n_ctx_train : 2048));
    o.n_batch = c.params.value("n_batch", 512);
    o.threads = c.params.value("threads", 0);
    if (o.threads <= 0) o.threads = c.cores;
    o.chat_template = c.params.value("chat_template", "");
    // Tool calls in the format the model was trained on: the manifest's, else its chat template's.
    const char* own_template = llama_model_chat_template(raw, nullptr);
    o.tool_format = parseToolFormat(c.params.value("tool_format", "auto"))
                        .value_or(detectToolFormat(!o.chat_template.empty() ? o.chat_template
                                                   : own_template           ? own_template
                                                                            : ""));
    // A multimodal model's projector (relative paths from the manifest's folder).
    if (auto mmproj = c.params.find("mmproj"); mmproj != c.params.end()) {
      std::filesystem::path path = mmproj->get<std::string>();
      if (path.is_relative()) path = c.dir / path;
      if (auto r = checkGguf(path); !r) return fail(r.error());
      auto mm = Multimodal::load(path, raw, o.threads);
      if (!mm) return fail(mm.error());
      o.mm = std::move(*mm);
    }
    // Make one context now: a model whose context cannot be made fails at load, not at its first
    // job; and libllama may round n_ctx up, which GET /models should show.
    if (c.type == "embedding") {
      auto probe = EmbeddingSession::create(model, o);
      if (!probe) return fail(probe.error());
      o.n_ctx = (*probe)->contextSize();
    } else {
      auto probe = LlamaBatchSession::create(model, o, c.parallel);
      if (!probe) return fail(probe.error());
      o.n_ctx = (*probe)->contextPerSequence();
    }
    return std::make_shared<LlamaModel>(std::move(model), o, c.type, c.parallel);
  }
};

}  // namespace
}  // namespace llama

const Backend& llamaBackend() {
  static const llama::LlamaBackend backend;
  return backend;
}

}  // namespace statim
