#include "statim/error.h"

namespace statim {

std::string_view errorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return "invalid_request";
    case ErrorCode::kNotFound: return "not_found";
    case ErrorCode::kModelNotFound: return "model_not_found";
    case ErrorCode::kModelUnavailable: return "model_unavailable";
    case ErrorCode::kQueueFull: return "queue_full";
    case ErrorCode::kUnauthenticated: return "unauthenticated";
    case ErrorCode::kPermissionDenied: return "permission_denied";
    case ErrorCode::kRateLimited: return "rate_limited";
    case ErrorCode::kPayloadTooLarge: return "payload_too_large";
    case ErrorCode::kUnsupportedMediaType: return "unsupported_media_type";
    case ErrorCode::kMethodNotAllowed: return "method_not_allowed";
    case ErrorCode::kConflict: return "conflict";
    case ErrorCode::kCancelled: return "cancelled";
    case ErrorCode::kShuttingDown: return "shutting_down";
    case ErrorCode::kStorage: return "storage_error";
    case ErrorCode::kStorageFull: return "insufficient_storage";
    case ErrorCode::kStorageUnavailable: return "storage_unavailable";
    case ErrorCode::kBackend: return "backend_error";
    case ErrorCode::kInternal: return "internal_error";
  }
  return "internal_error";
}

}  // namespace statim
