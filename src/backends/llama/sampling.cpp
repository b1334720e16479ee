#include "backends/llama/sampling.h"
#include "core/strings.h"

#include <algorithm>
#include <cmath>
#include <format>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>

#include "backends/llama/json_grammar.h"
#include "backends/llama/tokenize.h"
#include "backends/llama/tools.h"
#include "backends/params.h"

namespace statim::llama {
namespace {

// The sampling params, with Sampling's defaults (response_format is checked on its own).
constexpr Sampling kDefaults;
using params::Spec;
constexpr Spec kSamplingParams[] = {
    {.name = "max_tokens",
     .kind = Spec::kInteger,
     .min = 1,
     .max = 32768,
     .fallback = kDefaults.max_tokens,
     .help = "at most this many tokens"},
    {.name = "temperature", .kind = Spec::kNumber, .max = 10, .fallback = kDefaults.temperature, .help = "0: greedy"},
    {.name = "top_k", .kind = Spec::kInteger, .max = 100000, .fallback = kDefaults.top_k, .help = "0: off"},
    {.name = "top_p", .kind = Spec::kNumber, .max = 1, .fallback = kDefaults.top_p, .help = "nucleus sampling; 1: off"},
    {.name = "min_p", .kind = Spec::kNumber, .max = 1, .fallback = kDefaults.min_p, .help = "0: off"},
    {.name = "repeat_penalty",
     .kind = Spec::kNumber,
     .max = 10,
     .fallback = kDefaults.repeat_penalty,
     .help = "1: off"},
    {.name = "repeat_last_n",
     .kind = Spec::kInteger,
     .min = -1,
     .max = 32768,
     .fallback = kDefaults.repeat_last_n,
     .help = "tokens the penalties look back on; -1: the whole context"},
    {.name = "presence_penalty", .kind = Spec::kNumber, .min = -2, .max = 2, .fallback = kDefaults.presence_penalty},
    {.name = "frequency_penalty", .kind = Spec::kNumber, .min = -2, .max = 2, .fallback = kDefaults.frequency_penalty},
    {.name = "seed", .kind = Spec::kInteger, .max = 4294967295.0, .help = "absent: random"},
    {.name = "n",
     .kind = Spec::kInteger,
     .min = 1,
     .max = kMaxChoices,
     .fallback = 1,
     .help = "choices to generate, each its own sequence (choice i samples with seed + i)"},
    {.name = "stop", .kind = Spec::kStringOrList, .max = 16, .max_len = 256, .help = "stop before any of these"},
    {.name = "grammar", .kind = Spec::kString, .max_len = 1 << 16, .help = "a GBNF grammar the output follows"},
    {.name = "logprobs", .kind = Spec::kBoolean, .fallback = 0, .help = "each token's log probability in the result"},
    {.name = "top_logprobs",
     .kind = Spec::kInteger,
     .max = 20,
     .fallback = 0,
     .help = "with logprobs: this many likeliest tokens at each step"},
};

// libllama expands a repetition {m,n} into n copies, and one with n < m makes its parser loop
// (practically) forever: each is checked before a grammar reaches it. The limit matches libllama's.
constexpr long kMaxGbnfRepeat = 2000;

Result<void> checkGbnfRepetitions(std::string_view g) {
  auto bad = [](std::string_view rep, size_t at, std::string_view why) {
    return fail(
        Error::invalid(std::format("the grammar's repetition '{}' (at byte {}) {}", rep, at, why), "params.grammar"));
  };
  for (size_t i = 0; i < g.size(); ++i) {
    char c = g[i];
    if (c == '#') {  // a comment, to the end of the line
      while (i < g.size() && g[i] != '\n' && g[i] != '\r') ++i;
    } else if (c == '"' || c == '[') {  // a literal or a character class, with escapes
      char close = c == '"' ? '"' : ']';
      for (++i; i < g.size() && g[i] != close; ++i) {
        if (g[i] == '\\') ++i;
      }
    } else if (c == '{') {
      // As libllama reads it: spaces, newlines and comments may come between the parts.
      size_t start = i++;
      auto skip = [&] {
        while (i < g.size()) {
          if (g[i] == ' ' || g[i] == '\t' || g[i] == '\r' || g[i] == '\n') {
            ++i;
          } else if (g[i] == '#') {
            while (i < g.size() && g[i] != '\n' && g[i] != '\r') ++i;
          } else {
            break;
          }
        }
      };
      auto number = [&] {
        skip();
        long v = -1;
        for (; i < g.size() && g[i] >= '0' && g[i] <= '9'; ++i) {
          v = std::min<long>((v < 0 ? 0 : v * 10) + (g[i] - '0'), kMaxGbnfRepeat + 1);
        }
        skip();
        return v;
      };
      long lo = number(), hi = lo;
      if (i < g.size() && g[i] == ',') {
        ++i;
        hi = number();  // -1: no upper bound
      }
      if (i >= g.size() || g[i] != '}') continue;  // not a repetition libllama accepts: it says so
      std::string_view rep = g.substr(start, i - start + 1);
      if (lo > kMaxGbnfRepeat || hi > kMaxGbnfRepeat) {
        return bad(rep, start, std::format("repeats more than {} times, which is not supported", kMaxGbnfRepeat));
      }
      if (hi >= 0 && lo > hi) return bad(rep, start, "has a minimum above its maximum");
    }
  }
  return ok();
}

Result<void> validateResponseFormat(const nlohmann::json& p) {
  auto it = p.find("response_format");
  if (it == p.end() || it->is_null()) return ok();
  const std::string f = "params.response_format";
  if (!it->is_object() || !it->contains("type") || !(*it)["type"].is_string()) {
    return fail(Error::invalid(
        std::format("'{}' must be an object with a string 'type' (text, json_object, json_schema)", f), f));
  }
  std::string type = (*it)["type"];
  if (type == "text" || type == "json_object") return ok();
  if (type != "json_schema") {
    return fail(Error::invalid(std::format("'{}.type' must be text, json_object or json_schema (got '{}')", f, type),
                               f + ".type"));
  }
  auto js = it->find("json_schema");
  if (js == it->end() || !js->is_object() || !js->contains("schema")) {
    return fail(Error::invalid(std::format("'{}.json_schema.schema' is required for type json_schema", f),
                               f + ".json_schema.schema"));
  }
  auto g = jsonSchemaToGbnf((*js)["schema"]);
  if (!g) return fail(Error::invalid(g.error().message, f + ".json_schema.schema"));
  return ok();
}

}  // namespace

bool jsonResponseFormat(const nlohmann::json& p) {
  auto rf = p.find("response_format");
  return rf != p.end() && rf->is_object() && rf->contains("type") && (*rf)["type"] != "text";
}

nlohmann::json samplingSchema() { return params::describe(kSamplingParams); }

nlohmann::json tokenLogprob(const llama_vocab* vocab, const float* logits, int n_vocab, llama_token token, int top) {
  float max = *std::max_element(logits, logits + n_vocab);
  double sum = 0;
  for (int i = 0; i < n_vocab; ++i) sum += std::exp(static_cast<double>(logits[i] - max));
  const double lse = max + std::log(sum);
  auto entry = [&](llama_token t) {
    std::string piece = tokenPiece(vocab, t);
    nlohmann::json bytes = nlohmann::json::array();
    for (unsigned char c : piece) bytes.push_back(c);
    return nlohmann::json{
        {"token", piece}, {"logprob", static_cast<double>(logits[t]) - lse}, {"bytes", std::move(bytes)}};
  };
  nlohmann::json out = entry(token);
  nlohmann::json alternatives = nlohmann::json::array();
  if (top > 0) {
    std::vector<llama_token> ids(static_cast<size_t>(n_vocab));
    std::iota(ids.begin(), ids.end(), 0);
    const auto k = static_cast<std::ptrdiff_t>(std::min(top, n_vocab));
    std::partial_sort(ids.begin(), ids.begin() + k, ids.end(),
                      [&](llama_token a, llama_token b) { return logits[a] > logits[b]; });
    for (std::ptrdiff_t i = 0; i < k; ++i) alternatives.push_back(entry(ids[static_cast<size_t>(i)]));
  }
  out["top_logprobs"] = std::move(alternatives);
  return out;
}

Result<void> validateSampling(const nlohmann::json& p, std::initializer_list<std::string_view> extra) {
  // `user`: the end user's id a client gives (OpenAI's `user`), kept with the job; not read here.
  std::vector<std::string_view> also{"response_format", "user"};
  also.insert(also.end(), extra.begin(), extra.end());
  if (auto r = params::check(p, kSamplingParams, "params", also); !r) return r;
  if (auto r = params::string(p, "user", 256, "params"); !r) return r;
  if (auto g = p.find("grammar"); g != p.end() && g->is_string()) {
    if (auto r = checkGbnfRepetitions(g->get<std::string>()); !r) return r;
  }
  if (p.contains("grammar") && jsonResponseFormat(p)) {
    return fail(
        Error::invalid("give either 'params.grammar' or a JSON 'params.response_format', not both", "params.grammar"));
  }
  return validateResponseFormat(p);
}

Result<Sampling> readSampling(const nlohmann::json& p, ToolFormat tools) {
  Sampling s;
  s.max_tokens = p.value("max_tokens", s.max_tokens);
  s.temperature = p.value("temperature", s.temperature);
  s.top_k = p.value("top_k", s.top_k);
  s.top_p = p.value("top_p", s.top_p);
  s.min_p = p.value("min_p", s.min_p);
  s.repeat_penalty = p.value("repeat_penalty", s.repeat_penalty);
  s.repeat_last_n = p.value("repeat_last_n", s.repeat_last_n);
  s.presence_penalty = p.value("presence_penalty", s.presence_penalty);
  s.frequency_penalty = p.value("frequency_penalty", s.frequency_penalty);
  s.seed = p.contains("seed") ? p["seed"].get<std::uint32_t>() : std::random_device{}();
  if (auto it = p.find("stop"); it != p.end()) {
    if (it->is_string())
      s.stop.push_back(it->get<std::string>());
    else
      for (auto& x : *it) s.stop.push_back(x.get<std::string>());
  }
  s.logprobs = p.value("logprobs", false);
  s.top_logprobs = p.value("top_logprobs", 0);
  s.grammar = p.value("grammar", "");
  if (toolsActive(p)) {
    auto g = toolGrammar(p, tools);
    if (!g) return fail(g.error());
    s.grammar = std::move(g->gbnf);
    s.grammar_trigger = std::move(g->trigger);
    s.call_opener = std::move(g->opener);
  }
  if (auto rf = p.find("response_format"); rf != p.end() && rf->is_object()) {
    std::string type = rf->value("type", "text");
    if (type == "json_object") s.grammar = anyJsonGbnf();
    if (type == "json_schema") {
      auto g = jsonSchemaToGbnf((*rf)["json_schema"]["schema"]);
      if (!g) return fail(Error::invalid(g.error().message, "params.response_format.json_schema.schema"));
      s.grammar = *g;
    }
  }
  return s;
}

Result<SamplerPtr> makeSampler(const llama_model* model, const Sampling& s) {
  const llama_vocab* vocab = llama_model_get_vocab(model);
  SamplerPtr chain(llama_sampler_chain_init(llama_sampler_chain_default_params()));
  auto add = [&](llama_sampler* smpl) { llama_sampler_chain_add(chain.get(), smpl); };
  if (s.repeat_penalty != 1.0 || s.presence_penalty != 0.0 || s.frequency_penalty != 0.0) {
    // repeat_last_n -1 means "the whole context"; 4096 covers any context a job here has.
    add(llama_sampler_init_penalties(llama_vocab_n_tokens(vocab), s.repeat_last_n < 0 ? 4096 : s.repeat_last_n,
                                     static_cast<float>(s.repeat_penalty), static_cast<float>(s.frequency_penalty),
                                     static_cast<float>(s.presence_penalty)));
  }
  if (!s.grammar.empty() && s.grammar_trigger.empty()) {
    if (auto r = checkGbnfRepetitions(s.grammar); !r) return fail(r.error());
    llama_sampler* g = llama_sampler_init_grammar(vocab, s.grammar.c_str(), "root");
    if (!g)
      return fail(
          Error::invalid("the grammar does not parse as GBNF (see the server log for where)", "params.grammar"));
    add(g);
  }
  if (s.temperature <= 0) {
    add(llama_sampler_init_greedy());
    return chain;
  }
  if (s.top_k > 0) add(llama_sampler_init_top_k(s.top_k));
  if (s.top_p < 1.0) add(llama_sampler_init_top_p(static_cast<float>(s.top_p), 1));
  if (s.min_p > 0.0) add(llama_sampler_init_min_p(static_cast<float>(s.min_p), 1));
  add(llama_sampler_init_temp(static_cast<float>(s.temperature)));
  add(llama_sampler_init_dist(s.seed));
  return chain;
}

bool greedyOnly(const Sampling& s) {
  return s.temperature <= 0 && s.repeat_penalty == 1.0 && s.presence_penalty == 0.0 && s.frequency_penalty == 0.0 &&
         s.grammar.empty() && s.grammar_trigger.empty();
}

llama_token greedyToken(const float* logits, int n_vocab) {
  // The largest value first, in lanes the compiler keeps in vector registers (a max has no
  // order), then the first token that holds it: libllama's greedy keeps the first of equals.
  constexpr int kLanes = 16;
  float lane[kLanes];
  std::fill(std::begin(lane), std::end(lane), -std::numeric_limits<float>::infinity());
  int i = 0;
  for (; i + kLanes <= n_vocab; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) lane[j] = logits[i + j] > lane[j] ? logits[i + j] : lane[j];
  }
  float best = -std::numeric_limits<float>::infinity();
  for (float v : lane) best = v > best ? v : best;
  for (; i < n_vocab; ++i) best = logits[i] > best ? logits[i] : best;
  for (int t = 0; t < n_vocab; ++t) {
    if (logits[t] == best) return t;
  }
  return 0;  // every logit NaN (or -inf): libllama's greedy keeps the first token too
}

