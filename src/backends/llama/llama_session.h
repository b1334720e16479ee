// One worker's llama_context over a shared model. Runs one completion job at a time.
#pragma once

#include <memory>
#include <string>

#include "backends/llama/llama_handles.h"
#include "statim/backend.h"

namespace statim::llama {

struct SessionOptions {
  int n_ctx = 2048;
  int n_batch = 512;
  int threads = 0;  // 0: all cores
};

class LlamaSession final : public Session {
 public:
  // `model` keeps the weights alive for as long as the session exists.
  static Result<std::unique_ptr<LlamaSession>> create(std::shared_ptr<llama_model> model,
                                                      const SessionOptions& options);
  Result<nlohmann::json> run(const Job& job, JobControl& control) override;
  // The context size libllama actually made (it rounds the requested n_ctx up).
  int contextSize() const;

 private:
  LlamaSession(std::shared_ptr<llama_model> model, ContextPtr ctx, SessionOptions options)
      : model_(std::move(model)), ctx_(std::move(ctx)), options_(options) {}
  Result<std::vector<llama_token>> tokenize(const std::string& text) const;

  std::shared_ptr<llama_model> model_;
  ContextPtr ctx_;
  SessionOptions options_;
  JobControl* control_ = nullptr;  // the running job's, read by the abort callback
};

}  // namespace statim::llama
