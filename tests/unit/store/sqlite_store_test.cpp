// What only the SQLite store does: group commit, its schema version, its files, and how it tells
// disk failures apart. (What every store does is in the conformance tests: store_test.h.)
#include "store/sqlite/sqlite_store.h"

#include <atomic>
#include <cstdlib>
#include <format>
#include <future>
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

// A VFS over SQLite's default one that counts xSync (fsync / fdatasync) calls, made the default
// while it lives, so a store opened meanwhile syncs through it.
class SyncCountingVfs {
 public:
  SyncCountingVfs() {
    base_ = sqlite3_vfs_find(nullptr);
    vfs_ = *base_;
    vfs_.zName = "statim-sync-counter";
    vfs_.szOsFile = static_cast<int>(sizeof(File)) + base_->szOsFile;
    vfs_.pNext = nullptr;
    vfs_.xOpen = &open;
    sqlite3_vfs_register(&vfs_, 1);
  }
  ~SyncCountingVfs() {
    sqlite3_vfs_register(base_, 1);
    sqlite3_vfs_unregister(&vfs_);
  }
  static int syncs() { return syncs_.load(); }

 private:
  struct File {
    sqlite3_file file;  // first: SQLite passes this pointer back
    sqlite3_file* real;
  };
  static sqlite3_file* real(sqlite3_file* f) { return reinterpret_cast<File*>(f)->real; }
  static int open(sqlite3_vfs* vfs, sqlite3_filename name, sqlite3_file* f, int flags, int* out_flags) {
    auto* file = reinterpret_cast<File*>(f);
    file->real = reinterpret_cast<sqlite3_file*>(file + 1);
    file->file.pMethods = nullptr;
    (void)vfs;
    int rc = base_->xOpen(base_, name, file->real, flags, out_flags);
    if (rc == SQLITE_OK && file->real->pMethods) file->file.pMethods = methods();
    return rc;
  }
  static const sqlite3_io_methods* methods() {
    static const sqlite3_io_methods m = [] {
      sqlite3_io_methods x{};
      x.iVersion = 3;
      x.xClose = [](sqlite3_file* f) { return real(f)->pMethods->xClose(real(f)); };
      x.xRead = [](sqlite3_file* f, void* p, int n, sqlite3_int64 o) {
        return real(f)->pMethods->xRead(real(f), p, n, o);
      };
      x.xWrite = [](sqlite3_file* f, const void* p, int n, sqlite3_int64 o) {
        return real(f)->pMethods->xWrite(real(f), p, n, o);
      };
      x.xTruncate = [](sqlite3_file* f, sqlite3_int64 n) { return real(f)->pMethods->xTruncate(real(f), n); };
      x.xSync = [](sqlite3_file* f, int flags) {
        ++syncs_;
        return real(f)->pMethods->xSync(real(f), flags);
      };
      x.xFileSize = [](sqlite3_file* f, sqlite3_int64* n) { return real(f)->pMethods->xFileSize(real(f), n); };
      x.xLock = [](sqlite3_file* f, int l) { return real(f)->pMethods->xLock(real(f), l); };
      x.xUnlock = [](sqlite3_file* f, int l) { return real(f)->pMethods->xUnlock(real(f), l); };
      x.xCheckReservedLock = [](sqlite3_file* f, int* r) { return real(f)->pMethods->xCheckReservedLock(real(f), r); };
      x.xFileControl = [](sqlite3_file* f, int op, void* a) { return real(f)->pMethods->xFileControl(real(f), op, a); };
      x.xSectorSize = [](sqlite3_file* f) { return real(f)->pMethods->xSectorSize(real(f)); };
      x.xDeviceCharacteristics = [](sqlite3_file* f) { return real(f)->pMethods->xDeviceCharacteristics(real(f)); };
      x.xShmMap = [](sqlite3_file* f, int i, int n, int w, void volatile** p) {
        return real(f)->pMethods->xShmMap(real(f), i, n, w, p);
      };
      x.xShmLock = [](sqlite3_file* f, int o, int n, int fl) { return real(f)->pMethods->xShmLock(real(f), o, n, fl); };
      x.xShmBarrier = [](sqlite3_file* f) { real(f)->pMethods->xShmBarrier(real(f)); };
      x.xShmUnmap = [](sqlite3_file* f, int d) { return real(f)->pMethods->xShmUnmap(real(f), d); };
      x.xFetch = [](sqlite3_file* f, sqlite3_int64 o, int n, void** p) {
        return real(f)->pMethods->xFetch(real(f), o, n, p);
      };
      x.xUnfetch = [](sqlite3_file* f, sqlite3_int64 o, void* p) { return real(f)->pMethods->xUnfetch(real(f), o, p); };
      return x;
    }();
    return &m;
  }
  static inline sqlite3_vfs* base_ = nullptr;
  sqlite3_vfs vfs_{};
  static inline std::atomic<int> syncs_{0};
};

