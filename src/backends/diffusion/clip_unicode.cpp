#include "backends/diffusion/clip_unicode.h"

#include <algorithm>

namespace statim::diffusion::unicode {
namespace {

bool inRanges(const Range* ranges, std::size_t count, char32_t c) {
  const Range* end = ranges + count;
  // First range whose upper bound is >= c; c is inside it iff its lower bound is <= c.
  const Range* it = std::lower_bound(ranges, end, c, [](const Range& r, char32_t v) { return r.hi < v; });
  return it != end && it->lo <= c;
}

}  // namespace

bool isLetter(char32_t c) { return inRanges(kLetters, kLettersCount, c); }
bool isNumber(char32_t c) { return inRanges(kNumbers, kNumbersCount, c); }
bool isSpace(char32_t c) { return inRanges(kSpaces, kSpacesCount, c); }

void appendLower(char32_t c, std::u32string& out) {
  if (c < 0x80) {  // the common case, without a search
    out.push_back(c >= U'A' && c <= U'Z' ? c + 32 : c);
    return;
  }
  if (c == 0x130) {  // LATIN CAPITAL LETTER I WITH DOT ABOVE -> "i" + COMBINING DOT ABOVE
    out.push_back(U'i');
    out.push_back(0x307);
    return;
  }
  const LowerRun* end = kLowerRuns + kLowerRunsCount;
  const LowerRun* it =
      std::lower_bound(kLowerRuns, end, c, [](const LowerRun& r, char32_t v) { return r.hi < v; });
  if (it != end && it->lo <= c && (c - it->lo) % static_cast<char32_t>(it->stride) == 0) {
    out.push_back(static_cast<char32_t>(static_cast<std::int32_t>(c) + it->delta));
  } else {
    out.push_back(c);
  }
}

const Entity* findEntity(std::string_view name) {
  const Entity* end = kHtmlEntities + kHtmlEntitiesCount;
  const Entity* it = std::lower_bound(kHtmlEntities, end, name,
                                      [](const Entity& e, std::string_view n) { return std::string_view(e.name) < n; });
  return it != end && std::string_view(it->name) == name ? it : nullptr;
}

std::u32string numericReference(std::uint64_t number) {
  const CharRef* end = kInvalidCharRefs + kInvalidCharRefsCount;
  const CharRef* it =
      std::lower_bound(kInvalidCharRefs, end, number, [](const CharRef& r, std::uint64_t v) { return r.number < v; });
  if (it != end && it->number == number) return std::u32string(1, it->replacement);
  if ((number >= 0xD800 && number <= 0xDFFF) || number > 0x10FFFF) return U"\uFFFD";
  auto c = static_cast<char32_t>(number);
  if (inRanges(kInvalidCodepoints, kInvalidCodepointsCount, c)) return {};
  return std::u32string(1, c);
}

std::u32string decodeUtf8(std::string_view text) {
  std::u32string out;
  out.reserve(text.size());
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  std::size_t n = text.size();
  std::size_t i = 0;
  while (i < n) {
    unsigned char b = s[i];
    if (b < 0x80) {
      out.push_back(b);
      ++i;
      continue;
    }
    int len = 0;
    char32_t cp = 0;
    char32_t min = 0;
    if (b >= 0xC2 && b <= 0xDF) len = 2, cp = b & 0x1F, min = 0x80;
    else if (b >= 0xE0 && b <= 0xEF) len = 3, cp = b & 0x0F, min = 0x800;
    else if (b >= 0xF0 && b <= 0xF4) len = 4, cp = b & 0x07, min = 0x10000;
    int k = 1;
    // Consume continuation bytes while they still can form a valid sequence; Python replaces
    // the maximal invalid prefix with one U+FFFD, and each stray byte with its own.
    for (; len > 0 && k < len && i + k < n; ++k) {
      unsigned char c = s[i + k];
      if ((c & 0xC0) != 0x80) break;
      char32_t next = (cp << 6) | (c & 0x3F);
      // Reject overlongs and surrogates / > U+10FFFF as early as the second byte, as CPython does.
      if (k == 1) {
        if ((len == 3 && b == 0xE0 && c < 0xA0) || (len == 3 && b == 0xED && c >= 0xA0) ||
            (len == 4 && b == 0xF0 && c < 0x90) || (len == 4 && b == 0xF4 && c >= 0x90))
          break;
      }
      cp = next;
    }
    if (len > 0 && k == len && cp >= min) {
      out.push_back(cp);
      i += static_cast<std::size_t>(len);
    } else {
      out.push_back(0xFFFD);
      i += static_cast<std::size_t>(std::max(k, 1));
    }
  }
  return out;
}

void appendUtf8(char32_t c, std::string& out) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

}  // namespace statim::diffusion::unicode
