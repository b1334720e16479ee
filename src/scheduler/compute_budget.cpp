#include "scheduler/compute_budget.h"
#include "core/thread_name.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>

#include <sched.h>

namespace statim {

struct ComputeBudget::Call {
  const std::string& model;
  int threads;
  bool openmp;
  const std::function<void()>& fn;
  bool admitted = false;  // guarded by mu_
  bool done = false;      // guarded by mu_ (OpenMP calls: set by the compute thread)
  std::exception_ptr error;
  std::condition_variable cv;
};

ComputeBudget::ComputeBudget(int cores) : cores_(cores > 0 ? cores : availableCores()), free_(cores_) {
  stats_.cores = cores_;
  thread_ = std::thread([this] { threadLoop(); });
}

ComputeBudget::~ComputeBudget() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  thread_cv_.notify_all();
  thread_.join();
}

int ComputeBudget::availableCores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  int n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 0;
  if (n <= 0) n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  // A container's CPU quota (cgroup v2 "cpu.max": "QUOTA PERIOD" or "max PERIOD") caps it further.
  std::ifstream in("/sys/fs/cgroup/cpu.max");
  std::string quota;
  double period = 0;
  if (in >> quota >> period && quota != "max" && period > 0) {
    double q = std::atof(quota.c_str()) / period;
    if (q > 0) n = std::min(n, std::max(1, static_cast<int>(std::ceil(q))));
  }
  return n;
}

void ComputeBudget::run(const std::string& model, ComputeUse use, const std::function<void()>& fn) {
  if (use.threads <= 0) return fn();
  Call call{model, std::min(use.threads, cores_), use.openmp, fn};
  std::unique_lock lock(mu_);
  line_.push_back(&call);
  admitLocked();
  if (call.openmp) {
    call.cv.wait(lock, [&] { return call.done; });
  } else {
    call.cv.wait(lock, [&] { return call.admitted; });
    lock.unlock();
    auto start = std::chrono::steady_clock::now();
    try {
      fn();
    } catch (...) {
      call.error = std::current_exception();
    }
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    lock.lock();
    release(call, seconds);
  }
  lock.unlock();
  if (call.error) std::rethrow_exception(call.error);
}

void ComputeBudget::admitLocked() {
  // Only the head of the line may start: a big call waiting for cores holds back the small ones
  // behind it, so that it is never starved by them.
  while (!line_.empty()) {
    Call* head = line_.front();
    if (head->threads > free_ || (head->openmp && thread_busy_)) return;
    line_.pop_front();
    free_ -= head->threads;
    head->admitted = true;
    if (head->openmp) {
      thread_busy_ = true;
      for_thread_ = head;
      thread_cv_.notify_one();
    } else {
      head->cv.notify_one();
    }
  }
}

void ComputeBudget::release(Call& call, double seconds) {
  free_ += call.threads;
  if (call.openmp) thread_busy_ = false;
  ++stats_.calls;
  stats_.busy_seconds += seconds * call.threads;
  stats_.seconds_by_model[call.model] += seconds;
  admitLocked();
}

void ComputeBudget::threadLoop() {
  nameThisThread("compute");
  std::unique_lock lock(mu_);
  while (true) {
    thread_cv_.wait(lock, [&] { return for_thread_ != nullptr || stop_; });
    if (!for_thread_) return;
    Call* call = for_thread_;
    for_thread_ = nullptr;
    lock.unlock();
    auto start = std::chrono::steady_clock::now();
    try {
      call->fn();
    } catch (...) {
      call->error = std::current_exception();
    }
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    lock.lock();
    release(*call, seconds);
    call->done = true;
    call->cv.notify_one();  // under the lock: the caller may destroy `call` as soon as it wakes
  }
}

ComputeStats ComputeBudget::stats() const {
  std::lock_guard lock(mu_);
  ComputeStats s = stats_;
  s.busy = cores_ - free_;
  s.waiting = static_cast<int>(line_.size());
  return s;
}

}  // namespace statim
