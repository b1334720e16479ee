// The Responses API's stream events are a function of the job and the text it produced, not of how
// the tokens arrived: a stream that saw the text in any pieces, one that joined mid-run, and one
// made from the stored job after the end number every event the same.
#include <random>

#include <gtest/gtest.h>

#include "api/dto/responses_dto.h"

namespace statim::api {
namespace {

Job responseJob() {
  Job job;
  job.id = 7;
  job.model = "tiny";
  job.type = "chat";
  job.created_at = 1'796'000'000'000'000;
  job.params = {{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"response", {{"background", true}}}};
  return job;
}

Job ended(Job job, std::string text, nlohmann::json calls = nullptr) {
  job.status = JobStatus::kCompleted;
  job.started_at = job.created_at + 10;
  job.finished_at = job.created_at + 20;
  job.result = {{"text", std::move(text)}, {"tokens_in", 3}, {"tokens_out", 9},
                {"finish_reason", calls.is_null() ? "stop" : "tool_calls"}};
  if (!calls.is_null()) job.result["tool_calls"] = calls;
  return job;
}

// The events a follower makes when it sees `pieces` as token events (after a "state" event with
// `initial` text), then the end.
std::vector<nlohmann::json> follow(const Job& done, const std::string& initial, const std::vector<std::string>& pieces) {
  Job running = done;
  running.status = JobStatus::kProcessing;
  running.result = nullptr;
  ResponseEvents ev(responseJob());
  std::vector<nlohmann::json> out;
  auto add = [&out](std::vector<nlohmann::json> v) { out.insert(out.end(), v.begin(), v.end()); };
  std::string text = initial;
  add(ev.begin(running));
  add(ev.text(text));
  for (auto& p : pieces) add(ev.text(text += p));
  add(ev.end(done));
  return out;
}

std::vector<std::string> randomPieces(const std::string& text, std::mt19937& rng) {
  std::vector<std::string> out;
  for (size_t at = 0; at < text.size();) {
    size_t n = std::uniform_int_distribution<size_t>(1, 9)(rng);
    out.push_back(text.substr(at, n));
    at += n;
  }
  return out;
}

TEST(ResponseEvents, NumberedTheSameHoweverTheTextArrives) {
  // Words, a newline, a run longer than a delta may be, and multi-byte characters across it.
  std::string text = "Once upon a time,\nthere was a cat " + std::string(70, 'x') + " caf\xc3\xa9 " +
                     std::string(30, 'y') + "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac" + std::string(40, 'z') + " end";
  Job done = ended(responseJob(), text);
  auto replayed = follow(done, "", {});  // the stored job, after the end
  std::mt19937 rng(42);
  for (int round = 0; round < 50; ++round) {
    auto pieces = randomPieces(text, rng);
    // Joined mid-run: the first pieces arrive as the text so far.
    size_t joined = std::uniform_int_distribution<size_t>(0, pieces.size())(rng);
    std::string initial;
    for (size_t i = 0; i < joined; ++i) initial += pieces[i];
    auto live = follow(done, initial, {pieces.begin() + static_cast<long>(joined), pieces.end()});
    ASSERT_EQ(live, replayed) << "round " << round;
  }
  std::string deltas;
  int expected = 0;
  for (auto& e : replayed) {
    EXPECT_EQ(e["sequence_number"], expected++);
    if (e["type"] != "response.output_text.delta") continue;
    std::string d = e["delta"];
    EXPECT_LE(d.size(), ResponseEvents::kDeltaMaxBytes);
    EXPECT_EQ(d.substr(1).find_first_of(" \n"), std::string::npos) << d;
    EXPECT_TRUE(nlohmann::json(d).dump().find("\\ufffd") == std::string::npos) << "split a character: " << d;
    deltas += d;
  }
  EXPECT_EQ(deltas, text);
  EXPECT_EQ(replayed.front()["type"], "response.created");
  EXPECT_EQ(replayed.front()["response"]["status"], "queued");
  EXPECT_EQ(replayed[1]["type"], "response.in_progress");
  EXPECT_EQ(replayed.back()["type"], "response.completed");
  EXPECT_EQ(replayed.back()["response"]["output"][0]["content"][0]["text"], text);
}

TEST(ResponseEvents, FunctionCallsFollowTheTextAsItems) {
  nlohmann::json calls = {{{"id", "call_7_0"},
                           {"type", "function"},
                           {"function", {{"name", "get_weather"}, {"arguments", R"({"city":"Oslo"})"}}}}};
  auto events = follow(ended(responseJob(), "", calls), "", {});
  std::vector<std::string> types;
  for (auto& e : events) types.push_back(e["type"]);
  EXPECT_EQ(types, (std::vector<std::string>{"response.created", "response.in_progress", "response.output_item.added",
                                             "response.function_call_arguments.delta",
                                             "response.function_call_arguments.done", "response.output_item.done",
                                             "response.completed"}));
  EXPECT_EQ(events[2]["item"]["call_id"], "call_7_0");
  EXPECT_EQ(events[3]["delta"], R"({"city":"Oslo"})");
  EXPECT_EQ(events.back()["response"]["output"][0]["arguments"], R"({"city":"Oslo"})");
}

TEST(ResponseEvents, ACustomToolsCallIsACustomToolCallWithItsInput) {
  Job job = responseJob();
  job.params["response"]["custom_tools"] = {"apply_patch"};
  nlohmann::json calls = {{{"id", "call_7_0"},
                           {"type", "function"},
                           {"function", {{"name", "apply_patch"}, {"arguments", R"({"input":"*** Begin Patch"})"}}}}};
  Job done = ended(job, "", calls);
  ResponseEvents ev(job);
  std::vector<nlohmann::json> events = ev.begin(done);
  for (auto& e : ev.end(done)) events.push_back(e);
  std::vector<std::string> types;
  for (auto& e : events) types.push_back(e["type"]);
  EXPECT_EQ(types,
            (std::vector<std::string>{"response.created", "response.in_progress", "response.output_item.added",
                                      "response.custom_tool_call_input.delta", "response.custom_tool_call_input.done",
                                      "response.output_item.done", "response.completed"}));
  EXPECT_EQ(events[2]["item"]["type"], "custom_tool_call");
  EXPECT_EQ(events[2]["item"]["input"], "");
  EXPECT_EQ(events[3]["delta"], "*** Begin Patch");
  const auto& item = events.back()["response"]["output"][0];
  EXPECT_EQ(item["type"], "custom_tool_call");
  EXPECT_EQ(item["call_id"], "call_7_0");
  EXPECT_EQ(item["input"], "*** Begin Patch");
  EXPECT_FALSE(item.contains("arguments"));
}

TEST(ResponseEvents, ACancelledResponseEndsWithResponseFailedSayingSo) {
  Job done = ended(responseJob(), "partial text");
  done.status = JobStatus::kCancelled;
  auto events = follow(done, "partial", {" text"});
  EXPECT_EQ(events.back()["type"], "response.failed");
  EXPECT_EQ(events.back()["response"]["status"], "cancelled");
  EXPECT_TRUE(events.back()["response"]["error"].is_null()) << "(no error code names a cancel: its status does)";
}

TEST(ResponsesRequest, ErrorsNameTheFieldsAsTheRequestWroteThem) {
  Error e = responsesNames(Error::invalid("'params.tools[0].function.parameters': bad", "params.tools[0].function.parameters"));
  EXPECT_EQ(e.field, "tools[0].parameters");
  EXPECT_EQ(e.message, "'tools[0].parameters': bad");
  e = responsesNames(Error::invalid("'params.max_tokens' must be at least 1", "params.max_tokens"));
  EXPECT_EQ(e.field, "max_output_tokens");
  EXPECT_EQ(e.message, "'max_output_tokens' must be at least 1");
}

TEST(ResponsesRequest, PreviousResponseContinuesWithoutItsInstructions) {
  Job prev = ended(responseJob(), "Bonjour Ada");
  prev.params["messages"] = {{{"role", "system"}, {"content", "Answer in French."}},
                             {{"role", "user"}, {"content", "I am Ada"}}};
  prev.params["response"]["instructions"] = "Answer in French.";
  auto req = parseResponsesRequest({{"model", "tiny"}, {"input", "Who am I?"}, {"previous_response_id", "resp_7"}}, &prev);
  ASSERT_TRUE(req) << req.error().message;
  EXPECT_EQ(req->job.params["messages"], nlohmann::json::parse(R"([
    {"role": "user", "content": "I am Ada"},
    {"role": "assistant", "content": "Bonjour Ada"},
    {"role": "user", "content": "Who am I?"}])"));
  EXPECT_EQ(req->job.params["response"]["previous_response_id"], "resp_7");
  EXPECT_EQ(req->job.prompt, "Who am I?");
}

}  // namespace
}  // namespace statim::api
