#include "backends/tts/tts_backend.h"

#include <chrono>
#include <cmath>
#include <format>

#include "backends/params.h"
#include "backends/tts/audio_encoder.h"
#include "backends/tts/espeak_engine.h"

namespace statim {
namespace {

constexpr int kMinWpm = 80, kMaxWpm = 450, kDefaultWpm = 175;
constexpr std::int64_t kDefaultMaxChars = 10000;
constexpr const char* kDefaultVoice = "en";

constexpr params::Spec kParams[] = {
    {.name = "voice", .kind = params::Spec::kString, .max_len = 64, .help = "an espeak-ng voice: en-us, de, fr, ..."},
    {.name = "speed",
     .kind = params::Spec::kInteger,
     .min = kMinWpm,
     .max = kMaxWpm,
     .fallback = kDefaultWpm,
     .help = "words per minute"},
    {.name = "pitch", .kind = params::Spec::kInteger, .max = 100, .fallback = 50, .help = "0 (low) to 100 (high)"},
    {.name = "format", .kind = params::Spec::kString, .max_len = 8, .help = "the audio file's format"},
};

// Characters as a listener counts them: UTF-8 code points, not bytes.
std::int64_t countChars(std::string_view text) {
  std::int64_t n = 0;
  for (unsigned char c : text) n += (c & 0xC0) != 0x80;
  return n;
}

double seconds(std::int64_t frames, int rate) { return std::round(frames * 1000.0 / rate) / 1000.0; }

class TtsSession final : public Session {
 public:
  TtsSession(tts::EspeakEngine& engine, std::string default_voice)
      : engine_(engine), default_voice_(std::move(default_voice)) {}

  Result<nlohmann::json> run(const Job& job, JobControl& control) override {
    auto start = std::chrono::steady_clock::now();
    tts::SpeechRequest request{job.prompt, job.params.value("voice", default_voice_),
                               job.params.value("speed", kDefaultWpm), job.params.value("pitch", 50)};
    auto format = tts::findFormat(job.params.value("format", "wav"));
    if (!format) return fail(Error::invalid("'params.format' is not a known format", "params.format"));
    std::int64_t characters = countChars(job.prompt);
    // One progress note per sentence: cheap, and enough to draw a progress bar.
    auto on_sentence = [&](int position) {
      control.progress({{"type", "progress"}, {"characters", std::max(0, position - 1)}, {"total", characters}});
    };
    auto speech = engine_.synthesize(request, [&] { return control.cancelled(); }, on_sentence);
    if (!speech) return fail(speech.error());
    nlohmann::json result = {{"voice", request.voice}, {"format", format->name}, {"characters", characters}};
    // A cancelled job keeps no audio: a truncated file would pass for the whole text.
    if (speech->cancelled || control.cancelled()) {
      result["duration"] = seconds(static_cast<std::int64_t>(speech->samples.size()), speech->sample_rate);
      result["finish_reason"] = "cancelled";
      return result;
    }
    auto audio = tts::encodeAudio(speech->samples, speech->sample_rate, *format);
    if (!audio) return fail(audio.error());
    auto saved = control.saveArtifact(std::format("speech.{}", format->name), std::string(format->content_type),
                                      audio->bytes);
    if (!saved) return fail(saved.error());
    result["duration"] = seconds(audio->frames, audio->sample_rate);
    result["sample_rate"] = audio->sample_rate;
    result["synthesis_ms"] =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    return result;
  }

 private:
  tts::EspeakEngine& engine_;
  std::string default_voice_;
};

class TtsModel final : public LoadedModel {
 public:
  TtsModel(tts::EspeakEngine& engine, std::string voice, std::int64_t max_chars)
      : engine_(engine), voice_(std::move(voice)), max_chars_(max_chars) {}

  Result<std::unique_ptr<Session>> newSession() override { return std::make_unique<TtsSession>(engine_, voice_); }
  ComputeUse computeUse() const override { return {.threads = 1}; }  // espeak-ng: one thread

