// POST /job and the OpenAI bodies: the body text through the server's own parsing (the JSON
// checker, then each route's validator). Every input must end in a value or an Error with a
// message; nothing may crash, hang or throw.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "api/dto/job_dto.h"
#include "api/dto/openai_dto.h"
#include "api/http_util.h"
#include "fuzz_util.h"

using namespace statim;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view body(reinterpret_cast<const char*>(data), size);
  auto json = api::parseJsonText(body);
  if (!json) {
    fuzz::require(!json.error().message.empty(), "a refused body says why");
    return 0;
  }
  for (bool has_inputs : {false, true}) {
    auto job = api::parseNewJob(*json, has_inputs);
    if (!job) fuzz::require(!job.error().message.empty(), "a refused job says why");
  }
  for (auto parse : {api::parseCompletionRequest, api::parseChatRequest, api::parseEmbeddingRequest}) {
    auto r = parse(*json);
    if (!r) fuzz::require(!r.error().message.empty(), "a refused OpenAI body says why");
  }
  if (json->contains("keep_alive")) (void)api::parseKeepAlive((*json)["keep_alive"]);
  return 0;
}
