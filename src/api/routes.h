// Route registration with a record of every (path pattern, method) pair, so the server can answer
// 405 with `Allow` for a known path and list its routes (docs, completeness checks).
#pragma once

#include <string>
#include <vector>

#include <drogon/HttpAppFramework.h>

namespace statim::api {

struct RouteInfo {
  std::string path;  // Drogon pattern, e.g. "/job/{id}"
  drogon::HttpMethod method;
};

void noteRoute(const std::string& path, drogon::HttpMethod method);
const std::vector<RouteInfo>& registeredRoutes();
// The methods registered for a concrete request path ("GET, POST"); empty when none matches.
std::string allowedMethods(const std::string& request_path);

template <typename Handler>
void addRoute(const std::string& path, drogon::HttpMethod method, Handler&& handler) {
  noteRoute(path, method);
  // Always hand Drogon its own copy: given an lvalue it would keep a reference to it.
  drogon::app().registerHandler(path, std::decay_t<Handler>(std::forward<Handler>(handler)), {method});
}

}  // namespace statim::api
