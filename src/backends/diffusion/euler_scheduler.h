// diffusers' EulerDiscreteScheduler and EulerAncestralDiscreteScheduler (the samplers of
// SD 1.5, SD-Turbo and SDXL-Turbo exports), plus the seeded Gaussian noise they consume.
// Thread-safety: an EulerScheduler is immutable after construction (step() is const and keeps
// no state); a Noise is a sequential generator owned by one thread.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "statim/error.h"

namespace statim::diffusion {

struct SchedulerConfig {           // from scheduler/scheduler_config.json (diffusers names)
  int num_train_timesteps = 1000;
  double beta_start = 0.00085, beta_end = 0.012;
  std::string beta_schedule = "scaled_linear";   // "linear" | "scaled_linear"
  std::string timestep_spacing = "leading";      // "linspace" | "leading" | "trailing"
  int steps_offset = 1;
  std::string prediction_type = "epsilon";       // "epsilon" | "v_prediction"
  bool ancestral = false;                        // true for EulerAncestralDiscreteScheduler
};
// Unknown/unsupported values (karras sigmas, other beta schedules, other class names) are errors
// naming the key. `class_name` in the JSON picks `ancestral`.
// Details: the class key is diffusers' "_class_name" ("class_name" is accepted too):
// EulerDiscreteScheduler or EulerAncestralDiscreteScheduler. A key that is absent (or null) takes
// diffusers' constructor default, as from_pretrained does (1000, 0.0001, 0.02, "linear",
// "linspace", 0, "epsilon"), not this struct's SD defaults. Keys the Euler schedulers ignore in
// diffusers (clip_sample, set_alpha_to_one, _diffusers_version, ...) are ignored here too.
// Errors are kInvalidArgument with `field` = the key.
Result<SchedulerConfig> parseSchedulerConfig(const nlohmann::json& scheduler_config);

// Seeded, reproducible standard normal draws (same seed -> same sequence on every machine).
// The generator, fixed for good (changing it changes every seeded image): SplitMix64 gives
// 64-bit words; two words make u1 = ((w1 >> 11) + 1) * 2^-53 in (0, 1] and u2 = (w2 >> 11) * 2^-53;
// Box-Muller in double gives r*cos(2 pi u2) (returned first) and r*sin(2 pi u2) (next), with
// r = sqrt(-2 ln u1), each rounded to float. tests/fixtures/euler_reference.py has a Python copy.
class Noise {
 public:
  explicit Noise(std::uint64_t seed);
  float next();
  void fill(std::span<float> out);

 private:
  std::uint64_t state_;
  float spare_ = 0.0f;      // Box-Muller makes two draws; the second waits here
  bool has_spare_ = false;
};

class EulerScheduler {  // diffusers' EulerDiscreteScheduler / EulerAncestralDiscreteScheduler
 public:
  // `steps` is clamped to 1..config.num_train_timesteps (the caller validates the request).
  // The numbers follow diffusers on CPU: float32 betas/alphas_cumprod/sigmas as torch makes
  // them, sigmas interpolated in double and stored as float32 values. For "trailing" spacing,
  // diffusers' np.arange can yield steps + 1 timesteps (e.g. 61 steps: an extra one at -1);
  // we keep exactly `steps`.
  EulerScheduler(SchedulerConfig config, int steps);
  const std::vector<double>& timesteps() const;  // `steps` values, the UNet's timestep input
  const std::vector<double>& sigmas() const;     // steps + 1 values, the last 0
  double initNoiseSigma() const;                 // what initial noise is multiplied by
  double inputScale(int step) const;             // scale_model_input: 1 / sqrt(sigma^2 + 1)
  // One step: `sample` (the latents, in place) from the model output at step index `step`.
  // The ancestral variant draws its noise from `noise`.
  // Details: arithmetic in float32 as diffusers does; the ancestral variant draws exactly
  // sample.size() values, in element order, even at the last step (where sigma_up is 0).
  // Preconditions (programming errors, throw std::invalid_argument): 0 <= step < steps,
  // model_output.size() == sample.size().
  void step(std::span<const float> model_output, int step, std::span<float> sample, Noise& noise) const;

 private:
  SchedulerConfig config_;
  std::vector<double> timesteps_;
  std::vector<double> sigmas_;
  double init_noise_sigma_ = 1.0;
};

}  // namespace statim::diffusion
