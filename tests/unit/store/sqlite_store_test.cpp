// What only the SQLite store does: group commit, its schema version, its files, and how it tells
// disk failures apart. (What every store does is in the conformance tests: store_test.h.)
#include "store/sqlite/sqlite_store.h"

#include <atomic>
#include <format>
#include <mutex>
#include <set>
#include <thread>

#include <gtest/gtest.h>
#include <sqlite3.h>

#include "store/sqlite/sqlite_db.h"
#include "store_test.h"

namespace statim {
namespace {

constexpr Micros kLease = 60'000'000;

NewJob newJob(std::string prompt, int priority = 0) {
  return {.model = "m", .type = "completion", .prompt = std::move(prompt), .priority = priority};
}

class SqliteJobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = SqliteStore::open(dir_.path() / "jobs.db");
    ASSERT_TRUE(s) << s.error().message;
    store_ = std::move(*s);
  }
  testing::TempDir dir_;
  std::unique_ptr<SqliteStore> store_;
};

TEST_F(SqliteJobStoreTest, SchemaIsAtTheLatestMigration) { EXPECT_EQ(store_->schemaVersion(), 6); }

// Many threads submitting at once: every job is stored once, ids are distinct, and the writer
// groups them into far fewer transactions than jobs (group commit).
TEST_F(SqliteJobStoreTest, ConcurrentCreatesShareCommits) {
  constexpr int kThreads = 16, kPerThread = 50;
  auto before = store_->commitCount();
  int errors = 0;
  auto ids = testing::createConcurrently(*store_, kThreads, kPerThread, errors);
  EXPECT_EQ(errors, 0);
  EXPECT_EQ(ids.size(), static_cast<size_t>(kThreads * kPerThread));
  EXPECT_LT(store_->commitCount() - before, kThreads * kPerThread);
  auto page = store_->list({.limit = 1});
  EXPECT_EQ(page->total, kThreads * kPerThread);
}

// claim(max) takes several queued jobs in one write.
TEST_F(SqliteJobStoreTest, ClaimOfSeveralJobsIsOneCommit) {
  auto before = store_->commitCount();
  for (auto [name, prio] : {std::pair{"a", 0}, {"b", 5}, {"c", 0}, {"d", 9}})
    ASSERT_TRUE(store_->create(newJob(name, prio)));
  auto jobs = store_->claim("m", {"w", kLease}, 3);
  ASSERT_TRUE(jobs) << jobs.error().message;
  EXPECT_EQ(jobs->size(), 3u);
  EXPECT_EQ(store_->commitCount() - before, 5);  // four creates, one claim
}

TEST_F(SqliteJobStoreTest, OpeningAFileThatIsNotADatabaseFails) {
  dir_.write("garbage.db", std::string(4096, 'x'));
  auto s = SqliteStore::open(dir_.path() / "garbage.db");
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("not a database"), std::string::npos) << s.error().message;
}

// What a client is told when the data dir's disk fails: full (507) and unwritable (503) apart from
// the rest (500), whatever extended code SQLite reports.
TEST(SqliteError, FullAndUnwritableDisksAreToldApart) {
  auto full = sqliteError(SQLITE_FULL, "database or disk is full");
  EXPECT_EQ(full.code, ErrorCode::kStorageFull);
  EXPECT_EQ(full.message,
            "the data dir's disk is full, so nothing was stored (database or disk is full); free some space and retry");
  for (int code : {SQLITE_READONLY, SQLITE_READONLY_DBMOVED, SQLITE_IOERR_WRITE, SQLITE_IOERR_FSYNC, SQLITE_CANTOPEN}) {
    auto e = sqliteError(code, "x");
    EXPECT_EQ(e.code, ErrorCode::kStorageUnavailable) << code;
    EXPECT_NE(e.message.find("the database cannot be written"), std::string::npos) << e.message;
  }
  auto other = sqliteError(SQLITE_CONSTRAINT_UNIQUE, "UNIQUE constraint failed: jobs.id");
  EXPECT_EQ(other.code, ErrorCode::kStorage);
  EXPECT_EQ(other.message, "sqlite: UNIQUE constraint failed: jobs.id");
}

}  // namespace
}  // namespace statim
