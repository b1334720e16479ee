#include "backends/diffusion/euler_scheduler.h"

#include <algorithm>
#include <cmath>
#include <format>
#include <initializer_list>
#include <numbers>
#include <stdexcept>

#include <nlohmann/json.hpp>

namespace statim::diffusion {
namespace {

using nlohmann::json;

std::unexpected<Error> bad(std::string_view key, std::string_view rule) {
  return fail(Error::invalid(std::format("scheduler config: '{}' {}", key, rule), std::string(key)));
}

// The value of `key`, or nullptr when absent or null (diffusers then uses its default).
const json* find(const json& obj, std::string_view key) {
  auto it = obj.find(key);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}

Result<void> readString(const json& obj, std::string_view key, std::initializer_list<std::string_view> allowed,
                        std::string& out) {
  const json* v = find(obj, key);
  if (!v) return ok();
  std::string list;
  for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
  if (!v->is_string()) return bad(key, std::format("must be a string, one of: {}", list));
  const auto& s = v->get_ref<const std::string&>();
  if (std::find(allowed.begin(), allowed.end(), s) == allowed.end()) {
    return bad(key, std::format("must be one of: {} (got \"{}\", which is not supported)", list, s));
  }
  out = s;
  return ok();
}

Result<void> readInt(const json& obj, std::string_view key, int min, int max, int& out) {
  const json* v = find(obj, key);
  if (!v) return ok();
  // Exports sometimes write integers as 1.0: accept integral floats as Python would.
  if (!v->is_number() || std::floor(v->get<double>()) != v->get<double>() || v->get<double>() < min ||
      v->get<double>() > max) {
    return bad(key, std::format("must be an integer between {} and {}", min, max));
  }
  out = static_cast<int>(v->get<double>());
  return ok();
}

Result<void> readBeta(const json& obj, std::string_view key, double& out) {
  const json* v = find(obj, key);
  if (!v) return ok();
  if (!v->is_number() || !(v->get<double>() > 0.0 && v->get<double>() < 1.0)) {
    return bad(key, "must be a number greater than 0 and less than 1");
  }
  out = v->get<double>();
  return ok();
}

// Options that would change the sigmas or timesteps in ways this scheduler does not implement.
Result<void> mustBeOff(const json& obj, std::string_view key) {
  const json* v = find(obj, key);
  if (v && !(v->is_boolean() && !v->get<bool>())) return bad(key, "is not supported (only false)");
  return ok();
}

// torch.linspace(start, end, n, dtype=float32) on CPU: float arithmetic, symmetric from both ends.
std::vector<float> linspaceF32(double start_d, double end_d, int n) {
  auto start = static_cast<float>(start_d), end = static_cast<float>(end_d);
  if (n == 1) return {start};
  float step = (end - start) / static_cast<float>(n - 1);
  std::vector<float> out(static_cast<std::size_t>(n));
  int half = n / 2;
  for (int i = 0; i < n; ++i) {
    out[static_cast<std::size_t>(i)] =
        i < half ? start + step * static_cast<float>(i) : end - step * static_cast<float>(n - 1 - i);
  }
  return out;
}

// The training schedule's sigmas, sqrt((1 - alphas_cumprod) / alphas_cumprod), in float32.
std::vector<float> trainSigmas(const SchedulerConfig& c) {
  std::vector<float> betas;
  if (c.beta_schedule == "linear") {
    betas = linspaceF32(c.beta_start, c.beta_end, c.num_train_timesteps);
  } else {  // scaled_linear
    betas = linspaceF32(std::sqrt(c.beta_start), std::sqrt(c.beta_end), c.num_train_timesteps);
    for (float& b : betas) b = b * b;
  }
  std::vector<float> sigmas(betas.size());
  double cumprod = 1.0;  // torch's CPU cumprod accumulates float32 in double
  for (std::size_t i = 0; i < betas.size(); ++i) {
    cumprod *= static_cast<double>(1.0f - betas[i]);
    auto a = static_cast<float>(cumprod);
    sigmas[i] = std::sqrt((1.0f - a) / a);
  }
  return sigmas;
}

// np.interp(t, arange(n), fp): linear, clamped at both ends.
double interp(double t, const std::vector<float>& fp) {
  auto last = static_cast<double>(fp.size() - 1);
  if (t <= 0) return fp.front();
  if (t >= last) return fp.back();
  auto j = static_cast<std::size_t>(std::floor(t));
  double slope = static_cast<double>(fp[j + 1]) - static_cast<double>(fp[j]);
  return slope * (t - static_cast<double>(j)) + static_cast<double>(fp[j]);
}

}  // namespace

Result<SchedulerConfig> parseSchedulerConfig(const json& cfg) {
  if (!cfg.is_object()) return fail(Error::invalid("scheduler config: must be a JSON object", "scheduler_config"));
  // diffusers' constructor defaults (what from_pretrained uses for a missing key).
  SchedulerConfig c{.num_train_timesteps = 1000,
                    .beta_start = 0.0001,
                    .beta_end = 0.02,
                    .beta_schedule = "linear",
                    .timestep_spacing = "linspace",
                    .steps_offset = 0,
                    .prediction_type = "epsilon",
                    .ancestral = false};
  std::string class_key = cfg.contains("_class_name") ? "_class_name" : "class_name";
  std::string class_name = "EulerDiscreteScheduler";
  if (auto r = readString(cfg, class_key, {"EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler"}, class_name);
      !r)
    return fail(r.error());
  c.ancestral = class_name == "EulerAncestralDiscreteScheduler";

  for (auto r : {readInt(cfg, "num_train_timesteps", 2, 100000, c.num_train_timesteps),
                 readBeta(cfg, "beta_start", c.beta_start), readBeta(cfg, "beta_end", c.beta_end),
                 readString(cfg, "beta_schedule", {"linear", "scaled_linear"}, c.beta_schedule),
                 readString(cfg, "timestep_spacing", {"linspace", "leading", "trailing"}, c.timestep_spacing),
                 readString(cfg, "prediction_type", {"epsilon", "v_prediction"}, c.prediction_type),
                 mustBeOff(cfg, "rescale_betas_zero_snr")}) {
    if (!r) return fail(r.error());
  }
  if (auto r = readInt(cfg, "steps_offset", 0, c.num_train_timesteps - 1, c.steps_offset); !r) return fail(r.error());
  if (find(cfg, "trained_betas")) return bad("trained_betas", "is not supported (only null)");
  if (!c.ancestral) {  // options only EulerDiscreteScheduler has (the ancestral one ignores them)
    std::string s;
    for (auto r : {mustBeOff(cfg, "use_karras_sigmas"), mustBeOff(cfg, "use_exponential_sigmas"),
                   mustBeOff(cfg, "use_beta_sigmas"), readString(cfg, "interpolation_type", {"linear"}, s),
                   readString(cfg, "timestep_type", {"discrete"}, s),
                   readString(cfg, "final_sigmas_type", {"zero"}, s)}) {
      if (!r) return fail(r.error());
    }
  }
  return c;
}

Noise::Noise(std::uint64_t seed) : state_(seed) {}

float Noise::next() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  auto next64 = [this] {  // SplitMix64
    state_ += 0x9E3779B97F4A7C15ull;
    std::uint64_t z = state_;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  };
  constexpr double kTwoPow53 = 9007199254740992.0;
  double u1 = static_cast<double>((next64() >> 11) + 1) / kTwoPow53;  // (0, 1]: log is finite
  double u2 = static_cast<double>(next64() >> 11) / kTwoPow53;        // [0, 1)
  double r = std::sqrt(-2.0 * std::log(u1));
  double theta = 2.0 * std::numbers::pi * u2;
  spare_ = static_cast<float>(r * std::sin(theta));
  has_spare_ = true;
  return static_cast<float>(r * std::cos(theta));
}

