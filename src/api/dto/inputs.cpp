#include "api/dto/inputs.h"

#include <charconv>
#include <format>

#include <drogon/MultiPart.h>
#include <drogon/utils/Utilities.h>

#include "api/http_util.h"
#include "core/media_type.h"

namespace statim::api {
namespace {

constexpr size_t kMaxInputs = 16;

Result<void> checkName(const std::string& name) {
  if (name.empty() || name.size() > 64 || !std::ranges::all_of(name, [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
      })) {
    return fail(Error::invalid(
        std::format("input name '{}' must be 1..64 letters, digits, '_', '-' or '.'", name.substr(0, 64)), "inputs"));
  }
  return ok();
}

Result<JobFile> store(BlobStore& blobs, const std::string& name, std::string_view bytes) {
  if (auto r = checkName(name); !r) return fail(r.error());
  if (bytes.empty()) return fail(Error::invalid(std::format("input '{}' is empty", name), "inputs." + name));
  return blobs.put(name, sniffContentType(bytes), bytes);
}

// Multipart text fields become the JSON body: params is JSON text, priority an integer.
Result<nlohmann::json> multipartFields(const drogon::MultiPartParser& parser) {
  nlohmann::json body = nlohmann::json::object();
  for (auto& [k, v] : parser.getParameters()) {
    if (k == "params" || k == "messages" || k == "webhook_events") {
      auto j = nlohmann::json::parse(v, nullptr, false);
      if (j.is_discarded()) return fail(Error::invalid(std::format("form field '{}' must be JSON text", k), k));
      body[k] = std::move(j);
    } else if (k == "priority") {
      int p = 0;
      auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), p);
      if (ec != std::errc{} || ptr != v.data() + v.size()) {
        return fail(Error::invalid("form field 'priority' must be an integer between -100 and 100", "priority"));
      }
      body[k] = p;
    } else {
      body[k] = v;
    }
  }
  return body;
}

// Drogon 1.9.13's multipart parser reads out of bounds on some malformed bodies (a 45-byte body
// crashed the server: tests/fuzz/corpus/fuzz_multipart): the structure is checked before it sees
// one. Each part follows a delimiter line, has its headers and a blank line, and the body ends
// with the closing delimiter.
bool wellFormedMultipart(std::string_view body, std::string_view content_type) {
  auto at = content_type.find("boundary=");
  if (at == std::string_view::npos) return false;
  std::string_view b = content_type.substr(at + 9);
  if (auto semi = b.find(';'); semi != std::string_view::npos) b = b.substr(0, semi);
  if (b.size() >= 2 && b.front() == '"' && b.back() == '"') b = b.substr(1, b.size() - 2);
  if (b.empty() || b.size() > 200) return false;
  const std::string delim = "--" + std::string(b);
  const std::string next_delim = "\r\n" + delim;
  size_t pos = body.find(delim);
  if (pos == std::string_view::npos) return false;
  while (true) {
    pos += delim.size();
    if (body.substr(pos, 2) == "--") return true;  // the closing delimiter
    if (body.substr(pos, 2) != "\r\n") return false;
    pos += 2;
    size_t next = body.find(next_delim, pos);
    if (next == std::string_view::npos) return false;
    if (body.substr(pos, next - pos).find("\r\n\r\n") == std::string_view::npos) return false;
    pos = next + 2;
  }
}

}  // namespace

Result<JobRequest> readJobRequest(const drogon::HttpRequestPtr& req, BlobStore& blobs) {
  JobRequest out;
  if (req->contentType() == drogon::CT_MULTIPART_FORM_DATA) {
    if (!wellFormedMultipart(req->body(), req->getHeader("content-type"))) {
      return fail(Error::invalid("malformed multipart/form-data body"));
    }
    drogon::MultiPartParser parser;
    if (parser.parse(req) != 0) return fail(Error::invalid("malformed multipart/form-data body"));
    auto body = multipartFields(parser);
    if (!body) return fail(body.error());
    out.body = std::move(*body);
    if (parser.getFiles().size() > kMaxInputs) {
      return fail(Error::invalid(std::format("at most {} input files per job", kMaxInputs), "inputs"));
    }
    for (auto& f : parser.getFiles()) {
      if (std::ranges::any_of(out.inputs, [&](const JobFile& g) { return g.name == f.getItemName(); })) {
        return fail(Error::invalid(std::format("two files named '{}'", f.getItemName()), "inputs." + f.getItemName()));
      }
      auto stored = store(blobs, f.getItemName(), f.fileContent());
      if (!stored) return fail(stored.error());
      out.inputs.push_back(std::move(*stored));
    }
    return out;
  }
  auto body = parseJsonObject(*req);
  if (!body) return fail(body.error());
  out.body = std::move(*body);
  auto inputs = out.body.find("inputs");
  if (inputs == out.body.end()) return out;
  if (!inputs->is_object() || inputs->empty() || inputs->size() > kMaxInputs) {
    return fail(Error::invalid(
        std::format("'inputs' must be an object of 1..{} {{\"<name>\": \"<base64 bytes>\"}}", kMaxInputs), "inputs"));
  }
  for (auto& [name, data] : inputs->items()) {
    if (!data.is_string() || !drogon::utils::isBase64(data.get_ref<const std::string&>())) {
      return fail(Error::invalid(std::format("'inputs.{}' must be a base64 string", name.substr(0, 64)), "inputs." + name));
    }
    std::string bytes = drogon::utils::base64Decode(data.get_ref<const std::string&>());
    auto stored = store(blobs, name, bytes);
    if (!stored) return fail(stored.error());
    out.inputs.push_back(std::move(*stored));
  }
  out.body.erase("inputs");
  return out;
}

}  // namespace statim::api
