// Content types of input files, told from their first bytes (never from a client's claim).
#pragma once

#include <string>
#include <string_view>

namespace statim {

// "image/png", "image/jpeg", "image/gif", "image/bmp", "audio/wav", "audio/flac", "audio/ogg", "audio/mpeg", or
// "application/octet-stream" when none matches.
std::string sniffContentType(std::string_view bytes);

}  // namespace statim
