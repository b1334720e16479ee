#include "core/logging.h"

#include <atomic>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "core/clock.h"

namespace statim::log {
namespace {

std::atomic<bool> g_json{false};

spdlog::level::level_enum toSpd(Level l) {
  switch (l) {
    case Level::kDebug: return spdlog::level::debug;
    case Level::kInfo: return spdlog::level::info;
    case Level::kWarn: return spdlog::level::warn;
    case Level::kError: return spdlog::level::err;
  }
  return spdlog::level::info;
}

std::string_view levelName(Level l) {
  switch (l) {
    case Level::kDebug: return "debug";
    case Level::kInfo: return "info";
    case Level::kWarn: return "warn";
    case Level::kError: return "error";
  }
  return "info";
}

}  // namespace

void init(std::string_view level, std::string_view format) {
  auto logger = spdlog::stderr_color_mt("statim");
  g_json = format == "json";
  // JSON lines carry their own time and level; text lines get spdlog's.
  logger->set_pattern(g_json ? "%v" : "%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
  logger->set_level(spdlog::level::from_str(std::string(level)));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

bool enabled(Level level) { return spdlog::default_logger_raw()->should_log(toSpd(level)); }

void event(Level level, std::string_view message, const nlohmann::json& fields) {
  auto spd = toSpd(level);
  if (!spdlog::default_logger_raw()->should_log(spd)) return;
  if (g_json) {
    nlohmann::json line = {{"time", formatIsoUtc(nowMicros())}, {"level", levelName(level)}, {"msg", message}};
    for (auto& [k, v] : fields.items()) line[k] = v;
    spdlog::log(spd, "{}", line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    return;
  }
  std::string text(message);
  for (auto& [k, v] : fields.items()) {
    text += ' ';
    text += k;
    text += '=';
    text += v.is_string() ? v.get<std::string>() : v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  spdlog::log(spd, "{}", text);
}

}  // namespace statim::log
