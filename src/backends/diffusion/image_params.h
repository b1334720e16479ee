// The params of an `image` job and the manifest's [params] of a diffusion model: validation (every
// error names the field and the rule) and the effective request with the model's defaults.
// Pure functions, thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "statim/error.h"

namespace statim::diffusion {

// A model's limits and defaults, from its manifest's [params].
struct ImageLimits {
  int threads = 0;  // ONNX Runtime intra-op threads per session (0: its default)
  int default_width = 512, default_height = 512;
  int max_width = 1024, max_height = 1024;
  int default_steps = 1, max_steps = 50;
  double default_guidance_scale = 0.0;
};

// What one job asks for, defaults applied.
struct ImageRequest {
  std::string prompt;
  std::string negative_prompt;
  int width = 512, height = 512;
  int steps = 1;
  double guidance_scale = 0.0;
  std::uint64_t seed = 0;
  int num_images = 1;
};

inline constexpr std::int64_t kMaxSeed = 4294967295;  // as llama's seed: exact in every JSON client
inline constexpr int kMaxSide = 4096;                          // absolute bound; the manifest lowers it
inline constexpr int kMaxSteps = 1000;                         // the schedulers' training timesteps

// The manifest's [params]: threads, default_/max_ width, height, steps, default_guidance_scale.
Result<ImageLimits> parseLimits(const nlohmann::json& params);

// Checks a job's params without the model (types, ranges, multiples of 8, unknown fields);
// errors name "params.<field>".
Result<void> validateImageParams(const nlohmann::json& params);
// The params of an image job (params::describe), with the manifest's defaults and limits.
nlohmann::json imageParamsSchema(const nlohmann::json& manifest_params);

// Checks them against the model's limits and applies its defaults. `seed` is used when the job
// names none (the caller draws it at random).
Result<ImageRequest> resolveImageRequest(const std::string& prompt, const nlohmann::json& params,
                                         const ImageLimits& limits, std::uint64_t seed);

}  // namespace statim::diffusion
