#include "backends/onnx/onnx_backend.h"

#include <chrono>
#include <format>

#include "backends/onnx/image.h"
#include "backends/onnx/tasks.h"
#include "backends/params.h"

namespace statim {
namespace {

using onnx::BoundModel;
using onnx::Task;

// A worker's session holds nothing of its own: the BoundModel (and its Ort::Session, whose Run is
// thread-safe) is shared, read-only, by every worker of the model.
class OnnxSession final : public Session {
 public:
  explicit OnnxSession(std::shared_ptr<const BoundModel> model) : model_(std::move(model)) {}

  Result<nlohmann::json> run(const Job& job, JobControl& control) override {
    if (control.cancelled()) return nlohmann::json{{"finish_reason", "cancelled"}};
    auto start = std::chrono::steady_clock::now();
    Result<nlohmann::json> r = fail(Error::internal("unreachable"));
    if (job.type == "classification")
      r = onnx::runClassification(*model_, job);
    else if (job.type == "detection")
      r = onnx::runDetection(*model_, job);
    else
      r = onnx::runTensor(*model_, job);
    if (r) {
      (*r)["duration_ms"] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    }
    return r;
  }

 private:
  std::shared_ptr<const BoundModel> model_;
};

class OnnxModel final : public LoadedModel {
 public:
  explicit OnnxModel(std::shared_ptr<const BoundModel> model) : model_(std::move(model)) {}

  Result<std::unique_ptr<Session>> newSession() override { return std::make_unique<OnnxSession>(model_); }
  ComputeUse computeUse() const override { return {.threads = model_->config.threads}; }

  // Mistakes that need the model are a 400/413 at submit, not a FAILED job: tensor names and
  // shapes, more than one image, an image over max_pixels (read from its header only).
  Result<void> checkJob(const NewJob& job) const override {
    if (model_->config.task == Task::kTensor) {
      auto inputs = onnx::tensorJobInputs(*model_, job.prompt, job.params);
      if (!inputs) return fail(inputs.error());
      return ok();
    }
    if (job.inputs.size() > 1) {
      return fail(
          Error::invalid(std::format("a {} job takes one image; got {} files", job.type, job.inputs.size()), "inputs"));
    }
    for (auto& f : job.inputs) {
      auto size = onnx::imageSize(f.path);
      if (!size) continue;  // an unreadable header fails the job with the decoder's reason
      auto [w, h] = *size;
      if (static_cast<std::int64_t>(w) * h > model_->config.image.max_pixels) {
        return fail(Error{ErrorCode::kPayloadTooLarge,
                          std::format("input '{}' is {}x{} pixels; model '{}' takes at most {} pixels (max_pixels)",
                                      f.name, w, h, job.model, model_->config.image.max_pixels),
                          "inputs." + f.name});
      }
    }
    return ok();
  }

  nlohmann::json describe() const override {
    nlohmann::json inputs = nlohmann::json::array(), outputs = nlohmann::json::array();
    for (auto& t : model_->ort->inputs())
      inputs.push_back({{"name", t.name}, {"dtype", onnx::dtypeName(t.dtype)}, {"shape", t.shape}});
    for (auto& t : model_->ort->outputs())
      outputs.push_back({{"name", t.name}, {"dtype", onnx::dtypeName(t.dtype)}, {"shape", t.shape}});
    nlohmann::json d = {{"task", onnx::jobTypeOf(model_->config.task)}, {"inputs", inputs}, {"outputs", outputs}};
    if (model_->config.task != Task::kTensor) {
      d["input_size"] = {model_->in_w, model_->in_h};
      d["classes"] = model_->classes;
    }
    return d;
  }

 private:
  std::shared_ptr<const BoundModel> model_;
};

// A job's params by type; the defaults are onnx_config.h's, unless the manifest sets its own.
constexpr params::Spec kClassificationParams[] = {
    {.name = "top_k", .kind = params::Spec::kInteger, .min = 1, .max = 1000, .fallback = 5, .help = "how many labels"},
};
constexpr params::Spec kDetectionParams[] = {
    {.name = "score_threshold",
     .kind = params::Spec::kNumber,
     .max = 1,
     .fallback = 0.3,
     .help = "the lowest score kept"},
    {.name = "nms_iou",
     .kind = params::Spec::kNumber,
     .max = 1,
     .fallback = 0.45,
     .help = "overlap above which the weaker box goes"},
    {.name = "max_detections",
     .kind = params::Spec::kInteger,
     .min = 1,
     .max = 10000,
     .fallback = 100,
     .help = "at most this many boxes"},
};
constexpr params::Spec kTensorParams[] = {
    {.name = "inputs", .kind = params::Spec::kObject, .help = "input tensors (instead of the prompt)"},
};

std::span<const params::Spec> specsOf(std::string_view type) {
  if (type == "classification") return kClassificationParams;
  if (type == "detection") return kDetectionParams;
  return kTensorParams;
}

class OnnxBackend final : public Backend {
 public:
  std::string_view name() const override { return "onnx"; }
  std::vector<std::string> jobTypes() const override { return {"classification", "detection", "tensor"}; }
  std::vector<std::string> inputTypes(std::string_view type) const override {
    if (type == "tensor") return {};
    return {"image/png", "image/jpeg"};
  }

  Result<void> validateParams(std::string_view type, const nlohmann::json& p) const override {
    if (type == "tensor" && p.is_object()) {
      if (auto it = p.find("inputs"); it != p.end() && !it->is_object()) {
        return fail(Error::invalid("'params.inputs' must be an object of input tensors", "params.inputs"));
      }
    }
    return params::check(p, specsOf(type));
  }
  // The manifest's values (what a job gets without the param) are the defaults shown.
  nlohmann::json paramsSchema(std::string_view type, const nlohmann::json& manifest) const override {
    auto out = params::describe(specsOf(type));
    for (auto& [name, d] : out.items()) {
      if (auto it = manifest.find(name); it != manifest.end() && it->is_number()) d["default"] = *it;
    }
    return out;
  }

  Result<void> validateConfig(const ModelConfig& c) const override {
    auto config = onnx::parseConfig(c.params, c.type, c.dir);
    if (!config) return fail(config.error());
    return ok();
  }

  Result<std::shared_ptr<LoadedModel>> load(const ModelConfig& c) const override {
    if (c.file.empty() || c.file.extension() != ".onnx") {
      return fail(Error::invalid("the onnx backend needs file = an .onnx model"));
    }
    if (!std::filesystem::exists(c.file)) return fail(Error::notFound("model file not found: " + c.file.string()));
    auto config = onnx::parseConfig(c.params, c.type, c.dir);
    if (!config) return fail(config.error());
    if (config->threads <= 0) config->threads = c.cores;
    auto ort = onnx::OrtModel::open(c.file, config->threads);
    if (!ort) return fail(ort.error());
    auto bound = onnx::bindModel(std::move(*config), std::move(*ort));
    if (!bound) return fail(bound.error());
    return std::make_shared<OnnxModel>(std::shared_ptr<const BoundModel>(std::move(*bound)));
  }
};

}  // namespace

const Backend& onnxBackend() {
  static const OnnxBackend backend;
  return backend;
}

}  // namespace statim
