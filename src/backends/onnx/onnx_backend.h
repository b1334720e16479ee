// `onnx`: generic ONNX Runtime models declared by their manifest (docs/models.md, "ONNX").
// Job types: classification and detection (an image file in: PNG/JPEG), tensor (JSON tensors in
// and out). One Ort::Session per model, created at load and shared by the model's workers.
#pragma once

#include "statim/backend.h"

namespace statim {

const Backend& onnxBackend();

}  // namespace statim
