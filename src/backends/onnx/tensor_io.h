// JSON <-> tensors for `tensor` jobs.
//   in:  {"<input name>": {"shape": [1, 512], "data": [...flat, row-major...], "dtype"?: "float32" | "int64"}}
//   out: {"<output name>": {"shape": [...], "dtype": "float32", "data": [...]}}
// Inputs are checked against the model's declared inputs (names, dtype, rank, fixed dims, data
// length) with messages naming the input and the rule.
#pragma once

#include <vector>

#include <nlohmann/json.hpp>

#include "backends/onnx/ort_model.h"
#include "statim/error.h"

namespace statim::onnx {

// `where` names the field in errors ("params.inputs" or "prompt").
Result<std::vector<HostTensor>> parseTensorInputs(const nlohmann::json& j, const std::vector<TensorSpec>& specs,
                                                  std::string_view where);

nlohmann::json tensorsToJson(const std::vector<HostTensor>& outputs);

// "[1, ?, 128]"
std::string shapeText(const std::vector<std::int64_t>& shape);

}  // namespace statim::onnx
