#include "core/clock.h"

#include <chrono>
#include <format>

namespace statim {

Micros nowMicros() {
  using namespace std::chrono;
  return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
}

std::string formatTimestamp(Micros t) {
  using namespace std::chrono;
  sys_time<microseconds> tp{microseconds{t}};
  return std::format("{:%Y-%m-%dT%H:%M:%S}", tp);  // %S carries the 6 fractional digits
}

std::string formatIsoUtc(Micros t) { return formatTimestamp(t) + "Z"; }

}  // namespace statim
