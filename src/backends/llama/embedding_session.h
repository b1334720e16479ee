// Embeddings: one pooled, L2-normalised vector per input text, through a context made with
// embeddings on (mean pooling when the model declares none).
#pragma once

#include <memory>

#include "backends/llama/batch_session.h"
#include "backends/llama/llama_handles.h"
#include "statim/backend.h"

namespace statim::llama {

class EmbeddingSession final : public Session {
 public:
  static Result<std::unique_ptr<EmbeddingSession>> create(std::shared_ptr<llama_model> model,
                                                          const ContextOptions& options);
  // Inputs: params.input (a string or a list of strings) or else the prompt.
  // Result: {"embeddings": [[...], ...], "dimensions", "tokens_in"}.
  Result<nlohmann::json> run(const Job& job, JobControl& control) override;
  int contextSize() const;

 private:
  EmbeddingSession(std::shared_ptr<llama_model> model, ContextPtr ctx)
      : model_(std::move(model)), ctx_(std::move(ctx)) {}
  std::shared_ptr<llama_model> model_;
  ContextPtr ctx_;
};

}  // namespace statim::llama
