// Names for statim's own threads, as `top -H`, `ps -L`, gdb and perf show them (a thread's
// name is its `comm`, at most 15 bytes: longer names are cut).
#pragma once

#include <string_view>

namespace statim {

// Names the calling thread, e.g. "store-writer" or "run:yolox-nano".
void nameThisThread(std::string_view name);

}  // namespace statim
