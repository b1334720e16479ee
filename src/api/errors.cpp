#include "api/errors.h"

#include <nlohmann/json.hpp>

#include "api/http_util.h"

namespace statim::api {
namespace {

std::string_view errorType(int status) {
  switch (status) {
    case 400:
    case 405:
    case 409:
    case 413:
    case 415: return "invalid_request_error";
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 429: return "rate_limit_error";
    case 503:
    case 507: return "unavailable_error";
    default: return "server_error";
  }
}

}  // namespace

int httpStatus(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return 400;
    case ErrorCode::kNotFound: return 404;
    case ErrorCode::kModelNotFound: return 404;
    case ErrorCode::kModelUnavailable: return 503;
    case ErrorCode::kQueueFull: return 429;
    case ErrorCode::kUnauthenticated: return 401;
    case ErrorCode::kPermissionDenied: return 403;
    case ErrorCode::kRateLimited: return 429;
    case ErrorCode::kPayloadTooLarge: return 413;
    case ErrorCode::kUnsupportedMediaType: return 415;
    case ErrorCode::kMethodNotAllowed: return 405;
    case ErrorCode::kConflict: return 409;
    case ErrorCode::kCancelled: return 409;
    case ErrorCode::kShuttingDown: return 503;
    case ErrorCode::kStorage: return 500;
    case ErrorCode::kStorageFull: return 507;
    case ErrorCode::kStorageUnavailable: return 503;
    case ErrorCode::kBackend: return 500;
    case ErrorCode::kInternal: return 500;
  }
  return 500;
}

drogon::HttpResponsePtr errorResponse(const Error& error) {
  int status = httpStatus(error.code);
  nlohmann::json body = {{"error",
                          {{"code", errorCodeName(error.code)},
                           {"type", errorType(status)},
                           {"message", error.message},
                           {"param", error.field.empty() ? nlohmann::json(nullptr) : nlohmann::json(error.field)}}}};
  auto resp = jsonResponse(body, status);
  if (error.code == ErrorCode::kStorageFull || error.code == ErrorCode::kStorageUnavailable) {
    resp->addHeader("Retry-After", "10");  // until space (or the disk) comes back
  }
  if (error.code == ErrorCode::kQueueFull || error.code == ErrorCode::kRateLimited) {
    resp->addHeader("Retry-After", "1");  // the rate limiter overrides it with the bucket's wait
  }
  if (error.code == ErrorCode::kUnauthenticated) resp->addHeader("WWW-Authenticate", "Bearer");
  if (error.code == ErrorCode::kShuttingDown || error.code == ErrorCode::kModelUnavailable) {
    resp->addHeader("Retry-After", "5");
  }
  return resp;
}

}  // namespace statim::api
