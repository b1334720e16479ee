// A loaded model for routes that use it directly, without a job (token counting, tokenize):
// the model the caller may use, loaded on demand as a job would load it.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <drogon/HttpRequest.h>

#include "api/server.h"
#include "statim/backend.h"

namespace statim::api {

// Calls `fn` once with the model `id` loaded (at once, or once a load started here or already
// under way has settled: then on the loader's thread), or with why it cannot be: unknown or not
// the caller's (404 model_not_found), failed, or on a node that runs no models (503).
using WithModel = std::function<void(Result<std::shared_ptr<LoadedModel>>)>;
void withLoadedModel(const ApiContext& ctx, const drogon::HttpRequest& req, const std::string& id, WithModel fn);

}  // namespace statim::api
