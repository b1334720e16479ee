// HTTP(S) URLs as statim accepts them from clients (webhook targets).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "statim/error.h"

namespace statim {

struct HttpUrl {
  std::string scheme;  // "http" | "https"
  std::string host;    // name, IPv4, or [IPv6]
  std::uint16_t port = 0;
  std::string target;  // path and query, at least "/"
  std::string origin() const;  // scheme://host:port
};

// Parses an absolute http(s) URL with a host; no user-info, no fragment, printable ASCII only.
// Errors are kInvalidArgument naming `field` and the rule broken.
Result<HttpUrl> parseHttpUrl(std::string_view text, const std::string& field);

}  // namespace statim
