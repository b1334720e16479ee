// Unicode data for the CLIP tokenizer (internal to the diffusion backend): the \p{L}, \p{N} and
// \s classes of CLIP's pre-tokenisation regex, Python's str.lower() and the HTML5 named
// character references of html.unescape(). The tables are generated from Python's
// unicodedata / html.entities by scripts/gen_clip_unicode_tables.py (clip_unicode_tables.cpp).
// All functions are pure and thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace statim::diffusion::unicode {

struct Range {
  char32_t lo, hi;  // inclusive
};
// Code points lo, lo + stride, ..., hi lower-case to themselves + delta.
struct LowerRun {
  char32_t lo, hi;
  std::int32_t delta;
  std::int32_t stride;  // 1 or 2
};
struct Entity {
  const char* name;  // e.g. "amp;" or "amp" (HTML5 lists some names without the ';')
  char32_t first, second;  // second == 0 when the reference is one code point
};

extern const Range kLetters[];
extern const std::size_t kLettersCount;
extern const Range kNumbers[];
extern const std::size_t kNumbersCount;
extern const Range kSpaces[];
extern const std::size_t kSpacesCount;
extern const LowerRun kLowerRuns[];
extern const std::size_t kLowerRunsCount;
struct CharRef {
  char32_t number, replacement;  // html.unescape's fix-ups of numeric references (&#128; -> U+20AC)
};

extern const Entity kHtmlEntities[];  // sorted by name (byte order)
extern const std::size_t kHtmlEntitiesCount;
extern const CharRef kInvalidCharRefs[];  // sorted by number
extern const std::size_t kInvalidCharRefsCount;
extern const Range kInvalidCodepoints[];  // numeric references html.unescape drops
extern const std::size_t kInvalidCodepointsCount;

bool isLetter(char32_t c);  // \p{L}
bool isNumber(char32_t c);  // \p{N}
bool isSpace(char32_t c);   // \s (== Python's str.isspace)
// Appends Python's chr(c).lower() (one code point, or two for U+0130).
void appendLower(char32_t c, std::u32string& out);
// The HTML5 named reference `name` (ASCII, with its ';' if any), or nullptr.
const Entity* findEntity(std::string_view name);
// The text html.unescape() puts for the numeric reference &#number; (empty when it drops it).
std::u32string numericReference(std::uint64_t number);

// UTF-8 <-> code points. Invalid or truncated sequences, overlong forms and surrogates decode
// to U+FFFD, one per bad byte (what Python's decode(errors="replace") does).
std::u32string decodeUtf8(std::string_view text);
void appendUtf8(char32_t c, std::string& out);

}  // namespace statim::diffusion::unicode
