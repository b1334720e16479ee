#include "backends/llama/llama_session.h"

#include <algorithm>
#include <chrono>
#include <format>
#include <random>
#include <thread>

namespace statim::llama {
namespace {

using Clock = std::chrono::steady_clock;

double secondsSince(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

struct Sampling {
  int max_tokens = 256;
  double temperature = 0.8;
  int top_k = 40;
  double top_p = 0.95;
  std::uint32_t seed = 0;
  std::vector<std::string> stop;
};

Sampling readSampling(const nlohmann::json& p) {
  Sampling s;
  s.max_tokens = p.value("max_tokens", s.max_tokens);
  s.temperature = p.value("temperature", s.temperature);
  s.top_k = p.value("top_k", s.top_k);
  s.top_p = p.value("top_p", s.top_p);
  s.seed = p.contains("seed") ? p["seed"].get<std::uint32_t>() : std::random_device{}();
  if (auto it = p.find("stop"); it != p.end()) {
    if (it->is_string())
      s.stop.push_back(it->get<std::string>());
    else
      for (auto& x : *it) s.stop.push_back(x.get<std::string>());
  }
  return s;
}

SamplerPtr makeSampler(const Sampling& s) {
  SamplerPtr chain(llama_sampler_chain_init(llama_sampler_chain_default_params()));
  if (s.temperature <= 0) {
    llama_sampler_chain_add(chain.get(), llama_sampler_init_greedy());
    return chain;
  }
  if (s.top_k > 0) llama_sampler_chain_add(chain.get(), llama_sampler_init_top_k(s.top_k));
  if (s.top_p < 1.0) llama_sampler_chain_add(chain.get(), llama_sampler_init_top_p(static_cast<float>(s.top_p), 1));
  llama_sampler_chain_add(chain.get(), llama_sampler_init_temp(static_cast<float>(s.temperature)));
  llama_sampler_chain_add(chain.get(), llama_sampler_init_dist(s.seed));
  return chain;
}

// Earliest occurrence of any stop string that ends inside the last `tail` bytes of `text`
// (a stop string can span several tokens, so we look back far enough to catch it).
std::optional<size_t> findStop(const std::string& text, const std::vector<std::string>& stops, size_t tail) {
  std::optional<size_t> best;
  for (auto& stop : stops) {
    size_t from = text.size() > tail + stop.size() ? text.size() - tail - stop.size() : 0;
    size_t pos = text.find(stop, from);
    if (pos != std::string::npos && (!best || pos < *best)) best = pos;
  }
  return best;
}

std::string tokenPiece(const llama_vocab* vocab, llama_token tok) {
  std::string buf(64, '\0');
  int n = llama_token_to_piece(vocab, tok, buf.data(), static_cast<int>(buf.size()), 0, false);
  if (n < 0) {
    buf.resize(static_cast<size_t>(-n));
    n = llama_token_to_piece(vocab, tok, buf.data(), static_cast<int>(buf.size()), 0, false);
  }
  buf.resize(static_cast<size_t>(std::max(n, 0)));
  return buf;
}

}  // namespace

Result<std::unique_ptr<LlamaSession>> LlamaSession::create(std::shared_ptr<llama_model> model,
                                                           const SessionOptions& options) {
  auto cp = llama_context_default_params();
  cp.n_ctx = static_cast<uint32_t>(options.n_ctx);
  cp.n_batch = static_cast<uint32_t>(options.n_batch);
  cp.n_ubatch = std::min<uint32_t>(cp.n_batch, 512);
  cp.n_seq_max = 1;
  int threads =
      options.threads > 0 ? options.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  cp.n_threads = threads;
  cp.n_threads_batch = threads;
  cp.no_perf = true;
  ContextPtr ctx(llama_init_from_model(model.get(), cp));
  if (!ctx) {
    return fail(
        Error::backend(std::format("cannot create a llama context with n_ctx={} (out of memory?)", options.n_ctx)));
  }
  std::unique_ptr<LlamaSession> session(new LlamaSession(std::move(model), std::move(ctx), options));
  // Cancellation reaches inside llama_decode through its abort callback.
  llama_set_abort_callback(
      session->ctx_.get(),
      [](void* data) {
        auto* self = static_cast<LlamaSession*>(data);
        return self->control_ != nullptr && self->control_->cancelled();
      },
      session.get());
  return session;
}

int LlamaSession::contextSize() const { return static_cast<int>(llama_n_ctx(ctx_.get())); }

Result<std::vector<llama_token>> LlamaSession::tokenize(const std::string& text) const {
  const llama_vocab* vocab = llama_model_get_vocab(model_.get());
  int cap = static_cast<int>(text.size()) + 8;
  std::vector<llama_token> tokens(static_cast<size_t>(cap));
  int n = llama_tokenize(vocab, text.data(), static_cast<int32_t>(text.size()), tokens.data(), cap, true, false);
  if (n < 0 && n != INT32_MIN) {
    tokens.resize(static_cast<size_t>(-n));
    n = llama_tokenize(vocab, text.data(), static_cast<int32_t>(text.size()), tokens.data(), -n, true, false);
  }
  if (n < 0) return fail(Error::invalid("the prompt could not be tokenized", "prompt"));
  tokens.resize(static_cast<size_t>(n));
  return tokens;
}

Result<nlohmann::json> LlamaSession::run(const Job& job, JobControl& control) {
  control_ = &control;
  struct Reset {
    LlamaSession* s;
    ~Reset() { s->control_ = nullptr; }
  } reset{this};

  const Sampling sampling = readSampling(job.params);
  const llama_vocab* vocab = llama_model_get_vocab(model_.get());
  auto start = Clock::now();

  auto tokens = tokenize(job.prompt);
  if (!tokens) return fail(tokens.error());
  const int n_ctx = static_cast<int>(llama_n_ctx(ctx_.get()));
  const int n_prompt = static_cast<int>(tokens->size());
  if (n_prompt >= n_ctx) {
    return fail(Error::invalid(std::format("the prompt is {} tokens but the model's context holds {} "
                                           "(manifest params.n_ctx); shorten the prompt",
                                           n_prompt, n_ctx),
                               "prompt"));
  }
  const int max_tokens = std::min(sampling.max_tokens, n_ctx - n_prompt);

  llama_memory_clear(llama_get_memory(ctx_.get()), true);
  SamplerPtr sampler = makeSampler(sampling);

  // Prompt in chunks of the context's batch size (libllama may have lowered n_batch to n_ctx).
  const int n_batch = static_cast<int>(llama_n_batch(ctx_.get()));
  for (int i = 0; i < n_prompt; i += n_batch) {
    int n = std::min(n_batch, n_prompt - i);
    int rc = llama_decode(ctx_.get(), llama_batch_get_one(tokens->data() + i, n));
    if (rc == 2 || control.cancelled()) {
      return nlohmann::json{{"text", ""}, {"tokens_in", n_prompt}, {"tokens_out", 0}, {"finish_reason", "cancelled"}};
    }
    if (rc != 0) return fail(Error::backend(std::format("llama_decode failed on the prompt (code {})", rc)));
  }

  std::string text;
  int n_out = 0;
  std::string finish = "length";
  Clock::time_point first_token{};
  size_t max_stop = 0;
  for (auto& s : sampling.stop) max_stop = std::max(max_stop, s.size());
  while (n_out < max_tokens) {
    llama_token tok = llama_sampler_sample(sampler.get(), ctx_.get(), -1);
    if (n_out == 0) first_token = Clock::now();
    if (llama_vocab_is_eog(vocab, tok)) {
      finish = "stop";
      break;
    }
    std::string piece = tokenPiece(vocab, tok);
    text += piece;
    ++n_out;
    if (!sampling.stop.empty()) {
      if (auto pos = findStop(text, sampling.stop, piece.size() + max_stop)) {
        text.resize(*pos);
        finish = "stop";
        break;
      }
    }
    if (n_out >= max_tokens) break;
    if (control.cancelled()) {
      finish = "cancelled";
      break;
    }
    int rc = llama_decode(ctx_.get(), llama_batch_get_one(&tok, 1));
    if (rc == 2) {
      finish = "cancelled";
      break;
    }
    if (rc != 0) return fail(Error::backend(std::format("llama_decode failed after {} tokens (code {})", n_out, rc)));
  }

  double total = secondsSince(start);
  double gen_s = n_out > 0 ? std::chrono::duration<double>(Clock::now() - first_token).count() : 0.0;
  double ttft = n_out > 0 ? std::chrono::duration<double>(first_token - start).count() : total;
  return nlohmann::json{
      {"text", text},
      {"tokens_in", n_prompt},
      {"tokens_out", n_out},
      {"tokens_per_s", gen_s > 0 ? n_out / gen_s : 0.0},
      {"time_to_first_token_ms", ttft * 1000.0},
      {"duration_ms", total * 1000.0},
      {"finish_reason", finish},
  };
}

}  // namespace statim::llama
