// Structured logging over spdlog. One event = a message plus fields; rendered as
// `message key=value ...` (text) or one JSON object per line (json, for log shippers).
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace statim::log {

enum class Level { kDebug, kInfo, kWarn, kError };

// Call once at start-up; safe to skip in tests (defaults to text at info).
void init(std::string_view level, std::string_view format);

void event(Level level, std::string_view message, const nlohmann::json& fields = nlohmann::json::object());
// Whether events at `level` are written; lets hot paths skip building their fields.
bool enabled(Level level);

inline void debug(std::string_view m, const nlohmann::json& f = nlohmann::json::object()) {
  event(Level::kDebug, m, f);
}
inline void info(std::string_view m, const nlohmann::json& f = nlohmann::json::object()) { event(Level::kInfo, m, f); }
inline void warn(std::string_view m, const nlohmann::json& f = nlohmann::json::object()) { event(Level::kWarn, m, f); }
inline void error(std::string_view m, const nlohmann::json& f = nlohmann::json::object()) {
  event(Level::kError, m, f);
}

}  // namespace statim::log
