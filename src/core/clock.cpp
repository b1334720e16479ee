#include "core/clock.h"

#include <chrono>
#include <cstdio>
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

std::optional<Micros> parseIsoUtc(std::string_view text) {
  using namespace std::chrono;
  if (text.ends_with('Z')) text.remove_suffix(1);
  int y = 0;
  unsigned mo = 0, d = 0, h = 0, mi = 0, s = 0;
  char tail[16] = {};
  std::string copy(text);
  int n = std::sscanf(copy.c_str(), "%4d-%2u-%2uT%2u:%2u:%2u%15s", &y, &mo, &d, &h, &mi, &s, tail);
  if (n < 6 || copy.size() < 19 || h > 23 || mi > 59 || s > 60) return std::nullopt;
  year_month_day ymd{year{y}, month{mo}, day{d}};
  if (!ymd.ok()) return std::nullopt;
  Micros frac = 0;
  if (n == 7) {
    std::string_view f(tail);
    if (f.size() < 2 || f[0] != '.' || f.size() > 7) return std::nullopt;
    for (size_t i = 1; i < 7; ++i) {
      char c = i < f.size() ? f[i] : '0';
      if (c < '0' || c > '9') return std::nullopt;
      frac = frac * 10 + (c - '0');
    }
  }
  auto tp = sys_days{ymd} + hours{h} + minutes{mi} + seconds{s};
  return duration_cast<microseconds>(tp.time_since_epoch()).count() + frac;
}

}  // namespace statim
