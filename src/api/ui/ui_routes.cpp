// The web dashboard at /ui: one page application, served from the binary (ui_assets.h). Every
// page has its own URL (/ui/jobs, /ui/jobs/{id}, /ui/try, /ui/models, /ui/admin), each answered
// with the same index.html; the app reads the path. Assets have content hashes in their names
// and are cached for good; index.html is revalidated. A strict Content-Security-Policy: nothing
// but this origin's own scripts, styles and API.
#include <format>

#include <drogon/HttpAppFramework.h>

#include "api/errors.h"
#include "api/http_util.h"
#include "api/routes.h"
#include "api/server.h"
#include "api/ui/ui_assets.h"

namespace statim::api {
namespace {

constexpr const char* kCsp =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob: data:; connect-src 'self'; font-src 'self'; manifest-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

constexpr std::string_view kPages[] = {"jobs", "try", "models", "admin"};

const UiAsset* findAsset(std::string_view path) {
  for (auto& a : uiAssets()) {
    if (a.path == path) return &a;
  }
  return nullptr;
}

drogon::HttpResponsePtr assetResponse(const UiAsset& a, bool immutable) {
  auto resp = drogon::HttpResponse::newHttpResponse();
  resp->setContentTypeString(std::string(a.content_type));
  resp->setBody(std::string(a.body));
  resp->addHeader("Cache-Control", immutable ? "public, max-age=31536000, immutable" : "no-cache");
  resp->addHeader("X-Content-Type-Options", "nosniff");
  return resp;
}

void sendIndex(const Callback& cb) {
  const UiAsset* index = findAsset("/index.html");
  auto resp = assetResponse(*index, false);
  resp->addHeader("Content-Security-Policy", kCsp);
  resp->addHeader("Referrer-Policy", "no-referrer");
  resp->addHeader("X-Frame-Options", "DENY");
  cb(resp);
}

}  // namespace

void registerUiRoutes(const ApiContext&) {
  addRoute("/ui", drogon::Get, Access::kPublic, [](const drogon::HttpRequestPtr&, Callback&& cb) { sendIndex(cb); });
  addRoute("/ui/{page}", drogon::Get, Access::kPublic,
           [](const drogon::HttpRequestPtr&, Callback&& cb, const std::string& page) {
             if (std::ranges::find(kPages, page) != std::end(kPages)) return sendIndex(cb);
             // Files at the top of ui/dist (the icon), else an unknown page.
             if (auto* a = findAsset("/" + page); a && page != "index.html") return cb(assetResponse(*a, false));
             cb(errorResponse(
                 Error::notFound(std::format("no dashboard page '{}' (pages: /ui/jobs, /ui/try, /ui/models, "
                                             "/ui/admin)",
                                             page.substr(0, 64)))));
           });
  addRoute("/ui/jobs/{id}", drogon::Get, Access::kPublic,
           [](const drogon::HttpRequestPtr&, Callback&& cb, const std::string&) { sendIndex(cb); });
  addRoute("/ui/assets/{name}", drogon::Get, Access::kPublic,
           [](const drogon::HttpRequestPtr&, Callback&& cb, const std::string& name) {
             auto* a = findAsset("/assets/" + name);
             if (!a)
               return cb(errorResponse(Error::notFound(std::format("no dashboard asset '{}'", name.substr(0, 64)))));
             cb(assetResponse(*a, true));
           });
}

}  // namespace statim::api
