// The few cryptographic primitives statim needs (OpenSSL's libcrypto underneath): hashing API
// keys, signing webhook bodies, random secrets, and constant-time comparison.
#pragma once

#include <string>
#include <string_view>

namespace statim::crypto {

std::string sha256Hex(std::string_view data);
// HMAC-SHA256 of `data` under `key`, lower-case hex.
std::string hmacSha256Hex(std::string_view key, std::string_view data);
// `bytes` random bytes from the OS CSPRNG, lower-case hex (2 * bytes characters).
std::string randomHex(size_t bytes);
// Equal contents, in time that depends only on the lengths.
bool constantTimeEqual(std::string_view a, std::string_view b);

}  // namespace statim::crypto
