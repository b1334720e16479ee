// The text half of the CLIP tokenizer (internal to the diffusion backend): cleaning and
// pre-tokenisation, before byte-level BPE. Pure functions, thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace statim::diffusion::clip {

// Python's html.unescape(): named (HTML5, incl. the longest-prefix rule for names without ';')
// and numeric references, one left-to-right pass (so "&amp;lt;" -> "&lt;").
std::u32string htmlUnescape(std::u32string_view text);

// CLIP's cleaning: html.unescape twice, strip; runs of white space -> one ' ', strip;
// lower-case (Python's str.lower()). `utf8` is decoded with invalid bytes -> U+FFFD.
std::u32string cleanText(std::string_view utf8);

// The pieces CLIP's pre-tokenisation regex finds in `cleaned` (as views into it):
//   <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
// matched case-insensitively as Hugging Face compiles it (re.IGNORECASE).
std::vector<std::u32string_view> preTokenize(std::u32string_view cleaned);

}  // namespace statim::diffusion::clip
