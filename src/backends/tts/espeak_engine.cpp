#include "backends/tts/espeak_engine.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <format>

#include <espeak-ng/speak_lib.h>

namespace statim::tts {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// The synthesis in progress. espeak-ng's callback is a plain C function with no user pointer we
// control in every event, so it reaches the collector through this; only ever set while the
// engine's mutex is held.
struct Collector {
  Speech* speech;
  const std::function<bool()>* should_stop;
  const std::function<void(int)>* on_sentence;
};
Collector* g_current = nullptr;

int onSynth(short* wav, int count, espeak_EVENT* events) {
  Collector* c = g_current;
  if (!c) return 1;
  if (wav && count > 0) c->speech->samples.insert(c->speech->samples.end(), wav, wav + count);
  for (espeak_EVENT* e = events; e && e->type != espeakEVENT_LIST_TERMINATED; ++e) {
    if (e->type == espeakEVENT_SENTENCE && *c->on_sentence) (*c->on_sentence)(e->text_position);
  }
  // Non-zero aborts the synthesis: how a cancelled job stops within one block of audio.
  if (*c->should_stop && (*c->should_stop)()) {
    c->speech->cancelled = true;
    return 1;
  }
  return 0;
}

}  // namespace

Result<EspeakEngine*> EspeakEngine::instance() {
  static EspeakEngine engine;
  static Result<void> initialised = engine.init();
  if (!initialised) return fail(initialised.error());
  return &engine;
}

Result<void> EspeakEngine::init() {
  // Synchronous: espeak_Synth returns when the text is spoken, delivering audio to onSynth in
  // ~100 ms blocks on the caller's thread. DONT_EXIT: a missing data dir is an error, not exit().
  sample_rate_ = espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 100, nullptr, espeakINITIALIZE_DONT_EXIT);
  if (sample_rate_ <= 0) {
    return fail(Error::backend("espeak-ng could not initialise: is espeak-ng-data installed?"));
  }
  espeak_SetSynthCallback(onSynth);
  const char* data_path = nullptr;
  const char* version = espeak_Info(&data_path);
  version_ = version ? version : "";

  // Languages first (a voice file listing a language with a lower priority number wins), then
  // the voice files' own names, which always select that file.
  std::map<std::string, int> best;
  const espeak_VOICE** list = espeak_ListVoices(nullptr);
  for (const espeak_VOICE** v = list; v && *v; ++v) {
    std::string_view id = (*v)->identifier ? (*v)->identifier : "";
    if (id.empty() || id.starts_with("mb/")) continue;  // mbrola voices need a separate synthesiser
    for (const char* l = (*v)->languages; l && *l; l += std::strlen(l + 1) + 2) {
      int priority = static_cast<unsigned char>(l[0]);
      std::string lang = lower(l + 1);
      if (auto it = best.find(lang); it == best.end() || priority < it->second) {
        best[lang] = priority;
        voices_[lang] = std::string(id);
      }
    }
  }
  for (const espeak_VOICE** v = list; v && *v; ++v) {
    std::string_view id = (*v)->identifier ? (*v)->identifier : "";
    if (id.empty() || id.starts_with("mb/")) continue;
    voices_[lower(id)] = std::string(id);
    voices_[lower(id.substr(id.rfind('/') + 1))] = std::string(id);
  }
  if (voices_.empty()) return fail(Error::backend("espeak-ng lists no voices: is espeak-ng-data installed?"));
  if (data_path) {
    std::error_code ec;
    for (auto& f : std::filesystem::directory_iterator(std::filesystem::path(data_path) / "voices" / "!v", ec)) {
      if (f.is_regular_file()) variants_.insert(f.path().filename().string());
    }
  }
  return ok();
}

Result<std::string> EspeakEngine::resolve(std::string_view voice, std::string_view field) const {
  auto plus = voice.find('+');
  std::string_view base = voice.substr(0, plus);
  auto it = voices_.find(lower(base));
  if (it == voices_.end()) {
    return fail(Error::invalid(
        std::format("'{}': unknown voice '{}'; use an installed espeak-ng language or voice such as en, en-us, "
                    "en-gb, de, fr, es (optionally with a variant: en-us+f3); GET /models lists them under "
                    "details.voices, as does `espeak-ng --voices`",
                    field, voice.substr(0, 64)),
        std::string(field)));
  }
  if (plus == std::string_view::npos) return it->second;
  std::string_view variant = voice.substr(plus + 1);
  auto found = std::ranges::find_if(variants_, [&](const std::string& v) { return lower(v) == lower(variant); });
  if (found == variants_.end()) {
    return fail(Error::invalid(
        std::format("'{}': unknown voice variant '{}' in '{}'; variants are the files of espeak-ng-data/voices/!v, "
                    "e.g. m1..m8, f1..f5 (GET /models lists them under details.variants)",
                    field, variant.substr(0, 64), voice.substr(0, 64)),
        std::string(field)));
  }
  return it->second + "+" + *found;
}

std::vector<std::string> EspeakEngine::voiceNames() const {
  std::vector<std::string> out;
  for (auto& [name, file] : voices_) {
    if (name.find('/') == std::string::npos) out.push_back(name);
  }
  return out;
}

Result<Speech> EspeakEngine::synthesize(const SpeechRequest& request, const std::function<bool()>& should_stop,
                                        const std::function<void(int)>& on_sentence) {
  auto file = resolve(request.voice, "voice");
  if (!file) return fail(file.error());
  std::lock_guard lock(mu_);
  if (espeak_SetVoiceByName(file->c_str()) != EE_OK) {
    return fail(Error::backend(std::format("espeak-ng could not load voice '{}'", *file)));
  }
  if (espeak_SetParameter(espeakRATE, request.words_per_minute, 0) != EE_OK ||
      espeak_SetParameter(espeakPITCH, request.pitch, 0) != EE_OK) {
    return fail(Error::backend("espeak-ng refused the rate or pitch"));
  }
  Speech speech;
  speech.sample_rate = sample_rate_;
  Collector collector{&speech, &should_stop, &on_sentence};
  g_current = &collector;
  // Plain text (no espeakSSML flag): markup in a prompt is read out, never interpreted.
  espeak_ERROR rc = espeak_Synth(request.text.c_str(), request.text.size() + 1, 0, POS_CHARACTER, 0,
                                 espeakCHARS_UTF8, nullptr, nullptr);
  g_current = nullptr;
  if (rc != EE_OK && !speech.cancelled) {
    return fail(Error::backend(std::format("espeak-ng synthesis failed (error {})", static_cast<int>(rc))));
  }
  return speech;
}

}  // namespace statim::tts
