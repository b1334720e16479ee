// Image input for the onnx backend: the resize geometry (stretch or
// letterbox) and its inverse for mapping boxes back, and the declared pixel -> tensor transform.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include "backends/media/image.h"
#include "backends/onnx/onnx_config.h"
#include "statim/error.h"

namespace statim::onnx {

// Decoding is shared with the other backends (backends/media/image.h).
using media::Image;
using media::decodeImage;
using media::imageSize;

// Where the original image lands in the model's input: model = original * scale + pad.
struct Geometry {
  int src_w = 0, src_h = 0;      // original
  int dst_w = 0, dst_h = 0;      // model input
  double sx = 1, sy = 1;         // scale per axis (equal for letterbox)
  int pad_x = 0, pad_y = 0;      // letterbox offset of the resized image (0 when aligned top-left)
  int inner_w = 0, inner_h = 0;  // the resized image's size inside the input
};

Geometry planGeometry(int src_w, int src_h, int dst_w, int dst_h, Resize mode, Align align = Align::kCenter);

// An axis-aligned box by its corners, in some pixel space.
struct Box {
  float x1 = 0, y1 = 0, x2 = 0, y2 = 0;
};

// A box in model-input pixels -> original image pixels, clamped to the image.
Box toOriginal(const Box& b, const Geometry& g);

// Resizes (bilinear) into the model's geometry and applies invert/scale/mean/std, writing a
// float tensor of 1 x C x H x W (NCHW) or 1 x H x W x C (NHWC). BGR swaps the channels of an RGB image.
std::vector<float> toTensor(const Image& img, const ImageSpec& spec, const Geometry& g);

}  // namespace statim::onnx
