// Errors are values across module boundaries: every fallible call returns Result<T>.
// The API layer maps ErrorCode to an HTTP status in one place (src/api/errors.cpp).
#pragma once

#include <expected>
#include <string>
#include <utility>

namespace statim {

enum class ErrorCode {
  kInvalidArgument,   // the caller sent something malformed or out of range
  kNotFound,          // the named job / model does not exist
  kModelNotFound,     // unknown model id
  kModelUnavailable,  // the model exists but is not loaded (failed or still loading)
  kQueueFull,         // back-pressure: the model's queue is at max_queue
  kUnauthenticated,   // no API key, or one that is unknown or revoked
  kPermissionDenied,  // the key lacks the scope or the model
  kRateLimited,       // the key's request rate or queued-jobs limit
  kPayloadTooLarge,
  kUnsupportedMediaType,  // an input file of a type the model does not read
  kMethodNotAllowed,
  kConflict,
  kCancelled,           // the job was cancelled while running
  kShuttingDown,        // the server is stopping and takes no new work
  kStorage,             // the job store failed (I/O, corruption, constraint)
  kStorageFull,         // the data dir's filesystem is full: nothing was written (507)
  kStorageUnavailable,  // the data dir cannot be written (read-only, I/O errors): nothing was written (503)
  kBackend,             // inference failed inside a backend
  kInternal,
};

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
  // Optional: the request field the error is about ("prompt", "params.max_tokens").
  std::string field;

  static Error invalid(std::string msg, std::string field = {}) {
    return {ErrorCode::kInvalidArgument, std::move(msg), std::move(field)};
  }
  static Error notFound(std::string msg) { return {ErrorCode::kNotFound, std::move(msg), {}}; }
  static Error storage(std::string msg) { return {ErrorCode::kStorage, std::move(msg), {}}; }
  static Error backend(std::string msg) { return {ErrorCode::kBackend, std::move(msg), {}}; }
  static Error internal(std::string msg) { return {ErrorCode::kInternal, std::move(msg), {}}; }
};

template <typename T>
using Result = std::expected<T, Error>;

// For Result<void> returns: `return ok();`
inline Result<void> ok() { return {}; }

inline std::unexpected<Error> fail(Error e) { return std::unexpected<Error>(std::move(e)); }
inline std::unexpected<Error> fail(ErrorCode code, std::string msg) {
  return std::unexpected<Error>(Error{code, std::move(msg), {}});
}

std::string_view errorCodeName(ErrorCode code);

}  // namespace statim
