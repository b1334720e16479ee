// The process's compute budget: every inference call of every model shares the machine's cores
// through it, so that models loaded side by side never oversubscribe the CPU nor slow each other
// down for good (docs/compute.md has the picture).
//
// - The budget is a number of cores. A call holds as many of them as it keeps busy (its model's
//   thread count) while it runs; calls wait in one first-come-first-served line, and a call never
//   overtakes an earlier one, so a 16-sequence LLM step cannot starve an OCR page, nor the reverse.
// - Calls that want an OpenMP team (ggml's graphs, for llama and whisper) all run on the budget's
//   one compute thread. libgomp keeps one thread pool per thread that opens a parallel region, and once
//   the process holds more OpenMP threads than cores it stops spinning at barriers for good: every
//   graph node then waits on a futex (a 4-5x slowdown of every LLM in the process). With one
//   calling thread there is one pool, sized to the call at hand.
// - Other calls (ONNX Runtime, espeak, tesseract) run on their caller's own thread once their cores
//   are held; the scheduler's threads give OpenMP regions no team (core/openmp.h).
//
// Thread-safety: run() may be called from any thread, concurrently. The budget must outlive every
// call; the destructor finishes the calls already admitted and refuses none (callers are the
// scheduler's workers, which are joined first).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "statim/backend.h"

namespace statim {

struct ComputeStats {
  int cores = 0;                                   // the budget
  int busy = 0;                                    // cores held now
  int waiting = 0;                                 // calls in line
  std::uint64_t calls = 0;                         // calls run so far
  double busy_seconds = 0.0;                       // sum over calls of (cores held x seconds)
  std::map<std::string, double> seconds_by_model;  // wall seconds of the calls of each model
};

class ComputeBudget {
 public:
  // cores <= 0: the cores this process may use (its CPU affinity).
  explicit ComputeBudget(int cores = 0);
  ~ComputeBudget();
  ComputeBudget(const ComputeBudget&) = delete;
  ComputeBudget& operator=(const ComputeBudget&) = delete;

  int cores() const { return cores_; }

  // Runs fn once `use.threads` cores are free (capped at the budget) and every call queued before
  // this one has started: on the compute thread when use.openmp, else on the caller's thread.
  // Blocks until fn returns; an exception from fn is rethrown here. use.threads == 0 runs fn at
  // once, outside the budget (for work that computes nothing, such as the echo model).
  void run(const std::string& model, ComputeUse use, const std::function<void()>& fn);

  ComputeStats stats() const;

  // The cores this process may run on (sched_getaffinity), at least 1.
  static int availableCores();

 private:
  struct Call;
  void admitLocked();  // starts the head(s) of the line that fit (mu_ held)
  void threadLoop();
  void release(Call& call, double seconds);

  const int cores_;
  mutable std::mutex mu_;
  std::condition_variable cv_;         // callers: their call was admitted or finished
  std::condition_variable thread_cv_;  // the compute thread: a call for it was admitted, or stop
  std::deque<Call*> line_;             // guarded by mu_; first come, first served
  int free_;                           // guarded by mu_
  Call* for_thread_ = nullptr;         // guarded by mu_: admitted, to run on the compute thread
  bool thread_busy_ = false;           // guarded by mu_: an OpenMP call is admitted or running
  bool stop_ = false;                  // guarded by mu_
  ComputeStats stats_;                 // guarded by mu_ (cores/busy/waiting filled in stats())
  std::thread thread_;
};

}  // namespace statim
