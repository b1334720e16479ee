#include "backends/registry.h"

#include "backends/diffusion/diffusion_backend.h"
#include "backends/echo/echo_backend.h"
#include "backends/llama/llama_backend.h"
#include "backends/ocr/ocr_backend.h"
#include "backends/onnx/onnx_backend.h"
#include "backends/tts/tts_backend.h"
#include "backends/whisper/whisper_backend.h"

namespace statim {
namespace {

// Adding a backend: one folder under src/backends/ and one line here.
const Backend* const kBackends[] = {
    &echoBackend(),
    &llamaBackend(),
    &ocrBackend(),
    &onnxBackend(),
    &ttsBackend(),
    &whisperBackend(),
    &diffusionBackend(),
};

}  // namespace

const Backend* findBackend(std::string_view name) {
  for (const Backend* b : kBackends) {
    if (b->name() == name) return b;
  }
  return nullptr;
}

std::string backendList() {
  std::string out;
  for (const Backend* b : kBackends) out += (out.empty() ? "" : ", ") + std::string(b->name());
  return out;
}

}  // namespace statim