void Noise::fill(std::span<float> out) {
  for (float& v : out) v = next();
}

EulerScheduler::EulerScheduler(SchedulerConfig config, int steps) : config_(std::move(config)) {
  const int n = std::max(config_.num_train_timesteps, 2);
  steps = std::clamp(steps, 1, n);
  timesteps_.resize(static_cast<std::size_t>(steps));
  if (config_.timestep_spacing == "linspace") {
    // np.linspace(0, n - 1, steps, dtype=float32)[::-1]: i * step in double, the end exact.
    double step = steps > 1 ? static_cast<double>(n - 1) / (steps - 1) : 0.0;
    for (int i = 0; i < steps; ++i) {
      double v = i == steps - 1 && steps > 1 ? n - 1 : i * step;
      timesteps_[static_cast<std::size_t>(steps - 1 - i)] = static_cast<float>(v);
    }
  } else if (config_.timestep_spacing == "trailing") {
    // np.arange(n, 0, -n / steps).round() - 1, keeping the first `steps` (see the header).
    double ratio = static_cast<double>(n) / steps;
    for (int i = 0; i < steps; ++i) timesteps_[static_cast<std::size_t>(i)] = std::nearbyint(n - i * ratio) - 1;
  } else {  // leading: (arange(steps) * (n // steps)).round()[::-1] + steps_offset
    int ratio = n / steps;
    for (int i = 0; i < steps; ++i) {
      timesteps_[static_cast<std::size_t>(steps - 1 - i)] = static_cast<double>(i * ratio + config_.steps_offset);
    }
  }
  std::vector<float> train = trainSigmas(config_);
  sigmas_.reserve(timesteps_.size() + 1);
  for (double t : timesteps_) sigmas_.push_back(static_cast<float>(interp(t, train)));
  sigmas_.push_back(0.0);
  auto top = static_cast<float>(*std::max_element(sigmas_.begin(), sigmas_.end()));
  init_noise_sigma_ = config_.timestep_spacing == "leading" ? std::sqrt(top * top + 1.0f) : top;
}

