// The store conformance tests: every Store implementation must pass the tests written on
// StoreTest (job_store_conformance_test.cpp, access_conformance_test.cpp, job_files_test.cpp).
// store_kinds.cpp lists the kinds they run on; a kind that needs a server it cannot reach skips,
// saying so.
#pragma once

#include <atomic>
#include <chrono>
#include <filesystem>
#include <format>
#include <functional>
#include <memory>
#include <mutex>
#include <ostream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "../test_util.h"
#include "store/store.h"

namespace statim::testing {

struct StoreKind {
  std::string name;  // the test name suffix: "sqlite", ...
  // Opens the store kept in `dir` (reopens it, the second time).
  std::function<Result<std::unique_ptr<Store>>(const std::filesystem::path& dir)> open;
  // Why this kind cannot run here (no server configured); empty: it can.
  std::function<std::string()> unavailable = [] { return std::string(); };
};

class StoreTest : public ::testing::TestWithParam<StoreKind> {
 protected:
  void SetUp() override {
    if (auto why = GetParam().unavailable(); !why.empty()) GTEST_SKIP() << why;
    reopen();
  }
  void reopen() {
    store_.reset();
    auto s = GetParam().open(dir_.path());
    ASSERT_TRUE(s) << s.error().message;
    store_ = std::move(*s);
  }
  TempDir dir_;
  std::unique_ptr<Store> store_;
};

inline void PrintTo(const StoreKind& kind, std::ostream* os) { *os << kind.name; }

// Submits threads x per_thread jobs (model "m") from as many threads at once and waits for every
// answer; returns the ids the store gave, and counts the failed creates in `errors`.
inline std::set<JobId> createConcurrently(JobStore& store, int threads, int per_thread, int& errors) {
  std::atomic<int> done{0}, failed{0};
  std::mutex mu;
  std::set<JobId> ids;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) {
        NewJob job{.model = "m", .type = "completion", .prompt = std::format("t{}-{}", t, i)};
        store.createAsync(std::move(job), [&](Result<Job> r) {
          if (!r) {
            ++failed;
          } else {
            std::lock_guard l(mu);
            ids.insert(r->id);
          }
          ++done;
        });
      }
    });
  }
  for (auto& w : workers) w.join();
  while (done < threads * per_thread) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  errors = failed;
  return ids;
}

// The PostgreSQL server of the tests (STATIM_TEST_POSTGRES_URL; make test starts one), or "".
std::string testPostgresUrl();
// The test server's URL with a schema of its own for `dir` (created if needed).
std::string postgresUrlFor(const std::filesystem::path& dir);

// The kinds every conformance test runs on.
std::vector<StoreKind> storeKinds();
inline std::string storeKindName(const ::testing::TestParamInfo<StoreKind>& info) { return info.param.name; }

}  // namespace statim::testing
