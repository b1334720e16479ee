// The web dashboard's built files (ui/dist), compiled into the binary: the UI works air-gapped,
// from any working directory, with no install folder.
#pragma once

#include <span>
#include <string_view>

namespace statim::api {

struct UiAsset {
  std::string_view path;  // "/index.html", "/assets/index-3f2a1c.js"
  std::string_view content_type;
  std::string_view body;
};
std::span<const UiAsset> uiAssets();

}  // namespace statim::api
