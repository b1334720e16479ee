#include "backends/diffusion/ort_model.h"

#include <format>

#include "backends/ort/ort_session.h"

namespace statim::diffusion {
namespace {

std::string typeName(ONNXTensorElementDataType t) {
  switch (t) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: return "float32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: return "float16";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE: return "float64";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: return "int32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: return "int64";
    default: return std::format("element type {}", static_cast<int>(t));
  }
}

std::map<std::string, TensorInfo> describe(Ort::Session& s, bool inputs) {
  Ort::AllocatorWithDefaultOptions alloc;
  std::map<std::string, TensorInfo> out;
  size_t n = inputs ? s.GetInputCount() : s.GetOutputCount();
  for (size_t i = 0; i < n; ++i) {
    auto name = inputs ? s.GetInputNameAllocated(i, alloc) : s.GetOutputNameAllocated(i, alloc);
    auto info = inputs ? s.GetInputTypeInfo(i) : s.GetOutputTypeInfo(i);
    TensorInfo t;
    if (info.GetONNXType() == ONNX_TYPE_TENSOR) {
      auto ts = info.GetTensorTypeAndShapeInfo();
      t.type = ts.GetElementType();
      t.shape = ts.GetShape();
    }
    out.emplace(name.get(), std::move(t));
  }
  return out;
}

std::string names(const std::map<std::string, TensorInfo>& m) {
  std::string s;
  for (auto& [k, v] : m) s += (s.empty() ? "" : ", ") + k;
  return s;
}

template <typename T, typename From>
void fill(Ort::Value& v, std::span<const From> values) {
  T* p = v.GetTensorMutableData<T>();
  for (size_t i = 0; i < values.size(); ++i) {
    if constexpr (std::is_same_v<T, Ort::Float16_t>) {
      p[i] = Ort::Float16_t(static_cast<float>(values[i]));
    } else {
      p[i] = static_cast<T>(values[i]);
    }
  }
}

template <typename From>
Result<Ort::Value> makeTensor(const OrtModel& m, const std::string& input, const std::vector<std::int64_t>& shape,
                              std::span<const From> values) {
  const TensorInfo* info = m.input(input);
  if (!info) return fail(Error::backend(std::format("{} has no input '{}' (inputs: {})", m.label(), input, m.inputList())));
  std::int64_t count = 1;
  for (auto d : shape) count *= d;
  if (count != static_cast<std::int64_t>(values.size())) {
    return fail(Error::internal(std::format("{} input '{}': {} values for a tensor of {}", m.label(), input,
                                            values.size(), count)));
  }
  try {
    Ort::AllocatorWithDefaultOptions alloc;
    Ort::Value v = Ort::Value::CreateTensor(alloc, shape.data(), shape.size(), info->type);
    switch (info->type) {
      case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: fill<float>(v, values); break;
      case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: fill<Ort::Float16_t>(v, values); break;
      case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE: fill<double>(v, values); break;
      case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: fill<std::int32_t>(v, values); break;
      case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: fill<std::int64_t>(v, values); break;
      default:
        return fail(Error::backend(std::format("{} input '{}' has type {}, which this pipeline cannot feed",
                                               m.label(), input, typeName(info->type))));
    }
    return v;
  } catch (const Ort::Exception& e) {
    return fail(Error::backend(std::format("{} input '{}': {}", m.label(), input, e.what())));
  }
}

}  // namespace

OrtModel::OrtModel(std::unique_ptr<Ort::Session> session, std::string label)
    : session_(std::move(session)), label_(std::move(label)) {
  inputs_ = describe(*session_, true);
  outputs_ = describe(*session_, false);
}

Result<std::unique_ptr<OrtModel>> OrtModel::open(const std::filesystem::path& path, int threads, std::string label) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return fail(Error::notFound(std::format("{} not found ({})", label, path.string())));
  auto session = ort::openSession(path, threads, label);
  if (!session) return fail(session.error());
  try {
    return std::unique_ptr<OrtModel>(new OrtModel(std::move(*session), label));
  } catch (const Ort::Exception& e) {
    return fail(Error::backend(std::format("ONNX Runtime could not read the inputs and outputs of {}: {}", label, e.what())));
  }
}

const TensorInfo* OrtModel::input(const std::string& name) const {
  auto it = inputs_.find(name);
  return it == inputs_.end() ? nullptr : &it->second;
}

std::string OrtModel::inputList() const { return names(inputs_); }
std::string OrtModel::outputList() const { return names(outputs_); }

Result<void> OrtModel::requireInput(const std::string& name) const {
  if (hasInput(name)) return ok();
  return fail(Error::backend(std::format("{} has no input '{}' (inputs: {})", label_, name, inputList())));
}

Result<void> OrtModel::requireOutput(const std::string& name) const {
  if (hasOutput(name)) return ok();
  return fail(Error::backend(std::format("{} has no output '{}' (outputs: {})", label_, name, outputList())));
}

Result<std::vector<Ort::Value>> OrtModel::run(std::vector<Feed>& feeds, const std::vector<std::string>& outputs) const {
  std::vector<const char*> in_names, out_names;
  std::vector<Ort::Value> in_values;
  for (auto& f : feeds) {
    in_names.push_back(f.name.c_str());
    in_values.push_back(std::move(f.value));
  }
  for (auto& o : outputs) out_names.push_back(o.c_str());
  try {
    return session_->Run(Ort::RunOptions{nullptr}, in_names.data(), in_values.data(), in_values.size(),
                         out_names.data(), out_names.size());
  } catch (const Ort::Exception& e) {
    return fail(Error::backend(std::format("{} failed: {}", label_, e.what())));
  }
}

Result<Ort::Value> OrtModel::tensor(const std::string& input, const std::vector<std::int64_t>& shape,
                                    std::span<const double> values) const {
  return makeTensor<double>(*this, input, shape, values);
}

Result<Ort::Value> OrtModel::floatTensor(const std::string& input, const std::vector<std::int64_t>& shape,
                                         std::span<const float> values) const {
  return makeTensor<float>(*this, input, shape, values);
}

std::vector<std::int64_t> shapeOf(const Ort::Value& value) { return value.GetTensorTypeAndShapeInfo().GetShape(); }

Result<std::vector<float>> toFloats(const Ort::Value& value, const std::string& what) {
  auto info = value.GetTensorTypeAndShapeInfo();
  size_t n = info.GetElementCount();
  std::vector<float> out(n);
  switch (info.GetElementType()) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: {
      const float* p = value.GetTensorData<float>();
      std::copy(p, p + n, out.begin());
      break;
    }
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: {
      const Ort::Float16_t* p = value.GetTensorData<Ort::Float16_t>();
      for (size_t i = 0; i < n; ++i) out[i] = p[i].ToFloat();
      break;
    }
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE: {
      const double* p = value.GetTensorData<double>();
      for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(p[i]);
      break;
    }
    default:
      return fail(Error::backend(std::format("{} has type {}, not a floating-point tensor", what,
                                             typeName(info.GetElementType()))));
  }
  return out;
}

}  // namespace statim::diffusion
