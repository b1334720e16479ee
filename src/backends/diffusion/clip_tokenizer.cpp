#include "backends/diffusion/clip_tokenizer.h"

#include <algorithm>
#include <array>
#include <climits>
#include <format>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string_view>

#include <nlohmann/json.hpp>

#include "backends/diffusion/clip_text.h"
#include "backends/diffusion/clip_unicode.h"

namespace statim::diffusion {
namespace {

constexpr std::string_view kStart = "<|startoftext|>";
constexpr std::string_view kEnd = "<|endoftext|>";
// Hugging Face reads merges.txt lines [1, 49152 - 256 - 2] (line 0 is "#version: ...").
constexpr std::size_t kMaxMerges = 49152 - 256 - 2;
// The BPE cache only saves work; bound it so a long-running server does not grow without limit.
constexpr std::size_t kMaxCacheEntries = 1 << 16;

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
template <typename V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

// GPT-2's reversible byte -> printable code point table: printable Latin-1 bytes map to
// themselves, the rest (controls, space, ...) to U+0100 onwards, in byte order.
std::array<std::string, 256> byteEncoder() {
  std::array<std::string, 256> table;
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    unicode::appendUtf8(printable ? static_cast<char32_t>(b) : next++, table[static_cast<std::size_t>(b)]);
  }
  return table;
}

Result<std::string> readFile(const std::filesystem::path& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(Error::invalid(std::format("cannot read the tokenizer's {} at {}", what, path.string())));
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

}  // namespace

struct ClipTokenizer::Tables {
  StringMap<std::int32_t> vocab;
  StringMap<int> ranks;  // "first second" -> merge rank
  std::array<std::string, 256> byte_encoder = byteEncoder();
  std::mutex cache_mutex;
  StringMap<std::vector<std::int32_t>> cache;  // byte-encoded piece -> ids

  std::int32_t idOrUnknown(std::string_view token, std::int32_t unk) const {
    auto it = vocab.find(token);
    return it == vocab.end() ? unk : it->second;
  }

  // Byte-level BPE of one pre-tokenised piece (already byte-encoded), with "</w>" on the last
  // symbol: repeatedly merge every occurrence of the adjacent pair with the lowest rank.
  std::vector<std::int32_t> bpe(const std::string& piece, std::int32_t unk) const {
    std::vector<std::string> word;
    for (std::size_t i = 0; i < piece.size();) {
      std::size_t len = 1;  // one UTF-8 encoded code point of the byte encoder's alphabet
      auto lead = static_cast<unsigned char>(piece[i]);
      if (lead >= 0xF0) len = 4;
      else if (lead >= 0xE0) len = 3;
      else if (lead >= 0xC0) len = 2;
      word.emplace_back(piece.substr(i, len));
      i += len;
    }
    if (word.empty()) return {};
    word.back() += "</w>";
    std::string key;
    while (word.size() > 1) {
      int best = INT_MAX;
      std::size_t best_at = 0;
      for (std::size_t i = 0; i + 1 < word.size(); ++i) {
        key.assign(word[i]).append(" ").append(word[i + 1]);
        auto it = ranks.find(key);
        if (it != ranks.end() && it->second < best) best = it->second, best_at = i;
      }
      if (best == INT_MAX) break;
      const std::string first = word[best_at], second = word[best_at + 1];
      std::vector<std::string> merged;
      merged.reserve(word.size());
      for (std::size_t i = 0; i < word.size();) {
        if (i + 1 < word.size() && word[i] == first && word[i + 1] == second) {
          merged.push_back(first + second);
          i += 2;
        } else {
          merged.push_back(std::move(word[i++]));
        }
      }
      word = std::move(merged);
    }
    std::vector<std::int32_t> ids;
    ids.reserve(word.size());
    for (const auto& symbol : word) ids.push_back(idOrUnknown(symbol, unk));
    return ids;
  }
};

Result<ClipTokenizer> ClipTokenizer::load(const std::filesystem::path& vocab_json,
                                          const std::filesystem::path& merges_txt) {
  auto tables = std::make_shared<Tables>();
  auto vocab_text = readFile(vocab_json, "vocab.json");
  if (!vocab_text) return fail(vocab_text.error());
  auto vocab = nlohmann::json::parse(*vocab_text, nullptr, false);
  if (vocab.is_discarded() || !vocab.is_object() || vocab.empty()) {
    return fail(Error::invalid(std::format("{} is not a JSON object of token -> id", vocab_json.string())));
  }
  for (const auto& [token, id] : vocab.items()) {
    if (!id.is_number_integer() || id.get<std::int64_t>() < 0 || id.get<std::int64_t>() > INT32_MAX) {
      return fail(Error::invalid(std::format("{}: the id of token {} is not a non-negative 32-bit integer",
                                             vocab_json.string(), nlohmann::json(token).dump())));
    }
    tables->vocab.emplace(token, id.get<std::int32_t>());
  }
  ClipTokenizer tok;
  for (auto [name, slot] : {std::pair{kStart, &tok.start_id_}, std::pair{kEnd, &tok.end_id_}}) {
    auto it = tables->vocab.find(name);
    if (it == tables->vocab.end()) {
      return fail(Error::invalid(std::format("{} has no {} token", vocab_json.string(), name)));
    }
    *slot = it->second;
  }

  auto merges_text = readFile(merges_txt, "merges.txt");
  if (!merges_text) return fail(merges_text.error());
  // Python's text.strip().split("\n")[1:...], each line .split() on white space.
  std::string_view rest = *merges_text;
  auto nextLine = [&rest]() -> std::optional<std::string_view> {
    if (rest.empty()) return std::nullopt;
    std::size_t nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1);
    return line;
  };
  auto isBlank = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; };
  nextLine();  // "#version: 0.2"
  std::vector<std::string_view> fields;
  for (std::size_t rank = 0; rank < kMaxMerges; ++rank) {
    auto line = nextLine();
    if (!line) break;
    fields.clear();
    for (std::size_t i = 0; i < line->size();) {
      while (i < line->size() && isBlank((*line)[i])) ++i;
      std::size_t start = i;
      while (i < line->size() && !isBlank((*line)[i])) ++i;
      if (i > start) fields.push_back(line->substr(start, i - start));
    }
    // A malformed line keeps its rank but can never match a pair (as in Hugging Face).
    if (fields.size() != 2) continue;
    // A repeated pair takes its last rank, as Python's dict(zip(merges, ranks)) does.
    tables->ranks.insert_or_assign(std::format("{} {}", fields[0], fields[1]), static_cast<int>(rank));
  }
  if (tables->ranks.empty()) {
    return fail(Error::invalid(std::format("{} has no merges (expected \"a b\" lines after the #version line)",
                                           merges_txt.string())));
  }
  // The special tokens are never split (Hugging Face seeds its BPE cache with them).
  tables->cache.emplace(std::string(kStart), std::vector<std::int32_t>{tok.start_id_});
  tables->cache.emplace(std::string(kEnd), std::vector<std::int32_t>{tok.end_id_});
  tok.tables_ = std::move(tables);
  return tok;
}

