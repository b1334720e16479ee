// The OpenAPI document compiled into the binary (src/api/openapi/openapi.json).
#pragma once

#include <string_view>

namespace statim::api {

std::string_view openApiDocument();

}  // namespace statim::api
