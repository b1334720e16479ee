// Continuous batching over one llama_context: up to `capacity` sequences advance together, one
// llama_decode per step; a job takes one sequence per choice (params.n; the choices a free
// sequence cannot take yet wait in the session, counted as active, and start first). Generating jobs contribute one
// token per step; a job's prompt is fed in chunks that fill the rest of the step's batch, so a long prompt never stalls
// the jobs already generating. Each sequence has its own bounded share of the KV cache.
#pragma once

#include <array>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backends/llama/llama_handles.h"
#include "backends/llama/multimodal.h"
#include "backends/llama/sampling.h"
#include "backends/llama/text_output.h"
#include "statim/backend.h"

namespace statim::llama {

struct ContextOptions {
  int n_ctx = 2048;           // per sequence
  int n_batch = 512;          // tokens per decode step, all sequences together
  int threads = 0;            // 0: all cores
  std::string chat_template;  // manifest override
  ToolFormat tool_format = ToolFormat::kHermes;  // manifest params.tool_format, or the template's
  std::shared_ptr<const Multimodal> mm;          // manifest params.mmproj: images / audio in chats
};

class LlamaBatchSession final : public BatchSession {
 public:
  static Result<std::unique_ptr<LlamaBatchSession>> create(std::shared_ptr<llama_model> model,
                                                           const ContextOptions& options, int capacity);
  ~LlamaBatchSession() override;

  int capacity() const override { return static_cast<int>(slots_.size()); }
  int active() const override;
  Result<void> add(const Job& job, JobControl& control) override;
  void step(const EndSink& ended) override;
  StepTimes takeStepTimes() override;

  int contextPerSequence() const;

 private:
  using Clock = std::chrono::steady_clock;
  struct Slot {
    bool busy = false;
    JobId id = 0;
    int choice = 0;  // which of its job's choices (params.n) this sequence generates
    int n = 1;
    JobControl* control = nullptr;
    std::vector<llama_token> prompt;  // media positions hold placeholders (mediaToken)
    size_t prompt_done = 0;  // prompt tokens already decoded (or found in the cache)
    // Images / audio in the prompt: decoded each on its own when prompt_done reaches it.
    std::vector<MediaChunk> media;
    size_t next_media = 0;
    std::shared_ptr<mtmd_input_chunks> chunks;  // owns media[i].chunk
    int cached = 0;          // prompt tokens whose KV the sequence still held from its last job
    // The tokens whose KV this sequence holds, in position order: kept when a job ends, so that
    // the next job whose prompt starts the same way (the next turn of a conversation, a shared
    // system prompt) decodes only what differs.
    std::vector<llama_token> kv;
    int n_past = 0;          // next position in the sequence
    int max_tokens = 0;
    int n_out = 0;
    std::optional<llama_token> pending;  // sampled, not yet decoded
    int logits_index = -1;               // this step's output row, or -1
    SamplerPtr sampler;
    bool greedy = false;  // the sampler is greedy alone: the token is read from the logits (greedyToken)
    std::optional<TextOutput> output;
    bool tools = false;  // the job offered tools: its output may hold calls
    // tool_choice auto: the sampling with the calls' grammar, switched to once the output holds
    // its trigger; the tokens so far with where each one's text starts.
    std::optional<Sampling> deferred;
    std::vector<std::pair<llama_token, size_t>> out_tokens;
    // logprobs: -1 off, else the alternatives asked for; each generated token's entry, and those
    // not yet sent with a token event.
    int top_logprobs = -1;
    nlohmann::json logprobs = nlohmann::json::array();
    size_t logprobs_sent = 0;
    Clock::time_point start, first_token;
  };

  // A job of several choices: what its ended choices produced, until all have.
  struct Choices {
    int n = 1, ended = 0;
    std::vector<nlohmann::json> results;
    std::optional<Error> error;
  };
  // A choice waiting for a free sequence.
  struct Waiting {
    Job job;
    JobControl* control = nullptr;
    int choice = 0;
    std::shared_ptr<const Prompt> prompt;  // made once for all the job's choices
  };

  LlamaBatchSession(std::shared_ptr<llama_model> model, ContextPtr ctx, ContextOptions options, int capacity);
  // Starts one choice of the job on a free sequence.
  Result<void> start(const Job& job, JobControl& control, int choice, const Prompt& prompt);
  // Whether the job has several choices and one of them failed (the others then stop).
  bool choiceFailed(JobId id) const;
  // Frees the sequence; the job's outcome when this was its last choice to end.
  std::optional<BatchOutcome> release(int seq, std::string finish, std::optional<Error> error = std::nullopt);
  // A choice's result (or error) into its job's; the job's outcome once all its choices ended.
  std::optional<BatchOutcome> choiceEnded(JobId id, int choice, Result<nlohmann::json> result);
  // The free slot whose cached tokens share the longest prefix with `prompt` (and that length).
  std::pair<size_t, size_t> bestFreeSlot(const std::vector<llama_token>& prompt) const;
  static nlohmann::json tokenEvent(Slot& s, const std::string& text);
  // tool_choice auto: once the output holds the trigger, the slot's sampler becomes the strict one.
  // `tok` is the token just appended to the output, its text starting at `start`.
  void switchAtTrigger(Slot& s, llama_token tok, size_t start);

  std::shared_ptr<llama_model> model_;
  ContextPtr ctx_;
  ContextOptions options_;
  llama_batch batch_;
  std::vector<Slot> slots_;
  std::map<JobId, Choices> choices_;  // jobs of several choices, running
  std::deque<Waiting> waiting_;
  // The steps' time by phase since takeStepTimes(): media (encoding images and audio), decode
  // (llama_decode), sample, text (detokenizing, stop strings, tool-call triggers), events
  // (progress events and the jobs that ended).
  enum Phase { kMedia, kDecode, kSample, kText, kEvents, kPhases };
  std::array<double, kPhases> phase_s_{};
  std::vector<llama_token_data> candidates_;  // the sampler chains' candidates, reused (sampleLogits)
  int steps_ = 0, step_tokens_ = 0;
};

}  // namespace statim::llama
