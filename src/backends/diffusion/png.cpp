#include "backends/diffusion/png.h"

#include <cstring>
#include <format>

#include <png.h>

namespace statim::diffusion {
namespace {

constexpr int kMaxSide = 16384;

// png_image keeps libpng's state behind `opaque` until png_image_free; free it on every path.
struct ImageGuard {
  png_image* image;
  ~ImageGuard() { png_image_free(image); }
};

}  // namespace

Result<std::string> encodePng(std::span<const std::uint8_t> pixels, int width, int height, int channels) {
  if (width < 1 || width > kMaxSide || height < 1 || height > kMaxSide) {
    return fail(Error::invalid(
        std::format("PNG size {}x{} is out of range (width and height 1..{})", width, height, kMaxSide), "size"));
  }
  if (channels != 3 && channels != 4) {
    return fail(Error::invalid(std::format("PNG channels must be 3 (RGB) or 4 (RGBA), got {}", channels), "channels"));
  }
  const auto expected = static_cast<std::size_t>(width) * static_cast<std::size_t>(height) * channels;
  if (pixels.size() != expected) {
    return fail(Error::invalid(std::format("PNG pixels: {} bytes given, {}x{}x{} needs {}", pixels.size(), width,
                                           height, channels, expected),
                               "pixels"));
  }

  // libpng's simplified write API: no setjmp/longjmp through our frames (errors come back as 0).
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(width);
  image.height = static_cast<png_uint_32>(height);
  image.format = channels == 4 ? PNG_FORMAT_RGBA : PNG_FORMAT_RGB;
  ImageGuard guard{&image};
  const auto stride = static_cast<png_int_32>(width * channels);
  // One pass into a buffer of libpng's worst-case size (asking for the size first would compress
  // the image twice).
  png_alloc_size_t size = PNG_IMAGE_PNG_SIZE_MAX(image);
  std::string out(size, '\0');
  if (!png_image_write_to_memory(&image, out.data(), &size, 0, pixels.data(), stride, nullptr)) {
    return fail(Error::internal(std::format("libpng could not encode the image: {}", image.message)));
  }
  out.resize(size);
  return out;
}

}  // namespace statim::diffusion
