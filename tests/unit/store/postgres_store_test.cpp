// What only the PostgreSQL store does: nodes sharing one database (claims, migrations,
// idempotency keys and queue limits across nodes), the claim's plan, group commit. (What every
// store does is in the conformance tests: store_test.h.) Skipped, saying why, without a server.
#include "store/postgres/postgres_store.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <format>
#include <mutex>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "store/migrations/migration.h"
#include "store_test.h"

namespace statim {
namespace {

constexpr Micros kLease = 60'000'000;

class PostgresStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (testing::testPostgresUrl().empty()) GTEST_SKIP() << "no PostgreSQL server: set STATIM_TEST_POSTGRES_URL";
    url_ = testing::postgresUrlFor(dir_.path());
  }
  // Another node on the same database.
  std::unique_ptr<PostgresStore> node() {
    auto s = PostgresStore::open({.url = url_, .files_dir = dir_.path() / "files"});
    EXPECT_TRUE(s) << s.error().message;
    return s ? std::move(*s) : nullptr;
  }
  testing::TempDir dir_;
  std::string url_;
};

TEST_F(PostgresStoreTest, NodesStartingTogetherApplyTheMigrationsOnce) {
  std::vector<std::unique_ptr<PostgresStore>> nodes(4);
  std::vector<std::thread> threads;
  for (auto& n : nodes) threads.emplace_back([&] { n = node(); });
  for (auto& t : threads) t.join();
  for (auto& n : nodes) {
    ASSERT_TRUE(n);
    EXPECT_EQ(n->schemaVersion(), kPostgresMigrations.back().version);
  }
  auto rows = nodes[0]->query("SELECT count(*), count(DISTINCT version) FROM statim_migrations");
  ASSERT_TRUE(rows) << rows.error().message;
  EXPECT_EQ(rows->int64(0, 0), static_cast<std::int64_t>(kPostgresMigrations.size()));
  EXPECT_EQ(rows->int64(0, 1), static_cast<std::int64_t>(kPostgresMigrations.size()));
}

TEST_F(PostgresStoreTest, ASchemaNewerThanThisBinaryIsRefusedSayingSo) {
  auto n = node();
  ASSERT_TRUE(n);
  ASSERT_TRUE(n->query("INSERT INTO statim_migrations (version, name) VALUES (999, 'from the future')"));
  n.reset();
  auto again = PostgresStore::open({.url = url_, .files_dir = dir_.path() / "files"});
  ASSERT_FALSE(again);
  EXPECT_NE(again.error().message.find("schema is version 999, newer than this statim knows"), std::string::npos)
      << again.error().message;
}

// The claim reads a model's queued rows from the partial index, best first, and never sorts the
// backlog: with 20,000 queued jobs over two models its plan has no Sort node.
TEST_F(PostgresStoreTest, TheClaimReadsThePartialIndexWithoutSortingTheBacklog) {
  auto n = node();
  ASSERT_TRUE(n);
  ASSERT_TRUE(n->query(
      "INSERT INTO jobs (model, type, prompt, priority, status, created_at)"
      " SELECT CASE WHEN i % 2 = 0 THEN 'm' ELSE 'n' END, 'completion', 'p' || i, i % 3, 'QUEUED', statim_now_us()"
      " FROM generate_series(1, 20000) AS i"));
  ASSERT_TRUE(
      n->query("INSERT INTO jobs (model, type, prompt, status, created_at, finished_at)"
               " SELECT 'm', 'completion', 'done' || i, 'COMPLETED', statim_now_us(), statim_now_us()"
               " FROM generate_series(1, 20000) AS i"));
  ASSERT_TRUE(n->query("ANALYZE jobs"));
  auto plan = n->query(std::format("EXPLAIN {} RETURNING id", PostgresStore::kClaimSql),
                       PgParams("m", 8, "PROCESSING", "running", "node/m", kLease));
  ASSERT_TRUE(plan) << plan.error().message;
  std::string text;
  for (int i = 0; i < plan->rows(); ++i) text += plan->text(i, 0) + "\n";
  EXPECT_NE(text.find("jobs_queue"), std::string::npos) << text;
  EXPECT_EQ(text.find("Sort"), std::string::npos) << text;
  EXPECT_EQ(text.find("Seq Scan on jobs"), std::string::npos) << text;
  // And it takes the best ones: priority 2 first, then the oldest.
  auto jobs = n->claim("m", {"node/m", kLease}, 3);
  ASSERT_TRUE(jobs) << jobs.error().message;
  ASSERT_EQ(jobs->size(), 3u);
  for (auto& j : *jobs) EXPECT_EQ(j.priority, 2);
  EXPECT_LT((*jobs)[0].id, (*jobs)[1].id);
}

