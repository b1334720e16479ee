// Route registration with a record of every (path pattern, method) pair, so the server can answer
// 405 with `Allow` for a known path and list its routes (docs, completeness checks).
#pragma once

#include <string>
#include <vector>

#include <drogon/HttpAppFramework.h>

namespace statim::api {

// Who may call a route when auth.mode is `required`.
enum class Access {
  kPublic,  // no key needed: health, version, docs
  kUser,    // any valid key
  kAdmin,   // a key with scope admin
};

struct RouteInfo {
  std::string path;  // Drogon pattern, e.g. "/job/{id}"
  drogon::HttpMethod method;
  Access access;
};

void noteRoute(const std::string& path, drogon::HttpMethod method, Access access);
const std::vector<RouteInfo>& registeredRoutes();
// The route a request goes to, or null when none matches its path and method.
const RouteInfo* findRoute(const std::string& request_path, drogon::HttpMethod method);
const char* methodName(drogon::HttpMethod m);
// The methods registered for a concrete request path ("GET, POST"); empty when none matches.
std::string allowedMethods(const std::string& request_path);

template <typename Handler>
void addRoute(const std::string& path, drogon::HttpMethod method, Access access, Handler&& handler) {
  noteRoute(path, method, access);
  // Always hand Drogon its own copy: given an lvalue it would keep a reference to it.
  drogon::app().registerHandler(path, std::decay_t<Handler>(std::forward<Handler>(handler)), {method});
}

}  // namespace statim::api
