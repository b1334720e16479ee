// A first look at a ggml whisper model file (`ggml-*.bin`) before libwhisper loads it.
// libwhisper accepts a file with a header and a vocabulary but no tensors ("assuming empty model
// for testing") and then transcribes silence with zero weights; and on a bad file it only logs.
// Walking the file's layout ourselves turns both into a clear reason in GET /models.
#pragma once

#include <cstdint>
#include <filesystem>

#include "statim/error.h"

namespace statim::whisper_file {

struct Header {
  std::int32_t n_vocab = 0, n_audio_ctx = 0, n_audio_state = 0, n_audio_head = 0, n_audio_layer = 0;
  std::int32_t n_text_ctx = 0, n_text_state = 0, n_text_head = 0, n_text_layer = 0, n_mels = 0, ftype = 0;
  std::int32_t n_tokens = 0;  // vocabulary entries stored in the file
  int tensors = 0;            // tensor records found
  int expected_tensors() const { return 11 + 15 * n_audio_layer + 24 * n_text_layer; }
};

// Reads the header, mel filters and vocabulary and walks every tensor record (skipping the
// data). Fails, naming the file and what is wrong, unless it is a complete model.
Result<Header> inspect(const std::filesystem::path& path);

}  // namespace statim::whisper_file
