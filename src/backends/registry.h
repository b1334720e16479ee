// The one place that knows which backends exist.
#pragma once

#include <string>
#include <string_view>

#include "statim/backend.h"

namespace statim {

// The backend registered under `name`, or null. Backends are static and live forever.
const Backend* findBackend(std::string_view name);
// "echo, llama, ..." for error messages.
std::string backendList();

}  // namespace statim
