// One ONNX Runtime session over one model.onnx of a diffusers export, with what the pipeline needs
// to know of its inputs and outputs (names, element types, declared shapes), and tensor helpers
// that feed each input in the type the model declares (float, float16, double, int32, int64).
// Thread-safety: Ort::Session::Run may be called concurrently (ONNX Runtime guarantees it), so one
// OrtModel is shared by every worker of a model; run() keeps no state of its own.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <onnxruntime_cxx_api.h>

#include "statim/error.h"

namespace statim::diffusion {

struct TensorInfo {
  ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  std::vector<std::int64_t> shape;  // -1 for a dynamic axis
};

// A named input for run().
struct Feed {
  std::string name;
  Ort::Value value;
};

class OrtModel {
 public:
  // Opens `path` (a model.onnx) with `threads` intra-op threads (0: ONNX Runtime's default).
  // `label` (e.g. "unet/model.onnx") prefixes error messages.
  static Result<std::unique_ptr<OrtModel>> open(const std::filesystem::path& path, int threads, std::string label);

  const std::string& label() const { return label_; }
  bool hasInput(const std::string& name) const { return inputs_.contains(name); }
  bool hasOutput(const std::string& name) const { return outputs_.contains(name); }
  const TensorInfo* input(const std::string& name) const;
  const std::map<std::string, TensorInfo>& outputs() const { return outputs_; }
  // "a, b, c": for errors that say what the model does have.
  std::string inputList() const;
  std::string outputList() const;
  // Errors naming the model and the missing name.
  Result<void> requireInput(const std::string& name) const;
  Result<void> requireOutput(const std::string& name) const;

  // Runs the model; returns the requested outputs in order. ONNX Runtime's exceptions become
  // backend errors naming the model.
  Result<std::vector<Ort::Value>> run(std::vector<Feed>& feeds, const std::vector<std::string>& outputs) const;

  // A tensor of the input's declared element type holding `values` (converted), shaped `shape`.
  Result<Ort::Value> tensor(const std::string& input, const std::vector<std::int64_t>& shape,
                            std::span<const double> values) const;
  // Same, from floats (the latents and embeddings: no double round trip for the big ones).
  Result<Ort::Value> floatTensor(const std::string& input, const std::vector<std::int64_t>& shape,
                                 std::span<const float> values) const;

 private:
  OrtModel(std::unique_ptr<Ort::Session> session, std::string label);
  std::unique_ptr<Ort::Session> session_;
  std::string label_;
  std::map<std::string, TensorInfo> inputs_, outputs_;
};

// An output tensor's values as floats (float, float16 or double outputs), and its shape.
Result<std::vector<float>> toFloats(const Ort::Value& value, const std::string& what);
std::vector<std::int64_t> shapeOf(const Ort::Value& value);

}  // namespace statim::diffusion
