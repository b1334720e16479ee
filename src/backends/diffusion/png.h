// PNG encoding (libpng) for generated images. Pure function, thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "statim/error.h"

namespace statim::diffusion {

// 8-bit RGB (or RGBA when channels == 4), rows top to bottom, into a PNG file's bytes (libpng).
// Errors (invalid argument): width or height not in 1..16384, channels other than 3 or 4,
// pixels.size() != width * height * channels.
Result<std::string> encodePng(std::span<const std::uint8_t> pixels, int width, int height, int channels = 3);

}  // namespace statim::diffusion
