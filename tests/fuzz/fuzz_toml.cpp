// The TOML statim reads: model manifests (first byte even) and the config file (odd).
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/config.h"
#include "fuzz_util.h"
#include "models/manifest.h"

using namespace statim;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 2 == 0) {
    auto m = parseManifest(text, "/fuzz/models/model.toml", 100);
    if (!m) fuzz::require(!m.error().message.empty(), "a refused manifest says why");
  } else {
    fuzz::MemFile file(text);
    auto c = loadConfig(file.path(), {});
    if (!c) fuzz::require(!c.error().message.empty(), "a refused config says why");
  }
  return 0;
}
