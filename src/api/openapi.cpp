// GET /openapi.json (the API's OpenAPI 3.1 document) and GET /docs (Swagger UI over it).
// Everything is compiled into the binary (#embed): the docs work offline, with no CDN.
#include <string_view>

#include <drogon/HttpAppFramework.h>

#include "api/http_util.h"
#include "api/openapi.h"
#include "api/routes.h"
#include "api/server.h"

namespace statim::api {
namespace {

constexpr unsigned char kOpenApi[] = {
#embed "openapi/openapi.json"
    , 0};
constexpr unsigned char kDocsHtml[] = {
#embed "openapi/docs.html"
    , 0};
constexpr unsigned char kSwaggerJs[] = {
#embed "../../third_party/swagger-ui/swagger-ui-bundle.js"
    , 0};
constexpr unsigned char kSwaggerCss[] = {
#embed "../../third_party/swagger-ui/swagger-ui.css"
    , 0};

template <size_t N>
std::string_view text(const unsigned char (&data)[N]) {
  return {reinterpret_cast<const char*>(data), N - 1};
}

void addAsset(const std::string& path, std::string_view body, const char* content_type) {
  addRoute(path, drogon::Get, Access::kPublic, [body, content_type](const drogon::HttpRequestPtr&, Callback&& cb) {
    auto resp = drogon::HttpResponse::newHttpResponse();
    resp->setContentTypeString(content_type);
    resp->setBody(std::string(body));
    resp->addHeader("Cache-Control", "public, max-age=3600");
    cb(resp);
  });
}

}  // namespace

std::string_view openApiDocument() { return text(kOpenApi); }

void registerDocsRoutes(const ApiContext&) {
  addAsset("/openapi.json", text(kOpenApi), "application/json");
  addAsset("/docs", text(kDocsHtml), "text/html; charset=utf-8");
  addAsset("/docs/swagger-ui-bundle.js", text(kSwaggerJs), "text/javascript; charset=utf-8");
  addAsset("/docs/swagger-ui.css", text(kSwaggerCss), "text/css; charset=utf-8");
}

}  // namespace statim::api
