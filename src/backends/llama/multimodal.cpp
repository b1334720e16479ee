#include "backends/llama/multimodal.h"

#include <algorithm>
#include <format>
#include <optional>

#include <gguf.h>
#include <mtmd-helper.h>

#include "backends/media/audio.h"
#include "backends/media/image.h"
#include "core/json_util.h"

namespace statim::llama {
namespace {

// Bigger images are refused before they are decoded (a small PNG can decode to gigabytes):
// 16 MP is 4,000 x 4,000, and projectors read a few hundred thousand pixels at most.
constexpr std::int64_t kMaxPixels = 16'000'000;
constexpr std::int64_t kMaxPixelsPerPrompt = 64'000'000;
constexpr double kMaxAudioSeconds = 30 * 60;

struct BitmapDeleter {
  void operator()(mtmd_bitmap* b) const { mtmd_bitmap_free(b); }
};
using BitmapPtr = std::unique_ptr<mtmd_bitmap, BitmapDeleter>;

// FNV-1a, 64 bits.
std::uint64_t fnv1a(std::string_view bytes, std::uint64_t h = 14695981039346656037ull) {
  for (unsigned char c : bytes) h = (h ^ c) * 1099511628211ull;
  return h;
}

// What identifies a medium's content: its input's SHA-256 (stored files always have one), else
// a hash of the decoded samples.
std::uint64_t contentHash(const JobFile& f, std::string_view decoded) {
  return f.sha256.empty() ? fnv1a(decoded) : fnv1a(f.sha256);
}

// The size of the embeddings the projector makes (its GGUF's projection_dim), when it says; read
// before libmtmd opens it, which on a mismatch fails without freeing what it loaded.
std::optional<std::uint32_t> projectionDim(const std::filesystem::path& mmproj) {
  gguf_init_params params{.no_alloc = true, .ctx = nullptr};
  gguf_context* g = gguf_init_from_file(mmproj.c_str(), params);
  if (!g) return std::nullopt;
  std::optional<std::uint32_t> dim;
  for (const char* key : {"clip.vision.projection_dim", "clip.audio.projection_dim"}) {
    int64_t k = gguf_find_key(g, key);
    if (k >= 0 && gguf_get_kv_type(g, k) == GGUF_TYPE_UINT32) {
      dim = gguf_get_val_u32(g, k);
      break;
    }
  }
  gguf_free(g);
  return dim;
}

}  // namespace

llama_token mediaToken(std::uint64_t content_hash, size_t position) {
  // splitmix64 of (hash, position): a different id at each position of each medium.
  std::uint64_t z = content_hash + 0x9e3779b97f4a7c15ull * (position + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return -1 - static_cast<llama_token>(z & 0x3fffffff);
}

Result<std::shared_ptr<Multimodal>> Multimodal::load(const std::filesystem::path& mmproj, const llama_model* model,
                                                     int threads) {
  std::error_code ec;
  if (!std::filesystem::exists(mmproj, ec)) {
    return fail(Error::backend(std::format("projector file not found: {} (params.mmproj)", mmproj.string())));
  }
  if (auto dim = projectionDim(mmproj); dim && static_cast<int>(*dim) != llama_model_n_embd_inp(model)) {
    return fail(
        Error::backend(std::format("the projector {} makes embeddings of {} values but this model reads {} "
                                   "(an mmproj made for another model)",
                                   mmproj.string(), *dim, llama_model_n_embd_inp(model))));
  }
  mtmd_helper_log_set(ggmlLogToOurs, nullptr);
  auto p = mtmd_context_params_default();
  p.use_gpu = false;
  p.print_timings = false;
  p.n_threads = threads;
  p.warmup = false;
  mtmd_context* ctx = mtmd_init_from_file(mmproj.c_str(), model, p);
  if (!ctx) {
    return fail(Error::backend(std::format(
        "libmtmd could not load the projector {} (not an mmproj GGUF, or not made for this model; see the log)",
        mmproj.string())));
  }
  std::shared_ptr<Multimodal> mm(new Multimodal(ctx));
  if (mtmd_decode_use_mrope(ctx)) {
    return fail(Error::backend(std::format(
        "the projector {} places media with M-RoPE positions (the Qwen2-VL family), which statim does not serve yet",
        mmproj.string())));
  }
  return mm;
}

Multimodal::~Multimodal() { mtmd_free(ctx_); }

bool Multimodal::vision() const { return mtmd_support_vision(ctx_); }
bool Multimodal::audio() const { return mtmd_support_audio(ctx_); }
const char* Multimodal::marker() { return mtmd_default_marker(); }

Result<Prompt> Multimodal::tokenize(const std::string& text, const std::vector<MediaRef>& media,
                                    const std::vector<JobFile>& inputs) const {
  std::vector<BitmapPtr> bitmaps;
  std::uint64_t hash = 0;  // the content's, for the chunks' ids
  std::int64_t pixels_left = kMaxPixelsPerPrompt;
  for (const MediaRef& ref : media) {
    auto file = std::ranges::find(inputs, ref.input, &JobFile::name);
    if (file == inputs.end()) {
      return fail(Error::invalid(std::format("the messages name the input '{}', which the job does not have", ref.input),
                                 "messages"));
    }
    // Decoded here, not by libmtmd's helper: given bytes it cannot read, that helper starts an
    // ffprobe process to look for a video in them.
    const bool image = ref.kind == "image";
    if (image ? !vision() : !audio()) {
      return fail(Error::invalid(std::format("this model's projector takes no {} (input '{}')",
                                             image ? "images" : "audio", ref.input),
                                 "inputs." + ref.input));
    }
    BitmapPtr bitmap;
    if (image) {
      auto decoded = media::decodeImage(file->path, 3, std::min(kMaxPixels, pixels_left));
      if (!decoded) {
        return fail(Error{decoded.error().code,
                          std::format("input '{}' is not an image this model reads (PNG or JPEG): {}", ref.input,
                                      decoded.error().message),
                          "inputs." + ref.input});
      }
      pixels_left -= static_cast<std::int64_t>(decoded->width) * decoded->height;
      bitmap.reset(mtmd_bitmap_init(static_cast<uint32_t>(decoded->width), static_cast<uint32_t>(decoded->height),
                                    decoded->pixels.data()));
      hash = contentHash(
          *file, std::string_view(reinterpret_cast<const char*>(decoded->pixels.data()), decoded->pixels.size()));
    } else {
      auto pcm = audio::decodeFile(file->path, ref.input, mtmd_get_audio_sample_rate(ctx_), kMaxAudioSeconds);
      if (!pcm) return fail(pcm.error());
      // A clip shorter than a second is padded with silence to one: libmtmd's preprocessors abort
      // the process on clips of a few samples (whisper-style encoders pad to 30 s anyway).
      if (pcm->samples.size() < static_cast<size_t>(pcm->rate))
        pcm->samples.resize(static_cast<size_t>(pcm->rate), 0.0f);
      bitmap.reset(mtmd_bitmap_init_from_audio(pcm->samples.size(), pcm->samples.data()));
      hash = contentHash(*file, std::string_view(reinterpret_cast<const char*>(pcm->samples.data()),
                                                 pcm->samples.size() * sizeof(float)));
    }
    if (!bitmap) return fail(Error::backend(std::format("libmtmd could not take input '{}'", ref.input)));
    // (Every chunk libmtmd makes of it - some projectors cut an image in slices - carries this id.)
    mtmd_bitmap_set_id(bitmap.get(), std::format("{:016x}", hash).c_str());
    bitmaps.push_back(std::move(bitmap));
  }
  std::vector<const mtmd_bitmap*> ptrs;
  for (auto& b : bitmaps) ptrs.push_back(b.get());
  Prompt out;
  out.chunks.reset(mtmd_input_chunks_init(), ChunksDeleter{});
  mtmd_input_text in{text.c_str(), text.size(), true, true};
  size_t markers = 0;
  for (size_t at = text.find(marker()); at != std::string::npos; at = text.find(marker(), at + 1)) ++markers;
  if (markers != media.size()) {
    return fail(Error::invalid(std::format("the messages hold the text '{}', which stands for an image or audio "
                                           "here; remove it from the text",
                                           marker()),
                               "messages"));
  }
  int rc = mtmd_tokenize(ctx_, out.chunks.get(), &in, ptrs.data(), ptrs.size());  // (thread-safe, says mtmd.h)
  if (rc != 0) return fail(Error::invalid("an image or audio input could not be preprocessed (see the log)", "inputs"));
  const size_t n = mtmd_input_chunks_size(out.chunks.get());
  for (size_t i = 0; i < n; ++i) {
    const mtmd_input_chunk* c = mtmd_input_chunks_get(out.chunks.get(), i);
    if (mtmd_input_chunk_get_type(c) == MTMD_INPUT_CHUNK_TYPE_TEXT) {
      size_t k = 0;
      const llama_token* t = mtmd_input_chunk_get_tokens_text(c, &k);
      out.tokens.insert(out.tokens.end(), t, t + k);
      continue;
    }
    size_t k = mtmd_input_chunk_get_n_tokens(c);
    const char* id = mtmd_input_chunk_get_id(c);
    // (The chunk's ordinal too: the slices of one image are different content.)
    const std::uint64_t chunk_hash = fnv1a(id ? id : "") ^ (0xff51afd7ed558ccdull * (out.media.size() + 1));
    out.media.push_back({out.tokens.size(), k, c});
    for (size_t j = 0; j < k; ++j) out.tokens.push_back(mediaToken(chunk_hash, j));
  }
  // The last prompt position gives the logits of the first generated token: it must be text.
  if (out.tokens.empty() || isMediaToken(out.tokens.back())) {
    return fail(Error::invalid("the prompt ends with an image or audio; the chat template must add text after it",
                               "messages"));
  }
  return out;
}

Result<void> Multimodal::decode(llama_context* ctx, const mtmd_input_chunk* chunk, int seq, int n_past,
                                int n_batch) const {
  std::lock_guard lock(mu_);
  llama_pos next = 0;
  int rc = mtmd_helper_eval_chunk_single(ctx_, ctx, chunk, n_past, seq, n_batch, false, &next);
  if (rc != 0) return fail(Error::backend(std::format("encoding an image or audio input failed (libmtmd code {})", rc)));
  return ok();
}

nlohmann::json withMediaMarkers(const nlohmann::json& messages, std::vector<MediaRef>& media) {
  nlohmann::json out = messages;
  for (auto& m : out) {
    auto c = m.find("content");
    if (c == m.end() || !c->is_array()) continue;
    std::string text;
    for (const auto& part : *c) {
      std::string type = stringAt(part, "type");
      if (type == "text") {
        text += part.value("text", "");
      } else {
        text += Multimodal::marker();
        media.push_back({type, part.value("input", "")});
      }
    }
    *c = std::move(text);
  }
  return out;
}

}  // namespace statim::llama
