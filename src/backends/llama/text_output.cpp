#include "backends/llama/text_output.h"

#include <algorithm>
#include <string_view>

namespace statim::llama {

size_t completeUtf8Prefix(const std::string& s) {
  // Walk back over at most 3 continuation bytes to the last lead byte and check its length.
  size_t n = s.size();
  size_t i = n;
  int back = 0;
  while (i > 0 && back < 4) {
    unsigned char c = static_cast<unsigned char>(s[i - 1]);
    if ((c & 0xC0) != 0x80) {
      size_t need = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 1;
      return (n - (i - 1)) >= need ? n : i - 1;
    }
    --i;
    ++back;
  }
  return n;
}

bool TextOutput::append(const std::string& piece) {
  size_t before = text_.size();
  text_ += piece;
  size_t longest = 0;
  for (auto& s : stops_) longest = std::max(longest, s.size());
  // Only a stop string that ends in the new piece can be new.
  size_t from = before > longest ? before - longest : 0;
  size_t best = std::string::npos;
  for (auto& s : stops_) best = std::min(best, text_.find(s, from));
  if (best == std::string::npos) return false;
  text_.resize(best);
  streamed_ = std::min(streamed_, text_.size());
  return true;
}

std::string TextOutput::takeStreamable(bool final) {
  size_t end = text_.size();
  // Where a tail that could still become `s` begins (the text's end when none can).
  auto heldTail = [&](const std::string& s) {
    for (size_t k = std::min(s.size() - 1, text_.size()); k > 0; --k) {
      if (text_.compare(text_.size() - k, k, s, 0, k) == 0) return text_.size() - k;
    }
    return text_.size();
  };
  if (!final) {
    for (auto& s : stops_) end = std::min(end, heldTail(s));
    end = std::min(end, completeUtf8Prefix(text_.substr(0, end)));
  }
  if (!withhold_.empty()) {
    size_t at = text_.find(withhold_);
    if (at != std::string::npos) end = std::min(end, at);
    if (at == std::string::npos && !final) end = std::min(end, heldTail(withhold_));
    if (at != std::string::npos || !final) {
      while (end > streamed_ && std::string_view(" \t\r\n").contains(text_[end - 1])) --end;
    }
  }
  if (end <= streamed_) return {};
  std::string out = text_.substr(streamed_, end - streamed_);
  streamed_ = end;
  return out;
}

}  // namespace statim::llama
