// POST /tokenize and POST /detokenize, in llama-server's shapes (plus "model": statim serves
// several): text <-> tokens with a model's own vocabulary, no job and no inference. The model is
// loaded on demand, as a job would load it.
#include <format>

#include <drogon/HttpAppFramework.h>

#include "api/errors.h"
#include "api/http_util.h"
#include "api/model_access.h"
#include "api/routes.h"
#include "api/server.h"
#include "core/strings.h"

namespace statim::api {
namespace {

Result<std::string> modelOf(const nlohmann::json& body) {
  auto m = body.find("model");
  if (m == body.end() || !m->is_string() || m->get_ref<const std::string&>().empty()) {
    return fail(Error::invalid("'model' is required: the id of a text model from GET /models", "model"));
  }
  return m->get<std::string>();
}

Result<bool> flag(const nlohmann::json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return false;
  if (!it->is_boolean()) return fail(Error::invalid(std::format("'{}' must be true or false", name), name));
  return it->get<bool>();
}

Result<void> onlyFields(const nlohmann::json& body, std::initializer_list<std::string_view> known) {
  for (auto& [k, v] : body.items()) {
    if (std::ranges::find(known, k) == known.end()) {
      return fail(
          Error::invalid(std::format("unknown field '{}' (allowed: {})", k.substr(0, 64), joinNames(known)), k));
    }
  }
  return ok();
}

}  // namespace

void registerTokenizeRoutes(const ApiContext& ctx) {
  // {"model", "content", "add_special"?: false, "with_pieces"?: false} -> {"tokens": [ids]} or,
  // with pieces, {"tokens": [{"id", "piece"}]} (a piece that is not whole UTF-8 comes as bytes).
  addRoute("/tokenize", drogon::Post, Access::kUser, [&ctx](const drogon::HttpRequestPtr& req, Callback&& cb) {
    auto body = parseJsonObject(*req);
    if (!body) return cb(errorResponse(body.error()));
    if (auto r = onlyFields(*body, {"model", "content", "add_special", "with_pieces"}); !r) {
      return cb(errorResponse(r.error()));
    }
    auto model = modelOf(*body);
    if (!model) return cb(errorResponse(model.error()));
    auto content = body->find("content");
    if (content == body->end() || !content->is_string()) {
      return cb(errorResponse(Error::invalid("'content' must be the text to tokenize", "content")));
    }
    auto add_special = flag(*body, "add_special");
    auto with_pieces = flag(*body, "with_pieces");
    if (!add_special) return cb(errorResponse(add_special.error()));
    if (!with_pieces) return cb(errorResponse(with_pieces.error()));
    withLoadedModel(ctx, *req, *model,
                    [text = content->get<std::string>(), add = *add_special, pieces = *with_pieces,
                     cb](Result<std::shared_ptr<LoadedModel>> m) {
                      if (!m) return cb(errorResponse(m.error()));
                      auto tokens = (*m)->tokenize(text, add);
                      if (!tokens) return cb(errorResponse(tokens.error()));
                      if (!pieces) return cb(jsonResponse({{"tokens", *tokens}}));
                      auto texts = (*m)->tokenPieces(*tokens);
                      if (!texts) return cb(errorResponse(texts.error()));
                      nlohmann::json out = nlohmann::json::array();
                      for (size_t i = 0; i < tokens->size(); ++i) {
                        const std::string& p = (*texts)[i];
                        nlohmann::json piece = p;
                        try {
                          (void)piece.dump();  // throws on bytes that are not whole UTF-8
                        } catch (const nlohmann::json::type_error&) {
                          piece = nlohmann::json::array();
                          for (unsigned char c : p) piece.push_back(c);
                        }
                        out.push_back({{"id", (*tokens)[i]}, {"piece", std::move(piece)}});
                      }
                      cb(jsonResponse({{"tokens", std::move(out)}}));
                    });
  });
  // {"model", "tokens": [ids]} -> {"content": "..."}.
  addRoute("/detokenize", drogon::Post, Access::kUser, [&ctx](const drogon::HttpRequestPtr& req, Callback&& cb) {
    auto body = parseJsonObject(*req);
    if (!body) return cb(errorResponse(body.error()));
    if (auto r = onlyFields(*body, {"model", "tokens"}); !r) return cb(errorResponse(r.error()));
    auto model = modelOf(*body);
    if (!model) return cb(errorResponse(model.error()));
    auto t = body->find("tokens");
    if (t == body->end() || !t->is_array() || !std::ranges::all_of(*t, [](const nlohmann::json& x) {
          return x.is_number_integer() && x.get<std::int64_t>() >= 0 && x.get<std::int64_t>() <= INT32_MAX;
        })) {
      return cb(errorResponse(Error::invalid("'tokens' must be a list of token ids (integers >= 0)", "tokens")));
    }
    withLoadedModel(ctx, *req, *model, [tokens = t->get<std::vector<std::int32_t>>(), cb](auto m) {
      if (!m) return cb(errorResponse(m.error()));
      auto pieces = (*m)->tokenPieces(tokens);
      if (!pieces) return cb(errorResponse(pieces.error()));
      std::string text;
      for (auto& p : *pieces) text += p;
      cb(jsonResponse({{"content", text}}));
    });
  });
}

}  // namespace statim::api