std::vector<std::int32_t> ClipTokenizer::encode(std::string_view text) const {
  return encodeLimited(text, SIZE_MAX);
}

std::vector<std::int32_t> ClipTokenizer::encodeLimited(std::string_view text, std::size_t limit) const {
  std::vector<std::int32_t> ids;
  if (!tables_) return ids;
  // Hugging Face splits the raw text on the special tokens before cleaning: they map straight to
  // their ids, and the text between them is cleaned and tokenized on its own.
  auto encodeChunk = [&](std::string_view chunk) {
    std::u32string cleaned = clip::cleanText(chunk);
    std::string piece;
    for (std::u32string_view word : clip::preTokenize(cleaned)) {
      if (ids.size() >= limit) return;
      std::string utf8;
      for (char32_t c : word) unicode::appendUtf8(c, utf8);
      piece.clear();
      for (unsigned char b : utf8) piece += tables_->byte_encoder[b];
      {
        std::lock_guard lock(tables_->cache_mutex);
        auto it = tables_->cache.find(piece);
        if (it != tables_->cache.end()) {
          ids.insert(ids.end(), it->second.begin(), it->second.end());
          continue;
        }
      }
      auto piece_ids = tables_->bpe(piece, end_id_);  // unknown symbols -> <|endoftext|>, HF's unk
      ids.insert(ids.end(), piece_ids.begin(), piece_ids.end());
      std::lock_guard lock(tables_->cache_mutex);
      if (tables_->cache.size() >= kMaxCacheEntries) {
        std::erase_if(tables_->cache, [](const auto& kv) { return kv.first != kStart && kv.first != kEnd; });
      }
      tables_->cache.emplace(piece, std::move(piece_ids));
    }
  };
  std::size_t pos = 0;
  while (pos <= text.size() && ids.size() < limit) {
    std::size_t next = text.size(), special_len = 0;
    std::int32_t special_id = 0;
    for (auto [name, id] : {std::pair{kStart, start_id_}, std::pair{kEnd, end_id_}}) {
      std::size_t at = text.find(name, pos);
      if (at < next) next = at, special_len = name.size(), special_id = id;
    }
    encodeChunk(text.substr(pos, next - pos));
    if (special_len == 0) break;
    if (ids.size() < limit) ids.push_back(special_id);
    pos = next + special_len;
  }
  if (ids.size() > limit) ids.resize(limit);
  return ids;
}

std::vector<std::int32_t> ClipTokenizer::encodeForModel(std::string_view text, std::int32_t pad_id,
                                                        std::size_t length) const {
  length = std::max<std::size_t>(length, 2);
  // Tokens past length - 2 are cut anyway: stop tokenizing there (bounds the work on long prompts).
  std::vector<std::int32_t> ids = encodeLimited(text, length - 2);
  ids.insert(ids.begin(), start_id_);
  ids.push_back(end_id_);
  ids.resize(length, pad_id);
  return ids;
}

std::int32_t ClipTokenizer::startId() const { return start_id_; }
std::int32_t ClipTokenizer::endId() const { return end_id_; }

std::optional<std::int32_t> ClipTokenizer::idOf(std::string_view token) const {
  if (!tables_) return std::nullopt;
  auto it = tables_->vocab.find(token);
  if (it == tables_->vocab.end()) return std::nullopt;
  return it->second;
}

}  // namespace statim::diffusion
