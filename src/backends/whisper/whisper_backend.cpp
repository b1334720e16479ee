#include "backends/whisper/whisper_backend.h"

#include <chrono>
#include <format>
#include <mutex>

#include <ggml-backend.h>
#include <whisper.h>

#include "backends/params.h"
#include "backends/media/audio.h"
#include "backends/whisper/model_file.h"
#include "backends/whisper/transcribe.h"
#include "core/logging.h"

namespace statim {
namespace {

constexpr double kDefaultMaxSeconds = 600;

// The error lines libwhisper logged on this thread while loading: it reports why a load failed
// only through its log, and loads run one at a time on the registry's loader thread.
thread_local std::string t_load_errors;

void initOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    // whisper_log_set also routes ggml's log (shared with libllama) here. Everything goes to our
    // log at debug level: libwhisper is chatty, and the errors that matter come back as values.
    whisper_log_set(
        [](ggml_log_level level, const char* text, void*) {
          std::string line(text ? text : "");
          while (!line.empty() && (line.back() == '\n' || line.back() == ' ')) line.pop_back();
          if (line.empty()) return;
          if (level == GGML_LOG_LEVEL_ERROR && t_load_errors.size() < 2000) {
            t_load_errors += (t_load_errors.empty() ? "" : "; ") + line;
          }
          if (log::enabled(log::Level::kDebug)) log::debug("whisper: " + line);
        },
        nullptr);
    // Debian's ggml loads its CPU backend as a plugin; libllama's start-up may have done it already
    // (models load one at a time, so the two cannot race).
    if (!ggml_backend_reg_by_name("CPU")) ggml_backend_load_all();
  });
}

struct ContextFree {
  void operator()(whisper_context* c) const { whisper_free(c); }
};
struct StateFree {
  void operator()(whisper_state* s) const { whisper_free_state(s); }
};

class WhisperSession final : public Session {
 public:
  WhisperSession(std::shared_ptr<whisper_context> ctx, std::unique_ptr<whisper_state, StateFree> state,
                 whisper::Options options)
      : ctx_(std::move(ctx)), state_(std::move(state)), options_(std::move(options)) {}

  Result<nlohmann::json> run(const Job& job, JobControl& control) override {
    auto start = std::chrono::steady_clock::now();
    if (job.inputs.empty()) return fail(Error::invalid("a transcription job needs an audio file", "inputs"));
    const JobFile& input = job.inputs.front();
    auto pcm = audio::decodeFile(input.path, input.name, WHISPER_SAMPLE_RATE, options_.max_seconds);
    if (!pcm) return fail(pcm.error());
    auto result = whisper::transcribe(ctx_.get(), state_.get(), options_, job.params, *pcm, control);
    if (!result) return result;
    (*result)["duration_ms"] =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    return result;
  }

 private:
  std::shared_ptr<whisper_context> ctx_;  // shared weights; outlives every session
  std::unique_ptr<whisper_state, StateFree> state_;
  whisper::Options options_;
};

class WhisperModel final : public LoadedModel {
 public:
  WhisperModel(std::shared_ptr<whisper_context> ctx, whisper::Options options, std::string id)
      : ctx_(std::move(ctx)), options_(std::move(options)), id_(std::move(id)) {}

  Result<std::unique_ptr<Session>> newSession() override {
    // Workers open their sessions at once on their own threads; whisper_init_state sets up
    // backends and buffers for a context, which libwhisper does not promise is thread-safe.
    std::lock_guard lock(mu_);
    std::unique_ptr<whisper_state, StateFree> state(whisper_init_state(ctx_.get()));
    if (!state) return fail(Error::backend(std::format("whisper could not allocate a decoding state for '{}'", id_)));
    return std::make_unique<WhisperSession>(ctx_, std::move(state), options_);
  }

  // whisper_full computes its graphs with ggml on an OpenMP team of options_.threads.
  ComputeUse computeUse() const override { return {.threads = options_.threads, .openmp = true}; }

  Result<void> checkJob(const NewJob& job) const override {
    if (whisper_is_multilingual(ctx_.get())) return ok();
    std::string lang = job.params.value("language", "auto");
    if (lang != "auto" && lang != "en") {
      return fail(Error::invalid(
          std::format("model '{}' is English-only: 'params.language' must be \"en\" or \"auto\" (got \"{}\")", id_, lang),
          "params.language"));
    }
    if (job.params.value("translate", false)) {
      return fail(Error::invalid(std::format("model '{}' is English-only and cannot translate", id_), "params.translate"));
    }
    return ok();
  }

