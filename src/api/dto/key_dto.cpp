#include "api/dto/key_dto.h"

#include <format>

#include "core/clock.h"
#include "core/strings.h"

namespace statim::api {

nlohmann::ordered_json keyToJson(const ApiKey& k) {
  using J = nlohmann::ordered_json;
  return {{"id", k.id},
          {"name", k.name},
          {"prefix", "sk-statim-" + k.prefix + "..."},
          {"scope", k.scope},
          {"models", k.models ? J(*k.models) : J()},
          {"rate", k.rate.empty() ? J() : J(k.rate)},
          {"max_queued", k.max_queued ? J(*k.max_queued) : J()},
          {"created_at", formatIsoUtc(k.created_at)},
          {"revoked_at", k.revoked_at ? J(formatIsoUtc(*k.revoked_at)) : J()}};
}

Result<ApiKey> parseKeyRequest(const nlohmann::json& body) {
  static constexpr std::string_view kFields[] = {"name", "scope", "models", "rate", "max_queued"};
  if (!body.is_object()) return fail(Error::invalid("the body must be a JSON object: {\"name\": ..., \"scope\": ...}"));
  for (auto& [k, v] : body.items()) {
    if (std::ranges::find(kFields, k) == std::end(kFields)) {
      return fail(
          Error::invalid(std::format("unknown field '{}' (allowed: {})", k.substr(0, 64), joinNames(kFields)), k));
    }
  }
  auto text = [&](const char* field, bool required) -> Result<std::string> {
    auto it = body.find(field);
    if (it == body.end() || it->is_null()) {
      if (required) return fail(Error::invalid(std::format("'{}' is required", field), field));
      return std::string();
    }
    if (!it->is_string()) {
      return fail(Error::invalid(std::format("'{}' must be a string, not {}", field, it->type_name()), field));
    }
    return it->get<std::string>();
  };
  ApiKey key;
  auto name = text("name", true);
  if (!name) return fail(name.error());
  key.name = *name;
  auto scope = text("scope", false);
  if (!scope) return fail(scope.error());
  key.scope = scope->empty() ? "user" : *scope;
  auto rate = text("rate", false);
  if (!rate) return fail(rate.error());
  key.rate = *rate;
  if (auto it = body.find("models"); it != body.end() && !it->is_null()) {
    if (!it->is_array() || !std::ranges::all_of(*it, [](auto& m) { return m.is_string(); })) {
      return fail(Error::invalid("'models' must be a list of model ids (or null: every model)", "models"));
    }
    key.models = it->get<std::vector<std::string>>();
  }
  if (auto it = body.find("max_queued"); it != body.end() && !it->is_null()) {
    if (!it->is_number_integer()) {
      return fail(
          Error::invalid(std::format("'max_queued' must be an integer, not {}", it->type_name()), "max_queued"));
    }
    key.max_queued = it->get<std::int64_t>();
  }
  return key;
}

}  // namespace statim::api