// A job's creation and its end are fsynced before they are answered; a claim, a lease
// heartbeat and audit rows are committed without an fsync of their own (Sync::kLater).
TEST(SqliteStoreSync, OnlyWritesTheStoreCannotRedoWaitForTheDisk) {
  testing::TempDir dir;
  SyncCountingVfs vfs;
  JobId id = 0;
  {
    auto store = SqliteStore::open(dir.path() / "jobs.db");
    ASSERT_TRUE(store) << store.error().message;
    int before = SyncCountingVfs::syncs();
    auto job = (*store)->create(newJob("p"));
    ASSERT_TRUE(job) << job.error().message;
    id = job->id;
    int after_create = SyncCountingVfs::syncs();
    EXPECT_GE(after_create - before, 1) << "a job's creation is fsynced";
    auto claimed = (*store)->claim("m", {"w", kLease}, 1);
    ASSERT_TRUE(claimed) << claimed.error().message;
    ASSERT_EQ(claimed->size(), 1u);
    (*store)->appendAudit({.time = 1, .method = "POST", .route = "/job", .path = "/job", .status = 202});
    auto beat = (*store)->heartbeat(id, "w", kLease);  // after the audit row's batch (one writer, in order)
    ASSERT_TRUE(beat) << beat.error().message;
    EXPECT_EQ(SyncCountingVfs::syncs(), after_create) << "a claim, an audit row, a heartbeat: no fsync";
    auto seen = (*store)->get(id);
    ASSERT_TRUE(seen);
    EXPECT_EQ(seen->status, JobStatus::kProcessing);  // committed all the same
    // The next write that must be durable is synced again, and its fsync covers the earlier ones.
    ASSERT_TRUE((*store)->create(newJob("q")));
    EXPECT_GE(SyncCountingVfs::syncs() - after_create, 1) << "synchronous=FULL is back after a lazy batch";
    int before_finish = SyncCountingVfs::syncs();
    ASSERT_TRUE((*store)->complete(id, "w", {{"text", "done"}}));
    EXPECT_GE(SyncCountingVfs::syncs() - before_finish, 1) << "a job's end is fsynced";
    auto page = (*store)->listAudit({.limit = 10});
    ASSERT_TRUE(page);
    EXPECT_EQ(page->total, 1);
  }
  auto reopened = SqliteStore::open(dir.path() / "jobs.db");
  ASSERT_TRUE(reopened) << reopened.error().message;
  auto job = (*reopened)->get(id);
  ASSERT_TRUE(job);
  EXPECT_EQ(job->status, JobStatus::kCompleted);
  EXPECT_EQ(job->attempts, 1);
  EXPECT_EQ(job->result["text"], "done");
}

