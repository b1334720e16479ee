// The one espeak-ng engine of the process.
//
// espeak-ng keeps all of its state in globals (the voice, the rate, the synth callback, the
// phoneme tables): two syntheses at once, from two workers or two tts models, would corrupt each
// other. So the process has exactly one EspeakEngine, and synthesize() holds its mutex for the
// whole synthesis. This is the one lock a backend owns (STYLE: backends need none of their own):
// the scheduler serialises the calls to one Session, but not the calls across sessions and models
// that share this C library's globals.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "statim/error.h"

namespace statim::tts {

struct SpeechRequest {
  std::string text;  // UTF-8, spoken as plain text (no SSML)
  std::string voice;  // a name resolve() accepts
  int words_per_minute = 175;
  int pitch = 50;  // 0..100
};

struct Speech {
  std::vector<std::int16_t> samples;  // mono, 16-bit
  int sample_rate = 0;
  bool cancelled = false;  // should_stop returned true: `samples` holds what came before
};

class EspeakEngine {
 public:
  // Initialises espeak-ng on first use (synchronous output into a callback, its installed data).
  static Result<EspeakEngine*> instance();

  // The espeak-ng voice file (with "+variant") a user's voice name selects, or an error naming
  // `field` that says how to find valid names. Accepted, case-insensitively: a language
  // ("en", "en-us", "de"), a voice file ("en-US", "gmw/en-US"), either followed by "+variant"
  // ("en-us+f3", variants from espeak-ng-data/voices/!v).
  Result<std::string> resolve(std::string_view voice, std::string_view field) const;
  // The voice names resolve() accepts (languages and voice files, without "group/"), sorted,
  // and the variants that may follow a "+" (for GET /models).
  std::vector<std::string> voiceNames() const;
  std::vector<std::string> variants() const { return {variants_.begin(), variants_.end()}; }
  int sampleRate() const { return sample_rate_; }
  std::string version() const { return version_; }

  // Synthesises the whole text. should_stop is polled for every block of audio (~100 ms of
  // speech); on_sentence gets the character offset each new sentence starts at.
  Result<Speech> synthesize(const SpeechRequest& request, const std::function<bool()>& should_stop,
                            const std::function<void(int)>& on_sentence);

 private:
  EspeakEngine() = default;
  Result<void> init();

  int sample_rate_ = 0;
  std::string version_;
  std::map<std::string, std::string> voices_;  // lower-case name -> voice file identifier
  std::set<std::string> variants_;  // file names in voices/!v
  std::mutex mu_;                   // held for every call into espeak-ng after init
};

}  // namespace statim::tts
