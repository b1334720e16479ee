// Error -> HTTP response: the one place that maps ErrorCode to a status code.
// Body: {"error": {"code", "type", "message", "param"}} (OpenAI-compatible shape).
#pragma once

#include <drogon/HttpResponse.h>

#include "statim/error.h"

namespace statim::api {

int httpStatus(ErrorCode code);
drogon::HttpResponsePtr errorResponse(const Error& error);

}  // namespace statim::api
