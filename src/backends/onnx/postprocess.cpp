#include "backends/onnx/postprocess.h"

#include <algorithm>
#include <cmath>
#include <format>
#include <numeric>

namespace statim::onnx {

std::vector<float> softmax(std::span<const float> logits) {
  std::vector<float> out(logits.size());
  if (logits.empty()) return out;
  // Shift by the max so exp() cannot overflow on large logits.
  float m = *std::ranges::max_element(logits);
  double sum = 0;
  for (size_t i = 0; i < logits.size(); ++i) sum += out[i] = std::exp(logits[i] - m);
  for (auto& v : out) v = static_cast<float>(v / sum);
  return out;
}

std::vector<std::pair<int, float>> topK(std::span<const float> values, int k) {
  std::vector<int> idx(values.size());
  std::iota(idx.begin(), idx.end(), 0);
  size_t n = std::min<size_t>(std::max(k, 0), idx.size());
  std::partial_sort(idx.begin(), idx.begin() + n, idx.end(),
                    [&](int a, int b) { return values[a] > values[b] || (values[a] == values[b] && a < b); });
  std::vector<std::pair<int, float>> out;
  for (size_t i = 0; i < n; ++i) out.emplace_back(idx[i], values[idx[i]]);
  return out;
}

float iou(const Box& a, const Box& b) {
  float w = std::max(0.0f, std::min(a.x2, b.x2) - std::max(a.x1, b.x1));
  float h = std::max(0.0f, std::min(a.y2, b.y2) - std::max(a.y1, b.y1));
  float inter = w * h;
  float uni = (a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter;
  return uni > 0 ? inter / uni : 0.0f;
}

std::vector<Detection> nms(std::vector<Detection> dets, float iou_threshold, int max_keep) {
  std::ranges::stable_sort(dets, [](const Detection& a, const Detection& b) { return a.score > b.score; });
  std::vector<Detection> kept;
  for (auto& d : dets) {
    if (static_cast<int>(kept.size()) >= max_keep) break;
    bool suppressed = std::ranges::any_of(
        kept, [&](const Detection& k) { return k.cls == d.cls && iou(k.box, d.box) > iou_threshold; });
    if (!suppressed) kept.push_back(d);
  }
  return kept;
}

Result<std::vector<Detection>> decodeYolox(std::span<const float> out, std::int64_t rows, std::int64_t cols, int in_w,
                                           int in_h, std::span<const int> strides, float threshold) {
  if (cols < 6) return fail(Error::backend(std::format("a YOLOX output needs 5 + classes columns, it has {}", cols)));
  std::int64_t expected = 0;
  for (int s : strides) expected += static_cast<std::int64_t>(in_w / s) * (in_h / s);
  if (expected != rows || static_cast<std::int64_t>(out.size()) < rows * cols) {
    return fail(Error::backend(std::format(
        "the YOLOX output has {} rows; strides over a {}x{} input make {} grid cells (check params.strides)", rows,
        in_w, in_h, expected)));
  }
  std::vector<Detection> dets;
  std::int64_t row = 0;
  for (int s : strides) {
    const int gw = in_w / s, gh = in_h / s;
    for (int gy = 0; gy < gh; ++gy) {
      for (int gx = 0; gx < gw; ++gx, ++row) {
        const float* r = out.data() + row * cols;
        const float* cls = r + 5;
        int best = static_cast<int>(std::max_element(cls, r + cols) - cls);
        float score = r[4] * cls[best];
        if (score < threshold) continue;
        float cx = (r[0] + gx) * s, cy = (r[1] + gy) * s;
        float w = std::exp(r[2]) * s, h = std::exp(r[3]) * s;
        dets.push_back({{cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2}, score, best});
      }
    }
  }
  return dets;
}

std::vector<Detection> decodeUltraface(std::span<const float> scores, std::span<const float> boxes, std::int64_t rows,
                                       std::int64_t classes, int in_w, int in_h, float threshold) {
  std::vector<Detection> dets;
  for (std::int64_t i = 0; i < rows; ++i) {
    for (std::int64_t c = 1; c < classes; ++c) {
      float score = scores[i * classes + c];
      if (score < threshold) continue;
      const float* b = boxes.data() + i * 4;
      dets.push_back({{b[0] * in_w, b[1] * in_h, b[2] * in_w, b[3] * in_h}, score, static_cast<int>(c - 1)});
    }
  }
  return dets;
}

}  // namespace statim::onnx