  Result<void> checkJob(const NewJob& job) const override {
    std::int64_t n = countChars(job.prompt);
    if (n > max_chars_) {
      return fail(Error::invalid(std::format("'prompt' has {} characters; model '{}' speaks at most {} (max_chars)", n,
                                             job.model, max_chars_),
                                 "prompt"));
    }
    if (job.prompt.find_first_not_of(" \t\r\n\f\v") == std::string::npos) {
      return fail(Error::invalid("'prompt' has nothing to speak (only whitespace)", "prompt"));
    }
    if (auto v = job.params.find("voice"); v != job.params.end()) {
      if (auto r = engine_.resolve(v->get<std::string>(), "params.voice"); !r) return fail(r.error());
    }
    return ok();
  }

  nlohmann::json describe() const override {
    nlohmann::json formats = nlohmann::json::array();
    for (auto& f : tts::audioFormats()) formats.push_back(f.name);
    return {{"engine", "espeak-ng " + engine_.version()},
            {"sample_rate", engine_.sampleRate()},
            {"voice", voice_},
            {"max_chars", max_chars_},
            {"formats", formats},
            {"voices", engine_.voiceNames()},
            {"variants", engine_.variants()}};
  }

 private:
  tts::EspeakEngine& engine_;
  std::string voice_;
  std::int64_t max_chars_;
};

class TtsBackend final : public Backend {
 public:
  std::string_view name() const override { return "tts"; }
  std::vector<std::string> jobTypes() const override { return {"speech"}; }

  Result<void> validateParams(std::string_view, const nlohmann::json& p) const override {
    auto badFormat = [] {
      return fail(
          Error::invalid(std::format("'params.format' must be one of {}", tts::formatNames()), "params.format"));
    };
    if (auto r = params::check(p, kParams); !r) {
      Error e = r.error();
      if (e.field == "params.format") return badFormat();
      if (e.field == "params.speed") e.message += " (words per minute)";
      return fail(std::move(e));
    }
    if (p.contains("voice") && p["voice"].get_ref<const std::string&>().empty()) {
      return fail(Error::invalid("'params.voice' must not be empty", "params.voice"));
    }
    if (auto f = p.find("format"); f != p.end() && !tts::findFormat(f->get<std::string>())) return badFormat();
    return ok();
  }

  nlohmann::json paramsSchema(std::string_view, const nlohmann::json& manifest) const override {
    auto out = params::describe(kParams);
    out["voice"]["default"] = manifest.value("voice", kDefaultVoice);
    out["format"]["enum"] = nlohmann::json::array();
    for (auto& f : tts::audioFormats()) out["format"]["enum"].push_back(f.name);
    out["format"]["default"] = "wav";
    return out;
  }

  Result<void> validateConfig(const ModelConfig& c) const override {
    if (c.parallel != 1) {
      return fail(Error::invalid(std::format(
          "model '{}': the tts backend synthesises one text at a time per process (espeak-ng keeps global "
          "state), so parallel must be 1 (got {})",
          c.id, c.parallel)));
    }
    if (!c.file.empty()) return fail(Error::invalid(std::format("model '{}': the tts backend takes no file", c.id)));
    if (auto r = params::onlyKnown(c.params, {"voice", "max_chars"}, "params"); !r) return r;
    if (auto r = params::string(c.params, "voice", 64, "params"); !r) return r;
    return params::integer(c.params, "max_chars", 1, 1000000, "params");
  }

  Result<std::shared_ptr<LoadedModel>> load(const ModelConfig& c) const override {
    auto engine = tts::EspeakEngine::instance();
    if (!engine) return fail(engine.error());
    std::string voice = c.params.value("voice", kDefaultVoice);
    if (auto r = (*engine)->resolve(voice, "params.voice"); !r) return fail(r.error());
    return std::make_shared<TtsModel>(**engine, voice, c.params.value("max_chars", kDefaultMaxChars));
  }
};

}  // namespace

const Backend& ttsBackend() {
  static const TtsBackend backend;
  return backend;
}

}  // namespace statim
