#include "backends/media/image.h"

#include <cstdio>
#include <format>
#include <memory>

// The one place stb_image's implementation is compiled (the header comes from libstb-dev; the
// shared libstb is not linked, so there is no second copy). PNG and JPEG only.
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_NO_STDIO_WARNINGS
#include <stb/stb_image.h>

namespace statim::media {
namespace {

struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};
using FilePtr = std::unique_ptr<FILE, FileCloser>;

struct StbFree {
  void operator()(stbi_uc* p) const { stbi_image_free(p); }
};

}  // namespace

Result<std::pair<int, int>> imageSize(const std::filesystem::path& file) {
  FilePtr f(std::fopen(file.c_str(), "rb"));
  if (!f) return fail(Error::backend(std::format("cannot open {}", file.string())));
  int w = 0, h = 0, n = 0;
  if (!stbi_info_from_file(f.get(), &w, &h, &n)) {
    return fail(Error::invalid(std::format("the image could not be decoded (header: {})", stbi_failure_reason())));
  }
  return std::pair{w, h};
}

Result<Image> decodeImage(const std::filesystem::path& file, int channels, std::int64_t max_pixels) {
  auto size = imageSize(file);
  if (!size) return fail(size.error());
  auto [w, h] = *size;
  if (static_cast<std::int64_t>(w) * h > max_pixels) {
    return fail(Error{
        ErrorCode::kPayloadTooLarge,
        std::format("the image is {}x{} pixels; this model takes at most {} pixels (max_pixels)", w, h, max_pixels),
        {}});
  }
  FilePtr f(std::fopen(file.c_str(), "rb"));
  if (!f) return fail(Error::backend(std::format("cannot open {}", file.string())));
  int n = 0;
  std::unique_ptr<stbi_uc, StbFree> data(stbi_load_from_file(f.get(), &w, &h, &n, channels));
  if (!data) return fail(Error::invalid(std::format("the image could not be decoded ({})", stbi_failure_reason())));
  Image img{w, h, channels, {}};
  img.pixels.assign(data.get(), data.get() + static_cast<size_t>(w) * h * channels);
  return img;
}

}  // namespace statim::media
