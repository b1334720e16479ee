// `whisper`: speech-to-text with libwhisper (whisper.cpp) on the CPU, `transcription` jobs.
// Manifest: file = a ggml whisper model (ggml-*.bin). Params: threads (per job, default: the compute budget,
// compute.cores), max_seconds (longest audio a job may send, default 600). Input: one audio file (WAV, FLAC, OGG
// Vorbis/Opus, MP3), downmixed and resampled to 16 kHz. Job params: language (ISO code or "auto"), translate,
// timestamps, prompt, temperature, beam_size. Result: text, language, duration (s of audio), segments [{start, end,
// text}] (with timestamps), tokens_out, duration_ms. Segments stream as "token" events; cancellation keeps those so
// far.
//
// One copy of the weights per model (a whisper_context without state); each scheduler worker
// (Session) owns its whisper_state, so `parallel = N` runs N jobs at once on shared weights.
#pragma once

#include "statim/backend.h"

namespace statim {

const Backend& whisperBackend();

}  // namespace statim
