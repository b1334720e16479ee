// Image files decoded to pixels (stb_image; PNG and JPEG), for the backends that read images.
// Plain functions, no shared state: safe from any thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <utility>
#include <vector>

#include "statim/error.h"

namespace statim::media {

// Interleaved 8-bit pixels, `channels` per pixel (1 gray, 3 RGB).
struct Image {
  int width = 0, height = 0, channels = 0;
  std::vector<std::uint8_t> pixels;
};

// Reads width/height from the header only (no decode). Fails when the header is unreadable.
Result<std::pair<int, int>> imageSize(const std::filesystem::path& file);

// Decodes a PNG/JPEG into `channels` (1 or 3) channels. Refuses images over max_pixels
// (kPayloadTooLarge) before decoding them; a corrupt file is kInvalidArgument with stb's reason.
Result<Image> decodeImage(const std::filesystem::path& file, int channels, std::int64_t max_pixels);

}  // namespace statim::media
