// A thin wrapper over one Ort::Session: created once per model at load, shared by the model's
// workers. Ort::Session::Run is thread-safe, so run() may be called from several workers at once.
// Every Ort::Exception is caught here and returned as an Error; nothing ORT-specific leaks out
// except the element type enum.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "statim/error.h"

namespace statim::onnx {

enum class DType { kFloat, kDouble, kInt64, kInt32, kBool, kUint8, kOther };
std::string_view dtypeName(DType t);  // "float32", "int64", ...

// One input or output as the model declares it; -1 marks a dynamic dimension.
struct TensorSpec {
  std::string name;
  DType dtype = DType::kOther;
  std::vector<std::int64_t> shape;
};

// A tensor on the host. Inputs use float or int64 data; outputs can be any of the variants.
struct HostTensor {
  std::string name;
  std::vector<std::int64_t> shape;
  std::variant<std::vector<float>, std::vector<std::int64_t>, std::vector<double>, std::vector<std::int32_t>,
               std::vector<std::uint8_t>>
      data;
  DType dtype = DType::kFloat;
};

// An output as ONNX Runtime holds it after a Run: valid only during the call that is handed it.
struct OutputView {
  std::string_view name;
  std::vector<std::int64_t> shape;
  DType dtype = DType::kOther;
  const void* data = nullptr;
  size_t count = 0;  // elements
  // The elements of a float32 output (empty for another type).
  std::span<const float> floats() const {
    return dtype == DType::kFloat ? std::span(static_cast<const float*>(data), count) : std::span<const float>{};
  }
};

class OrtModel {
 public:
  // Opens the .onnx with `threads` intra-op threads (0: ORT's default). A file ORT cannot load is
  // an error saying why.
  static Result<std::unique_ptr<OrtModel>> open(const std::filesystem::path& file, int threads);
  ~OrtModel();

  const std::vector<TensorSpec>& inputs() const { return inputs_; }
  const std::vector<TensorSpec>& outputs() const { return outputs_; }
  const TensorSpec* findInput(std::string_view name) const;
  const TensorSpec* findOutput(std::string_view name) const;

  // Runs the model on `inputs` (float or int64) and returns the named outputs (all when empty).
  // Thread-safe.
  Result<std::vector<HostTensor>> run(const std::vector<HostTensor>& inputs,
                                      const std::vector<std::string>& output_names) const;
  // As run, but hands `use` the outputs where ORT put them, without copying them out (a
  // detector's output is a megabyte or more); `use`'s result is the call's. Thread-safe.
  using UseOutputs = std::function<Result<void>(std::span<const OutputView>)>;
  Result<void> runInPlace(const std::vector<HostTensor>& inputs, const std::vector<std::string>& output_names,
                          const UseOutputs& use) const;

 private:
  struct Impl;
  explicit OrtModel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  std::vector<TensorSpec> inputs_, outputs_;
};

}  // namespace statim::onnx
