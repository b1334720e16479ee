#include "backends/diffusion/clip_text.h"

#include "backends/diffusion/clip_unicode.h"

namespace statim::diffusion::clip {
namespace {

using unicode::isLetter;
using unicode::isNumber;
using unicode::isSpace;

bool isDigit(char32_t c) { return c >= U'0' && c <= U'9'; }
bool isHexDigit(char32_t c) { return isDigit(c) || (c >= U'a' && c <= U'f') || (c >= U'A' && c <= U'F'); }

// One numeric reference after "&#": returns the characters consumed after the '&' (0 when the
// text is not a numeric reference) and appends its replacement.
std::size_t numericRef(std::u32string_view s, std::size_t pos, std::u32string& out) {
  std::size_t i = pos + 1;  // past '#'
  bool hex = i < s.size() && (s[i] == U'x' || s[i] == U'X');
  if (hex) ++i;
  std::size_t digits_start = i;
  std::uint64_t value = 0;
  bool overflow = false;
  while (i < s.size() && (hex ? isHexDigit(s[i]) : isDigit(s[i]))) {
    char32_t c = s[i];
    std::uint64_t d = isDigit(c) ? c - U'0' : (c | 0x20) - U'a' + 10;
    // Anything past U+10FFFF becomes U+FFFD anyway: saturate instead of overflowing.
    value = value * (hex ? 16 : 10) + d;
    if (value > 0x10FFFF) overflow = true, value = 0x110000;
    ++i;
  }
  if (i == digits_start) return 0;
  if (i < s.size() && s[i] == U';') ++i;
  out += unicode::numericReference(overflow ? 0x110000 : value);
  return i - pos;
}

// A named reference at `pos` (just after '&'): Python matches [^\t\n\f <&#;]{1,32};? then
// takes the whole name, else its longest prefix (of >= 2 characters) that is a known name.
std::size_t namedRef(std::u32string_view s, std::size_t pos, std::u32string& out) {
  std::size_t i = pos;
  while (i < s.size() && i - pos < 32) {
    char32_t c = s[i];
    if (c == U'\t' || c == U'\n' || c == U'\f' || c == U' ' || c == U'<' || c == U'&' || c == U'#' || c == U';') break;
    ++i;
  }
  if (i == pos) return 0;
  if (i < s.size() && s[i] == U';') ++i;
  std::u32string_view name = s.substr(pos, i - pos);
  // Entity names are ASCII: only the ASCII prefix of `name` can match.
  std::string ascii;
  for (char32_t c : name) {
    if (c >= 0x80) break;
    ascii.push_back(static_cast<char>(c));
  }
  auto emit = [&](const unicode::Entity* e, std::size_t used) {
    out.push_back(e->first);
    if (e->second != 0) out.push_back(e->second);
    out.append(name.substr(used));
  };
  if (ascii.size() == name.size()) {
    if (const auto* e = unicode::findEntity(ascii)) {
      emit(e, name.size());
      return name.size();
    }
  }
  for (std::size_t x = std::min(ascii.size(), name.size() - 1); x >= 2; --x) {
    if (const auto* e = unicode::findEntity(std::string_view(ascii).substr(0, x))) {
      emit(e, x);
      return name.size();
    }
  }
  out.push_back(U'&');
  out.append(name);
  return name.size();
}

std::u32string_view strip(std::u32string_view s) {
  std::size_t b = 0, e = s.size();
  while (b < e && isSpace(s[b])) ++b;
  while (e > b && isSpace(s[e - 1])) --e;
  return s.substr(b, e - b);
}

// 's', or the long s that re.IGNORECASE also takes for it (U+017F folds to 's').
bool isS(char32_t c) { return c == U's' || c == U'S' || c == 0x17F; }
bool is(char32_t c, char32_t lower) { return c == lower || c == lower - 32; }

// Length of `word` matched case-insensitively at `pos` (0 when it does not match).
std::size_t matchFolded(std::u32string_view s, std::size_t pos, std::u32string_view word) {
  if (s.size() - pos < word.size()) return 0;
  for (std::size_t k = 0; k < word.size(); ++k) {
    char32_t w = word[k];
    bool ok = w == U's' ? isS(s[pos + k]) : (w >= U'a' && w <= U'z') ? is(s[pos + k], w) : s[pos + k] == w;
    if (!ok) return 0;
  }
  return word.size();
}

}  // namespace

std::u32string htmlUnescape(std::u32string_view s) {
  if (s.find(U'&') == std::u32string_view::npos) return std::u32string(s);
  std::u32string out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    if (s[i] != U'&') {
      out.push_back(s[i++]);
      continue;
    }
    std::size_t used = 0;
    if (i + 1 < s.size()) {
      used = s[i + 1] == U'#' ? numericRef(s, i + 1, out) : namedRef(s, i + 1, out);
    }
    if (used == 0) {
      out.push_back(U'&');
      ++i;
    } else {
      i += 1 + used;
    }
  }
  return out;
}

std::u32string cleanText(std::string_view utf8) {
  std::u32string text = unicode::decodeUtf8(utf8);
  text = htmlUnescape(htmlUnescape(text));
  std::u32string_view stripped = strip(text);
  std::u32string collapsed;
  collapsed.reserve(stripped.size());
  for (std::size_t i = 0; i < stripped.size();) {
    if (isSpace(stripped[i])) {
      collapsed.push_back(U' ');
      while (i < stripped.size() && isSpace(stripped[i])) ++i;
    } else {
      collapsed.push_back(stripped[i++]);
    }
  }
  std::u32string lowered;
  lowered.reserve(collapsed.size());
  for (char32_t c : strip(collapsed)) unicode::appendLower(c, lowered);
  return lowered;
}

std::vector<std::u32string_view> preTokenize(std::u32string_view s) {
  static constexpr std::u32string_view kSpecials[] = {U"<|startoftext|>", U"<|endoftext|>"};
  static constexpr std::u32string_view kContractions[] = {U"'s", U"'t", U"'re", U"'ve", U"'m", U"'ll", U"'d"};
  std::vector<std::u32string_view> pieces;
  std::size_t i = 0;
  while (i < s.size()) {
    std::size_t len = 0;
    for (auto word : kSpecials) {
      if ((len = matchFolded(s, i, word)) != 0) break;
    }
    if (len == 0 && s[i] == U'\'') {
      for (auto word : kContractions) {
        if ((len = matchFolded(s, i, word)) != 0) break;
      }
    }
    if (len == 0) {
      char32_t c = s[i];
      if (isLetter(c)) {
        len = 1;
        while (i + len < s.size() && isLetter(s[i + len])) ++len;
      } else if (isNumber(c)) {
        len = 1;
      } else if (!isSpace(c)) {
        len = 1;
        while (i + len < s.size() && !isSpace(s[i + len]) && !isLetter(s[i + len]) && !isNumber(s[i + len])) ++len;
      }
    }
    if (len == 0) {  // white space between pieces: findall skips it
      ++i;
      continue;
    }
    pieces.push_back(s.substr(i, len));
    i += len;
  }
  return pieces;
}

}  // namespace statim::diffusion::clip
