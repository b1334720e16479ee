#include "backends/whisper/transcribe.h"

#include <algorithm>
#include <cmath>
#include <format>

namespace statim::whisper {
namespace {

// What the callbacks need; they run on the session's thread, inside whisper_full.
struct RunState {
  JobControl* control;
  int last_percent = -1;
  double duration = 0;
  nlohmann::json segments = nlohmann::json::array();  // as decoded, for a cancelled job's partial result
};

double seconds(int64_t centiseconds) { return static_cast<double>(centiseconds) / 100.0; }

// whisper decodes 30 s windows: a timestamp may point past the end of shorter audio, and the
// first segment of a window can start before the last one of the previous window ended.
// Segments are kept in order and within the audio.
nlohmann::json segment(whisper_state* state, int i, double duration, double previous_start) {
  double start = std::clamp(seconds(whisper_full_get_segment_t0_from_state(state, i)), previous_start, duration);
  double end = std::clamp(seconds(whisper_full_get_segment_t1_from_state(state, i)), start, duration);
  return {{"start", std::round(start * 1000) / 1000},
          {"end", std::round(end * 1000) / 1000},
          {"text", validUtf8(whisper_full_get_segment_text_from_state(state, i))}};
}

nlohmann::json segmentsOf(whisper_state* state, double duration) {
  nlohmann::json out = nlohmann::json::array();
  double previous = 0;
  for (int i = 0, n = whisper_full_n_segments_from_state(state); i < n; ++i) {
    out.push_back(segment(state, i, duration, previous));
    previous = out.back()["start"].get<double>();
  }
  return out;
}

std::string joinText(const nlohmann::json& segments) {
  std::string text;
  for (auto& s : segments) text += s["text"].get<std::string>();
  // whisper's text starts each segment with the word's space; the whole text should not.
  auto first = text.find_first_not_of(' ');
  return first == std::string::npos ? std::string() : text.substr(first);
}

}  // namespace

std::string validUtf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    bool valid = n > 0 && i + n <= s.size();
    for (size_t k = 1; valid && k < n; ++k) valid = (static_cast<unsigned char>(s[i + k]) & 0xc0) == 0x80;
    if (valid && n > 1) {
      // Reject overlong forms and surrogates so the output is strictly valid.
      auto c1 = static_cast<unsigned char>(s[i + 1]);
      valid = !(n == 2 && c < 0xc2) && !(n == 3 && c == 0xe0 && c1 < 0xa0) && !(n == 3 && c == 0xed && c1 >= 0xa0) &&
              !(n == 4 && c == 0xf0 && c1 < 0x90) && !(n == 4 && (c > 0xf4 || (c == 0xf4 && c1 >= 0x90)));
    }
    if (valid) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      out += "\xef\xbf\xbd";
      ++i;
    }
  }
  return out;
}

Result<nlohmann::json> transcribe(whisper_context* ctx, whisper_state* state, const Options& options,
                                  const nlohmann::json& params, const audio::Pcm& pcm, JobControl& control) {
  const int beam_size = params.value("beam_size", 1);
  whisper_full_params p =
      whisper_full_default_params(beam_size > 1 ? WHISPER_SAMPLING_BEAM_SEARCH : WHISPER_SAMPLING_GREEDY);
  p.n_threads = options.threads;
  if (beam_size > 1) p.beam_search.beam_size = beam_size;
  p.print_progress = false;
  p.print_realtime = false;
  p.print_timestamps = false;
  p.print_special = false;
  const std::string language = params.value("language", "auto");
  p.language = language.c_str();
  p.detect_language = false;
  p.translate = params.value("translate", false);
  const bool timestamps = params.value("timestamps", true);
  p.no_timestamps = !timestamps;
  const std::string prompt = params.value("prompt", "");
  if (!prompt.empty()) p.initial_prompt = prompt.c_str();
  // As in OpenAI's API: temperature 0 (the default) decodes greedily and falls back to higher
  // temperatures when a window decodes badly; a temperature above 0 is used as it is, alone.
  // Sampling is seeded per call, so the same audio gives the same text either way.
  p.temperature = params.value("temperature", 0.0f);
  if (p.temperature > 0) p.temperature_inc = 0;

  RunState run{&control, -1, pcm.seconds(), nlohmann::json::array()};
  p.new_segment_callback = [](whisper_context*, whisper_state* st, int n_new, void* user) {
    auto* r = static_cast<RunState*>(user);
    int n = whisper_full_n_segments_from_state(st);
    for (int i = n - n_new; i < n; ++i) {
      double previous = r->segments.empty() ? 0.0 : r->segments.back()["start"].get<double>();
      r->segments.push_back(segment(st, i, r->duration, previous));
      r->control->progress({{"type", "token"}, {"text", r->segments.back()["text"]}});
    }
  };
  p.new_segment_callback_user_data = &run;
  p.progress_callback = [](whisper_context*, whisper_state*, int percent, void* user) {
    auto* r = static_cast<RunState*>(user);
    if (percent == r->last_percent) return;
    r->last_percent = percent;
    r->control->progress({{"type", "progress"}, {"percent", percent}});
  };
  p.progress_callback_user_data = &run;
  // Both stop points: before each 30 s window's encoder, and between ggml graph computations.
  p.encoder_begin_callback = [](whisper_context*, whisper_state*, void* user) {
    return !static_cast<RunState*>(user)->control->cancelled();
  };
  p.encoder_begin_callback_user_data = &run;
  p.abort_callback = [](void* user) { return static_cast<RunState*>(user)->control->cancelled(); };
  p.abort_callback_user_data = &run;

  int rc = whisper_full_with_state(ctx, state, p, pcm.samples.data(), static_cast<int>(pcm.samples.size()));
  if (control.cancelled()) {
    return nlohmann::json{{"text", joinText(run.segments)},
                          {"language", whisper_is_multilingual(ctx) ? language : "en"},
                          {"duration", std::round(pcm.seconds() * 1000) / 1000},
                          {"segments", timestamps ? run.segments : nlohmann::json::array()},
                          {"finish_reason", "cancelled"}};
  }
  if (rc != 0) return fail(Error::backend(std::format("whisper failed to transcribe the audio (whisper_full: {})", rc)));

  nlohmann::json segments = segmentsOf(state, pcm.seconds());
  int tokens = 0;
  const whisper_token eot = whisper_token_eot(ctx);
  for (int i = 0, n = whisper_full_n_segments_from_state(state); i < n; ++i) {
    for (int k = 0, m = whisper_full_n_tokens_from_state(state, i); k < m; ++k) {
      if (whisper_full_get_token_id_from_state(state, i, k) < eot) ++tokens;  // text tokens only
    }
  }
  // An English-only model always decodes English; otherwise the language asked for or detected.
  int lang_id = whisper_is_multilingual(ctx) ? whisper_full_lang_id_from_state(state) : whisper_lang_id("en");
  const char* lang = lang_id >= 0 ? whisper_lang_str(lang_id) : nullptr;
  nlohmann::json result = {{"text", joinText(segments)},
                           {"language", lang ? lang : language},
                           {"duration", std::round(pcm.seconds() * 1000) / 1000},
                           {"tokens_out", tokens},
                           {"finish_reason", "stop"}};
  if (timestamps) result["segments"] = std::move(segments);
  return result;
}

}  // namespace statim::whisper
