#include "backends/diffusion/diffusion_backend.h"

#include <chrono>
#include <format>
#include <random>

#include "backends/diffusion/image_params.h"
#include "backends/diffusion/pipeline.h"
#include "backends/diffusion/png.h"

namespace statim {
namespace {

using diffusion::ImageLimits;
using diffusion::ImageRequest;
using diffusion::Pipeline;
using Clock = std::chrono::steady_clock;

double msSince(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

// A seed for jobs that name none: random, within what every JSON client holds exactly, so a
// client can resubmit the reported seed and get the same image.
std::uint64_t randomSeed() {
  static thread_local std::mt19937_64 gen(std::random_device{}());
  return gen() & static_cast<std::uint64_t>(diffusion::kMaxSeed);
}

class DiffusionSession final : public Session {
 public:
  DiffusionSession(std::shared_ptr<const Pipeline> pipeline, ImageLimits limits)
      : pipeline_(std::move(pipeline)), limits_(limits) {}

  Result<nlohmann::json> run(const Job& job, JobControl& control) override {
    auto start = Clock::now();
    auto req = diffusion::resolveImageRequest(job.prompt, job.params, limits_, randomSeed());
    if (!req) return fail(req.error());
    const ImageRequest& q = *req;
    nlohmann::json result = {{"width", q.width},   {"height", q.height},
                             {"steps", q.steps},   {"guidance_scale", q.guidance_scale},
                             {"seed", q.seed},     {"num_images", q.num_images},
                             {"negative_prompt", q.negative_prompt}};
    nlohmann::json images = nlohmann::json::array();
    auto finish = [&](const char* reason) {
      result["images"] = images;
      result["seeds"] = nlohmann::json::array();
      for (auto& im : images) result["seeds"].push_back(im["seed"]);
      result["finish_reason"] = reason;
      result["duration_ms"] = msSince(start);
      return result;
    };
    if (control.cancelled()) return finish("cancelled");
    auto encode_start = Clock::now();
    auto cond = pipeline_->encode(q);
    if (!cond) return fail(cond.error());
    result["encode_ms"] = msSince(encode_start);
    double denoise_ms = 0, png_ms = 0, store_ms = 0;
    int steps_run = 0;
    for (int i = 0; i < q.num_images; ++i) {
      if (control.cancelled()) return finish("cancelled");
      // Image i of a job uses seed + i: each image of a batch is reproducible on its own.
      std::uint64_t seed = q.seed + static_cast<std::uint64_t>(i);
      auto t0 = Clock::now();
      auto on_step = [&](int step, int steps) {
        ++steps_run;
        control.progress({{"type", "progress"}, {"step", step}, {"steps", steps}, {"image", i}, {"images", q.num_images}});
        return !control.cancelled();
      };
      auto pixels = pipeline_->generate(q, *cond, seed, on_step);
      if (!pixels) return fail(pixels.error());
      denoise_ms += msSince(t0);
      if (!*pixels) return finish("cancelled");
      auto t1 = Clock::now();
      auto png = diffusion::encodePng(**pixels, q.width, q.height, 3);
      if (!png) return fail(png.error());
      png_ms += msSince(t1);
      auto t2 = Clock::now();
      std::string name = std::format("image-{}.png", i);
      auto saved = control.saveArtifact(name, "image/png", *png);
      if (!saved) return fail(saved.error());
      store_ms += msSince(t2);
      images.push_back({{"name", name}, {"seed", seed}, {"bytes", png->size()}});
    }
    result["denoise_ms"] = denoise_ms;
    result["png_ms"] = png_ms;      // encoding the PNGs
    result["store_ms"] = store_ms;  // saving them as artifacts
    result["step_ms"] = steps_run > 0 ? denoise_ms / steps_run : 0.0;  // incl. each image's VAE decode
    return finish("stop");
  }

 private:
  std::shared_ptr<const Pipeline> pipeline_;
  ImageLimits limits_;
};

class DiffusionModel final : public LoadedModel {
 public:
  DiffusionModel(std::shared_ptr<const Pipeline> pipeline, ImageLimits limits)
      : pipeline_(std::move(pipeline)), limits_(limits) {}
  // Every worker shares the pipeline: ONNX Runtime sessions are safe to run concurrently.
  Result<std::unique_ptr<Session>> newSession() override {
    return std::make_unique<DiffusionSession>(pipeline_, limits_);
  }
  ComputeUse computeUse() const override { return {.threads = limits_.threads}; }
  // The model's own bounds (max size and steps) as a 400 before the job is stored.
  Result<void> checkJob(const NewJob& job) const override {
    auto r = diffusion::resolveImageRequest(job.prompt, job.params, limits_, 0);
    if (!r) return fail(r.error());
    return ok();
  }
  nlohmann::json describe() const override {
    nlohmann::json d = pipeline_->describe();
    d["default_width"] = limits_.default_width;
    d["default_height"] = limits_.default_height;
    d["max_width"] = limits_.max_width;
    d["max_height"] = limits_.max_height;
    d["default_steps"] = limits_.default_steps;
    d["max_steps"] = limits_.max_steps;
    d["default_guidance_scale"] = limits_.default_guidance_scale;
    return d;
  }

 private:
  std::shared_ptr<const Pipeline> pipeline_;
  ImageLimits limits_;
};

class DiffusionBackend final : public Backend {
 public:
  std::string_view name() const override { return "diffusion"; }
  std::vector<std::string> jobTypes() const override { return {"image"}; }
  Result<void> validateParams(std::string_view, const nlohmann::json& p) const override {
    return diffusion::validateImageParams(p);
  }
  nlohmann::json paramsSchema(std::string_view, const nlohmann::json& manifest) const override {
    return diffusion::imageParamsSchema(manifest);
  }
  Result<void> validateConfig(const ModelConfig& c) const override {
    auto limits = diffusion::parseLimits(c.params);
    if (!limits) return fail(limits.error());
    return ok();
  }
  Result<std::shared_ptr<LoadedModel>> load(const ModelConfig& c) const override {
    if (c.file.empty()) {
      return fail(Error::invalid("the diffusion backend needs file = a diffusers ONNX export folder "
                                 "(optimum-cli export onnx --model stabilityai/sd-turbo DIR)"));
    }
    auto limits = diffusion::parseLimits(c.params);
    if (!limits) return fail(limits.error());
    if (limits->threads <= 0) limits->threads = c.cores;
    auto pipeline = Pipeline::load(c.file, limits->threads);
    if (!pipeline) return fail(pipeline.error());
    return std::make_shared<DiffusionModel>(std::shared_ptr<const Pipeline>(std::move(*pipeline)), *limits);
  }
};

}  // namespace

const Backend& diffusionBackend() {
  static const DiffusionBackend backend;
  return backend;
}

}  // namespace statim
