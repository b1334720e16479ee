#include "api/http_util.h"
#include "core/clock.h"
#include "core/crypto.h"
#include "core/strings.h"

#include <charconv>
#include <algorithm>
#include <format>
#include <optional>
#include <set>
#include <vector>

namespace statim::api {

namespace {

drogon::HttpResponsePtr jsonText(std::string text, int status) {
  auto resp = drogon::HttpResponse::newHttpResponse();
  resp->setStatusCode(static_cast<drogon::HttpStatusCode>(status));
  resp->setContentTypeCode(drogon::CT_APPLICATION_JSON);
  resp->setBody(std::move(text));
  return resp;
}

constexpr size_t kMaxJsonDepth = 128;

// SAX pass over a request body: nesting depth, duplicate keys, and syntax errors.
struct JsonChecker : nlohmann::json_sax<nlohmann::json> {
  struct Level {
    bool object;
    std::set<std::string, std::less<>> keys;
  };
  std::vector<Level> stack;
  std::string path = "";  // the key being read, for messages
  std::optional<Error> error;

  bool value() { return true; }
  bool null() override { return value(); }
  bool boolean(bool) override { return value(); }
  bool number_integer(number_integer_t) override { return value(); }
  bool number_unsigned(number_unsigned_t) override { return value(); }
  bool number_float(number_float_t, const string_t&) override { return value(); }
  bool string(string_t&) override { return value(); }
  bool binary(binary_t&) override { return value(); }
  bool open(bool object) {
    if (stack.size() >= kMaxJsonDepth) {
      error = Error::invalid(std::format("JSON nested deeper than {} levels", kMaxJsonDepth));
      return false;
    }
    stack.push_back({object, {}});
    return true;
  }
  bool start_object(std::size_t) override { return open(true); }
  bool start_array(std::size_t) override { return open(false); }
  bool end_object() override {
    stack.pop_back();
    return true;
  }
  bool end_array() override {
    stack.pop_back();
    return true;
  }
  bool key(string_t& k) override {
    if (!stack.back().keys.insert(k).second) {
      std::string shown = k.substr(0, 64);
      error = Error::invalid(std::format("duplicate key '{}' in the JSON body (each key may appear once)", shown),
                             stack.size() == 1 ? shown : "");
      return false;
    }
    return true;
  }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::json::exception& e) override {
    std::string what = e.what();
    if (auto at = what.find("] "); at != std::string::npos) what = what.substr(at + 2);
    error = Error::invalid(std::format("malformed JSON at byte {}: {}", position, what));
    return false;
  }
};

}  // namespace

drogon::HttpResponsePtr jsonResponse(const nlohmann::json& body, int status) {
  return jsonText(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), status);
}

drogon::HttpResponsePtr orderedJsonResponse(const nlohmann::ordered_json& body, int status) {
  return jsonText(body.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace), status);
}

Result<nlohmann::json> parseJsonObject(const drogon::HttpRequest& req) { return parseJsonText(req.body()); }

Result<nlohmann::json> parseJsonText(std::string_view body) {
  if (body.empty()) return fail(Error::invalid("the request body is empty; send a JSON object"));
  // A first pass that builds nothing refuses what the document model must never see: nesting
  // deep enough to exhaust the stack when copied, duplicate keys, numbers out of range.
  JsonChecker checker;
  nlohmann::json::sax_parse(body, &checker);
  if (checker.error) return fail(*checker.error);
  try {
    auto j = nlohmann::json::parse(body);
    if (!j.is_object())
      return fail(Error::invalid(std::format("the request body must be a JSON object, not {}", j.type_name())));
    return j;
  } catch (const nlohmann::json::exception& e) {
    return fail(Error::invalid(std::format("malformed JSON: {}", e.what())));
  }
}

Result<std::int64_t> queryInt(const drogon::HttpRequest& req, const std::string& name, std::int64_t fallback,
                              std::int64_t min, std::int64_t max) {
  const auto& params = req.parameters();
  auto it = params.find(name);
  if (it == params.end()) return fallback;
  const std::string& s = it->second;
  std::int64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || ptr != s.data() + s.size() || v < min || v > max) {
    return fail(Error::invalid(
        std::format("query parameter '{}' must be an integer between {} and {} (got '{}')", name, min, max, s), name));
  }
  return v;
}

Result<bool> queryBool(const drogon::HttpRequest& req, const std::string& name) {
  const auto& params = req.parameters();
  auto it = params.find(name);
  if (it == params.end()) return false;
  if (it->second == "true" || it->second == "1") return true;
  if (it->second == "false" || it->second == "0") return false;
  return fail(Error::invalid(std::format("query parameter '{}' must be true or false (got '{}')", name, it->second), name));
}

Result<std::optional<Micros>> queryTime(const drogon::HttpRequest& req, const std::string& name) {
  auto it = req.parameters().find(name);
  if (it == req.parameters().end()) return std::optional<Micros>{};
  const std::string& text = it->second;
  std::int64_t seconds = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), seconds);
  if (ec == std::errc{} && ptr == text.data() + text.size() && seconds >= 0 && seconds <= 253402300799) {
    return std::optional<Micros>{seconds * 1000000};  // up to 9999-12-31
  }
  if (auto t = parseIsoUtc(text)) return std::optional<Micros>{*t};
  return fail(Error::invalid(std::format("query parameter '{}' must be an ISO-8601 UTC time or Unix seconds (got '{}')",
                                         name, text.substr(0, 64)),
                             name));
}

Result<double> queryWait(const drogon::HttpRequest& req, double max) {
  const auto& params = req.parameters();
  auto it = params.find("wait");
  if (it == params.end() || it->second == "false") return 0.0;
  if (it->second == "true") return max;
  const std::string& s = it->second;
  double v = -1;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || ptr != s.data() + s.size() || !(v >= 0 && v <= max)) {
    return fail(Error::invalid(std::format("query parameter 'wait' must be true, false or a number of seconds from 0 "
                                           "to {} (jobs.max_wait_seconds) (got '{}')",
                                           max, s.substr(0, 64)),
                               "wait"));
  }
  return v;
}

Result<void> onlyKnownQuery(const drogon::HttpRequest& req, std::initializer_list<std::string_view> known) {
  for (auto& [k, v] : req.parameters()) {
    bool found = false;
    for (auto kn : known) found = found || kn == k;
    if (!found) {
      return fail(Error::invalid(std::format("unknown query parameter '{}' (allowed: {})", k, joinNames(known)), k));
    }
  }
  return ok();
}

Result<std::string> idempotencyKey(const drogon::HttpRequest& req) {
  auto& headers = req.headers();
  auto it = headers.find("idempotency-key");
  if (it == headers.end()) return std::string();
  const std::string& key = it->second;
  if (key.empty() || key.size() > 255 ||
      !std::ranges::all_of(key, [](char c) { return c >= 32 && c < 127; })) {
    return fail(Error::invalid("header 'Idempotency-Key' must be 1..255 printable ASCII characters", "Idempotency-Key"));
  }
  return key;
}

std::string requestHash(const drogon::HttpRequest& req) {
  return crypto::sha256Hex(std::string(req.methodString()) + " " + req.path() + "\n" + std::string(req.body()));
}

void noteJob(const drogon::HttpRequest& req, JobId id, const std::string& model) {
  req.attributes()->insert("job_id", id);
  if (!model.empty()) req.attributes()->insert("model", model);
}

}  // namespace statim::api
