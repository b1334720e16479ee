#include "backends/diffusion/png.h"

#include <cstring>

#include <gtest/gtest.h>
#include <png.h>

namespace statim::diffusion {
namespace {

struct Decoded {
  int width = 0, height = 0, channels = 0;
  std::vector<std::uint8_t> pixels;
};

// Decodes with libpng's simplified read API, keeping the file's own channel count.
Decoded decode(const std::string& file) {
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  EXPECT_TRUE(png_image_begin_read_from_memory(&image, file.data(), file.size())) << image.message;
  Decoded d;
  d.width = static_cast<int>(image.width);
  d.height = static_cast<int>(image.height);
  d.channels = static_cast<int>(PNG_IMAGE_PIXEL_CHANNELS(image.format));
  d.pixels.resize(PNG_IMAGE_SIZE(image));
  EXPECT_TRUE(png_image_finish_read(&image, nullptr, d.pixels.data(), 0, nullptr)) << image.message;
  png_image_free(&image);
  return d;
}

// A gradient with every byte position distinct enough to catch swapped rows or channels.
std::vector<std::uint8_t> pattern(int w, int h, int c) {
  std::vector<std::uint8_t> px(static_cast<std::size_t>(w * h * c));
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int k = 0; k < c; ++k)
        px[static_cast<std::size_t>((y * w + x) * c + k)] = static_cast<std::uint8_t>(x * 37 + y * 11 + k * 85);
  return px;
}

TEST(Png, RgbRoundTrips) {
  auto px = pattern(7, 5, 3);
  auto png = encodePng(px, 7, 5);
  ASSERT_TRUE(png) << png.error().message;
  ASSERT_GT(png->size(), 33u);
  EXPECT_EQ(png->substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_EQ(png->substr(12, 4), "IHDR");
  EXPECT_EQ(static_cast<int>((*png)[24]), 8);  // bit depth
  EXPECT_EQ(static_cast<int>((*png)[25]), 2);  // colour type: truecolour
  auto d = decode(*png);
  EXPECT_EQ(d.width, 7);
  EXPECT_EQ(d.height, 5);
  EXPECT_EQ(d.channels, 3);
  EXPECT_EQ(d.pixels, px);
}

TEST(Png, RgbaRoundTrips) {
  auto px = pattern(16, 9, 4);
  px[3] = 0;  // a transparent pixel keeps its colour bytes (no premultiplication)
  auto png = encodePng(px, 16, 9, 4);
  ASSERT_TRUE(png) << png.error().message;
  EXPECT_EQ(static_cast<int>((*png)[25]), 6);  // colour type: truecolour with alpha
  auto d = decode(*png);
  EXPECT_EQ(d.width, 16);
  EXPECT_EQ(d.height, 9);
  EXPECT_EQ(d.channels, 4);
  EXPECT_EQ(d.pixels, px);
}

TEST(Png, OnePixelAndLargerImages) {
  std::vector<std::uint8_t> one{255, 0, 128};
  auto png = encodePng(one, 1, 1);
  ASSERT_TRUE(png);
  EXPECT_EQ(decode(*png).pixels, one);

  auto px = pattern(512, 512, 3);
  png = encodePng(px, 512, 512);
  ASSERT_TRUE(png);
  EXPECT_LT(png->size(), px.size());  // compressed
  EXPECT_EQ(decode(*png).pixels, px);
}

TEST(Png, BadSizesAreErrors) {
  std::vector<std::uint8_t> px(12);
  struct Bad {
    int w, h, c;
    const char* field;
    const char* message;
  };
  for (const Bad& b : {
           Bad{0, 4, 3, "size", "PNG size 0x4 is out of range (width and height 1..16384)"},
           Bad{4, -1, 3, "size", "PNG size 4x-1 is out of range"},
           Bad{16385, 1, 3, "size", "PNG size 16385x1 is out of range"},
           Bad{2, 2, 2, "channels", "PNG channels must be 3 (RGB) or 4 (RGBA), got 2"},
           Bad{2, 2, 4, "pixels", "PNG pixels: 12 bytes given, 2x2x4 needs 16"},
           Bad{2, 1, 3, "pixels", "PNG pixels: 12 bytes given, 2x1x3 needs 6"},
       }) {
    auto r = encodePng(px, b.w, b.h, b.c);
    ASSERT_FALSE(r) << b.w << "x" << b.h << "x" << b.c;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(r.error().field, b.field);
    EXPECT_NE(r.error().message.find(b.message), std::string::npos) << r.error().message;
  }
}

}  // namespace
}  // namespace statim::diffusion
