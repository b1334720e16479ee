#include "backends/llama/embedding_session.h"

#include <cmath>
#include <format>
#include <thread>

namespace statim::llama {

Result<std::unique_ptr<EmbeddingSession>> EmbeddingSession::create(std::shared_ptr<llama_model> model,
                                                                   const ContextOptions& options) {
  auto make = [&](enum llama_pooling_type pooling) {
    auto cp = llama_context_default_params();
    cp.embeddings = true;
    cp.pooling_type = pooling;
    cp.n_ctx = static_cast<uint32_t>(options.n_ctx);
    // A whole input must fit one micro-batch (non-causal models see it all at once).
    cp.n_batch = cp.n_ubatch = cp.n_ctx;
    cp.n_seq_max = 1;
    int threads =
        options.threads > 0 ? options.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    cp.n_threads = cp.n_threads_batch = threads;
    cp.no_perf = true;
    return ContextPtr(llama_init_from_model(model.get(), cp));
  };
  ContextPtr ctx = make(LLAMA_POOLING_TYPE_UNSPECIFIED);
  if (ctx && llama_pooling_type(ctx.get()) == LLAMA_POOLING_TYPE_NONE) ctx = make(LLAMA_POOLING_TYPE_MEAN);
  if (!ctx) return fail(Error::backend(std::format("cannot create an embedding context of {} tokens", options.n_ctx)));
  return std::unique_ptr<EmbeddingSession>(new EmbeddingSession(std::move(model), std::move(ctx)));
}

int EmbeddingSession::contextSize() const { return static_cast<int>(llama_n_ctx(ctx_.get())); }

Result<nlohmann::json> EmbeddingSession::run(const Job& job, JobControl& control) {
  std::vector<std::string> inputs;
  if (auto it = job.params.find("input"); it != job.params.end()) {
    if (it->is_string())
      inputs.push_back(*it);
    else
      for (auto& x : *it) inputs.push_back(x);
  } else {
    inputs.push_back(job.prompt);
  }
  const llama_vocab* vocab = llama_model_get_vocab(model_.get());
  const int n_embd = llama_model_n_embd(model_.get());
  const int n_ctx = contextSize();
  nlohmann::json vectors = nlohmann::json::array();
  int tokens_in = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (control.cancelled()) return fail(Error{ErrorCode::kCancelled, "cancelled", {}});
    const std::string& text = inputs[i];
    std::vector<llama_token> tokens(text.size() + 8);
    int n = llama_tokenize(vocab, text.data(), static_cast<int32_t>(text.size()), tokens.data(),
                           static_cast<int32_t>(tokens.size()), true, false);
    if (n <= 0) return fail(Error::invalid(std::format("input {} could not be tokenized", i), "input"));
    if (n > n_ctx) {
      return fail(
          Error::invalid(std::format("input {} is {} tokens but the model's context holds {}", i, n, n_ctx), "input"));
    }
    tokens.resize(static_cast<size_t>(n));
    tokens_in += n;
    llama_memory_clear(llama_get_memory(ctx_.get()), true);
    llama_batch batch = llama_batch_init(n, 0, 1);
    for (int k = 0; k < n; ++k) {
      batch.token[k] = tokens[static_cast<size_t>(k)];
      batch.pos[k] = k;
      batch.n_seq_id[k] = 1;
      batch.seq_id[k][0] = 0;
      batch.logits[k] = true;
    }
    batch.n_tokens = n;
    int rc = llama_decode(ctx_.get(), batch);
    llama_batch_free(batch);
    if (rc != 0) return fail(Error::backend(std::format("llama_decode failed on input {} (code {})", i, rc)));
    const float* emb = llama_get_embeddings_seq(ctx_.get(), 0);
    if (!emb) return fail(Error::backend("the model produced no pooled embedding"));
    double norm = 0;
    for (int k = 0; k < n_embd; ++k) norm += static_cast<double>(emb[k]) * emb[k];
    norm = std::sqrt(norm);
    nlohmann::json v = nlohmann::json::array();
    for (int k = 0; k < n_embd; ++k) v.push_back(norm > 0 ? emb[k] / norm : 0.0);
    vectors.push_back(std::move(v));
  }
  return nlohmann::json{{"embeddings", std::move(vectors)}, {"dimensions", n_embd}, {"tokens_in", tokens_in}};
}

}  // namespace statim::llama
