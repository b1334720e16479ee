// The `onnx` backend's manifest [params], parsed once and validated with messages naming the key.
// The manifest declares the model: its task, tensor names, pre-processing (as data) and
// post-processing. Pure: no ONNX Runtime here, so it is unit-tested on its own.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "statim/error.h"

namespace statim::onnx {

enum class Task { kClassification, kDetection, kTensor };
enum class Color { kGray, kRgb, kBgr };
enum class Resize { kStretch, kLetterbox };
enum class Layout { kNCHW, kNHWC };
enum class Align { kCenter, kTopLeft };  // where a letterboxed image sits (YOLOX trains top-left)
enum class Decoder { kYolox, kUltraface };

// Pixel -> tensor value: v = (invert ? 255 - p : p) * scale; v = (v - mean[c]) / std[c].
struct ImageSpec {
  Color color = Color::kRgb;
  Resize resize = Resize::kStretch;
  Align align = Align::kCenter;
  Layout layout = Layout::kNCHW;
  int width = 0, height = 0;  // 0: taken from the model's input shape at load
  int pad_value = 114;        // letterbox fill, a pixel value 0..255 (before invert/scale)
  bool invert = false;
  float scale = 1.0f;
  std::array<float, 3> mean{0, 0, 0};
  std::array<float, 3> std{1, 1, 1};
  std::int64_t max_pixels = 40'000'000;  // decoded images larger than this are refused (413)

  int channels() const { return color == Color::kGray ? 1 : 3; }
};

struct OnnxConfig {
  Task task = Task::kTensor;
  std::string input;                 // image tasks: the image input's name (empty: the model's only input)
  std::vector<std::string> outputs;  // image tasks: outputs read (empty: the model's outputs in order)
  int threads = 0;                   // ORT intra-op threads; 0: the compute budget (compute.cores)
  ImageSpec image;
  std::vector<std::string> labels;  // class names; empty: "class <i>"
  // classification
  int top_k = 5;
  bool softmax = false;
  // detection
  Decoder decoder = Decoder::kYolox;
  std::vector<int> strides{8, 16, 32};
  float score_threshold = 0.3f;
  float nms_iou = 0.45f;
  int max_detections = 100;
};

// The job type that serves a task ("classification", "detection", "tensor").
std::string_view jobTypeOf(Task t);

// Parses [params] for a model whose manifest type is `type` (the job type; `task` must agree with
// it when both are given). `dir` is the manifest's folder: a relative `labels` file is read there.
Result<OnnxConfig> parseConfig(const nlohmann::json& params, std::string_view type, const std::filesystem::path& dir);

}  // namespace statim::onnx
