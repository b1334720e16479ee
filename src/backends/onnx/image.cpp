#include "backends/onnx/image.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <format>
#include <memory>

// The one place stb_image_resize2's implementation is compiled (stb_image's: media/image.cpp; the
// headers come from libstb-dev; the shared libstb is not linked, so there is no second copy).
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#include <stb/stb_image_resize2.h>

namespace statim::onnx {

Geometry planGeometry(int src_w, int src_h, int dst_w, int dst_h, Resize mode, Align align) {
  Geometry g{src_w, src_h, dst_w, dst_h};
  if (mode == Resize::kStretch) {
    g.sx = static_cast<double>(dst_w) / src_w;
    g.sy = static_cast<double>(dst_h) / src_h;
    g.inner_w = dst_w;
    g.inner_h = dst_h;
    return g;
  }
  double r = std::min(static_cast<double>(dst_w) / src_w, static_cast<double>(dst_h) / src_h);
  g.inner_w = std::clamp(static_cast<int>(std::lround(src_w * r)), 1, dst_w);
  g.inner_h = std::clamp(static_cast<int>(std::lround(src_h * r)), 1, dst_h);
  // The exact scale of what was drawn, so boxes map back onto the pixels they came from.
  g.sx = static_cast<double>(g.inner_w) / src_w;
  g.sy = static_cast<double>(g.inner_h) / src_h;
  if (align == Align::kCenter) {
    g.pad_x = (dst_w - g.inner_w) / 2;
    g.pad_y = (dst_h - g.inner_h) / 2;
  }
  return g;
}

Box toOriginal(const Box& b, const Geometry& g) {
  auto mx = [&](float x) {
    return static_cast<float>(std::clamp((x - g.pad_x) / g.sx, 0.0, static_cast<double>(g.src_w)));
  };
  auto my = [&](float y) {
    return static_cast<float>(std::clamp((y - g.pad_y) / g.sy, 0.0, static_cast<double>(g.src_h)));
  };
  return {mx(b.x1), my(b.y1), mx(b.x2), my(b.y2)};
}

std::vector<float> toTensor(const Image& img, const ImageSpec& spec, const Geometry& g) {
  const int c = img.channels;
  std::vector<std::uint8_t> resized(static_cast<size_t>(g.inner_w) * g.inner_h * c);
  stbir_resize_uint8_linear(img.pixels.data(), img.width, img.height, 0, resized.data(), g.inner_w, g.inner_h, 0,
                            c == 1 ? STBIR_1CHANNEL : STBIR_RGB);
  // Canvas in model pixels, padded where the letterbox leaves room.
  std::vector<std::uint8_t> canvas(static_cast<size_t>(g.dst_w) * g.dst_h * c,
                                   static_cast<std::uint8_t>(spec.pad_value));
  for (int y = 0; y < g.inner_h; ++y) {
    std::copy_n(resized.data() + static_cast<size_t>(y) * g.inner_w * c, static_cast<size_t>(g.inner_w) * c,
                canvas.data() + (static_cast<size_t>(y + g.pad_y) * g.dst_w + g.pad_x) * c);
  }
  const size_t plane = static_cast<size_t>(g.dst_w) * g.dst_h;
  std::vector<float> out(plane * c);
  const bool bgr = spec.color == Color::kBgr;
  for (size_t i = 0; i < plane; ++i) {
    for (int ch = 0; ch < c; ++ch) {
      int src_ch = bgr ? 2 - ch : ch;
      float v = canvas[i * c + src_ch];
      if (spec.invert) v = 255.0f - v;
      v = (v * spec.scale - spec.mean[ch]) / spec.std[ch];
      if (spec.layout == Layout::kNCHW)
        out[ch * plane + i] = v;
      else
        out[i * c + ch] = v;
    }
  }
  return out;
}

}  // namespace statim::onnx