const std::vector<double>& EulerScheduler::timesteps() const { return timesteps_; }
const std::vector<double>& EulerScheduler::sigmas() const { return sigmas_; }
double EulerScheduler::initNoiseSigma() const { return init_noise_sigma_; }

double EulerScheduler::inputScale(int step) const {
  auto sigma = sigmas_.at(static_cast<std::size_t>(step));
  return 1.0 / std::sqrt(sigma * sigma + 1.0);
}

void EulerScheduler::step(std::span<const float> model_output, int step, std::span<float> sample,
                          Noise& noise) const {
  if (step < 0 || static_cast<std::size_t>(step) >= timesteps_.size()) {
    throw std::invalid_argument(std::format("EulerScheduler::step: step {} is outside 0..{}", step,
                                            timesteps_.size() - 1));
  }
  if (model_output.size() != sample.size()) {
    throw std::invalid_argument(std::format("EulerScheduler::step: model output has {} values, sample {}",
                                            model_output.size(), sample.size()));
  }
  // float32 scalars, as diffusers' 0-dim float32 tensors.
  auto sigma = static_cast<float>(sigmas_[static_cast<std::size_t>(step)]);
  auto sigma_next = static_cast<float>(sigmas_[static_cast<std::size_t>(step) + 1]);
  const bool v_pred = config_.prediction_type == "v_prediction";
  const float v_out = -sigma / std::sqrt(sigma * sigma + 1.0f);  // c_out of the v-prediction
  const float v_skip_div = sigma * sigma + 1.0f;
  auto predOriginal = [&](float x, float m) { return v_pred ? m * v_out + x / v_skip_div : x - sigma * m; };

  if (!config_.ancestral) {
    const float dt = sigma_next - sigma;
    for (std::size_t i = 0; i < sample.size(); ++i) {
      float x = sample[i];
      float derivative = (x - predOriginal(x, model_output[i])) / sigma;
      sample[i] = x + derivative * dt;
    }
    return;
  }
  const float s2 = sigma * sigma, n2 = sigma_next * sigma_next;
  const float sigma_up = std::sqrt(n2 * (s2 - n2) / s2);
  // Clamped at 0: rounding could make the difference a tiny negative (NaN in diffusers).
  const float sigma_down = std::sqrt(std::max(n2 - sigma_up * sigma_up, 0.0f));
  const float dt = sigma_down - sigma;
  for (std::size_t i = 0; i < sample.size(); ++i) {
    float x = sample[i];
    float derivative = (x - predOriginal(x, model_output[i])) / sigma;
    float prev = x + derivative * dt;
    sample[i] = prev + noise.next() * sigma_up;
  }
}

}  // namespace statim::diffusion
