#include "backends/ort/ort_session.h"

#include <format>
#include <iostream>
#include <mutex>
#include <streambuf>

namespace statim::ort {
namespace {

// Debian's ONNX Runtime links the system libonnx, and both register the standard operator schemas
// when the first session is created: libonnx reports each duplicate on std::cerr ("Schema error:
// Trying to register schema with name Abs ... already registered"), ~600 harmless lines. They are
// dropped while a session is opened (one at a time). statim's own logging does not go through
// std::cerr, so nothing else is lost.
class QuietCerr {
 public:
  QuietCerr() : lock_(mutex()), saved_(std::cerr.rdbuf(&null_)) {}
  ~QuietCerr() { std::cerr.rdbuf(saved_); }

 private:
  static std::mutex& mutex() {
    static std::mutex m;
    return m;
  }
  struct NullBuf : std::streambuf {
    int overflow(int c) override { return traits_type::not_eof(c); }
  };
  std::lock_guard<std::mutex> lock_;
  NullBuf null_;
  std::streambuf* saved_;
};

}  // namespace

Ort::Env& env() {
  // Warnings ("initializer appears in graph inputs") are not worth a log line per load.
  static Ort::Env* e = new Ort::Env(ORT_LOGGING_LEVEL_ERROR, "statim");
  return *e;
}

Result<std::unique_ptr<Ort::Session>> openSession(const std::filesystem::path& path, int threads,
                                                  std::string_view label) {
  try {
    Ort::SessionOptions options;
    if (threads > 0) options.SetIntraOpNumThreads(threads);
    options.SetInterOpNumThreads(1);
    // ORT's pool threads spin between the parallel sections of a Run (waking a sleeping thread
    // for each of a detector's ~300 operators made a YOLOX-Nano job ~40 % slower), but stop as
    // soon as the last running Run returns, so they do not burn the cores that the next call in
    // the compute budget (an LLM step, say) was just given.
    options.AddConfigEntry("session.intra_op.allow_spinning", "1");
    options.AddConfigEntry("session.force_spinning_stop", "1");
    options.SetExecutionMode(ExecutionMode::ORT_SEQUENTIAL);
    options.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
    QuietCerr quiet;
    return std::make_unique<Ort::Session>(env(), path.c_str(), options);
  } catch (const Ort::Exception& e) {
    return fail(Error::backend(std::format("ONNX Runtime could not load {}: {}", label, e.what())));
  }
}

}  // namespace statim::ort
