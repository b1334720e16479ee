// CLIP's byte-level BPE tokenizer, as Hugging Face's slow `CLIPTokenizer` runs it without ftfy
// (the tokenizer diffusers uses for Stable Diffusion's text encoders).
// Thread-safety: all const methods may be called concurrently; the BPE cache behind encode() is
// guarded by its own mutex. Copies share the (immutable) tables and the cache.
// A default-constructed ClipTokenizer is empty (encode gives {}, ids 0, idOf nullopt): use load().
// Cost: BPE is quadratic in the length of one word (a run of letters or punctuation), as in
// Hugging Face's code: callers should bound the prompt length (a 5,000-letter word: ~20 ms).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "statim/error.h"

namespace statim::diffusion {

class ClipTokenizer {
 public:
  // Reads vocab.json + merges.txt (Hugging Face CLIP layout, e.g. a diffusers export's tokenizer/).
  static Result<ClipTokenizer> load(const std::filesystem::path& vocab_json, const std::filesystem::path& merges_txt);
  // BPE ids of `text` as CLIPTokenizer does it (ftfy-less basic cleaning: HTML entities unescaped
  // twice, whitespace collapsed, lower-cased; CLIP's pre-tokenisation regex; byte-level BPE),
  // without start/end tokens, untruncated.
  std::vector<std::int32_t> encode(std::string_view text) const;
  // [start] + encode(text) truncated to length-2 + [end], padded to `length` with pad_id.
  std::vector<std::int32_t> encodeForModel(std::string_view text, std::int32_t pad_id, std::size_t length = 77) const;
  std::int32_t startId() const;  // <|startoftext|> (49406 in the real vocab)
  std::int32_t endId() const;    // <|endoftext|>  (49407)
  std::optional<std::int32_t> idOf(std::string_view token) const;  // e.g. "!" for SD2/SDXL's pad

 private:
  // encode(), stopping once `limit` ids are out (encodeForModel needs no more than it keeps).
  std::vector<std::int32_t> encodeLimited(std::string_view text, std::size_t limit) const;

  struct Tables;  // vocab, merge ranks, byte encoder, BPE cache (in clip_tokenizer.cpp)
  std::shared_ptr<Tables> tables_;
  std::int32_t start_id_ = 0;
  std::int32_t end_id_ = 0;
};

}  // namespace statim::diffusion
