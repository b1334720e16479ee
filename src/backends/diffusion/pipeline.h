// A Stable Diffusion text-to-image pipeline over a diffusers/optimum ONNX export folder
// (model_index.json, text_encoder[_2]/, unet/, vae_decoder/, tokenizer[_2]/, scheduler/), as
// diffusers' OnnxStableDiffusionPipeline and optimum's ORTStableDiffusionXLPipeline run it:
// CLIP prompt encoding, Euler(-ancestral) denoising with classifier-free guidance, VAE decode.
// Thread-safety: load() builds an immutable Pipeline whose ONNX sessions are shared; generate()
// may be called from several threads at once (each call keeps its own latents and noise).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backends/diffusion/clip_tokenizer.h"
#include "backends/diffusion/euler_scheduler.h"
#include "backends/diffusion/image_params.h"
#include "backends/diffusion/ort_model.h"
#include "statim/error.h"

namespace statim::diffusion {

// The prompt's conditioning for the UNet: [batch, 77, width] embeddings (batch 2 with guidance:
// the unconditional row first, as diffusers orders them) and, for SDXL, the pooled embeds.
struct Conditioning {
  std::vector<float> hidden;  // batch * seq * width
  std::int64_t batch = 1, seq = 77, width = 0;
  std::vector<float> pooled;  // batch * pooled_width (SDXL only)
  std::int64_t pooled_width = 0;
};

// Called after each denoising step (1-based) of an image; returns false to stop (cancellation).
using StepCallback = std::function<bool(int step, int steps)>;

class Pipeline {
 public:
  // Reads and checks the whole export; errors say which file is missing or what is wrong in it.
  static Result<std::unique_ptr<Pipeline>> load(const std::filesystem::path& dir, int threads);

  // The prompt (and negative prompt when guidance applies) through the text encoder(s).
  Result<Conditioning> encode(const ImageRequest& request) const;
  // One image: RGB bytes (height * width * 3, rows top to bottom), or nullopt when `on_step`
  // asked to stop. `seed` seeds the initial latents and the ancestral noise.
  Result<std::optional<std::vector<std::uint8_t>>> generate(const ImageRequest& request, const Conditioning& cond,
                                                            std::uint64_t seed, const StepCallback& on_step) const;

  bool xl() const { return xl_; }
  // For GET /models: the pipeline class, scheduler, dtypes, scaling factor.
  nlohmann::json describe() const;

 private:
  Pipeline() = default;
  Result<std::vector<std::int32_t>> tokens(const ClipTokenizer& tok, std::int32_t pad, const ImageRequest& q,
                                           bool guided) const;
  Result<std::vector<std::uint8_t>> decode(std::vector<float> latents, int width, int height) const;

  bool xl_ = false;
  std::string class_name_;
  std::string scheduler_class_;
  SchedulerConfig scheduler_;
  double scaling_factor_ = 0.18215;
  bool zeros_for_empty_negative_ = false;  // SDXL's force_zeros_for_empty_prompt
  std::optional<ClipTokenizer> tokenizer_, tokenizer_2_;
  std::int32_t pad_ = 0, pad_2_ = 0;
  std::unique_ptr<OrtModel> text_encoder_, text_encoder_2_, unet_, vae_decoder_;
  std::string hidden_1_, hidden_2_;  // which text encoder outputs feed the UNet
  std::int64_t latent_channels_ = 4;
};

}  // namespace statim::diffusion
