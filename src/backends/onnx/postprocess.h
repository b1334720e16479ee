// Output decoding for the onnx backend's image tasks: softmax and top-k for classifiers, the
// YOLOX grid decode and UltraFace decode for detectors, and class-wise non-maximum suppression.
// Pure functions over float buffers (row-major, batch 0), unit-tested on hand-made tensors.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "backends/onnx/image.h"
#include "statim/error.h"

namespace statim::onnx {

std::vector<float> softmax(std::span<const float> logits);

// The k largest values as (index, value), highest first; ties by lower index.
std::vector<std::pair<int, float>> topK(std::span<const float> values, int k);

struct Detection {
  Box box;  // model-input pixels until mapped back
  float score = 0;
  int cls = 0;
};

float iou(const Box& a, const Box& b);

// Class-wise NMS: highest score first, dropping boxes of the same class overlapping a kept one by
// more than `iou_threshold`; at most `max_keep` boxes, highest scores first.
std::vector<Detection> nms(std::vector<Detection> dets, float iou_threshold, int max_keep);

// YOLOX head output [rows, 5 + classes] (cx, cy, log w, log h offsets per grid cell, objectness
// and class scores already sigmoid-ed in the export). Rows are the grid cells of each stride in
// turn, row-major; box = ((o0 + gx) * s, (o1 + gy) * s, exp(o2) * s, exp(o3) * s) as centre + size.
// Score = objectness * class score; rows under `threshold` are dropped (one detection per row, its
// best class). Fails when rows do not match the grids of `strides` over in_w x in_h.
Result<std::vector<Detection>> decodeYolox(std::span<const float> out, std::int64_t rows, std::int64_t cols, int in_w,
                                           int in_h, std::span<const int> strides, float threshold);

// UltraFace outputs: scores [rows, classes] (softmax-ed, column 0 is background) and boxes
// [rows, 4] as normalised corners (x1, y1, x2, y2; the export has the priors decoding built in).
// Class indices count from column 1 (face = 0). Boxes come back in model-input pixels.
std::vector<Detection> decodeUltraface(std::span<const float> scores, std::span<const float> boxes, std::int64_t rows,
                                       std::int64_t classes, int in_w, int in_h, float threshold);

}  // namespace statim::onnx
