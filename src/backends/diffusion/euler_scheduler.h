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
Result<SchedulerConfig> parseSchedulerConfig(const nlohmann::json& scheduler_config);

// Seeded, reproducible standard normal draws (same seed -> same sequence on every machine).
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
  // `steps` >= 1 and <= config.num_train_timesteps (checked by the caller; clamped here).
  EulerScheduler(SchedulerConfig config, int steps);
  const std::vector<double>& timesteps() const;  // `steps` values, the UNet's timestep input
  const std::vector<double>& sigmas() const;     // steps + 1 values, the last 0
  double initNoiseSigma() const;                 // what initial noise is multiplied by
  double inputScale(int step) const;             // scale_model_input: 1 / sqrt(sigma^2 + 1)
  // One step: `sample` (the latents, in place) from the model output at step index `step`.
  // The ancestral variant draws its noise from `noise`.
  void step(std::span<const float> model_output, int step, std::span<float> sample, Noise& noise) const;

 private:
  SchedulerConfig config_;
  std::vector<double> timesteps_;
  std::vector<double> sigmas_;
  double init_noise_sigma_ = 1.0;
};

}  // namespace statim::diffusion
