// The backend extension point: one interface, one folder per implementation under src/backends/,
// one registration line in src/backends/registry.cpp.
//
// Lifecycle and threading contract:
//   Backend       stateless factory, one static instance per kind; thread-safe.
//   LoadedModel   the weights of one model, shared by all its workers; newSession() is thread-safe.
//   Session       one worker's private state (e.g. a llama_context). The scheduler never calls a
//                 Session concurrently, so backends need no locks of their own.
//   BatchSession  for backends that advance many jobs in one step (continuous batching): the
//                 scheduler's single batch worker adds jobs between steps and calls step() in a
//                 loop. Also never called concurrently.
//   Session::run and BatchSession::step are called inside the process's compute budget (see
//   LoadedModel::computeUse): possibly on another thread than the session's other calls, never
//   concurrently with them.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "statim/error.h"
#include "statim/job.h"

namespace statim {

// The part of a model manifest a backend sees.
struct ModelConfig {
  std::string id;
  std::string type;                                  // job type this model serves
  std::filesystem::path file;                        // absolute path of the weights; empty when the backend needs none
  nlohmann::json params = nlohmann::json::object();  // backend-specific [params] table
  int parallel = 1;                                  // how many sessions (workers) the scheduler will open
  std::filesystem::path dir;                         // the manifest's folder: anchors relative paths in params
  int cores = 1;  // the process's compute budget (ComputeBudget): a thread count of 0 means this many
};

// How one call of a model (Session::run, BatchSession::step) uses the machine, for the process's
// compute budget: every such call waits for `threads` cores to be free before it runs.
struct ComputeUse {
  int threads = 1;      // cores the call keeps busy; 0: it computes nothing worth counting (echo)
  bool openmp = false;  // it wants an OpenMP team (ggml's graphs: llama, whisper): such calls
                        // all run on the budget's one compute thread, so that the process holds
                        // a single OpenMP thread pool (see scheduler/compute_budget.h). Any other
                        // call runs on a thread where OpenMP regions get no team (tesseract)
};

// Handed to Session::run for one job. Called only from the session's own thread.
class JobControl {
 public:
  virtual ~JobControl() = default;
  // True once the job should stop early (cancellation, shutdown deadline). Backends poll it
  // between steps (or from their library's abort callback) and return what they have.
  virtual bool cancelled() const = 0;
  // Progress notes for observers: {"type": "token", "text": "..."} for generated text, or
  // {"type": "progress", ...}. Never blocks on clients.
  virtual void progress(const nlohmann::json& event) = 0;
  // Stores a binary result (a WAV, a PNG) as the job's artifact `name` (written atomically into
  // the data dir, content-addressed); it is listed in result.artifacts once the job completes.
  // The first artifact is the job's primary result (GET /job/{id}/result).
  virtual Result<JobFile> saveArtifact(const std::string& name, const std::string& content_type,
                                       std::string_view bytes) = 0;
};

// How one job of a batch ended. A job stopped because control.cancelled() became true returns
// its partial result with "finish_reason": "cancelled".
struct BatchOutcome {
  JobId id = 0;
  Result<nlohmann::json> result;
};

class BatchSession {
 public:
  virtual ~BatchSession() = default;
  virtual int capacity() const = 0;  // jobs that can be active at once
  virtual int active() const = 0;
  // Takes a job into a free slot (requires active() < capacity()). `control` stays valid until
  // the job's outcome is returned. An error here ends the job FAILED at once.
  virtual Result<void> add(const Job& job, JobControl& control) = 0;
  // Advances every active job by one step. A job that ends in it is handed to `ended` at once,
  // before the step samples the others: its client may be sending its next job meanwhile, in
  // time to join the next step. `ended` must not call the session.
  using EndSink = std::function<void(BatchOutcome)>;
  virtual void step(const EndSink& ended) = 0;
  // Where the steps' time went since the last call (GET /metrics: statim_batch_step_seconds_total):
  // seconds by phase ("decode", "sample", ...), and how many steps and tokens. Empty: not kept.
  struct StepTimes {
    int steps = 0;
    int tokens = 0;  // decoded (prompt and generated)
    std::vector<std::pair<std::string, double>> seconds;
  };
  virtual StepTimes takeStepTimes() { return {}; }
};

class Session {
 public:
  virtual ~Session() = default;
  // Runs one job to the end and returns its result object (e.g. {"text", "tokens_in", ...}).
  // A failure is returned as an Error and ends the job FAILED; the session stays usable.
  virtual Result<nlohmann::json> run(const Job& job, JobControl& control) = 0;
};

class LoadedModel {
 public:
  virtual ~LoadedModel() = default;
  // Thread-safe. Each scheduler worker opens one session and keeps it.
  virtual Result<std::unique_ptr<Session>> newSession() {
    return fail(Error::internal("this model runs jobs in batches (newBatchSession)"));
  }
  // Batched models return true; the scheduler then opens one BatchSession instead of sessions.
  virtual bool batched() const { return false; }
  virtual Result<std::unique_ptr<BatchSession>> newBatchSession() {
    return fail(Error::internal("this model runs one job per session (newSession)"));
  }
  // Text models: the tokens a chat or completion job would feed the model (its chat template
  // applied), and text <-> tokens with its vocabulary. Thread-safe; no inference. Others: fail.
  virtual Result<std::vector<std::int32_t>> promptTokens(const NewJob& job) const {
    (void)job;
    return fail(Error::invalid("this model has no tokenizer", "model"));
  }
  virtual Result<std::vector<std::int32_t>> tokenize(const std::string& text, bool add_special) const {
    (void)text;
    (void)add_special;
    return fail(Error::invalid("this model has no tokenizer", "model"));
  }
  // Each token's text (pieces: bytes, a piece may be part of a UTF-8 character), or all of it.
  virtual Result<std::vector<std::string>> tokenPieces(const std::vector<std::int32_t>& tokens) const {
    (void)tokens;
    return fail(Error::invalid("this model has no tokenizer", "model"));
  }
  // Checks what needs the loaded model (a chat template, a grammar against the vocabulary)
  // before the job is stored, so such mistakes are a 400 and not a FAILED job. Thread-safe.
  virtual Result<void> checkJob(const NewJob& job) const {
    (void)job;
    return ok();
  }
  // What one call of this model needs of the compute budget. Thread-safe, constant once loaded.
  virtual ComputeUse computeUse() const { return {}; }
  // Facts worth showing in GET /models (context size, parameters, ...).
  virtual nlohmann::json describe() const { return nlohmann::json::object(); }
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;
  // Job types this backend can serve; a manifest's `type` must be one of them. The first is the
  // default.
  virtual std::vector<std::string> jobTypes() const = 0;
  // The job types a model with manifest type `manifest_type` accepts (a completion model also
  // takes chat jobs, say).
  virtual std::vector<std::string> servedTypes(std::string_view manifest_type) const {
    return {std::string(manifest_type)};
  }
  // Content types a job of `type` accepts as input files (POST /job multipart or base64
  // `inputs`), checked against the bytes' sniffed type (415 otherwise). Empty: no files.
  virtual std::vector<std::string> inputTypes(std::string_view type) const {
    (void)type;
    return {};
  }
  // Whether a job of `type` may come without input files (a chat's images are optional).
  virtual bool inputsOptional(std::string_view type) const {
    (void)type;
    return false;
  }
  // The params a job of `type` takes, as JSON Schema properties (params::describe): GET /models
  // shows them (job_types[type].params) and the dashboard builds its forms from them. Defaults
  // the model sets in its manifest (`manifest_params`) are shown as the defaults.
  virtual nlohmann::json paramsSchema(std::string_view type, const nlohmann::json& manifest_params) const {
    (void)type;
    (void)manifest_params;
    return nlohmann::json::object();
  }
  // Checks a job's params before the job is stored (so bad input never becomes a FAILED job).
  // Must not need the model loaded. Returns the error naming the offending field.
  virtual Result<void> validateParams(std::string_view type, const nlohmann::json& params) const = 0;
  // Checks the manifest's backend params (at start-up, before loading).
  virtual Result<void> validateConfig(const ModelConfig& config) const {
    (void)config;
    return ok();
  }
  // Loads the model (may take long; called off the HTTP threads). Errors say what is wrong with
  // the file so GET /models can show it.
  virtual Result<std::shared_ptr<LoadedModel>> load(const ModelConfig& config) const = 0;
};

}  // namespace statim
