// The store conformance tests: every Store implementation must pass the tests written on
// StoreTest (job_store_conformance_test.cpp, access_conformance_test.cpp, job_files_test.cpp).
// store_kinds.cpp lists the kinds they run on; a kind that needs a server it cannot reach skips,
// saying so.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "../test_util.h"
#include "store/store.h"

namespace statim::testing {

struct StoreKind {
  std::string name;  // the test name suffix: "sqlite", ...
  // Opens the store kept in `dir` (reopens it, the second time).
  std::function<Result<std::unique_ptr<Store>>(const std::filesystem::path& dir)> open;
};

class StoreTest : public ::testing::TestWithParam<StoreKind> {
 protected:
  void SetUp() override { reopen(); }
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

// The kinds every conformance test runs on.
std::vector<StoreKind> storeKinds();
inline std::string storeKindName(const ::testing::TestParamInfo<StoreKind>& info) { return info.param.name; }

}  // namespace statim::testing
