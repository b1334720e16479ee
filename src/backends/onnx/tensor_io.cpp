#include "backends/onnx/tensor_io.h"

#include <cmath>
#include <format>
#include <limits>

namespace statim::onnx {
namespace {

constexpr std::int64_t kMaxElements = 16 << 20;  // per input; a 1 MiB request cannot get near it anyway

std::string inputNames(const std::vector<TensorSpec>& specs) {
  std::string s;
  for (auto& t : specs) s += (s.empty() ? "" : ", ") + t.name;
  return s;
}

Result<HostTensor> parseOne(const std::string& name, const nlohmann::json& v, const TensorSpec& spec,
                            const std::string& f) {
  if (!v.is_object()) return fail(Error::invalid(std::format("'{}' must be an object {{shape, data, dtype?}}", f), f));
  for (auto& [k, _] : v.items()) {
    if (k != "shape" && k != "data" && k != "dtype") {
      return fail(
          Error::invalid(std::format("unknown field '{}.{}' (allowed: shape, data, dtype)", f, k), f + "." + k));
    }
  }
  HostTensor t;
  t.name = name;
  // dtype: the model's when not given; given, it must be the model's.
  if (spec.dtype != DType::kFloat && spec.dtype != DType::kInt64) {
    return fail(Error::invalid(std::format("input '{}' is {} in the model; tensor jobs send float32 or int64 inputs",
                                           name, dtypeName(spec.dtype)),
                               f));
  }
  t.dtype = spec.dtype;
  if (auto d = v.find("dtype"); d != v.end()) {
    if (!d->is_string() || (*d != "float32" && *d != "int64")) {
      return fail(Error::invalid(std::format("'{}.dtype' must be \"float32\" or \"int64\"", f), f + ".dtype"));
    }
    if (*d != dtypeName(spec.dtype)) {
      return fail(Error::invalid(std::format("'{}.dtype' is {} but the model's input '{}' is {}", f,
                                             d->get<std::string>(), name, dtypeName(spec.dtype)),
                                 f + ".dtype"));
    }
  }
  auto shape = v.find("shape");
  if (shape == v.end() || !shape->is_array()) {
    return fail(Error::invalid(std::format("'{}.shape' is required: a list of dimensions", f), f + ".shape"));
  }
  std::int64_t count = 1;
  for (auto& d : *shape) {
    if (!d.is_number_integer() || d.get<std::int64_t>() < 0 || d.get<std::int64_t>() > kMaxElements) {
      return fail(Error::invalid(std::format("'{}.shape' must be a list of non-negative integers", f), f + ".shape"));
    }
    t.shape.push_back(d.get<std::int64_t>());
    count *= t.shape.back();
    if (count > kMaxElements) {
      return fail(Error::invalid(std::format("'{}.shape' has more than {} elements", f, kMaxElements), f + ".shape"));
    }
  }
  // Against the model: rank, then every fixed dimension.
  bool fits = t.shape.size() == spec.shape.size();
  for (size_t i = 0; fits && i < t.shape.size(); ++i) fits = spec.shape[i] < 0 || spec.shape[i] == t.shape[i];
  if (!fits) {
    return fail(Error::invalid(std::format("input '{}' has shape {}; the model takes {} ('?' is any size)", name,
                                           shapeText(t.shape), shapeText(spec.shape)),
                               f + ".shape"));
  }
  auto data = v.find("data");
  if (data == v.end() || !data->is_array()) {
    return fail(Error::invalid(std::format("'{}.data' is required: a flat list of numbers", f), f + ".data"));
  }
  if (static_cast<std::int64_t>(data->size()) != count) {
    return fail(Error::invalid(
        std::format("'{}.data' has {} values; shape {} needs {}", f, data->size(), shapeText(t.shape), count),
        f + ".data"));
  }
  if (t.dtype == DType::kInt64) {
    std::vector<std::int64_t> out;
    out.reserve(count);
    for (auto& x : *data) {
      if (!x.is_number_integer()) {
        return fail(Error::invalid(std::format("'{}.data' must hold integers (int64)", f), f + ".data"));
      }
      out.push_back(x.get<std::int64_t>());
    }
    t.data = std::move(out);
  } else {
    std::vector<float> out;
    out.reserve(count);
    for (auto& x : *data) {
      if (!x.is_number()) return fail(Error::invalid(std::format("'{}.data' must hold numbers", f), f + ".data"));
      out.push_back(x.get<float>());
    }
    t.data = std::move(out);
  }
  return t;
}

template <typename T>
nlohmann::json numbers(const std::vector<T>& v, DType dtype) {
  nlohmann::json a = nlohmann::json::array();
  for (auto x : v) {
    if (dtype == DType::kBool) {
      a.push_back(x != 0);
    } else if constexpr (std::is_floating_point_v<T>) {
      // JSON has no NaN/Inf: write null rather than emit invalid JSON.
      if (std::isfinite(x))
        a.push_back(x);
      else
        a.push_back(nullptr);
    } else {
      a.push_back(x);
    }
  }
  return a;
}

}  // namespace

std::string shapeText(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    s += (i ? ", " : "") + (shape[i] < 0 ? std::string("?") : std::to_string(shape[i]));
  }
  return s + "]";
}

Result<std::vector<HostTensor>> parseTensorInputs(const nlohmann::json& j, const std::vector<TensorSpec>& specs,
                                                  std::string_view where) {
  std::string w(where);
  if (!j.is_object() || j.empty()) {
    return fail(Error::invalid(
        std::format("'{}' must be a JSON object of input tensors {{\"<name>\": {{\"shape\": [...], \"data\": [...]}}}} "
                    "(model inputs: {})",
                    w, inputNames(specs)),
        w));
  }
  for (auto& [name, _] : j.items()) {
    bool known = false;
    for (auto& s : specs) known = known || s.name == name;
    if (!known) {
      return fail(Error::invalid(std::format("unknown input '{}' (model inputs: {})", name, inputNames(specs)),
                                 w + "." + name));
    }
  }
  std::vector<HostTensor> out;
  for (auto& spec : specs) {
    auto it = j.find(spec.name);
    if (it == j.end()) {
      return fail(Error::invalid(std::format("input '{}' is missing (model inputs: {})", spec.name, inputNames(specs)),
                                 w + "." + spec.name));
    }
    auto t = parseOne(spec.name, *it, spec, w + "." + spec.name);
    if (!t) return fail(t.error());
    out.push_back(std::move(*t));
  }
  return out;
}

nlohmann::json tensorsToJson(const std::vector<HostTensor>& outputs) {
  nlohmann::json o = nlohmann::json::object();
  for (auto& t : outputs) {
    nlohmann::json data = std::visit([&](const auto& v) { return numbers(v, t.dtype); }, t.data);
    o[t.name] = {{"shape", t.shape}, {"dtype", dtypeName(t.dtype)}, {"data", std::move(data)}};
  }
  return o;
}

}  // namespace statim::onnx