// A job whose submitter hears of it only at its end (POST /job?wait=) is handed to its worker as
// soon as its creation is committed, and the flush to disk follows at once, with no other write to
// wait for. A sync flushes everything committed so far (a wait that runs out answers the job's id
// only after one).
TEST(SqliteStoreSync, ACreationAnsweredAtItsEndIsDeliveredThenFlushed) {
  testing::TempDir dir;
  SyncCountingVfs vfs;
  JobId waited = 0, timed_out = 0;
  auto sync = [](JobStore& store) {
    std::promise<Result<void>> done;
    store.syncAsync([&done](Result<void> r) { done.set_value(std::move(r)); });
    return done.get_future().get();
  };
  auto syncsReach = [](int n) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (SyncCountingVfs::syncs() < n && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return SyncCountingVfs::syncs() >= n;
  };
  {
    auto store = SqliteStore::open(dir.path() / "jobs.db");
    ASSERT_TRUE(store) << store.error().message;
    ASSERT_TRUE(sync(**store)) << "nothing written yet: nothing to flush, and no error";
    NewJob a = newJob("a");
    a.answered_at_end = true;
    int before = SyncCountingVfs::syncs();
    std::promise<std::pair<Result<Job>, int>> delivered;
    (*store)->createAsync(a, [&delivered](Result<Job> r) {
      delivered.set_value({std::move(r), SyncCountingVfs::syncs()});
    });
    auto [job, syncs_then] = delivered.get_future().get();
    ASSERT_TRUE(job) << job.error().message;
    waited = job->id;
    EXPECT_EQ(syncs_then, before) << "delivered before its flush";
    EXPECT_TRUE(syncsReach(before + 1)) << "then flushed, with no other write";
    ASSERT_TRUE((*store)->claim("m", {"w", kLease}, 1));
    int before_end = SyncCountingVfs::syncs();
    ASSERT_TRUE((*store)->complete(waited, "w", {{"text", "done"}}));
    EXPECT_GE(SyncCountingVfs::syncs() - before_end, 1) << "its end is fsynced before it is answered";

    NewJob b = newJob("b");
    b.answered_at_end = true;
    int before_b = SyncCountingVfs::syncs();
    auto second = (*store)->create(b);
    ASSERT_TRUE(second) << second.error().message;
    timed_out = second->id;
    ASSERT_TRUE(syncsReach(before_b + 1));
    int after_create = SyncCountingVfs::syncs();
    auto synced = sync(**store);
    ASSERT_TRUE(synced) << synced.error().message;
    EXPECT_GE(SyncCountingVfs::syncs() - after_create, 1) << "syncAsync flushes the log";
    // Without answered_at_end a creation is flushed before it is answered, as ever.
    int before_plain = SyncCountingVfs::syncs();
    ASSERT_TRUE((*store)->create(newJob("c")));
    EXPECT_GE(SyncCountingVfs::syncs() - before_plain, 1);

    // A retry with the same Idempotency-Key that is answered at once names the earlier job: it
    // flushes it, though the retry itself writes nothing.
    NewJob keyed = newJob("d");
    keyed.idempotency_key = "k";
    keyed.request_hash = "h";
    keyed.answered_at_end = true;
    auto first = (*store)->create(keyed);
    ASSERT_TRUE(first) << first.error().message;
    int before_retry = SyncCountingVfs::syncs();
    keyed.answered_at_end = false;
    auto retry = (*store)->create(keyed);
    ASSERT_TRUE(retry) << retry.error().message;
    EXPECT_TRUE(retry->replayed);
    EXPECT_EQ(retry->id, first->id);
    EXPECT_GE(SyncCountingVfs::syncs() - before_retry, 1) << "the replay flushes the job it names";
  }
  auto reopened = SqliteStore::open(dir.path() / "jobs.db");
  ASSERT_TRUE(reopened) << reopened.error().message;
  auto a = (*reopened)->get(waited);
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->status, JobStatus::kCompleted);
  EXPECT_EQ(a->prompt, "a");
  auto b = (*reopened)->get(timed_out);
  ASSERT_TRUE(b) << b.error().message;
  EXPECT_EQ(b->status, JobStatus::kQueued);
  EXPECT_EQ(b->prompt, "b");
}

// A claim committed without its fsync is kept when statim dies right after it (no close, no
// checkpoint): the attempt counts, so a job that kills the process is failed after max_attempts.
TEST(SqliteStoreSyncDeathTest, AClaimOutlivesACrashOfTheProcess) {
  // "threadsafe": the child is this binary run again for this test alone (no other test's
  // threads forked mid-lock); it runs this body up to EXPECT_EXIT, and finds the parent's
  // database through the environment.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  testing::TempDir dir;
  const char* parents = std::getenv("STATIM_TEST_CRASH_DB");
  std::filesystem::path path = parents ? std::filesystem::path(parents) : dir.path() / "jobs.db";
  ::setenv("STATIM_TEST_CRASH_DB", path.c_str(), 1);
  EXPECT_EXIT(
      {
        auto store = SqliteStore::open(path);
        bool ok = store && (*store)->create(newJob("p")) && (*store)->claim("m", {"w", kLease}, 1);
        std::_Exit(ok ? 0 : 1);  // no destructors: the WAL is neither synced nor checkpointed
      },
      ::testing::ExitedWithCode(0), "");
  ::unsetenv("STATIM_TEST_CRASH_DB");
  auto store = SqliteStore::open(path);
  ASSERT_TRUE(store) << store.error().message;
  auto page = (*store)->list({.limit = 10});
  ASSERT_TRUE(page) << page.error().message;
  ASSERT_EQ(page->jobs.size(), 1u);
  EXPECT_EQ(page->jobs[0].status, JobStatus::kProcessing);
  EXPECT_EQ(page->jobs[0].attempts, 1);
  EXPECT_EQ(page->jobs[0].lease_owner, "w");
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