  nlohmann::json describe() const override {
    whisper_context* c = ctx_.get();
    return {{"model_type", whisper_model_type_readable(c)},
            {"multilingual", whisper_is_multilingual(c) != 0},
            {"n_vocab", whisper_model_n_vocab(c)},
            {"n_audio_layer", whisper_model_n_audio_layer(c)},
            {"n_text_layer", whisper_model_n_text_layer(c)},
            {"n_audio_state", whisper_model_n_audio_state(c)},
            {"threads", options_.threads},
            {"max_seconds", options_.max_seconds}};
  }

 private:
  std::shared_ptr<whisper_context> ctx_;
  whisper::Options options_;
  std::string id_;
  std::mutex mu_;
};

constexpr params::Spec kParams[] = {
    {.name = "language",
     .kind = params::Spec::kString,
     .max_len = 16,
     .help = "\"auto\" or a language code: en, de, ..."},
    {.name = "translate", .kind = params::Spec::kBoolean, .fallback = 0, .help = "translate into English"},
    {.name = "timestamps", .kind = params::Spec::kBoolean, .fallback = 1, .help = "segments with their times"},
    {.name = "prompt", .kind = params::Spec::kString, .max_len = 4096, .help = "text that comes before the audio"},
    {.name = "temperature", .kind = params::Spec::kNumber, .max = 1, .fallback = 0, .help = "0: greedy"},
    {.name = "beam_size",
     .kind = params::Spec::kInteger,
     .min = 1,
     .max = 8,
     .fallback = 1,
     .help = "beam search width"},
};

class WhisperBackend final : public Backend {
 public:
  std::string_view name() const override { return "whisper"; }
  std::vector<std::string> jobTypes() const override { return {"transcription"}; }
  std::vector<std::string> inputTypes(std::string_view) const override {
    return {"audio/wav", "audio/flac", "audio/ogg", "audio/mpeg"};
  }

  Result<void> validateParams(std::string_view, const nlohmann::json& p) const override {
    if (auto r = params::check(p, kParams); !r) return r;
    if (auto it = p.find("language"); it != p.end()) {
      const auto& lang = it->get_ref<const std::string&>();
      if (lang != "auto" && whisper_lang_id(lang.c_str()) < 0) {
        return fail(Error::invalid(
            std::format("'params.language' must be \"auto\" or a language code whisper knows, like \"en\" or \"de\" "
                        "(got \"{}\")",
                        lang),
            "params.language"));
      }
    }
    return ok();
  }
  nlohmann::json paramsSchema(std::string_view, const nlohmann::json&) const override {
    return params::describe(kParams);
  }

  Result<void> validateConfig(const ModelConfig& c) const override {
    if (auto r = params::onlyKnown(c.params, {"threads", "max_seconds"}, "params"); !r) return r;
    if (auto r = params::integer(c.params, "threads", 1, 256, "params"); !r) return r;
    return params::number(c.params, "max_seconds", 1, 24 * 3600, "params");
  }

  Result<std::shared_ptr<LoadedModel>> load(const ModelConfig& c) const override {
    initOnce();
    if (c.file.empty()) return fail(Error::invalid("the whisper backend needs file = a ggml whisper model (ggml-*.bin)"));
    auto header = whisper_file::inspect(c.file);
    if (!header) return fail(header.error());
    whisper_context_params cp = whisper_context_default_params();
    cp.use_gpu = false;  // CPU-only build; the weights are read once and shared by every session
    t_load_errors.clear();
    std::shared_ptr<whisper_context> ctx(whisper_init_from_file_with_params_no_state(c.file.c_str(), cp), ContextFree{});
    if (!ctx) {
      return fail(Error::backend(std::format("libwhisper could not load {}: {}", c.file.string(),
                                             t_load_errors.empty() ? "no reason given" : t_load_errors)));
    }
    whisper::Options options;
    options.threads = c.params.value("threads", c.cores);
    options.max_seconds = c.params.value("max_seconds", kDefaultMaxSeconds);
    auto model = std::make_shared<WhisperModel>(std::move(ctx), options, c.id);
    // Fail at load, not at the first job, when a decoding state cannot be made.
    if (auto probe = model->newSession(); !probe) return fail(probe.error());
    return model;
  }
};

}  // namespace

const Backend& whisperBackend() {
  static const WhisperBackend backend;
  return backend;
}

}  // namespace statim
