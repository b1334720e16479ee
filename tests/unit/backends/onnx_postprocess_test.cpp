// The onnx backend's pure parts: letterbox geometry and box mapping, the pixel transform,
// softmax/top-k, NMS, and the YOLOX / UltraFace decoders on hand-made tensors.
#include <cmath>

#include <gtest/gtest.h>

#include "backends/onnx/image.h"
#include "backends/onnx/postprocess.h"

namespace statim::onnx {
namespace {

TEST(OnnxGeometry, LetterboxCentresTheScaledImageAndBoxesMapBack) {
  auto g = planGeometry(200, 100, 416, 416, Resize::kLetterbox);
  EXPECT_EQ(g.inner_w, 416);
  EXPECT_EQ(g.inner_h, 208);
  EXPECT_EQ(g.pad_x, 0);
  EXPECT_EQ(g.pad_y, 104);
  EXPECT_DOUBLE_EQ(g.sx, 2.08);
  EXPECT_DOUBLE_EQ(g.sy, 2.08);
  // A box over (50, 25)-(100, 50) in the original lands at (104, 156)-(208, 208) in the input.
  Box b = toOriginal({104, 156, 208, 208}, g);
  EXPECT_NEAR(b.x1, 50, 1e-3);
  EXPECT_NEAR(b.y1, 25, 1e-3);
  EXPECT_NEAR(b.x2, 100, 1e-3);
  EXPECT_NEAR(b.y2, 50, 1e-3);
  // Parts in the padding are clamped to the image.
  Box c = toOriginal({-10, 50, 500, 400}, g);
  EXPECT_EQ(c.x1, 0);
  EXPECT_EQ(c.y1, 0);
  EXPECT_EQ(c.x2, 200);
  EXPECT_EQ(c.y2, 100);
}

TEST(OnnxGeometry, LetterboxOfATallImagePadsLeftAndRight) {
  auto g = planGeometry(100, 400, 320, 320, Resize::kLetterbox);
  EXPECT_EQ(g.inner_w, 80);
  EXPECT_EQ(g.inner_h, 320);
  EXPECT_EQ(g.pad_x, 120);
  EXPECT_EQ(g.pad_y, 0);
  Box b = toOriginal({120, 0, 200, 320}, g);
  EXPECT_NEAR(b.x1, 0, 1e-3);
  EXPECT_NEAR(b.x2, 100, 1e-3);
  EXPECT_NEAR(b.y2, 400, 1e-3);
}

TEST(OnnxGeometry, TopLeftLetterboxHasNoOffset) {
  auto g = planGeometry(200, 100, 416, 416, Resize::kLetterbox, Align::kTopLeft);
  EXPECT_EQ(g.pad_x + g.pad_y, 0);
  Box b = toOriginal({104, 52, 208, 104}, g);
  EXPECT_NEAR(b.x1, 50, 1e-3);
  EXPECT_NEAR(b.y1, 25, 1e-3);
  EXPECT_NEAR(b.y2, 50, 1e-3);
}

TEST(OnnxGeometry, StretchScalesEachAxisOnItsOwn) {
  auto g = planGeometry(640, 480, 320, 240, Resize::kStretch);
  EXPECT_DOUBLE_EQ(g.sx, 0.5);
  EXPECT_DOUBLE_EQ(g.sy, 0.5);
  EXPECT_EQ(g.pad_x + g.pad_y, 0);
  Box b = toOriginal({10, 20, 30, 40}, g);
  EXPECT_NEAR(b.x1, 20, 1e-4);
  EXPECT_NEAR(b.y2, 80, 1e-4);
}

TEST(OnnxImage, ToTensorSwapsToBgrPlanarAndNormalises) {
  Image img{2, 1, 3, {10, 20, 30, 40, 50, 60}};
  ImageSpec spec;
  spec.color = Color::kBgr;
  spec.mean = {1, 2, 3};
  spec.std = {1, 2, 3};
  auto g = planGeometry(2, 1, 2, 1, Resize::kStretch);
  auto t = toTensor(img, spec, g);
  ASSERT_EQ(t.size(), 6u);
  // plane 0 = B, plane 1 = G, plane 2 = R; then (v - mean) / std per plane.
  EXPECT_FLOAT_EQ(t[0], 29);
  EXPECT_FLOAT_EQ(t[1], 59);
  EXPECT_FLOAT_EQ(t[2], 9);          // (20 - 2) / 2
  EXPECT_FLOAT_EQ(t[3], 24);         // (50 - 2) / 2
  EXPECT_FLOAT_EQ(t[4], 7.0f / 3);   // (10 - 3) / 3
  EXPECT_FLOAT_EQ(t[5], 37.0f / 3);  // (40 - 3) / 3
}

TEST(OnnxImage, InvertAndScaleAndLetterboxPadding) {
  Image img{1, 1, 1, {255}};
  ImageSpec spec;
  spec.color = Color::kGray;
  spec.invert = true;
  spec.scale = 1.0f / 255;
  spec.pad_value = 0;
  auto g = planGeometry(1, 1, 3, 1, Resize::kLetterbox);
  EXPECT_EQ(g.pad_x, 1);
  auto t = toTensor(img, spec, g);
  ASSERT_EQ(t.size(), 3u);
  EXPECT_FLOAT_EQ(t[0], 1.0f);  // padding 0, inverted
  EXPECT_FLOAT_EQ(t[1], 0.0f);  // white pixel, inverted
  EXPECT_FLOAT_EQ(t[2], 1.0f);
}

TEST(OnnxPost, SoftmaxSumsToOneAndSurvivesLargeLogits) {
  auto p = softmax(std::vector<float>{1000, 1000, 998});
  ASSERT_EQ(p.size(), 3u);
  EXPECT_NEAR(p[0] + p[1] + p[2], 1.0, 1e-6);
  EXPECT_NEAR(p[0], p[1], 1e-7);
  EXPECT_NEAR(p[2], std::exp(-2.0) / (2 + std::exp(-2.0)), 1e-6);
}

TEST(OnnxPost, TopKOrdersByScoreThenIndex) {
  std::vector<float> v{0.1f, 0.7f, 0.2f, 0.7f, 0.05f};
  auto k = topK(v, 3);
  ASSERT_EQ(k.size(), 3u);
  EXPECT_EQ(k[0].first, 1);
  EXPECT_EQ(k[1].first, 3);
  EXPECT_EQ(k[2].first, 2);
  EXPECT_FLOAT_EQ(k[2].second, 0.2f);
  EXPECT_EQ(topK(v, 99).size(), 5u);
}

TEST(OnnxPost, NmsIsClassWiseAndKeepsTheBest) {
  std::vector<Detection> d{
      {{0, 0, 10, 10}, 0.8f, 0},
      {{1, 1, 11, 11}, 0.9f, 0},    // overlaps the first (IoU 0.68): the first goes
      {{1, 1, 11, 11}, 0.5f, 1},    // same place, another class: kept
      {{50, 50, 60, 60}, 0.4f, 0},  // elsewhere: kept
  };
  EXPECT_NEAR(iou(d[0].box, d[1].box), 81.0 / 119.0, 1e-6);
  auto kept = nms(d, 0.45f, 10);
  ASSERT_EQ(kept.size(), 3u);
  EXPECT_FLOAT_EQ(kept[0].score, 0.9f);
  EXPECT_EQ(kept[1].cls, 1);
  EXPECT_FLOAT_EQ(kept[2].score, 0.4f);
  EXPECT_EQ(nms(d, 0.45f, 1).size(), 1u);
  // A looser threshold keeps both overlapping boxes of class 0.
  EXPECT_EQ(nms(d, 0.7f, 10).size(), 4u);
}

TEST(OnnxPost, YoloxGridDecodeOnAHandMadeTensor) {
  // A 64x32 input with strides 16 and 32: a 4x2 grid then a 2x1 grid, 10 rows of 5 + 2 classes.
  const int cols = 7;
  std::vector<float> out(10 * cols, 0.0f);
  float* r = out.data() + 6 * cols;  // stride 16, gx = 2, gy = 1
  float a[] = {0.5f, 0.25f, std::log(2.0f), 0.0f, 0.9f, 0.1f, 0.8f};
  std::copy(a, a + cols, r);
  r = out.data() + 9 * cols;  // stride 32, gx = 1, gy = 0
  float b[] = {0, 0, 0, 0, 0.5f, 0.9f, 0.2f};
  std::copy(b, b + cols, r);
  std::vector<int> strides{16, 32};
  auto d = decodeYolox(out, 10, cols, 64, 32, strides, 0.3f);
  ASSERT_TRUE(d) << d.error().message;
  ASSERT_EQ(d->size(), 2u);
  const auto& first = (*d)[0];
  EXPECT_EQ(first.cls, 1);
  EXPECT_NEAR(first.score, 0.72, 1e-6);
  EXPECT_NEAR(first.box.x1, 24, 1e-4);  // centre (40, 20), size 32 x 16
  EXPECT_NEAR(first.box.y1, 12, 1e-4);
  EXPECT_NEAR(first.box.x2, 56, 1e-4);
  EXPECT_NEAR(first.box.y2, 28, 1e-4);
  const auto& second = (*d)[1];
  EXPECT_EQ(second.cls, 0);
  EXPECT_NEAR(second.score, 0.45, 1e-6);
  EXPECT_NEAR(second.box.x1, 16, 1e-4);  // centre (32, 0), size 32 x 32
  EXPECT_NEAR(second.box.y1, -16, 1e-4);
  EXPECT_NEAR(second.box.y2, 16, 1e-4);
  // A higher threshold drops the weaker one.
  EXPECT_EQ(decodeYolox(out, 10, cols, 64, 32, strides, 0.5f)->size(), 1u);
  // Rows that do not match the grids are an error naming the strides.
  auto bad = decodeYolox(out, 10, cols, 64, 32, std::vector<int>{8, 16, 32}, 0.3f);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("make 42 grid cells"), std::string::npos) << bad.error().message;
}

TEST(OnnxPost, UltrafaceScalesNormalisedCornersAndSkipsBackground) {
  std::vector<float> scores{0.9f, 0.1f, 0.2f, 0.8f};
  std::vector<float> boxes{0, 0, 0.5f, 0.5f, 0.25f, 0.5f, 0.75f, 1.0f};
  auto d = decodeUltraface(scores, boxes, 2, 2, 320, 240, 0.7f);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].cls, 0);
  EXPECT_FLOAT_EQ(d[0].score, 0.8f);
  EXPECT_FLOAT_EQ(d[0].box.x1, 80);
  EXPECT_FLOAT_EQ(d[0].box.y1, 120);
  EXPECT_FLOAT_EQ(d[0].box.x2, 240);
  EXPECT_FLOAT_EQ(d[0].box.y2, 240);
}

}  // namespace
}  // namespace statim::onnx
