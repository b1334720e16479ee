#include "backends/llama/multimodal.h"

#include <algorithm>
#include <format>

#include <mtmd-helper.h>

#include "backends/media/audio.h"
#include "backends/media/image.h"
#include "core/json_util.h"

namespace statim::llama {
namespace {

constexpr std::int64_t kMaxPixels = 50'000'000;  // a bigger image is refused before it is decoded
constexpr double kMaxAudioSeconds = 30 * 60;

struct BitmapDeleter {
  void operator()(mtmd_bitmap* b) const { mtmd_bitmap_free(b); }
};
using BitmapPtr = std::unique_ptr<mtmd_bitmap, BitmapDeleter>;

}  // namespace

Result<std::shared_ptr<Multimodal>> Multimodal::load(const std::filesystem::path& mmproj, const llama_model* model,
                                                     int threads) {
  std::error_code ec;
  if (!std::filesystem::exists(mmproj, ec)) {
    return fail(Error::backend(std::format("projector file not found: {} (params.mmproj)", mmproj.string())));
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
      auto decoded = media::decodeImage(file->path, 3, kMaxPixels);
      if (!decoded) {
        return fail(Error{decoded.error().code,
                          std::format("input '{}' is not an image this model reads (PNG or JPEG): {}", ref.input,
                                      decoded.error().message),
                          "inputs." + ref.input});
      }
      bitmap.reset(mtmd_bitmap_init(static_cast<uint32_t>(decoded->width), static_cast<uint32_t>(decoded->height),
                                    decoded->pixels.data()));
    } else {
      auto pcm = audio::decodeFile(file->path, ref.input, mtmd_get_audio_sample_rate(ctx_), kMaxAudioSeconds);
      if (!pcm) return fail(pcm.error());
      // (libmtmd aborts the process on a clip of one sample.)
      if (pcm->samples.size() < static_cast<size_t>(pcm->rate / 100)) {
        return fail(Error::invalid(std::format("input '{}' is too short: at least 10 ms of audio", ref.input),
                                   "inputs." + ref.input));
      }
      bitmap.reset(mtmd_bitmap_init_from_audio(pcm->samples.size(), pcm->samples.data()));
    }
    if (!bitmap) return fail(Error::backend(std::format("libmtmd could not take input '{}'", ref.input)));
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
  std::unique_lock lock(mu_);
  int rc = mtmd_tokenize(ctx_, out.chunks.get(), &in, ptrs.data(), ptrs.size());
  lock.unlock();
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
    out.media.push_back({out.tokens.size(), k, c});
    out.tokens.insert(out.tokens.end(), k, kMediaToken);
  }
  // The last prompt position gives the logits of the first generated token: it must be text.
  if (out.tokens.empty() || out.tokens.back() == kMediaToken) {
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
