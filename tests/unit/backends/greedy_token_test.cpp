// The batch's greedy fast path: greedyToken picks what libllama's greedy sampler picks, and only
// samplings that are greedy alone take it.
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

TEST(GreedyToken, OnlyASamplingThatIsGreedyAloneTakesThePath) {
  Sampling s;
  s.temperature = 0;
  EXPECT_TRUE(greedyOnly(s));
  Sampling warm = s;
  warm.temperature = 0.7;
  EXPECT_FALSE(greedyOnly(warm));
  Sampling penalised = s;
  penalised.repeat_penalty = 1.1;
  EXPECT_FALSE(greedyOnly(penalised));
  Sampling present = s;
  present.presence_penalty = 0.5;
  EXPECT_FALSE(greedyOnly(present));
  Sampling frequent = s;
  frequent.frequency_penalty = 0.5;
  EXPECT_FALSE(greedyOnly(frequent));
  Sampling grammar = s;
  grammar.grammar = "root ::= \"a\"";
  EXPECT_FALSE(greedyOnly(grammar));
  Sampling later = s;
  later.grammar = "root ::= \"a\"";
  later.grammar_trigger = "<tool_call>";
  EXPECT_FALSE(greedyOnly(later));
}

}  // namespace
}  // namespace statim::llama