// Three nodes, two claiming threads each, batches of 1 to 8: every job is claimed exactly once.
TEST_F(PostgresStoreTest, NodesClaimingAtOnceNeverGetTheSameJob) {
  constexpr int kJobs = 600;
  std::vector<std::unique_ptr<PostgresStore>> nodes;
  for (int i = 0; i < 3; ++i) nodes.push_back(node());
  int errors = 0;
  auto created = testing::createConcurrently(*nodes[0], 4, kJobs / 4, errors);
  ASSERT_EQ(errors, 0);
  ASSERT_EQ(created.size(), static_cast<size_t>(kJobs));
  std::mutex mu;
  std::vector<JobId> claimed;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      auto& store = *nodes[t % 3];
      for (int round = 0;; ++round) {
        auto jobs = store.claim("m", {std::format("node{}/m", t), kLease}, 1 + (t + round) % 8);
        if (!jobs) {
          ++failures;
          continue;
        }
        if (jobs->empty()) break;
        std::lock_guard lock(mu);
        for (auto& j : *jobs) claimed.push_back(j.id);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  std::set<JobId> unique(claimed.begin(), claimed.end());
  EXPECT_EQ(claimed.size(), static_cast<size_t>(kJobs)) << "claimed more than once";
  EXPECT_EQ(unique, created);
}

// Two nodes creating a job with the same Idempotency-Key at once: one job, the other replayed.
TEST_F(PostgresStoreTest, OneIdempotencyKeyOnTwoNodesAtOnceMakesOneJob) {
  auto a = node(), b = node();
  for (int round = 0; round < 20; ++round) {
    NewJob job{.model = "m", .type = "completion", .prompt = "same"};
    job.idempotency_key = std::format("key-{}", round);
    job.request_hash = "h";
    Result<Job> ra = statim::fail(Error::internal("unset")), rb = ra;
    std::thread ta([&] { ra = a->create(job); });
    std::thread tb([&] { rb = b->create(job); });
    ta.join();
    tb.join();
    ASSERT_TRUE(ra) << ra.error().message;
    ASSERT_TRUE(rb) << rb.error().message;
    EXPECT_EQ(ra->id, rb->id);
    EXPECT_NE(ra->replayed, rb->replayed) << "round " << round;
  }
  auto page = a->list({.limit = 1});
  EXPECT_EQ(page->total, 20);
}

// A key's max_queued holds across nodes: 24 creates through two nodes at once, 5 get in.
TEST_F(PostgresStoreTest, AKeysQueueLimitHoldsAcrossNodes) {
  auto a = node(), b = node();
  std::atomic<int> created{0}, limited{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      auto& store = t % 2 ? *a : *b;
      for (int i = 0; i < 3; ++i) {
        NewJob job{.model = "m", .type = "completion", .prompt = "x"};
        job.owner = JobOwner{.key_id = 7, .key_name = "k", .max_queued = 5};
        auto r = store.create(job);
        if (r) ++created;
        if (!r && r.error().code == ErrorCode::kRateLimited) ++limited;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(created.load(), 5);
  EXPECT_EQ(limited.load(), 19);
}

// Many threads submitting at once share commits (group commit on the writer connections).
TEST_F(PostgresStoreTest, ConcurrentCreatesShareCommits) {
  auto n = node();
  auto before = n->commitCount();
  int errors = 0;
  auto ids = testing::createConcurrently(*n, 16, 50, errors);
  EXPECT_EQ(errors, 0);
  EXPECT_EQ(ids.size(), 800u);
  EXPECT_LT(n->commitCount() - before, 800);
}

// Leases are the database's time: a claimed job's lease ends `duration` after its start, both
// from the database's clock.
TEST_F(PostgresStoreTest, LeasesAreTheDatabasesTime) {
  auto n = node();
  ASSERT_TRUE(n->create({.model = "m", .type = "completion", .prompt = "x"}));
  auto jobs = n->claim("m", {"w", kLease}, 1);
  ASSERT_TRUE(jobs && jobs->size() == 1);
  auto& j = jobs->front();
  EXPECT_EQ(*j.lease_expires_at - *j.started_at, kLease);
  auto db_now = n->query("SELECT statim_now_us()");
  ASSERT_TRUE(db_now);
  EXPECT_LE(*j.started_at, db_now->int64(0, 0));
}

// A claim (a statement on the pool's sessions) commits without waiting for the WAL flush; the
// submissions and ends go through the writers' sessions, which keep the server's durable
// default. A pool session that is replaced, or reset, gets the setting again.
TEST_F(PostgresStoreTest, OnlyThePoolsClaimsSkipTheWalFlush) {
  auto n = node();
  auto pool = n->query("SHOW synchronous_commit");
  ASSERT_TRUE(pool) << pool.error().message;
  EXPECT_EQ(pool->text(0, 0), "off");
  auto plain = PgConn::connect(url_);  // as the writers connect: the server's own setting
  ASSERT_TRUE(plain) << plain.error().message;
  auto server_default =
      (*plain)->exec("SELECT setting = reset_val, source FROM pg_settings WHERE name = 'synchronous_commit'");
  ASSERT_TRUE(server_default) << server_default.error().message;
  EXPECT_TRUE(server_default->boolean(0, 0)) << "the writers' sessions override nothing";
  EXPECT_NE(server_default->text(0, 1), "session");
  EXPECT_FALSE(n->query("SELECT pg_terminate_backend(pg_backend_pid())"));  // the pool's session ends
  auto again = n->query("SHOW synchronous_commit");
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again->text(0, 0), "off");
  auto c = PgConn::connect(url_, std::string(kPgNoFlushWait));  // the pool's setup
  ASSERT_TRUE(c) << c.error().message;
  auto pid = (*c)->exec("SELECT pg_backend_pid()");
  ASSERT_TRUE(pid) << pid.error().message;
  ASSERT_TRUE((*plain)->exec("SELECT pg_terminate_backend($1::int)", PgParams(pid->int64(0, 0))));
  EXPECT_FALSE((*c)->exec("SELECT 1"));
  ASSERT_TRUE((*c)->reset());
  auto after_reset = (*c)->exec("SHOW synchronous_commit");
  ASSERT_TRUE(after_reset) << after_reset.error().message;
  EXPECT_EQ(after_reset->text(0, 0), "off");
}

// beginWithNext() opens the transaction in the next statement's round trip: what follows runs
// inside it (a ROLLBACK undoes it), an error is the statement's own (or BEGIN's), and the
// connection carries on after either.
TEST_F(PostgresStoreTest, ABeginSentWithTheNextStatementOpensTheTransaction) {
  auto n = node();  // the schema
  auto c = PgConn::connect(url_);
  ASSERT_TRUE(c) << c.error().message;
  PgConn& conn = **c;
  ASSERT_TRUE(conn.run("CREATE TEMP TABLE t (v int PRIMARY KEY)"));
  auto count = [&] { return conn.exec("SELECT count(*) FROM t")->int64(0, 0); };

  conn.beginWithNext();
  auto inserted = conn.exec("INSERT INTO t VALUES ($1) RETURNING v", PgParams(1));
  ASSERT_TRUE(inserted) << inserted.error().message;
  EXPECT_EQ(inserted->int64(0, 0), 1) << "the statement's own result";
  auto status = conn.exec("SELECT backend_xid IS NOT NULL FROM pg_stat_activity WHERE pid = pg_backend_pid()");
  ASSERT_TRUE(status) << status.error().message;
  EXPECT_TRUE(status->boolean(0, 0)) << "the insert's transaction is still open";
  ASSERT_TRUE(conn.run("ROLLBACK"));
  EXPECT_EQ(count(), 0) << "the ROLLBACK undid the insert: it ran inside the BEGIN";

  conn.beginWithNext();
  ASSERT_TRUE(conn.exec("INSERT INTO t VALUES ($1)", PgParams(2)));
  ASSERT_TRUE(conn.run("COMMIT"));
  EXPECT_EQ(count(), 1);

  conn.beginWithNext();
  auto dup = conn.exec("INSERT INTO t VALUES ($1)", PgParams(2));
  ASSERT_FALSE(dup);
  EXPECT_EQ(conn.lastSqlState(), kPgUniqueViolation);
  EXPECT_NE(dup.error().message.find("duplicate key"), std::string::npos) << dup.error().message;
  EXPECT_TRUE(conn.healthy());
  auto aborted = conn.exec("SELECT 1");
  ASSERT_FALSE(aborted) << "the failed statement left its transaction aborted";
  EXPECT_NE(aborted.error().message.find("current transaction is aborted"), std::string::npos)
      << aborted.error().message;
  ASSERT_TRUE(conn.run("ROLLBACK"));
  EXPECT_EQ(count(), 1);

  conn.beginWithNext();  // with a simple-protocol statement
  ASSERT_TRUE(conn.run("INSERT INTO t VALUES (3)"));
  ASSERT_TRUE(conn.run("ROLLBACK"));
  EXPECT_EQ(count(), 1);

  ASSERT_TRUE(conn.run("BEGIN"));
  conn.beginWithNext();  // a BEGIN inside a transaction only warns: the statement still runs
  ASSERT_TRUE(conn.exec("INSERT INTO t VALUES ($1)", PgParams(4)));
  ASSERT_TRUE(conn.run("COMMIT"));
  EXPECT_EQ(count(), 2);
}

// transaction(): BEGIN, the statements and COMMIT in one round trip. A failed statement stops
// the rest and leaves the transaction for the caller to roll back; a failed COMMIT (a deferred
// constraint) is the error, and nothing is stored.
TEST_F(PostgresStoreTest, ATransactionInOneRoundTripCommitsAllOrTellsWhatFailed) {
  auto n = node();
  auto c = PgConn::connect(url_);
  ASSERT_TRUE(c) << c.error().message;
  PgConn& conn = **c;
  ASSERT_TRUE(conn.run("CREATE TEMP TABLE t (v int PRIMARY KEY)"));
  auto count = [&](const char* table) { return conn.exec(std::format("SELECT count(*) FROM {}", table))->int64(0, 0); };
  auto insert = [](int v) { return PgStatement{"INSERT INTO t VALUES ($1) RETURNING v * 10", PgParams(v)}; };

  auto both = conn.transaction({insert(1), insert(2)});
  ASSERT_TRUE(both) << both.error().message;
  ASSERT_EQ(both->size(), 2u);
  ASSERT_TRUE((*both)[1]);
  EXPECT_EQ((*both)[1]->int64(0, 0), 20) << "each statement's own result";
  EXPECT_EQ(count("t"), 2);
  auto open = conn.exec("SELECT backend_xid IS NOT NULL FROM pg_stat_activity WHERE pid = pg_backend_pid()");
  ASSERT_TRUE(open) << open.error().message;
  EXPECT_FALSE(open->boolean(0, 0)) << "committed: no transaction left open";

  auto dup = conn.transaction({insert(3), insert(1), insert(4)});
  ASSERT_TRUE(dup) << dup.error().message;
  EXPECT_TRUE((*dup)[0]);
  ASSERT_FALSE((*dup)[1]);
  EXPECT_NE((*dup)[1].error().message.find("duplicate key"), std::string::npos) << (*dup)[1].error().message;
  EXPECT_EQ(conn.lastSqlState(), kPgUniqueViolation);
  ASSERT_FALSE((*dup)[2]);
  EXPECT_NE((*dup)[2].error().message.find("not run"), std::string::npos) << (*dup)[2].error().message;
  EXPECT_TRUE(conn.healthy());
  ASSERT_TRUE(conn.run("ROLLBACK"));
  EXPECT_EQ(count("t"), 2) << "nothing of the failed transaction";

  ASSERT_TRUE(conn.run("CREATE TEMP TABLE d (v int UNIQUE DEFERRABLE INITIALLY DEFERRED)"));
  PgStatement twice{"INSERT INTO d VALUES (1)", {}};
  auto at_commit = conn.transaction({twice, twice});
  ASSERT_FALSE(at_commit);
  EXPECT_NE(at_commit.error().message.find("COMMIT"), std::string::npos) << at_commit.error().message;
  EXPECT_NE(at_commit.error().message.find("duplicate key"), std::string::npos) << at_commit.error().message;
  EXPECT_TRUE(conn.healthy());
  EXPECT_EQ(count("d"), 0);
  ASSERT_TRUE(conn.transaction({insert(5)}));
  EXPECT_EQ(count("t"), 3) << "the connection carries on";
}

// Submissions that are one statement each go to the server together; one that the server
// refuses (text that is not UTF-8) fails alone, and the others of its batch are stored.
TEST_F(PostgresStoreTest, AWriteTheServerRefusesFailsAloneAndTheRestOfItsBatchIsStored) {
  auto n = node();
  auto before = n->commitCount();
  constexpr int kJobs = 40, kBad = 17;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::optional<Result<Job>>> got(kJobs);
  int answered = 0;
  for (int i = 0; i < kJobs; ++i) {
    std::string prompt = i == kBad ? std::string("not utf-8 \xff") : std::format("job {}", i);
    n->createAsync({.model = "m", .type = "completion", .prompt = prompt}, std::nullopt, [&, i](Result<Job> r) {
      std::lock_guard lock(mu);
      got[i] = std::move(r);
      ++answered;
      cv.notify_all();
    });
  }
  std::unique_lock lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(30), [&] { return answered == kJobs; }));
  std::set<JobId> ids;
  for (int i = 0; i < kJobs; ++i) {
    if (i == kBad) {
      ASSERT_FALSE(*got[i]);
      EXPECT_NE(got[i]->error().message.find("UTF8"), std::string::npos) << got[i]->error().message;
      continue;
    }
    ASSERT_TRUE(*got[i]) << i << ": " << got[i]->error().message;
    auto stored = n->get((*got[i])->id);
    ASSERT_TRUE(stored) << stored.error().message;
    EXPECT_EQ(stored->prompt, std::format("job {}", i));
    ids.insert(stored->id);
  }
  EXPECT_EQ(ids.size(), static_cast<size_t>(kJobs - 1));
  EXPECT_LT(n->commitCount() - before, kJobs) << "the submissions shared commits";
}

