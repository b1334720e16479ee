#include "api/server.h"

#include <chrono>
#include <filesystem>
#include <format>
#include <random>

#include <drogon/HttpAppFramework.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api/dto/anthropic_dto.h"
#include "api/errors.h"
#include "api/filters/auth.h"
#include "api/http_util.h"
#include "api/routes.h"
#include "api/sse.h"
#include "core/clock.h"
#include "core/logging.h"

namespace statim::api {
namespace {

using Clock = std::chrono::steady_clock;

std::int64_t g_max_body_bytes = 0;  // for the 413 message; set once in configureServer

// Accept a caller's X-Request-Id when it is short and printable; otherwise make one.
std::string requestId(const drogon::HttpRequest& req) {
  const std::string& given = req.getHeader("x-request-id");
  if (!given.empty() && given.size() <= 128 && std::ranges::all_of(given, [](char c) { return c > 32 && c < 127; })) {
    return given;
  }
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::format("{:016x}", rng());
}

// Port 0 means "any free port". Drogon would bind each I/O thread's socket separately (each to a
// different port), so the port is chosen once here.
std::uint16_t freePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  std::uint16_t port = 0;
  if (fd >= 0 && bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  if (fd >= 0) close(fd);
  return port;
}

Error payloadTooLarge() {
  return {
      ErrorCode::kPayloadTooLarge,
      std::format("request body is larger than the server's limit of {} bytes (http.max_body_bytes)", g_max_body_bytes),
      {}};
}

// Responses for requests no handler took: Drogon's own rejections (405, 413, ...) and paths no
// route matched. A known path with another method is a 405 with `Allow` (OPTIONS: 204 + Allow).
drogon::HttpResponsePtr unroutedResponse(drogon::HttpStatusCode code, const drogon::HttpRequest& req) {
  if (code == drogon::k413RequestEntityTooLarge) return errorResponse(payloadTooLarge());
  std::string allow = allowedMethods(req.path());
  if (allow.empty())
    return errorResponse(Error::notFound(std::format("no route for {} {}", req.methodString(), req.path())));
  if (req.method() == drogon::Options) {
    auto resp = drogon::HttpResponse::newHttpResponse();
    resp->setStatusCode(drogon::k204NoContent);
    resp->addHeader("Allow", allow);
    return resp;
  }
  if (code == drogon::k405MethodNotAllowed || code == drogon::k404NotFound || code == drogon::k403Forbidden) {
    auto resp = errorResponse(
        Error{ErrorCode::kMethodNotAllowed,
              std::format("method {} is not allowed on {} (allowed: {})", req.methodString(), req.path(), allow),
              {}});
    resp->addHeader("Allow", allow);
    return resp;
  }
  return errorResponse(
      Error::invalid(std::format("request rejected by the HTTP layer (status {})", static_cast<int>(code))));
}

bool mutating(drogon::HttpMethod m) {
  return m == drogon::Post || m == drogon::Put || m == drogon::Patch || m == drogon::Delete;
}

const std::vector<double> kHttpSecondsBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                 0.1,    0.25,  0.5,    1,     2.5,  5,     10};

// After a response: the access log line, HTTP metrics, and (for mutating requests and refused
// credentials) the audit row.
void recordResponse(const ApiContext& ctx, const drogon::HttpRequest& req, const drogon::HttpResponse& resp,
                    const std::string& request_id) {
  auto attrs = req.attributes();
  double seconds =
      attrs->find("start")
          ? std::chrono::duration<double>(Clock::now() - attrs->get<Clock::time_point>("start")).count()
          : 0.0;
  int status = static_cast<int>(resp.statusCode());
  std::string route = attrs->find("route") ? attrs->get<std::string>("route") : "";
  Principal who = principalOf(req);
  std::optional<JobId> job_id;
  if (attrs->find("job_id")) job_id = attrs->get<JobId>("job_id");

  ctx.metrics.add("statim_http_requests_total",
                  {{"method", req.methodString()}, {"route", route.empty() ? "unmatched" : route},
                   {"status", std::to_string(status)}});
  ctx.metrics.observe("statim_http_request_duration_seconds", {{"route", route.empty() ? "unmatched" : route}},
                      seconds);

  if (mutating(req.method()) || status == 401 || status == 403) {
    AuditEntry e;
    e.time = nowMicros();
    if (who.key) {
      e.key_id = who.key->id;
      e.key_name = who.key->name;
    }
    e.remote = req.peerAddr().toIp();
    e.method = req.methodString();
    e.route = route.empty() ? req.path() : route;
    e.path = req.path().substr(0, 1024);
    e.job_id = job_id;
    e.status = status;
    e.request_id = request_id;
    ctx.audit.appendAudit(std::move(e));
  }

  if (!log::enabled(status >= 500 ? log::Level::kError : log::Level::kInfo)) return;
  nlohmann::json fields = {{"request_id", request_id},
                           {"method", req.methodString()},
                           {"path", req.path()},
                           {"status", status},
                           {"duration_ms", std::round(seconds * 1e6) / 1000},
                           {"remote", req.peerAddr().toIp()}};
  if (who.key) fields["key"] = who.key->name;
  if (job_id) fields["job_id"] = *job_id;
  if (attrs->find("model")) fields["model"] = attrs->get<std::string>("model");
  if (status >= 500)
    log::error("http", fields);
  else
    log::info("http", fields);
}

}  // namespace

