#include "backends/onnx/ort_model.h"

#include <format>

#include <onnxruntime_cxx_api.h>

#include "backends/ort/ort_session.h"

namespace statim::onnx {
namespace {

DType fromOrt(ONNXTensorElementDataType t) {
  switch (t) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: return DType::kFloat;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE: return DType::kDouble;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: return DType::kInt64;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: return DType::kInt32;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL: return DType::kBool;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8: return DType::kUint8;
    default: return DType::kOther;
  }
}

TensorSpec specOf(std::string name, const Ort::TypeInfo& info) {
  TensorSpec s{std::move(name), DType::kOther, {}};
  if (info.GetONNXType() != ONNX_TYPE_TENSOR) return s;
  auto t = info.GetTensorTypeAndShapeInfo();
  s.dtype = fromOrt(t.GetElementType());
  s.shape = t.GetShape();
  return s;
}

template <typename T>
std::vector<T> copyOut(const OutputView& v) {
  const T* p = static_cast<const T*>(v.data);
  return std::vector<T>(p, p + v.count);
}

}  // namespace

std::string_view dtypeName(DType t) {
  switch (t) {
    case DType::kFloat: return "float32";
    case DType::kDouble: return "float64";
    case DType::kInt64: return "int64";
    case DType::kInt32: return "int32";
    case DType::kBool: return "bool";
    case DType::kUint8: return "uint8";
    case DType::kOther: return "unsupported";
  }
  return "unsupported";
}

struct OrtModel::Impl {
  Ort::Session session{nullptr};
  Ort::MemoryInfo memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
};

OrtModel::OrtModel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
OrtModel::~OrtModel() = default;

Result<std::unique_ptr<OrtModel>> OrtModel::open(const std::filesystem::path& file, int threads) {
  auto session = ort::openSession(file, threads, file.filename().string());
  if (!session) return fail(session.error());
  try {
    auto impl = std::make_unique<Impl>();
    impl->session = std::move(**session);
    std::unique_ptr<OrtModel> m(new OrtModel(std::move(impl)));
    Ort::AllocatorWithDefaultOptions alloc;
    auto& s = m->impl_->session;
    for (size_t i = 0; i < s.GetInputCount(); ++i) {
      m->inputs_.push_back(specOf(s.GetInputNameAllocated(i, alloc).get(), s.GetInputTypeInfo(i)));
    }
    for (size_t i = 0; i < s.GetOutputCount(); ++i) {
      m->outputs_.push_back(specOf(s.GetOutputNameAllocated(i, alloc).get(), s.GetOutputTypeInfo(i)));
    }
    return m;
  } catch (const Ort::Exception& e) {
    return fail(Error::backend(std::format("ONNX Runtime could not read the inputs and outputs of {}: {}",
                                           file.filename().string(), e.what())));
  }
}

const TensorSpec* OrtModel::findInput(std::string_view name) const {
  for (auto& s : inputs_)
    if (s.name == name) return &s;
  return nullptr;
}

const TensorSpec* OrtModel::findOutput(std::string_view name) const {
  for (auto& s : outputs_)
    if (s.name == name) return &s;
  return nullptr;
}

Result<void> OrtModel::runInPlace(const std::vector<HostTensor>& inputs, const std::vector<std::string>& output_names,
                                  const UseOutputs& use) const {
  try {
    std::vector<const char*> in_names, out_names;
    std::vector<Ort::Value> values;
    for (auto& t : inputs) {
      in_names.push_back(t.name.c_str());
      // CreateTensor wraps the caller's buffer without copying; ORT only reads inputs, so the
      // const_cast is safe and `inputs` outlives the Run call.
      if (auto* f = std::get_if<std::vector<float>>(&t.data)) {
        values.push_back(Ort::Value::CreateTensor<float>(impl_->memory, const_cast<float*>(f->data()), f->size(),
                                                         t.shape.data(), t.shape.size()));
      } else if (auto* i = std::get_if<std::vector<std::int64_t>>(&t.data)) {
        values.push_back(Ort::Value::CreateTensor<std::int64_t>(impl_->memory, const_cast<std::int64_t*>(i->data()),
                                                                i->size(), t.shape.data(), t.shape.size()));
      } else {
        return fail(Error::internal(std::format("input '{}': only float32 and int64 inputs are supported", t.name)));
      }
    }
    std::vector<std::string> names = output_names;
    if (names.empty())
      for (auto& o : outputs_) names.push_back(o.name);
    for (auto& n : names) out_names.push_back(n.c_str());
    auto outs = impl_->session.Run(Ort::RunOptions{nullptr}, in_names.data(), values.data(), values.size(),
                                   out_names.data(), out_names.size());
    std::vector<OutputView> views;
    for (size_t i = 0; i < outs.size(); ++i) {
      auto info = outs[i].GetTensorTypeAndShapeInfo();
      DType dtype = fromOrt(info.GetElementType());
      views.push_back({names[i], info.GetShape(), dtype, dtype == DType::kOther ? nullptr : outs[i].GetTensorRawData(),
                       info.GetElementCount()});
    }
    return use(views);
  } catch (const Ort::Exception& e) {
    return fail(Error::backend(std::format("ONNX Runtime failed: {}", e.what())));
  }
}

Result<std::vector<HostTensor>> OrtModel::run(const std::vector<HostTensor>& inputs,
                                              const std::vector<std::string>& output_names) const {
  std::vector<HostTensor> result;
  auto r = runInPlace(inputs, output_names, [&result](std::span<const OutputView> outs) -> Result<void> {
    for (auto& o : outs) {
      HostTensor t;
      t.name = std::string(o.name);
      t.shape = o.shape;
      t.dtype = o.dtype;
      switch (t.dtype) {
        case DType::kFloat: t.data = copyOut<float>(o); break;
        case DType::kDouble: t.data = copyOut<double>(o); break;
        case DType::kInt64: t.data = copyOut<std::int64_t>(o); break;
        case DType::kInt32: t.data = copyOut<std::int32_t>(o); break;
        case DType::kBool:
        case DType::kUint8: t.data = copyOut<std::uint8_t>(o); break;
        case DType::kOther:
          return fail(Error::backend(std::format("output '{}' has an element type statim cannot read", t.name)));
      }
      result.push_back(std::move(t));
    }
    return ok();
  });
  if (!r) return fail(r.error());
  return result;
}

}  // namespace statim::onnx
