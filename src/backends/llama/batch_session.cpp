#include "backends/llama/batch_session.h"

#include <algorithm>
#include <format>
#include <thread>

#include "backends/llama/chat.h"
#include "backends/llama/tokenize.h"
#include "backends/llama/tools.h"

namespace statim::llama {

// A "token" event: new text, and with logprobs the entries of the tokens sampled since the last.
// Choices after the first (params.n) report theirs as "choice_token" events with their index: the
// job's "token" events (its text so far, result.text) are its first choice's.
nlohmann::json LlamaBatchSession::tokenEvent(Slot& s, const std::string& text) {
  nlohmann::json e = {{"type", s.choice == 0 ? "token" : "choice_token"}, {"text", text}};
  if (s.n > 1) e["index"] = s.choice;
  if (s.top_logprobs >= 0) {
    nlohmann::json fresh = nlohmann::json::array();
    for (; s.logprobs_sent < s.logprobs.size(); ++s.logprobs_sent) fresh.push_back(s.logprobs[s.logprobs_sent]);
    e["logprobs"] = std::move(fresh);
  }
  return e;
}

namespace {

double msBetween(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

}  // namespace

Result<std::unique_ptr<LlamaBatchSession>> LlamaBatchSession::create(std::shared_ptr<llama_model> model,
                                                                     const ContextOptions& options, int capacity) {
  auto cp = llama_context_default_params();
  cp.n_seq_max = static_cast<uint32_t>(capacity);
  cp.n_ctx = static_cast<uint32_t>(options.n_ctx) * cp.n_seq_max;
  cp.kv_unified = false;  // each sequence gets its own n_ctx cells: one job cannot starve another
  cp.n_batch = static_cast<uint32_t>(options.n_batch);
  cp.n_ubatch = std::min<uint32_t>(cp.n_batch, 512);
  int threads =
      options.threads > 0 ? options.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  cp.n_threads = threads;
  cp.n_threads_batch = threads;
  cp.no_perf = true;
  ContextPtr ctx(llama_init_from_model(model.get(), cp));
  if (!ctx) {
    return fail(Error::backend(std::format(
        "cannot create a llama context for {} sequences of {} tokens (out of memory?)", capacity, options.n_ctx)));
  }
  return std::unique_ptr<LlamaBatchSession>(new LlamaBatchSession(std::move(model), std::move(ctx), options, capacity));
}

LlamaBatchSession::LlamaBatchSession(std::shared_ptr<llama_model> model, ContextPtr ctx, ContextOptions options,
                                     int capacity)
    : model_(std::move(model)),
      ctx_(std::move(ctx)),
      options_(std::move(options)),
      slots_(static_cast<size_t>(capacity)) {
  batch_ = llama_batch_init(static_cast<int32_t>(llama_n_batch(ctx_.get())), 0, 1);
}

LlamaBatchSession::~LlamaBatchSession() { llama_batch_free(batch_); }

int LlamaBatchSession::contextPerSequence() const { return static_cast<int>(llama_n_ctx_seq(ctx_.get())); }

int LlamaBatchSession::active() const {
  return static_cast<int>(std::ranges::count_if(slots_, [](const Slot& s) { return s.busy; }) + waiting_.size());
}

std::pair<size_t, size_t> LlamaBatchSession::bestFreeSlot(const std::vector<llama_token>& prompt) const {
  size_t best = slots_.size(), best_common = 0;
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (slots_[i].busy) continue;
    const auto& kv = slots_[i].kv;
    size_t common = 0;
    while (common < kv.size() && common < prompt.size() && kv[common] == prompt[common]) ++common;
    // The longest shared prefix; among equals, the slot holding the least (it loses the least).
    if (best == slots_.size() || common > best_common ||
        (common == best_common && kv.size() < slots_[best].kv.size())) {
      best = i;
      best_common = common;
    }
  }
  return {best, best_common};
}

Result<void> LlamaBatchSession::add(const Job& job, JobControl& control) {
  // What every choice shares, checked once: the prompt (images decoded and preprocessed once) and
  // that it fits; the sampling params.
  if (auto sampling = readSampling(job.params, options_.tool_format); !sampling) return fail(sampling.error());
  auto made = jobPrompt(model_.get(), options_, job.type, job.prompt, job.params, job.inputs);
  if (!made) return fail(made.error());
  const int n_ctx = contextPerSequence();
  if (static_cast<int>(made->tokens.size()) >= n_ctx) {
    return fail(Error::invalid(std::format("the prompt is {} tokens but the model's context holds {} per job "
                                           "(manifest params.n_ctx); shorten the prompt",
                                           made->tokens.size(), n_ctx),
                               "prompt"));
  }
  auto prompt = std::make_shared<const Prompt>(std::move(*made));
  const int n = job.params.value("n", 1);
  if (n > 1) choices_[job.id] = Choices{.n = n, .results = std::vector<nlohmann::json>(static_cast<size_t>(n))};
  for (int choice = 0; choice < n; ++choice) {
    // Choices take free sequences in the order they came: behind those waiting already.
    if (!waiting_.empty() || std::ranges::none_of(slots_, [](const Slot& s) { return !s.busy; })) {
      waiting_.push_back({job, &control, choice, prompt});
      continue;
    }
    if (auto r = start(job, control, choice, *prompt); !r) {
      if (choice == 0) {  // nothing of the job runs: it fails at once
        choices_.erase(job.id);
        return r;
      }
      (void)choiceEnded(job.id, choice, fail(r.error()));  // (choice 0 runs: no outcome yet)
    }
  }
  return ok();
}

bool LlamaBatchSession::choiceFailed(JobId id) const {
  auto it = choices_.find(id);
  return it != choices_.end() && it->second.error.has_value();
}

Result<void> LlamaBatchSession::start(const Job& job, JobControl& control, int choice, const Prompt& prompt) {
  auto sampling = readSampling(job.params, options_.tool_format);
  if (!sampling) return fail(sampling.error());
  sampling->seed += static_cast<std::uint32_t>(choice);
  const std::vector<llama_token>* tokens = &prompt.tokens;
  const int n_ctx = contextPerSequence();
  const int n_prompt = static_cast<int>(tokens->size());
  auto sampler = makeSampler(model_.get(), *sampling);
  if (!sampler) return fail(sampler.error());
  // The prompt cache: reuse what a free sequence holds of this prompt; at least the last prompt
  // token is decoded again (its logits pick the first token). A model whose memory cannot drop a
  // tail (recurrent layers) starts from an empty sequence.
  auto [slot_index, common] = bestFreeSlot(*tokens);
  common = std::min(common, tokens->size() - 1);
  // Images and audio are decoded whole: a prefix that ends inside one (it cannot, but for hash
  // collisions) stops before it.
  for (const MediaChunk& m : prompt.media) {
    if (m.start < common && common < m.start + m.n_tokens) common = m.start;
  }
  llama_memory_t mem = llama_get_memory(ctx_.get());
  const int seq = static_cast<int>(slot_index);
  std::vector<llama_token> kv = std::move(slots_[slot_index].kv);
  if (!llama_memory_seq_rm(mem, seq, static_cast<llama_pos>(common), -1)) {
    llama_memory_seq_rm(mem, seq, -1, -1);
    common = 0;
  }
  kv.resize(common);
  // The media inside the reused prefix are in the cache already.
  size_t next_media = 0;
  while (next_media < prompt.media.size() &&
         prompt.media[next_media].start + prompt.media[next_media].n_tokens <= common) {
    ++next_media;
  }
  // Repetition penalties count the prompt too, as llama-server's do. (Not with a grammar in the
  // chain: the prompt is no part of the constrained output.)
  if (sampling->grammar.empty() &&
      (sampling->repeat_penalty != 1.0 || sampling->presence_penalty != 0.0 || sampling->frequency_penalty != 0.0)) {
    for (llama_token t : *tokens) {
      if (!isMediaToken(t)) llama_sampler_accept(sampler->get(), t);
    }
  }
  Slot& s = slots_[slot_index];
  s = Slot{};
  s.busy = true;
  s.id = job.id;
  s.choice = choice;
  s.n = job.params.value("n", 1);
  s.control = &control;
  s.prompt = *tokens;
  s.media = prompt.media;
  s.chunks = prompt.chunks;
  s.next_media = next_media;
  s.kv = std::move(kv);
  s.prompt_done = common;
  s.n_past = static_cast<int>(common);
  s.cached = static_cast<int>(common);
  s.max_tokens = std::min(sampling->max_tokens, n_ctx - n_prompt);
  s.sampler = std::move(*sampler);
  s.greedy = greedyOnly(*sampling);
  s.tools = job.type == "chat" && toolsActive(job.params);
  // A call is not content: its text stays out of the stream (the calls come with the result).
  s.output.emplace(sampling->stop, s.tools ? sampling->call_opener : std::string());
  if (!sampling->grammar_trigger.empty()) s.deferred = *sampling;
  if (sampling->logprobs) s.top_logprobs = sampling->top_logprobs;
  s.start = Clock::now();
  return ok();
}

std::optional<BatchOutcome> LlamaBatchSession::release(int seq, std::string finish, std::optional<Error> error) {
  Slot& s = slots_[static_cast<size_t>(seq)];
  // What the sequence holds stays for the next job (the prompt cache), unless its state is unknown.
  std::vector<llama_token> kv = std::move(s.kv);
  if (error) {
    llama_memory_seq_rm(llama_get_memory(ctx_.get()), seq, -1, -1);
    kv.clear();
  }
  BatchOutcome out{s.id, fail(Error::internal("unset"))};
  if (error) {
    out.result = fail(std::move(*error));
  } else {
    if (auto rest = s.output->takeStreamable(true); !rest.empty()) s.control->progress(tokenEvent(s, rest));
    auto now = Clock::now();
    double gen_ms = s.n_out > 0 ? msBetween(s.first_token, now) : 0.0;
    out.result = nlohmann::json{
        {"text", s.output->text()},
        {"tokens_in", static_cast<int>(s.prompt.size())},
        {"tokens_cached", s.cached},
        {"tokens_out", s.n_out},
        {"tokens_per_s", gen_ms > 0 ? s.n_out / (gen_ms / 1000.0) : 0.0},
        {"time_to_first_token_ms", s.n_out > 0 ? msBetween(s.start, s.first_token) : 0.0},
        {"duration_ms", msBetween(s.start, now)},
        {"finish_reason", std::move(finish)},
    };
    if (s.top_logprobs >= 0) (*out.result)["logprobs"] = std::move(s.logprobs);
    if (s.tools) {
      // The calls leave the text; a job that called ends with "tool_calls" (as OpenAI's do).
      std::string call_id = s.choice == 0 ? std::format("call_{}", s.id) : std::format("call_{}_{}", s.id, s.choice);
      ParsedOutput parsed = parseToolCalls(s.output->text(), call_id, options_.tool_format);
      if (!parsed.tool_calls.empty()) {
        auto& r = *out.result;
        r["text"] = parsed.text;
        r["tool_calls"] = std::move(parsed.tool_calls);
        if (r["finish_reason"] == "stop") r["finish_reason"] = "tool_calls";
      }
    }
  }
  const int n = s.n, choice = s.choice;
  s = Slot{};
  s.kv = std::move(kv);
  if (n == 1) return out;
  return choiceEnded(out.id, choice, std::move(out.result));
}

std::optional<BatchOutcome> LlamaBatchSession::choiceEnded(JobId id, int choice, Result<nlohmann::json> result) {
  auto found = choices_.find(id);
  if (found == choices_.end()) return BatchOutcome{id, std::move(result)};  // a job of one choice
  Choices& c = found->second;
  if (!result && !c.error) c.error = result.error();
  if (result) c.results[static_cast<size_t>(choice)] = std::move(*result);
  if (++c.ended < c.n) return std::nullopt;
  BatchOutcome out{id, fail(Error::internal("unset"))};
  if (c.error) {
    out.result = fail(std::move(*c.error));
  } else {
    // The job's result is its first choice's, with every choice in "choices" and the tokens of all.
    nlohmann::json r = c.results[0];
    r["choices"] = nlohmann::json::array();
    int tokens_out = 0;
    double duration = 0;
    for (int i = 0; i < c.n; ++i) {
      const auto& one = c.results[static_cast<size_t>(i)];
      nlohmann::json entry = {
          {"index", i}, {"text", one.value("text", "")}, {"finish_reason", one.value("finish_reason", "stop")}};
      for (const char* k : {"tool_calls", "logprobs"}) {
        if (one.contains(k)) entry[k] = one[k];
      }
      r["choices"].push_back(std::move(entry));
      tokens_out += one.value("tokens_out", 0);
      duration = std::max(duration, one.value("duration_ms", 0.0));
    }
    r["tokens_out"] = tokens_out;
    r["duration_ms"] = duration;
    out.result = std::move(r);
  }
  choices_.erase(id);
  return out;
}

void LlamaBatchSession::switchAtTrigger(Slot& s, llama_token tok, size_t start) {
  const std::string& text = s.output->text();
  const std::string& trigger = s.deferred->grammar_trigger;
  s.out_tokens.emplace_back(tok, start);
  size_t from = start >= trigger.size() ? start - trigger.size() + 1 : 0;  // only what is new
  size_t at = text.find(trigger, from);
  if (at == std::string::npos) return;
  Sampling strict = std::move(*s.deferred);
  s.deferred.reset();
  // A grammar that refuses the output so far leaves the job unconstrained: its output is then
  // parsed as text.
  auto sampler = samplerFromTrigger(model_.get(), std::move(strict), s.out_tokens, at);
  if (!sampler) return;
  s.sampler = std::move(*sampler);
  s.greedy = false;  // the grammar decides now
  s.out_tokens.clear();
}

void LlamaBatchSession::step(const EndSink& ended) {
  const llama_vocab* vocab = llama_model_get_vocab(model_.get());
  const int n_vocab = llama_vocab_n_tokens(vocab);

  auto end = [&](std::optional<BatchOutcome> o) {
    if (o) ended(std::move(*o));
  };
  // The time since the last lap goes to `phase`.
  Clock::time_point t = Clock::now();
  auto lap = [&](Phase phase) {
    Clock::time_point now = Clock::now();
    phase_s_[phase] += std::chrono::duration<double>(now - t).count();
    t = now;
  };
  // Cancelled jobs leave before the step, with what they have; so do the other choices of a job
  // one of whose choices failed (its outcome is that error).
  for (size_t i = 0; i < slots_.size(); ++i) {
    const Slot& s = slots_[i];
    if (s.busy && (s.control->cancelled() || choiceFailed(s.id))) end(release(static_cast<int>(i), "cancelled"));
  }
  // Choices waiting for a sequence take the free ones first (a cancelled job's, none).
  for (auto w = waiting_.begin(); w != waiting_.end();) {
    if (w->control->cancelled() || choiceFailed(w->job.id)) {
      nlohmann::json none = {{"text", ""}, {"finish_reason", "cancelled"}, {"tokens_out", 0}};
      Waiting gone = std::move(*w);
      w = waiting_.erase(w);
      end(choiceEnded(gone.job.id, gone.choice, std::move(none)));
      continue;
    }
    if (std::ranges::none_of(slots_, [](const Slot& s) { return !s.busy; })) break;
    Waiting next = std::move(*w);
    w = waiting_.erase(w);
    if (auto r = start(next.job, *next.control, next.choice, *next.prompt); !r) {
      end(choiceEnded(next.job.id, next.choice, fail(r.error())));
    }
  }

  lap(kEvents);

  // Images and audio the prompts have reached are decoded each on its own (their embeddings),
  // after the text before them (decoded in an earlier step) and before the text after them.
  for (size_t i = 0; i < slots_.size(); ++i) {
    Slot& s = slots_[i];
    while (s.busy && s.next_media < s.media.size() && s.media[s.next_media].start == s.prompt_done) {
      const MediaChunk& m = s.media[s.next_media];
      auto r = options_.mm->decode(ctx_.get(), m.chunk, static_cast<int>(i), static_cast<int>(s.prompt_done),
                                   static_cast<int>(llama_n_batch(ctx_.get())));
      if (!r) {
        end(release(static_cast<int>(i), "error", r.error()));
        break;
      }
      s.kv.insert(s.kv.end(), s.prompt.begin() + static_cast<long>(m.start),
                  s.prompt.begin() + static_cast<long>(m.start + m.n_tokens));
      s.prompt_done += m.n_tokens;
      ++s.next_media;
    }
  }

  lap(kMedia);

  // One token for every generating sequence, then prompt chunks in the room left.
  const int n_batch = static_cast<int>(llama_n_batch(ctx_.get()));
  batch_.n_tokens = 0;
  auto push = [&](llama_token tok, int pos, int seq, bool logits) {
    int i = batch_.n_tokens++;
    batch_.token[i] = tok;
    batch_.pos[i] = pos;
    batch_.n_seq_id[i] = 1;
    batch_.seq_id[i][0] = seq;
    batch_.logits[i] = logits;
    return i;
  };
  for (size_t i = 0; i < slots_.size(); ++i) {
    Slot& s = slots_[i];
    s.logits_index = -1;
    if (s.busy && s.pending) s.logits_index = push(*s.pending, s.n_past, static_cast<int>(i), true);
  }
  std::vector<std::pair<size_t, size_t>> prompt_chunks;  // (slot, tokens) read from its prompt this step
  for (size_t i = 0; i < slots_.size() && batch_.n_tokens < n_batch; ++i) {
    Slot& s = slots_[i];
    if (!s.busy || s.prompt_done == s.prompt.size()) continue;
    size_t room = static_cast<size_t>(n_batch - batch_.n_tokens);
    // Text up to the next image or audio (decoded at the next step's start).
    size_t end = s.next_media < s.media.size() ? s.media[s.next_media].start : s.prompt.size();
    size_t n = std::min(room, end - s.prompt_done);
    if (n == 0) continue;
    for (size_t k = 0; k < n; ++k) {
      bool last = s.prompt_done + k + 1 == s.prompt.size();
      int idx = push(s.prompt[s.prompt_done + k], static_cast<int>(s.prompt_done + k), static_cast<int>(i), last);
      if (last) s.logits_index = idx;
    }
    prompt_chunks.emplace_back(i, n);
    s.prompt_done += n;
  }
  if (batch_.n_tokens == 0) return;

  int rc = llama_decode(ctx_.get(), batch_);
  ++steps_;
  step_tokens_ += batch_.n_tokens;
  lap(kDecode);
  if (rc != 0) {
    // The batch's sequences are in an unknown state: end every job in it.
    for (size_t i = 0; i < slots_.size(); ++i) {
      if (!slots_[i].busy) continue;
      end(release(static_cast<int>(i), "error",
                  Error::backend(
                      std::format("llama_decode failed (code {}{})", rc, rc == 1 ? ": no room in the KV cache" : ""))));
    }
    return;
  }
  for (auto [i, n] : prompt_chunks) {
    Slot& s = slots_[i];
    s.kv.insert(s.kv.end(), s.prompt.begin() + static_cast<long>(s.prompt_done - n),
                s.prompt.begin() + static_cast<long>(s.prompt_done));
  }

  for (size_t i = 0; i < slots_.size(); ++i) {
    Slot& s = slots_[i];
    if (!s.busy) continue;
    if (s.pending) {
      ++s.n_past;
      s.kv.push_back(*s.pending);
      s.pending.reset();
    } else if (s.logits_index >= 0) {
      s.n_past = static_cast<int>(s.prompt.size());  // the prompt is now all in the cache
    }
    if (s.logits_index < 0) continue;  // still reading its prompt
    const float* logits = llama_get_logits_ith(ctx_.get(), s.logits_index);
    llama_token tok =
        s.greedy ? greedyToken(logits, n_vocab) : sampleLogits(s.sampler.get(), logits, n_vocab, candidates_);
    if (s.n_out == 0) s.first_token = Clock::now();
    if (llama_vocab_is_eog(vocab, tok)) {
      lap(kSample);
      end(release(static_cast<int>(i), "stop"));
      lap(kEvents);
      continue;
    }
    ++s.n_out;
    if (s.top_logprobs >= 0) {
      s.logprobs.push_back(tokenLogprob(vocab, logits, n_vocab, tok, s.top_logprobs));
    }
    lap(kSample);
    size_t start = s.output->text().size();
    bool stopped = s.output->append(tokenPiece(vocab, tok));
    if (s.deferred && !stopped) switchAtTrigger(s, tok, start);
    std::string delta = s.output->takeStreamable(false);
    lap(kText);
    if (!delta.empty()) s.control->progress(tokenEvent(s, delta));
    if (stopped) {
      end(release(static_cast<int>(i), "stop"));
    } else if (s.n_out >= s.max_tokens) {
      end(release(static_cast<int>(i), "length"));
    } else {
      s.pending = tok;
    }
    lap(kEvents);
  }
}

BatchSession::StepTimes LlamaBatchSession::takeStepTimes() {
  static constexpr const char* kNames[kPhases] = {"media", "decode", "sample", "text", "events"};
  StepTimes out{steps_, step_tokens_, {}};
  for (int p = 0; p < kPhases; ++p) out.seconds.emplace_back(kNames[p], phase_s_[static_cast<size_t>(p)]);
  phase_s_ = {};
  steps_ = step_tokens_ = 0;
  return out;
}

}  // namespace statim::llama
