// Task adapters of the onnx backend: a loaded model bound to its manifest (tensor names and
// shapes checked once at load), and one function per job type turning a job into a result.
// All of it is read-only after load, so one BoundModel serves every worker of the model at once.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backends/onnx/onnx_config.h"
#include "backends/onnx/ort_model.h"
#include "statim/job.h"

namespace statim::onnx {

struct BoundModel {
  OnnxConfig config;
  std::unique_ptr<OrtModel> ort;
  // Image tasks: the resolved input/output names, the input size and the class count (0: dynamic).
  std::string input;
  std::vector<std::string> outputs;
  int in_w = 0, in_h = 0;
  std::int64_t classes = 0;

  std::string label(int index) const;
};

// Checks the manifest against the session's declared inputs/outputs (names, ranks, dtypes, sizes,
// label count) and resolves defaults. The error says what does not match.
Result<std::unique_ptr<BoundModel>> bindModel(OnnxConfig config, std::unique_ptr<OrtModel> ort);

// The tensors of a tensor job: params.inputs when given, else the prompt parsed as JSON.
Result<std::vector<HostTensor>> tensorJobInputs(const BoundModel& m, const std::string& prompt,
                                                const nlohmann::json& params);

Result<nlohmann::json> runClassification(const BoundModel& m, const Job& job);
Result<nlohmann::json> runDetection(const BoundModel& m, const Job& job);
Result<nlohmann::json> runTensor(const BoundModel& m, const Job& job);

}  // namespace statim::onnx
