// `statim` subcommands.
#pragma once

#include "core/config.h"

namespace statim::cli {

int serve(const Config& config);

}  // namespace statim::cli
