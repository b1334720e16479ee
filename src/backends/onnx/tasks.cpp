#include "backends/onnx/tasks.h"

#include <cmath>
#include <format>

#include "backends/onnx/image.h"
#include "backends/onnx/postprocess.h"
#include "backends/onnx/tensor_io.h"

namespace statim::onnx {
namespace {

std::string names(const std::vector<TensorSpec>& specs) {
  std::string s;
  for (auto& t : specs) s += (s.empty() ? "" : ", ") + t.name;
  return s;
}

double round2(double v) { return std::round(v * 100) / 100; }

Error mismatch(std::string msg) { return Error::invalid("the manifest does not match the model: " + std::move(msg)); }

// Image input: name, dtype, rank 4, channels and size (from the model, or params.size when dynamic).
Result<void> bindImageInput(BoundModel& m) {
  const auto& c = m.config;
  if (c.input.empty()) {
    if (m.ort->inputs().size() != 1) {
      return fail(mismatch(std::format("the model has {} inputs ({}); name the image one in params.input",
                                       m.ort->inputs().size(), names(m.ort->inputs()))));
    }
    m.input = m.ort->inputs().front().name;
  } else {
    m.input = c.input;
  }
  const TensorSpec* in = m.ort->findInput(m.input);
  if (!in) {
    return fail(mismatch(
        std::format("params.input '{}' is not an input of the model (inputs: {})", m.input, names(m.ort->inputs()))));
  }
  if (in->dtype != DType::kFloat || in->shape.size() != 4) {
    return fail(mismatch(std::format("input '{}' is {} {}; an image input must be float32 of rank 4", in->name,
                                     dtypeName(in->dtype), shapeText(in->shape))));
  }
  bool nchw = c.image.layout == Layout::kNCHW;
  std::int64_t ch = in->shape[nchw ? 1 : 3], h = in->shape[nchw ? 2 : 1], w = in->shape[nchw ? 3 : 2];
  if (ch >= 0 && ch != c.image.channels()) {
    return fail(mismatch(std::format("input '{}' {} has {} channels ({}) but params.color gives {}", in->name,
                                     shapeText(in->shape), ch, nchw ? "NCHW" : "NHWC", c.image.channels())));
  }
  if (in->shape[0] > 1) {
    return fail(mismatch(std::format("input '{}' has batch size {}; statim sends one image", in->name, in->shape[0])));
  }
  if (c.image.width > 0 && ((w >= 0 && w != c.image.width) || (h >= 0 && h != c.image.height))) {
    return fail(mismatch(std::format("params.size is [{}, {}] but input '{}' is {}", c.image.width, c.image.height,
                                     in->name, shapeText(in->shape))));
  }
  m.in_w = c.image.width > 0 ? c.image.width : static_cast<int>(w);
  m.in_h = c.image.height > 0 ? c.image.height : static_cast<int>(h);
  if (m.in_w <= 0 || m.in_h <= 0) {
    return fail(mismatch(std::format("input '{}' {} has a dynamic size: set params.size = [width, height]", in->name,
                                     shapeText(in->shape))));
  }
  return ok();
}

Result<const TensorSpec*> output(const BoundModel& m, const std::string& name, size_t rank) {
  const TensorSpec* o = m.ort->findOutput(name);
  if (!o)
    return fail(mismatch(std::format("output '{}' is not in the model (outputs: {})", name, names(m.ort->outputs()))));
  if (o->dtype != DType::kFloat || (rank && o->shape.size() != rank)) {
    return fail(mismatch(std::format("output '{}' is {} {}; expected float32{}", name, dtypeName(o->dtype),
                                     shapeText(o->shape), rank ? std::format(" of rank {}", rank) : "")));
  }
  return o;
}

Result<void> bindOutputs(BoundModel& m) {
  const auto& c = m.config;
  size_t want = c.task == Task::kDetection && c.decoder == Decoder::kUltraface ? 2 : 1;
  m.outputs = c.outputs;
  if (m.outputs.empty()) {
    if (m.ort->outputs().size() < want) {
      return fail(mismatch(std::format("the model has {} outputs; this task reads {}", m.ort->outputs().size(), want)));
    }
    for (size_t i = 0; i < want; ++i) m.outputs.push_back(m.ort->outputs()[i].name);
  }
  if (c.task == Task::kClassification) {
    auto o = output(m, m.outputs[0], 0);
    if (!o) return fail(o.error());
    std::int64_t n = 1;
    for (size_t i = 1; i < (*o)->shape.size(); ++i) n = (*o)->shape[i] < 0 || n < 0 ? -1 : n * (*o)->shape[i];
    if ((*o)->shape.size() == 1) n = (*o)->shape[0];
    m.classes = n > 0 ? n : 0;
  } else if (c.decoder == Decoder::kYolox) {
    auto o = output(m, m.outputs[0], 3);
    if (!o) return fail(o.error());
    std::int64_t rows = (*o)->shape[1], cols = (*o)->shape[2];
    if (cols >= 0 && cols < 6)
      return fail(mismatch(std::format("output '{}' has {} columns; YOLOX has 5 + classes", (*o)->name, cols)));
    std::int64_t cells = 0;
    for (int s : c.strides) cells += static_cast<std::int64_t>(m.in_w / s) * (m.in_h / s);
    if (rows >= 0 && rows != cells) {
      return fail(mismatch(std::format("output '{}' has {} rows; params.strides over {}x{} make {} grid cells",
                                       (*o)->name, rows, m.in_w, m.in_h, cells)));
    }
    m.classes = cols > 0 ? cols - 5 : 0;
  } else {
    auto scores = output(m, m.outputs[0], 3);
    if (!scores) return fail(scores.error());
    auto boxes = output(m, m.outputs[1], 3);
    if (!boxes) return fail(boxes.error());
    if ((*boxes)->shape[2] >= 0 && (*boxes)->shape[2] != 4) {
      return fail(mismatch(std::format("output '{}' {} is not [1, N, 4] boxes (outputs are [scores, boxes])",
                                       (*boxes)->name, shapeText((*boxes)->shape))));
    }
    m.classes = (*scores)->shape[2] > 0 ? (*scores)->shape[2] - 1 : 0;  // column 0 is background
  }
  if (m.classes > 0 && !c.labels.empty() && static_cast<std::int64_t>(c.labels.size()) != m.classes) {
    return fail(
        mismatch(std::format("params.labels has {} labels but the model has {} classes", c.labels.size(), m.classes)));
  }
  return ok();
}

Result<HostTensor> imageTensor(const BoundModel& m, const Job& job, Geometry& g) {
  if (job.inputs.empty()) return fail(Error::invalid("this job needs an image file", "inputs"));
  const JobFile& f = job.inputs.front();
  auto img = decodeImage(f.path, m.config.image.channels(), m.config.image.max_pixels);
  if (!img) {
    Error e = img.error();
    e.message = std::format("input '{}' ({}): {}", f.name, f.content_type, e.message);
    e.field = "inputs." + f.name;
    return fail(e);
  }
  g = planGeometry(img->width, img->height, m.in_w, m.in_h, m.config.image.resize, m.config.image.align);
  HostTensor t;
  t.name = m.input;
  int ch = m.config.image.channels();
  t.shape = m.config.image.layout == Layout::kNCHW ? std::vector<std::int64_t>{1, ch, m.in_h, m.in_w}
                                                   : std::vector<std::int64_t>{1, m.in_h, m.in_w, ch};
  t.data = toTensor(*img, m.config.image, g);
  return t;
}

// The model run on the job's image; g gets the image's geometry, `use` the outputs where ORT
// holds them (not copied out: a detector's output is a megabyte or more).
Result<void> runOnImage(const BoundModel& m, const Job& job, Geometry& g, const OrtModel::UseOutputs& use) {
  auto in = imageTensor(m, job, g);
  if (!in) return fail(in.error());
  std::vector<HostTensor> inputs;
  inputs.push_back(std::move(*in));  // not `{*in}`: that copies the image's floats (2 MB at 416x416)
  return m.ort->runInPlace(inputs, m.outputs, use);
}

}  // namespace

std::string BoundModel::label(int index) const {
  if (index >= 0 && index < static_cast<int>(config.labels.size())) return config.labels[index];
  return std::format("class {}", index);
}

Result<std::unique_ptr<BoundModel>> bindModel(OnnxConfig config, std::unique_ptr<OrtModel> ort) {
  auto m = std::make_unique<BoundModel>();
  m->config = std::move(config);
  m->ort = std::move(ort);
  if (m->config.task == Task::kTensor) {
    for (auto& o : m->config.outputs) {
      if (!m->ort->findOutput(o)) {
        return fail(
            mismatch(std::format("output '{}' is not in the model (outputs: {})", o, names(m->ort->outputs()))));
      }
    }
    m->outputs = m->config.outputs;
    return m;
  }
  if (auto r = bindImageInput(*m); !r) return fail(r.error());
  if (auto r = bindOutputs(*m); !r) return fail(r.error());
  return m;
}

Result<std::vector<HostTensor>> tensorJobInputs(const BoundModel& m, const std::string& prompt,
                                                const nlohmann::json& params) {
  if (auto it = params.find("inputs"); it != params.end())
    return parseTensorInputs(*it, m.ort->inputs(), "params.inputs");
  auto j = nlohmann::json::parse(prompt, nullptr, false);
  if (j.is_discarded()) {
    return fail(
        Error::invalid("a tensor job's 'prompt' must be JSON: {\"<input>\": {\"shape\": [...], \"data\": [...]}} (or "
                       "send params.inputs)",
                       "prompt"));
  }
  return parseTensorInputs(j, m.ort->inputs(), "prompt");
}

Result<nlohmann::json> runClassification(const BoundModel& m, const Job& job) {
  Geometry g;
  nlohmann::json labels = nlohmann::json::array();
  auto r = runOnImage(m, job, g, [&](std::span<const OutputView> out) -> Result<void> {
    auto logits = out.front().floats();
    std::vector<float> scores = m.config.softmax ? softmax(logits) : std::vector<float>(logits.begin(), logits.end());
    for (auto [i, s] : topK(scores, job.params.value("top_k", m.config.top_k))) {
      labels.push_back({{"label", m.label(i)}, {"index", i}, {"score", s}});
    }
    return ok();
  });
  if (!r) return fail(r.error());
  return nlohmann::json{{"labels", std::move(labels)}, {"width", g.src_w}, {"height", g.src_h}};
}

Result<nlohmann::json> runDetection(const BoundModel& m, const Job& job) {
  Geometry g;
  float threshold = job.params.value("score_threshold", m.config.score_threshold);
  std::vector<Detection> dets;
  auto r = runOnImage(m, job, g, [&](std::span<const OutputView> out) -> Result<void> {
    if (m.config.decoder == Decoder::kYolox) {
      const auto& o = out.front();
      if (o.shape.size() != 3)
        return fail(Error::backend(std::format("output '{}' is {}, not rank 3", o.name, shapeText(o.shape))));
      auto d = decodeYolox(o.floats(), o.shape[1], o.shape[2], m.in_w, m.in_h, m.config.strides, threshold);
      if (!d) return fail(d.error());
      dets = std::move(*d);
      return ok();
    }
    const auto &s = out[0], &b = out[1];
    if (s.shape.size() != 3 || b.shape.size() != 3 || b.shape[1] != s.shape[1] || b.shape[2] != 4) {
      return fail(
          Error::backend(std::format("outputs {} {} and {} {} are not [1, N, classes] scores and [1, N, 4] boxes",
                                     s.name, shapeText(s.shape), b.name, shapeText(b.shape))));
    }
    dets = decodeUltraface(s.floats(), b.floats(), s.shape[1], s.shape[2], m.in_w, m.in_h, threshold);
    return ok();
  });
  if (!r) return fail(r.error());
  dets = nms(std::move(dets), job.params.value("nms_iou", m.config.nms_iou),
             job.params.value("max_detections", m.config.max_detections));
  nlohmann::json list = nlohmann::json::array();
  for (auto& d : dets) {
    Box b = toOriginal(d.box, g);
    list.push_back({{"label", m.label(d.cls)},
                    {"index", d.cls},
                    {"score", std::round(d.score * 1e4) / 1e4},
                    {"box",
                     {{"x", round2(b.x1)},
                      {"y", round2(b.y1)},
                      {"width", round2(b.x2 - b.x1)},
                      {"height", round2(b.y2 - b.y1)}}}});
  }
  return nlohmann::json{{"detections", std::move(list)}, {"width", g.src_w}, {"height", g.src_h}};
}

Result<nlohmann::json> runTensor(const BoundModel& m, const Job& job) {
  auto inputs = tensorJobInputs(m, job.prompt, job.params);
  if (!inputs) return fail(inputs.error());
  auto out = m.ort->run(*inputs, m.outputs);
  if (!out) return fail(out.error());
  return nlohmann::json{{"outputs", tensorsToJson(*out)}};
}

}  // namespace statim::onnx
