// Job params -> libllama sampler chain, and the validation of those params.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backends/llama/llama_handles.h"
#include "backends/llama/tools.h"
#include "statim/error.h"

namespace statim::llama {

// The most choices (params.n) one job may ask for.
inline constexpr int kMaxChoices = 16;

struct Sampling {
  int max_tokens = 256;
  double temperature = 0.8;  // <= 0: greedy
  int top_k = 40;
  double top_p = 0.95;
  double min_p = 0.05;
  double repeat_penalty = 1.0;  // 1: off
  int repeat_last_n = 64;
  double presence_penalty = 0.0;
  double frequency_penalty = 0.0;
  std::uint32_t seed = 0;
  std::vector<std::string> stop;
  bool logprobs = false;  // report each generated token's log probability (and top_logprobs alternatives)
  int top_logprobs = 0;
  std::string grammar;  // GBNF; empty: unconstrained (response_format and tools are turned into this)
  // Set (tool_choice auto): the grammar applies once the output holds this text; makeSampler
  // leaves it out, and the batch session switches to a sampler with it (grammar_trigger cleared).
  std::string grammar_trigger;
  // Tools: the output from this text on is calls, not text to stream (empty: no tools).
  std::string call_opener;
};

// A generated token's log probability under the model's distribution (the softmax of its raw
// logits, before the sampler's temperature or cut-offs), with the `top` most likely tokens at that
// step, in OpenAI's shape: {"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob",
// "bytes"}]}.
nlohmann::json tokenLogprob(const llama_vocab* vocab, const float* logits, int n_vocab, llama_token token, int top);

// Whether params.response_format asks for JSON (json_object or json_schema), which is a grammar.
bool jsonResponseFormat(const nlohmann::json& params);

// Checks the sampling fields of a job's params (names the field on error). `extra` lists the
// other fields the job type allows (e.g. "messages").
Result<void> validateSampling(const nlohmann::json& params, std::initializer_list<std::string_view> extra);
// The sampling params as JSON Schema properties, with their defaults (GET /models).
nlohmann::json samplingSchema();

// Reads validated params; response_format / grammar become `grammar`. A missing seed is random.
// Tools are called in `tools`' format.
Result<Sampling> readSampling(const nlohmann::json& params, ToolFormat tools);

// Builds the chain: penalties, grammar (unless it waits for a trigger), then greedy or
// top_k/top_p/min_p/temperature/dist.
// Fails (naming params.grammar / params.response_format) when the grammar does not parse.
Result<SamplerPtr> makeSampler(const llama_model* model, const Sampling& s);

// Whether makeSampler(s) is the greedy sampler alone (no penalties, no grammar now or later): its
// pick is then greedyToken's, which a batch reads straight from the logits.
bool greedyOnly(const Sampling& s);
// The first token with the largest logit (NaN never wins): what libllama's greedy sampler picks,
// without the copy of the whole vocabulary into a candidate array that llama_sampler_sample makes
// for every sequence at every step (~0.6 MB for a 49k vocabulary).
llama_token greedyToken(const float* logits, int n_vocab);

// The chain's token for one row of logits, accepted into the chain: what llama_sampler_sample
// returns (llama.h documents it as this shorthand), with the candidate array kept in `candidates`
// between calls, where llama_sampler_sample allocates the whole vocabulary's anew each time.
llama_token sampleLogits(llama_sampler* chain, const float* logits, int n_vocab,
                         std::vector<llama_token_data>& candidates);

// For a grammar that waits for a trigger (grammar_trigger set, tool_choice auto): the sampler
// with the grammar, fed the output so far from the token in which the trigger starts, at text
// offset `at` (`tokens`: each output token with the offset where its text starts). Fails when
// the grammar refuses those tokens.
Result<SamplerPtr> samplerFromTrigger(const llama_model* model, Sampling s,
                                      const std::vector<std::pair<llama_token, size_t>>& tokens, size_t at);

}  // namespace statim::llama