llama_token sampleLogits(llama_sampler* chain, const float* logits, int n_vocab,
                         std::vector<llama_token_data>& candidates) {
  candidates.resize(static_cast<size_t>(n_vocab));
  for (llama_token t = 0; t < n_vocab; ++t) candidates[static_cast<size_t>(t)] = {t, logits[t], 0.0f};
  llama_token_data_array cur{candidates.data(), candidates.size(), -1, false};
  llama_sampler_apply(chain, &cur);
  if (cur.selected < 0 || static_cast<size_t>(cur.selected) >= cur.size) {
    throw std::runtime_error("the sampler chain selected no token");
  }
  llama_token token = cur.data[cur.selected].id;
  llama_sampler_accept(chain, token);
  return token;
}

Result<SamplerPtr> samplerFromTrigger(const llama_model* model, Sampling s,
                                      const std::vector<std::pair<llama_token, size_t>>& tokens, size_t at) {
  s.grammar_trigger.clear();
  auto sampler = makeSampler(model, s);
  if (!sampler) return sampler;
  if (tokens.empty()) return sampler;
  size_t first = tokens.size() - 1;
  while (first > 0 && tokens[first].second > at) --first;
  try {
    for (size_t k = first; k < tokens.size(); ++k) llama_sampler_accept(sampler->get(), tokens[k].first);
  } catch (const std::exception& e) {
    return fail(Error::backend(std::string("the output does not fit the grammar from its trigger on: ") + e.what()));
  }
  return sampler;
}

}  // namespace statim::llama