// A unix-socket proxy in front of the test server that can cut a connection after the server ran
// what was sent: once armed, the next connection to send anything has the server's answer
// dropped and both ends closed. The client then cannot know whether its COMMIT ran; it did.
class CuttingProxy {
 public:
  CuttingProxy(std::filesystem::path server_socket, const std::filesystem::path& dir)
      : server_(std::move(server_socket)), path_(dir / ".s.PGSQL.5432") {
    listen_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a = address(path_);
    ok_ = ::bind(listen_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && ::listen(listen_, 16) == 0;
    accepter_ = std::thread([this] { acceptLoop(); });
  }
  ~CuttingProxy() {
    stopping_ = true;
    ::shutdown(listen_, SHUT_RDWR);
    accepter_.join();
    for (auto& t : connections_) t.join();
    ::close(listen_);
  }
  bool ok() const { return ok_; }
  void arm() { armed_ = true; }
  bool cut() const { return cut_; }

 private:
  static sockaddr_un address(const std::filesystem::path& p) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", p.c_str());
    return a;
  }
  void acceptLoop() {
    while (!stopping_) {
      int client = ::accept4(listen_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) return;
      connections_.emplace_back([this, client] { forward(client); });
    }
  }
  void forward(int client) {
    int server = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a = address(server_);
    if (::connect(server, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(client);
      ::close(server);
      return;
    }
    bool cutting = false;
    char buf[65536];
    while (!stopping_) {
      pollfd fds[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
      if (::poll(fds, 2, 100) <= 0) continue;
      if (fds[0].revents) {
        ssize_t n = ::read(client, buf, sizeof buf);
        if (n <= 0) break;
        if (armed_.exchange(false)) cutting = true;
        if (::write(server, buf, static_cast<size_t>(n)) != n) break;
      }
      if (fds[1].revents) {
        ssize_t n = ::read(server, buf, sizeof buf);
        if (n <= 0) break;
        if (cutting) {
          // The server answers at the Sync, after it ran everything before it (COMMIT included).
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
          cut_ = true;
          break;
        }
        if (::write(client, buf, static_cast<size_t>(n)) != n) break;
      }
    }
    ::close(client);
    ::close(server);
  }
  std::filesystem::path server_, path_;
  int listen_ = -1;
  bool ok_ = false;
  std::atomic<bool> stopping_{false}, armed_{false}, cut_{false};
  std::thread accepter_;
  std::vector<std::thread> connections_;  // accepter_'s only, joined after it
};

// The URL's server socket folder (host=/dir), or "" when it is not a unix socket.
std::string socketDir(const std::string& url) {
  auto at = url.find("host=/");
  if (at == std::string::npos) return "";
  auto end = url.find('&', at);
  return url.substr(at + 5, end == std::string::npos ? std::string::npos : end - at - 5);
}

// A batch sent in one round trip whose connection is lost after the server committed it is not
// run again: the job is stored once, and the submission is told the store was unavailable.
// (Run again, it would be stored twice.) The connection is then replaced and the store carries on.
TEST_F(PostgresStoreTest, ABatchWhoseConnectionIsLostAfterItsCommitIsNotRunAgain) {
  std::string host = socketDir(url_);
  if (host.empty()) GTEST_SKIP() << "the test server is not on a unix socket";
  testing::TempDir proxy_dir;
  CuttingProxy proxy(std::filesystem::path(host) / ".s.PGSQL.5432", proxy_dir.path());
  ASSERT_TRUE(proxy.ok());
  std::string via_proxy = url_;
  via_proxy.replace(via_proxy.find(host), host.size(), proxy_dir.path().string());
  auto direct = node();
  auto count = [&](const std::string& prompt) {
    return direct->query("SELECT count(*) FROM jobs WHERE prompt = $1", PgParams(prompt))->int64(0, 0);
  };

  auto c = PgConn::connect(via_proxy);
  ASSERT_TRUE(c) << c.error().message;
  ASSERT_TRUE((*c)->run("CREATE TABLE cut_t (v int)"));
  ASSERT_TRUE((*c)->exec("INSERT INTO cut_t VALUES ($1)", PgParams(0)));  // prepared before the cut
  proxy.arm();
  bool maybe_committed = false;
  auto r = (*c)->transaction({{"INSERT INTO cut_t VALUES ($1)", PgParams(1)}}, &maybe_committed);
  ASSERT_TRUE(proxy.cut());
  ASSERT_FALSE(r);
  EXPECT_TRUE(maybe_committed) << r.error().message;
  EXPECT_FALSE((*c)->healthy());
  EXPECT_EQ(direct->query("SELECT count(*) FROM cut_t WHERE v = 1")->int64(0, 0), 1) << "the server did commit it";

  auto store = PostgresStore::open({.url = via_proxy, .files_dir = dir_.path() / "files"});
  ASSERT_TRUE(store) << store.error().message;
  ASSERT_TRUE((*store)->create({.model = "m", .type = "completion", .prompt = "before"}));  // statements prepared
  proxy.arm();
  auto lost = (*store)->create({.model = "m", .type = "completion", .prompt = "committed, answer lost"});
  ASSERT_TRUE(proxy.cut());
  ASSERT_FALSE(lost);
  EXPECT_EQ(lost.error().code, ErrorCode::kStorageUnavailable) << lost.error().message;
  EXPECT_EQ(count("committed, answer lost"), 1) << "stored once, not run again";
  auto next = (*store)->create({.model = "m", .type = "completion", .prompt = "after"});
  ASSERT_TRUE(next) << next.error().message;
  EXPECT_EQ(count("after"), 1);

  // A writer connection that has been quiet sends its batch in two trips: cut after the first
  // (BEGIN and the statement, not the COMMIT), the batch runs again on a new connection, and the
  // submission succeeds, stored once.
  auto careful = PostgresStore::open(
      {.url = via_proxy, .files_dir = dir_.path() / "files", .quiet_connection = std::chrono::milliseconds(0)});
  ASSERT_TRUE(careful) << careful.error().message;
  ASSERT_TRUE((*careful)->create({.model = "m", .type = "completion", .prompt = "warm"}));
  proxy.arm();
  auto rerun = (*careful)->create({.model = "m", .type = "completion", .prompt = "run again"});
  ASSERT_TRUE(proxy.cut());
  ASSERT_TRUE(rerun) << rerun.error().message;
  EXPECT_EQ(count("run again"), 1);
}

}  // namespace

TEST(PgParamsTest, CleanTextKeepsValidUtf8AndReplacesWhatPostgresqlRefuses) {
  EXPECT_EQ(PgParams::cleanText("plain /job/1?x=y"), "plain /job/1?x=y");
  EXPECT_EQ(PgParams::cleanText("caf\u00e9 \u2713 \U0001F600"), "caf\u00e9 \u2713 \U0001F600");
  EXPECT_EQ(PgParams::cleanText(std::string("a\0b", 3)), "ab");
  EXPECT_EQ(PgParams::cleanText("\xff/x"), "\uFFFD/x");
  EXPECT_EQ(PgParams::cleanText("cut \xe2\x82"), "cut \uFFFD\uFFFD");              // a truncated sequence
  EXPECT_EQ(PgParams::cleanText("\xc0\xaf"), "\uFFFD\uFFFD");                      // an overlong '/'
  EXPECT_EQ(PgParams::cleanText("\xed\xa0\x80"), "\uFFFD\uFFFD\uFFFD");            // a surrogate
  EXPECT_EQ(PgParams::cleanText("\xf4\x90\x80\x80"), "\uFFFD\uFFFD\uFFFD\uFFFD");  // above U+10FFFF
}

}  // namespace statim
