#include "core/media_type.h"

namespace statim {

std::string sniffContentType(std::string_view b) {
  auto starts = [&](std::string_view magic, size_t at = 0) { return b.size() >= at + magic.size() && b.substr(at, magic.size()) == magic; };
  if (starts("\x89PNG\r\n\x1a\n")) return "image/png";
  if (starts("\xff\xd8\xff")) return "image/jpeg";
  if (starts("GIF87a") || starts("GIF89a")) return "image/gif";
  // BMP: "BM", then (at 14) the size of the header that follows, one of the known versions'.
  if (starts("BM") && b.size() >= 18) {
    auto u = [&](size_t i) { return static_cast<unsigned>(static_cast<unsigned char>(b[i])); };
    unsigned dib = u(14) | u(15) << 8 | u(16) << 16 | u(17) << 24;
    if (dib == 12 || dib == 40 || dib == 52 || dib == 56 || dib == 64 || dib == 108 || dib == 124) return "image/bmp";
  }
  if (starts("RIFF") && starts("WAVE", 8)) return "audio/wav";
  if (starts("fLaC")) return "audio/flac";
  if (starts("OggS")) return "audio/ogg";
  if (starts("ID3")) return "audio/mpeg";
  // An MPEG audio frame: 11 sync bits, then a layer that is not "reserved".
  if (b.size() >= 2 && static_cast<unsigned char>(b[0]) == 0xff && (static_cast<unsigned char>(b[1]) & 0xe0) == 0xe0 &&
      (static_cast<unsigned char>(b[1]) & 0x06) != 0) {
    return "audio/mpeg";
  }
  return "application/octet-stream";
}

}  // namespace statim
