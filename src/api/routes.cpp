#include "api/routes.h"

#include <cctype>
#include <mutex>

namespace statim::api {
namespace {

std::vector<RouteInfo>& routes() {
  static std::vector<RouteInfo> r;
  return r;
}

// "/job/{id}" matches "/job/17": segments in braces match any one segment.
bool matches(const std::string& pattern, const std::string& path) {
  size_t i = 0, j = 0;
  while (i < pattern.size() && j < path.size()) {
    if (pattern[i] == '{') {
      i = pattern.find('}', i);
      if (i == std::string::npos) return false;
      ++i;
      while (j < path.size() && path[j] != '/') ++j;
      continue;
    }
    // Drogon matches paths without regard to case: so must the checks made on its behalf.
    if (std::tolower(static_cast<unsigned char>(pattern[i])) != std::tolower(static_cast<unsigned char>(path[j]))) {
      return false;
    }
    ++i;
    ++j;
  }
  return i == pattern.size() && j == path.size();  // Drogon routes no trailing slash
}

}  // namespace

const char* methodName(drogon::HttpMethod m) {
  switch (m) {
    case drogon::Get: return "GET";
    case drogon::Post: return "POST";
    case drogon::Put: return "PUT";
    case drogon::Delete: return "DELETE";
    case drogon::Patch: return "PATCH";
    case drogon::Head: return "HEAD";
    case drogon::Options: return "OPTIONS";
    default: return "OTHER";
  }
}

void noteRoute(const std::string& path, drogon::HttpMethod method, Access access) {
  routes().push_back({path, method, access});
}

const RouteInfo* findRoute(const std::string& request_path, drogon::HttpMethod method) {
  for (auto& r : routes()) {
    if (r.method == method && matches(r.path, request_path)) return &r;
  }
  return nullptr;
}

const std::vector<RouteInfo>& registeredRoutes() { return routes(); }

std::string allowedMethods(const std::string& request_path) {
  std::string out;
  for (auto& r : routes()) {
    if (!matches(r.path, request_path)) continue;
    std::string name = methodName(r.method);
    if (out.find(name) != std::string::npos) continue;
    out += (out.empty() ? "" : ", ") + name;
  }
  return out;
}

}  // namespace statim::api
