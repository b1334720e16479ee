// The batch's sampling without llama_sampler_sample's per-call array: greedyToken picks what
// libllama's greedy sampler picks, only samplings that are greedy alone take it, and the other
// chains sample from a reused candidate buffer as from a fresh one.
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "backends/llama/llama_handles.h"
#include "backends/llama/sampling.h"

namespace statim::llama {
namespace {

// libllama's own greedy pick over the same logits.
llama_token libllamaGreedy(const std::vector<float>& logits) {
  std::vector<llama_token_data> cur;
  for (llama_token t = 0; t < static_cast<llama_token>(logits.size()); ++t) cur.push_back({t, logits[t], 0.0f});
  llama_token_data_array arr{cur.data(), cur.size(), -1, false};
  SamplerPtr greedy(llama_sampler_init_greedy());
  llama_sampler_apply(greedy.get(), &arr);
  return cur[static_cast<size_t>(arr.selected)].id;
}

TEST(GreedyToken, PicksWhatLibllamasGreedySamplerPicks) {
  std::mt19937 rng(7);
  std::normal_distribution<float> logit(0.0f, 4.0f);
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  for (int n : {1, 7, 16, 17, 1000, 49152, 49157}) {
    for (int round = 0; round < 20; ++round) {
      std::vector<float> logits(static_cast<size_t>(n));
      for (float& v : logits) v = logit(rng);
      if (round % 4 == 1 && n > 3) {  // equal maxima: the first one wins
        float top = 100.0f;
        logits[static_cast<size_t>(n / 3)] = top;
        logits[static_cast<size_t>(n / 2)] = top;
        logits[static_cast<size_t>(n - 1)] = top;
      }
      if (round % 4 == 2) {  // NaN and -inf never win
        for (int k = 0; k < n; k += 5) logits[static_cast<size_t>(k)] = k % 2 ? nan : -inf;
      }
      if (round % 4 == 3) logits[static_cast<size_t>(n - 1)] = 1000.0f;  // the tail after the last full lane
      EXPECT_EQ(greedyToken(logits.data(), n), libllamaGreedy(logits)) << "n " << n << ", round " << round;
    }
  }
  std::vector<float> all_nan(40, nan);
  EXPECT_EQ(greedyToken(all_nan.data(), 40), 0);
  EXPECT_EQ(libllamaGreedy(all_nan), 0);
}

// sampleLogits with one candidate buffer reused across calls gives the tokens of the shorthand
// llama.h documents for llama_sampler_sample (a fresh array each time), from two chains alike
// (top_k, top_p, min_p, temperature, a seeded dist): the cut-offs that shrink and sort the
// array at one call leave nothing behind for the next.
TEST(GreedyToken, ReusedCandidatesSampleAsFreshOnes) {
  auto chain = [] {
    SamplerPtr c(llama_sampler_chain_init(llama_sampler_chain_default_params()));
    llama_sampler_chain_add(c.get(), llama_sampler_init_top_k(40));
    llama_sampler_chain_add(c.get(), llama_sampler_init_top_p(0.95f, 1));
    llama_sampler_chain_add(c.get(), llama_sampler_init_min_p(0.05f, 1));
    llama_sampler_chain_add(c.get(), llama_sampler_init_temp(0.8f));
    llama_sampler_chain_add(c.get(), llama_sampler_init_dist(1234));
    return c;
  };
  SamplerPtr reused = chain(), fresh = chain();
  std::vector<llama_token_data> candidates;
  std::mt19937 rng(3);
  std::normal_distribution<float> logit(0.0f, 3.0f);
  const int n = 5000;
  for (int draw = 0; draw < 200; ++draw) {
    std::vector<float> logits(n);
    for (float& v : logits) v = logit(rng);
    llama_token a = sampleLogits(reused.get(), logits.data(), n, candidates);
    std::vector<llama_token_data> cur;
    for (llama_token t = 0; t < n; ++t) cur.push_back({t, logits[t], 0.0f});
    llama_token_data_array arr{cur.data(), cur.size(), -1, false};
    llama_sampler_apply(fresh.get(), &arr);
    llama_token b = arr.data[arr.selected].id;
    llama_sampler_accept(fresh.get(), b);
    ASSERT_EQ(a, b) << "draw " << draw;
  }
}

TEST(GreedyToken, OnlyASamplingThatIsGreedyAloneTakesThePath) {
  Sampling greedy;
  greedy.temperature = 0;
  EXPECT_TRUE(greedyOnly(greedy));
  // greedy, with one thing changed
  auto but = [&](auto change) {
    Sampling s = greedy;
    change(s);
    return greedyOnly(s);
  };
  EXPECT_FALSE(but([](Sampling& s) { s.temperature = 0.7; }));
  EXPECT_FALSE(but([](Sampling& s) { s.repeat_penalty = 1.1; }));
  EXPECT_FALSE(but([](Sampling& s) { s.presence_penalty = 0.5; }));
  EXPECT_FALSE(but([](Sampling& s) { s.frequency_penalty = 0.5; }));
  EXPECT_FALSE(but([](Sampling& s) { s.grammar = "root ::= \"a\""; }));
  EXPECT_FALSE(but([](Sampling& s) {
    s.grammar = "root ::= \"a\"";
    s.grammar_trigger = "<tool_call>";
  }));
}

}  // namespace
}  // namespace statim::llama
