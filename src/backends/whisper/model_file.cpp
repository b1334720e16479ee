#include "backends/whisper/model_file.h"

#include <format>
#include <fstream>
#include <string>

#include <ggml.h>

namespace statim::whisper_file {
namespace {

constexpr std::uint32_t kGgmlMagic = 0x67676d6c;  // "ggml", little-endian

class Reader {
 public:
  Reader(const std::filesystem::path& path, std::uintmax_t size) : in_(path, std::ios::binary), size_(size) {}
  bool ok() const { return static_cast<bool>(in_); }
  template <typename T>
  bool read(T& v) {
    return static_cast<bool>(in_.read(reinterpret_cast<char*>(&v), sizeof v));
  }
  bool read(std::string& s, size_t n) {
    s.resize(n);
    return static_cast<bool>(in_.read(s.data(), static_cast<std::streamsize>(n)));
  }
  // Skips n bytes; false when fewer are left.
  bool skip(std::uintmax_t n) {
    if (n > left()) return false;
    in_.seekg(static_cast<std::streamoff>(n), std::ios::cur);
    return static_cast<bool>(in_);
  }
  std::uintmax_t left() {
    auto at = static_cast<std::uintmax_t>(in_.tellg());
    return at <= size_ ? size_ - at : 0;
  }

 private:
  std::ifstream in_;
  std::uintmax_t size_;
};

}  // namespace

Result<Header> inspect(const std::filesystem::path& path) {
  std::error_code ec;
  auto size = std::filesystem::file_size(path, ec);
  if (ec) return fail(Error::notFound(std::format("model file not found: {}", path.string())));
  Reader r(path, size);
  if (!r.ok()) return fail(Error::backend(std::format("cannot read model file {}", path.string())));
  auto bad = [&](std::string what) { return fail(Error::backend(std::format("{}: {}", path.string(), what))); };

  std::uint32_t magic = 0;
  if (!r.read(magic) || magic != kGgmlMagic) return bad("not a ggml whisper model (bad magic; expected a ggml-*.bin file)");
  Header h;
  for (std::int32_t* v : {&h.n_vocab, &h.n_audio_ctx, &h.n_audio_state, &h.n_audio_head, &h.n_audio_layer, &h.n_text_ctx,
                          &h.n_text_state, &h.n_text_head, &h.n_text_layer, &h.n_mels, &h.ftype}) {
    if (!r.read(*v)) return bad("truncated in the header");
  }
  auto in = [](std::int32_t v, std::int32_t lo, std::int32_t hi) { return v >= lo && v <= hi; };
  if (!in(h.n_vocab, 1, 1 << 20) || !in(h.n_audio_ctx, 1, 1 << 16) || !in(h.n_audio_state, 1, 1 << 16) ||
      !in(h.n_audio_head, 1, 1024) || !in(h.n_audio_layer, 1, 256) || !in(h.n_text_ctx, 1, 1 << 16) ||
      !in(h.n_text_state, 1, 1 << 16) || !in(h.n_text_head, 1, 1024) || !in(h.n_text_layer, 1, 256) ||
      !in(h.n_mels, 1, 1024) || h.n_audio_state != h.n_text_state) {
    return bad("implausible header values (not a whisper model, or a damaged one)");
  }

  std::int32_t n_mel = 0, n_fft = 0;
  if (!r.read(n_mel) || !r.read(n_fft) || !in(n_mel, 1, 1024) || !in(n_fft, 1, 1 << 16) ||
      !r.skip(static_cast<std::uintmax_t>(n_mel) * static_cast<std::uintmax_t>(n_fft) * sizeof(float))) {
    return bad("truncated or damaged mel filters");
  }
  if (!r.read(h.n_tokens) || !in(h.n_tokens, 0, h.n_vocab)) return bad("damaged vocabulary size");
  for (std::int32_t i = 0; i < h.n_tokens; ++i) {
    std::uint32_t len = 0;
    if (!r.read(len) || !r.skip(len)) return bad(std::format("truncated in the vocabulary (token {} of {})", i, h.n_tokens));
  }

  while (r.left() > 0) {
    std::int32_t n_dims = 0, name_len = 0, type = 0;
    if (!r.read(n_dims) || !r.read(name_len) || !r.read(type)) return bad("truncated in a tensor header");
    if (!in(n_dims, 1, 4) || !in(name_len, 1, 1024) || !in(type, 0, GGML_TYPE_COUNT - 1) ||
        ggml_blck_size(static_cast<ggml_type>(type)) <= 0) {
      return bad(std::format("damaged tensor record #{}", h.tensors + 1));
    }
    std::uintmax_t elements = 1;
    for (int i = 0; i < n_dims; ++i) {
      std::int32_t ne = 0;
      if (!r.read(ne) || ne <= 0) return bad(std::format("damaged shape of tensor record #{}", h.tensors + 1));
      elements *= static_cast<std::uintmax_t>(ne);
    }
    std::string name;
    if (!r.read(name, static_cast<size_t>(name_len))) return bad("truncated in a tensor name");
    auto t = static_cast<ggml_type>(type);
    std::uintmax_t bytes = elements * ggml_type_size(t) / static_cast<std::uintmax_t>(ggml_blck_size(t));
    if (!r.skip(bytes)) {
      return bad(std::format("truncated: tensor '{}' needs {} bytes, {} are left", name, bytes, r.left()));
    }
    ++h.tensors;
  }
  if (h.tensors == 0) {
    return bad(std::format("has a whisper header, mel filters and vocabulary but no weights (0 of {} tensors): "
                           "not a usable model",
                           h.expected_tensors()));
  }
  if (h.tensors != h.expected_tensors()) {
    return bad(std::format("has {} tensors; a whisper model with {} encoder and {} decoder layers has {}", h.tensors,
                           h.n_audio_layer, h.n_text_layer, h.expected_tensors()));
  }
  return h;
}

}  // namespace statim::whisper_file
