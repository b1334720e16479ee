#include "backends/echo/echo_backend.h"

#include <chrono>
#include <thread>

#include "backends/params.h"

namespace statim {
namespace {

class EchoSession final : public Session {
 public:
  Result<nlohmann::json> run(const Job& job, JobControl& control) override {
    auto start = std::chrono::steady_clock::now();
    auto delay = std::chrono::milliseconds(job.params.value("delay_ms", 0));
    // Sleep in small slices so cancellation and shutdown stay prompt.
    while (std::chrono::steady_clock::now() - start < delay && !control.cancelled()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (auto it = job.params.find("fail"); it != job.params.end()) {
      return fail(Error::backend(it->get<std::string>()));
    }
    return nlohmann::json{{"text", job.prompt}};
  }
};

class EchoModel final : public LoadedModel {
 public:
  Result<std::unique_ptr<Session>> newSession() override { return std::make_unique<EchoSession>(); }
  ComputeUse computeUse() const override { return {.threads = 0}; }  // it only waits
};

constexpr params::Spec kParams[] = {
    {.name = "delay_ms",
     .kind = params::Spec::kInteger,
     .max = 600000,
     .fallback = 0,
     .help = "milliseconds to wait before answering"},
    {.name = "fail", .kind = params::Spec::kString, .max_len = 4096, .help = "fail the job with this message"},
};

class EchoBackend final : public Backend {
 public:
  std::string_view name() const override { return "echo"; }
  std::vector<std::string> jobTypes() const override { return {"completion"}; }
  Result<void> validateParams(std::string_view, const nlohmann::json& p) const override {
    return params::check(p, kParams);
  }
  nlohmann::json paramsSchema(std::string_view, const nlohmann::json&) const override {
    return params::describe(kParams);
  }
  Result<std::shared_ptr<LoadedModel>> load(const ModelConfig&) const override { return std::make_shared<EchoModel>(); }
};

}  // namespace

const Backend& echoBackend() {
  static const EchoBackend backend;
  return backend;
}

}  // namespace statim
