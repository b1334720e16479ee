// `tts`: text-to-speech with espeak-ng, serving `speech` jobs. The job's prompt is the text.
// Manifest (no file): [params] voice = default voice ("en-us"), max_chars = longest text (10000).
// Job params: voice (an espeak-ng language/voice, optionally +variant), speed (words per minute,
// 80..450, default 175), pitch (0..100, default 50), format (wav | flac | ogg | opus | mp3 | pcm).
// Result: the audio as artifact "speech.<format>" (the job's primary result) and
// {"duration", "sample_rate", "voice", "format", "characters"}. parallel must be 1: espeak-ng
// has process-global state (see espeak_engine.h).
#pragma once

#include "statim/backend.h"

namespace statim {

const Backend& ttsBackend();

}  // namespace statim