void configureServer(const ApiContext& ctx) {
  auto& app = drogon::app();
  const Config& c = ctx.config;
  g_max_body_bytes = c.http_max_body_bytes;
  app.addListener(c.http_host, c.http_port == 0 ? freePort() : static_cast<std::uint16_t>(c.http_port));
  app.setThreadNum(c.http_threads > 0 ? static_cast<size_t>(c.http_threads) : 0);
  // Drogon answers bodies over its own limit with a bare 413 and closes the connection, so its
  // limit sits well above ours: most oversize bodies reach the check below and get a JSON error.
  const auto framework_limit =
      static_cast<size_t>(std::max<std::int64_t>(4 * c.http_max_body_bytes, c.http_max_body_bytes + (1 << 20)));
  app.setClientMaxBodySize(framework_limit);
  app.setClientMaxMemoryBodySize(framework_limit);
  // A request waiting for a job's end (?wait=) sends nothing meanwhile: Drogon's idle timeout
  // (60 s by default) must not close its connection first.
  app.setIdleConnectionTimeout(static_cast<size_t>(std::max(60.0, c.jobs_max_wait_seconds + 30)));
  app.setLogLevel(trantor::Logger::kWarn);
  app.setServerHeaderField("statim/" STATIM_VERSION);
  // No static files: only the routes below answer.
  app.setDocumentRoot("/nonexistent-statim-docroot");
  app.setFileTypes({});
  // Drogon keeps large request bodies in files under <upload path>/tmp (default: ./uploads, in
  // whatever directory the server was started from): they belong in the data dir.
  app.setUploadPath(std::filesystem::absolute(c.data_dir / "http-uploads").string());

  ctx.metrics.declareCounter("statim_http_requests_total", "HTTP requests answered, by method, route and status.");
  ctx.metrics.declareHistogram("statim_http_request_duration_seconds",
                               "Time to answer HTTP requests (streams: until the headers), by route.",
                               kHttpSecondsBuckets);
  auto auth = std::make_shared<Authenticator>(ctx.keys, c.auth_mode == "required");

  app.registerPreRoutingAdvice([](const drogon::HttpRequestPtr& req) {
    req->attributes()->insert("request_id", requestId(*req));
    req->attributes()->insert("start", Clock::now());
  });
  // Authentication comes first: a client without a valid key learns nothing else.
  app.registerPreRoutingAdvice(
      [auth](const drogon::HttpRequestPtr& req, drogon::AdviceCallback&& respond, drogon::AdviceChainCallback&& next) {
        // HEAD is answered by GET handlers, so it is checked as GET.
        auto method = req->method() == drogon::Head ? drogon::Get : req->method();
        const RouteInfo* route = findRoute(req->path(), method);
        if (route) req->attributes()->insert("route", route->path);
        auto decision = auth->check(*req, route);
        setPrincipal(*req, decision.principal);
        if (decision.error) {
          auto resp = errorResponse(*decision.error);
          if (decision.retry_after > 0) {
            resp->removeHeader("Retry-After");
            resp->addHeader("Retry-After", std::to_string(static_cast<long>(decision.retry_after)));
          }
          return respond(resp);
        }
        next();
      });
  app.registerPreRoutingAdvice([limit = c.http_max_body_bytes](const drogon::HttpRequestPtr& req,
                                                               drogon::AdviceCallback&& respond,
                                                               drogon::AdviceChainCallback&& next) {
    if (static_cast<std::int64_t>(req->body().size()) > limit) {
      return respond(errorResponse(payloadTooLarge()));
    }
    next();
  });
  app.registerPreSendingAdvice([&ctx](const drogon::HttpRequestPtr& req, const drogon::HttpResponsePtr& resp) {
    // The Anthropic routes answer errors in Anthropic's shape, whoever made the error (the auth
    // advice, the body limit, the route).
    if (isAnthropicRoute(req->path()) && static_cast<int>(resp->statusCode()) >= 400 &&
        resp->contentType() == drogon::CT_APPLICATION_JSON) {
      auto body = nlohmann::json::parse(resp->body(), nullptr, false);
      if (body.is_object() && body.contains("error")) {
        resp->setBody(anthropicError(static_cast<int>(resp->statusCode()), body["error"]).dump());
      }
    }
    auto attrs = req->attributes();
    std::string id = attrs->find("request_id") ? attrs->get<std::string>("request_id") : requestId(*req);
    resp->addHeader("X-Request-Id", id);
    recordResponse(ctx, *req, *resp, id);
  });
  registerSseAdvice(app);
  app.setCustomErrorHandler(
      [](drogon::HttpStatusCode code, const drogon::HttpRequestPtr& req) { return unroutedResponse(code, *req); });
  app.setDefaultHandler(
      [](const drogon::HttpRequestPtr& req, Callback&& cb) { cb(unroutedResponse(drogon::k404NotFound, *req)); });

  registerSystemRoutes(ctx);
  // A worker node (node.role = worker) runs models for the jobs API nodes accept: it answers
  // /healthz, /readyz, /version and /metrics only.
  if (ctx.config.node_role == "worker") return;
  registerJobRoutes(ctx);
  registerModelRoutes(ctx);
  registerOpenAiRoutes(ctx);
  registerOpenAiSpeechRoutes(ctx);
  registerOpenAiAudioRoutes(ctx);
  registerOpenAiImageRoutes(ctx);
  registerAnthropicRoutes(ctx);
  registerResponsesRoutes(ctx);
  registerTokenizeRoutes(ctx);
  registerAdminRoutes(ctx);
  registerDocsRoutes(ctx);
  registerUiRoutes(ctx);
  if (!auth->required()) {
    log::warn("auth: auth.mode is off: every client may do everything (set auth.mode = \"required\" and create keys "
              "with `statim keys create`)");
  }
}

}  // namespace statim::api
