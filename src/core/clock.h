// Wall-clock time as microseconds since the epoch, and its ISO-8601 renderings.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "statim/job.h"

namespace statim {

Micros nowMicros();
// "2024-04-07T15:22:05.813912": the original API's `timestamp` (UTC, no zone suffix).
std::string formatTimestamp(Micros t);
// "2024-04-07T15:22:05.813912Z": RFC 3339 / ISO-8601 UTC.
std::string formatIsoUtc(Micros t);
// Parses "YYYY-MM-DDTHH:MM:SS[.ffffff][Z]" (UTC); nullopt when malformed.
std::optional<Micros> parseIsoUtc(std::string_view text);

}  // namespace statim
