#include "backends/onnx/onnx_config.h"

#include <format>
#include <fstream>
#include <optional>
#include <utility>

#include "backends/params.h"

namespace statim::onnx {
namespace {

constexpr std::string_view kWhere = "params";

Error bad(std::string_view key, std::string msg) {
  return Error::invalid(std::format("'params.{}' {}", key, msg), std::format("params.{}", key));
}

// A string key whose value must be one of `choices`; absent keeps `out`.
template <typename E>
Result<void> choice(const nlohmann::json& p, std::string_view key,
                    std::initializer_list<std::pair<std::string_view, E>> choices, E& out) {
  auto it = p.find(key);
  if (it == p.end()) return ok();
  std::string names;
  for (auto& [n, v] : choices) names += (names.empty() ? "" : ", ") + std::string(n);
  if (!it->is_string()) return fail(bad(key, std::format("must be one of {}", names)));
  for (auto& [n, v] : choices) {
    if (*it == n) {
      out = v;
      return ok();
    }
  }
  return fail(bad(key, std::format("must be one of {} (got '{}')", names, it->get<std::string>())));
}

// A number or a list of 1 or 3 numbers (one per channel).
Result<void> perChannel(const nlohmann::json& p, std::string_view key, std::array<float, 3>& out, bool nonzero) {
  auto it = p.find(key);
  if (it == p.end()) return ok();
  std::vector<float> v;
  if (it->is_number()) {
    v.assign(3, it->get<float>());
  } else if (it->is_array() && (it->size() == 1 || it->size() == 3)) {
    for (auto& x : *it) {
      if (!x.is_number()) return fail(bad(key, "must be a number or a list of 1 or 3 numbers"));
      v.push_back(x.get<float>());
    }
    if (v.size() == 1) v.assign(3, v[0]);
  } else {
    return fail(bad(key, "must be a number or a list of 1 or 3 numbers"));
  }
  for (int c = 0; c < 3; ++c) {
    if (nonzero && v[c] == 0) return fail(bad(key, "must not be 0 (values are divided by it)"));
    out[c] = v[c];
  }
  return ok();
}

Result<std::vector<std::string>> readLabels(const nlohmann::json& v, const std::filesystem::path& dir) {
  std::vector<std::string> labels;
  if (v.is_array()) {
    for (auto& x : v) {
      if (!x.is_string()) return fail(bad("labels", "must be a labels file name or a list of strings"));
      labels.push_back(x.get<std::string>());
    }
  } else if (v.is_string()) {
    std::filesystem::path p(v.get<std::string>());
    if (p.is_relative()) p = dir / p;
    std::ifstream in(p);
    if (!in) return fail(bad("labels", std::format("names a file that cannot be read: {}", p.string())));
    for (std::string line; std::getline(in, line);) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (!line.empty()) labels.push_back(line);
    }
  } else {
    return fail(bad("labels", "must be a labels file name or a list of strings"));
  }
  if (labels.empty()) return fail(bad("labels", "has no labels"));
  return labels;
}

Result<void> parseImage(const nlohmann::json& p, ImageSpec& im) {
  if (auto r =
          choice<Color>(p, "color", {{"gray", Color::kGray}, {"rgb", Color::kRgb}, {"bgr", Color::kBgr}}, im.color);
      !r)
    return r;
  if (auto r =
          choice<Resize>(p, "resize", {{"stretch", Resize::kStretch}, {"letterbox", Resize::kLetterbox}}, im.resize);
      !r)
    return r;
  if (auto r = choice<Align>(p, "align", {{"center", Align::kCenter}, {"top-left", Align::kTopLeft}}, im.align); !r)
    return r;
  if (auto r = choice<Layout>(p, "layout", {{"NCHW", Layout::kNCHW}, {"NHWC", Layout::kNHWC}}, im.layout); !r) return r;
  if (auto it = p.find("size"); it != p.end()) {
    if (!it->is_array() || it->size() != 2 || !(*it)[0].is_number_integer() || !(*it)[1].is_number_integer() ||
        (*it)[0].get<std::int64_t>() < 1 || (*it)[1].get<std::int64_t>() < 1 || (*it)[0].get<std::int64_t>() > 8192 ||
        (*it)[1].get<std::int64_t>() > 8192) {
      return fail(bad("size", "must be [width, height], two integers in 1..8192"));
    }
    im.width = (*it)[0].get<int>();
    im.height = (*it)[1].get<int>();
  }
  if (auto r = params::integer(p, "pad_value", 0, 255, kWhere); !r) return r;
  im.pad_value = p.value("pad_value", im.pad_value);
  if (auto it = p.find("invert"); it != p.end()) {
    if (!it->is_boolean()) return fail(bad("invert", "must be true or false"));
    im.invert = it->get<bool>();
  }
  if (auto r = params::number(p, "scale", -1e6, 1e6, kWhere); !r) return r;
  im.scale = p.value("scale", im.scale);
  if (auto r = perChannel(p, "mean", im.mean, false); !r) return r;
  if (auto r = perChannel(p, "std", im.std, true); !r) return r;
  if (auto r = params::integer(p, "max_pixels", 1, 1'000'000'000, kWhere); !r) return r;
  im.max_pixels = p.value("max_pixels", im.max_pixels);
  return ok();
}

Result<void> parseDetection(const nlohmann::json& p, OnnxConfig& c) {
  if (!p.contains("decoder")) return fail(bad("decoder", "is required for object-detection (yolox or ultraface)"));
  if (auto r =
          choice<Decoder>(p, "decoder", {{"yolox", Decoder::kYolox}, {"ultraface", Decoder::kUltraface}}, c.decoder);
      !r)
    return r;
  if (auto it = p.find("strides"); it != p.end()) {
    c.strides.clear();
    if (!it->is_array() || it->empty() || it->size() > 8)
      return fail(bad("strides", "must be a list of 1..8 integers"));
    for (auto& s : *it) {
      if (!s.is_number_integer() || s.get<std::int64_t>() < 1 || s.get<std::int64_t>() > 1024) {
        return fail(bad("strides", "must be a list of integers in 1..1024"));
      }
      c.strides.push_back(s.get<int>());
    }
  }
  if (auto r = params::number(p, "score_threshold", 0, 1, kWhere); !r) return r;
  if (auto r = params::number(p, "nms_iou", 0, 1, kWhere); !r) return r;
  if (auto r = params::integer(p, "max_detections", 1, 10000, kWhere); !r) return r;
  c.score_threshold = p.value("score_threshold", c.score_threshold);
  c.nms_iou = p.value("nms_iou", c.nms_iou);
  c.max_detections = p.value("max_detections", c.max_detections);
  return ok();
}

}  // namespace

std::string_view jobTypeOf(Task t) {
  switch (t) {
    case Task::kClassification: return "classification";
    case Task::kDetection: return "detection";
    case Task::kTensor: return "tensor";
  }
  return "tensor";
}

Result<OnnxConfig> parseConfig(const nlohmann::json& p, std::string_view type, const std::filesystem::path& dir) {
  static const std::initializer_list<std::string_view> kCommon = {"task", "input", "output", "outputs", "threads"};
  static const std::initializer_list<std::string_view> kClassification = {
      "task",      "input",  "output", "outputs", "threads", "color",      "resize", "align", "layout", "size",
      "pad_value", "invert", "scale",  "mean",    "std",     "max_pixels", "labels", "top_k", "softmax"};
  static const std::initializer_list<std::string_view> kDetection = {
      "task",   "input",   "output",    "outputs",         "threads", "color",         "resize", "align",
      "layout", "size",    "pad_value", "invert",          "scale",   "mean",          "std",    "max_pixels",
      "labels", "decoder", "strides",   "score_threshold", "nms_iou", "max_detections"};

  OnnxConfig c;
  if (!p.is_object()) return fail(Error::invalid("'params' must be a table", "params"));
  // The task: from params.task, else from the manifest type; both given must agree.
  std::optional<Task> from_type;
  if (type == "classification") from_type = Task::kClassification;
  if (type == "detection") from_type = Task::kDetection;
  if (type == "tensor") from_type = Task::kTensor;
  if (p.contains("task")) {
    if (auto r = choice<Task>(p, "task",
                              {{"image-classification", Task::kClassification},
                               {"object-detection", Task::kDetection},
                               {"tensor", Task::kTensor}},
                              c.task);
        !r)
      return fail(r.error());
    if (from_type && *from_type != c.task) {
      return fail(bad("task", std::format("'{}' serves {} jobs but the manifest says type = \"{}\"; set type = \"{}\"",
                                          p["task"].get<std::string>(), jobTypeOf(c.task), type, jobTypeOf(c.task))));
    }
  } else if (from_type) {
    c.task = *from_type;
  } else {
    return fail(bad("task", "is required: image-classification, object-detection or tensor"));
  }

  auto known = c.task == Task::kClassification ? kClassification : c.task == Task::kDetection ? kDetection : kCommon;
  if (auto r = params::onlyKnown(p, known, kWhere); !r) return fail(r.error());

  if (auto r = params::string(p, "input", 256, kWhere); !r) return fail(r.error());
  c.input = p.value("input", std::string());
  if (p.contains("output") && p.contains("outputs")) return fail(bad("output", "give 'output' or 'outputs', not both"));
  if (auto it = p.find("output"); it != p.end()) {
    if (!it->is_string() || it->get<std::string>().empty()) return fail(bad("output", "must be a tensor name"));
    c.outputs = {it->get<std::string>()};
  }
  if (auto it = p.find("outputs"); it != p.end()) {
    if (!it->is_array() || it->empty()) return fail(bad("outputs", "must be a non-empty list of tensor names"));
    for (auto& o : *it) {
      if (!o.is_string() || o.get<std::string>().empty()) return fail(bad("outputs", "must be a list of tensor names"));
      c.outputs.push_back(o.get<std::string>());
    }
  }
  if (auto r = params::integer(p, "threads", 0, 256, kWhere); !r) return fail(r.error());
  c.threads = p.value("threads", 0);
  if (c.task == Task::kTensor) return c;

  if (auto r = parseImage(p, c.image); !r) return fail(r.error());
  if (auto it = p.find("labels"); it != p.end()) {
    auto labels = readLabels(*it, dir);
    if (!labels) return fail(labels.error());
    c.labels = std::move(*labels);
  }
  if (c.task == Task::kClassification) {
    if (auto r = params::integer(p, "top_k", 1, 1000, kWhere); !r) return fail(r.error());
    c.top_k = p.value("top_k", c.top_k);
    if (auto it = p.find("softmax"); it != p.end()) {
      if (!it->is_boolean()) return fail(bad("softmax", "must be true or false"));
      c.softmax = it->get<bool>();
    }
    if (c.outputs.size() > 1) return fail(bad("outputs", "must name one output for image-classification"));
  } else {
    if (auto r = parseDetection(p, c); !r) return fail(r.error());
    size_t want = c.decoder == Decoder::kYolox ? 1 : 2;
    if (!c.outputs.empty() && c.outputs.size() != want) {
      return fail(bad("outputs", c.decoder == Decoder::kYolox
                                     ? "must name one output for decoder yolox"
                                     : "must name two outputs for decoder ultraface: [scores, boxes]"));
    }
  }
  return c;
}

}  // namespace statim::onnx
