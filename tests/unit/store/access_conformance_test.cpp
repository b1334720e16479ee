// Store conformance, the access-control side: keys, the audit trail, idempotent creates,
// per-owner queue limits, and the webhook outbox rows that job transitions add (store_test.h).
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "core/clock.h"
#include "store_test.h"

namespace statim {
namespace {

constexpr Micros kLease = 60'000'000;

class AccessConformance : public testing::StoreTest {
 protected:
  NewJob job(std::string prompt, std::optional<JobOwner> owner = {}) {
    return {.model = "m", .type = "completion", .prompt = std::move(prompt), .owner = std::move(owner)};
  }
};

TEST_P(AccessConformance, KeysAreFoundByPrefixRevokedByNameOrIdAndNamesAreUniqueAmongActiveKeys) {
  auto a = store_->createKey({.name = "alice",
                              .prefix = "aaaa0000",
                              .hash = "h1",
                              .scope = "user",
                              .models = std::vector<std::string>{"echo"},
                              .rate = "5/s",
                              .max_queued = 3});
  ASSERT_TRUE(a) << a.error().message;
  auto found = store_->findKeyByPrefix("aaaa0000");
  ASSERT_TRUE(found && *found);
  EXPECT_EQ((*found)->name, "alice");
  EXPECT_EQ((*found)->models, std::vector<std::string>{"echo"});
  EXPECT_EQ((*found)->rate, "5/s");
  EXPECT_EQ((*found)->max_queued, 3);
  EXPECT_FALSE((*found)->revoked_at);

  auto clash = store_->createKey({.name = "alice", .prefix = "bbbb0000", .hash = "h2", .scope = "user"});
  ASSERT_FALSE(clash);
  EXPECT_EQ(clash.error().code, ErrorCode::kConflict);
  EXPECT_NE(clash.error().message.find("an active key named 'alice' exists"), std::string::npos);

  auto revoked = store_->revokeKey(std::to_string(a->id));
  ASSERT_TRUE(revoked) << revoked.error().message;
  EXPECT_TRUE((*store_->findKeyByPrefix("aaaa0000"))->revoked_at);
  EXPECT_EQ(store_->revokeKey("alice").error().message, "no active key 'alice'");
  // The name is free again once the old key is revoked.
  EXPECT_TRUE(store_->createKey({.name = "alice", .prefix = "cccc0000", .hash = "h3", .scope = "admin"}));
  EXPECT_EQ(store_->listKeys()->size(), 2u);
}

TEST_P(AccessConformance, IdempotentCreateReturnsTheFirstJobOrConflicts) {
  NewJob first = job("once");
  first.idempotency_key = "k1";
  first.request_hash = "hash-a";
  auto a = store_->create(first);
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_FALSE(a->replayed);
  auto again = store_->create(first);
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->replayed);
  EXPECT_EQ(again->id, a->id);
  NewJob other = first;
  other.request_hash = "hash-b";
  auto conflict = store_->create(other);
  ASSERT_FALSE(conflict);
  EXPECT_EQ(conflict.error().code, ErrorCode::kConflict);
  EXPECT_EQ(conflict.error().message,
            std::format("Idempotency-Key 'k1' was already used with a different request (job {})", a->id));
  // Another owner's identical key is its own job.
  NewJob owned = first;
  owned.owner = JobOwner{7, "bob", std::nullopt};
  auto b = store_->create(owned);
  ASSERT_TRUE(b);
  EXPECT_NE(b->id, a->id);
  EXPECT_EQ(b->owner_key_id, 7);
  EXPECT_EQ(store_->list({})->total, 2);
}

TEST_P(AccessConformance, MaxQueuedIsExactPerOwnerAndFreedWhenAJobStarts) {
  JobOwner bob{7, "bob", 2};
  ASSERT_TRUE(store_->create(job("1", bob)));
  ASSERT_TRUE(store_->create(job("2", bob)));
  auto third = store_->create(job("3", bob));
  ASSERT_FALSE(third);
  EXPECT_EQ(third.error().code, ErrorCode::kRateLimited);
  EXPECT_EQ(third.error().message, "key 'bob' already has 2 queued jobs (max_queued 2); retry when one starts");
  EXPECT_TRUE(store_->create(job("someone else's", JobOwner{8, "eve", 2})));
  ASSERT_TRUE(*store_->claimNext("m", "w", kLease));
  EXPECT_TRUE(store_->create(job("3 again", bob)));
  JobFilter mine{.owner_key_id = 7};
  EXPECT_EQ(store_->list(mine)->total, 3);
}

TEST_P(AccessConformance, AuditRowsAreListedNewestFirstFilteredAndExpired) {
  Micros t0 = nowMicros();
  for (int i = 0; i < 3; ++i) {
    store_->appendAudit({.time = t0 + i,
                         .key_id = i == 1 ? std::optional<std::int64_t>(2) : std::nullopt,
                         .key_name = i == 1 ? "bob" : "",
                         .remote = "127.0.0.1",
                         .method = "POST",
                         .route = "/job",
                         .path = "/job",
                         .job_id = i,
                         .status = 202,
                         .request_id = "r" + std::to_string(i)});
  }
  // Appends are asynchronous; a blocking write behind them proves they committed.
  ASSERT_TRUE(store_->deleteAuditBefore(0));
  auto all = store_->listAudit({});
  ASSERT_TRUE(all) << all.error().message;
  ASSERT_EQ(all->total, 3);
  EXPECT_EQ(all->entries[0].request_id, "r2");
  auto bob = store_->listAudit({.key_name = "bob"});
  ASSERT_EQ(bob->total, 1);
  EXPECT_EQ(bob->entries[0].key_id, 2);
  EXPECT_EQ(store_->listAudit({.since = t0 + 2})->total, 1);
  EXPECT_EQ(*store_->deleteAuditBefore(t0 + 2), 2);
  EXPECT_EQ(store_->listAudit({})->total, 1);
}

// Rows appended from many threads at once (on PostgreSQL they are written several per INSERT)
// are all kept, each field as given, text with the characters that need quoting included.
TEST_P(AccessConformance, AuditRowsAppendedConcurrentlyAreAllKeptAsGiven) {
  constexpr int kThreads = 6, kEach = 150;
  const std::string odd = "a \"quoted\", {braced} back\\slash NULL caf\u00e9 \u2713";
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        int n = t * kEach + i;
        store_->appendAudit({.time = 1000 + n,
                             .key_id = n % 3 == 0 ? std::optional<std::int64_t>(n) : std::nullopt,
                             .key_name = n % 3 == 0 ? odd : "",
                             .remote = "10.0.0." + std::to_string(t),
                             .method = "POST",
                             .route = "/job",
                             .path = "/job?x=" + std::to_string(n),
                             .job_id = n % 2 == 0 ? std::optional<JobId>(n + 1) : std::nullopt,
                             .status = 200 + n % 300,
                             .request_id = "req-" + std::to_string(n)});
      }
    });
  }
  // A request path that is not valid UTF-8 (or holds a NUL) is kept too, and loses no other row
  // (PostgreSQL's text refuses such bytes: the store cleans them).
  store_->appendAudit({.time = 999,
                       .method = "POST",
                       .route = std::string("/\xff\0x", 4),
                       .path = std::string("/job/\xff\xfe?\0x\xe2\x82", 11),
                       .status = 404,
                       .request_id = "bad-path"});
  for (auto& th : threads) th.join();
  ASSERT_TRUE(store_->deleteAuditBefore(0));  // a blocking write behind the appends
  auto all = store_->listAudit({.limit = kThreads * kEach + 1});
  ASSERT_TRUE(all) << all.error().message;
  ASSERT_EQ(all->total, kThreads * kEach + 1);
  std::set<std::string> seen;
  for (const AuditEntry& a : all->entries) {
    if (a.request_id == "bad-path") {
      EXPECT_TRUE(a.path.starts_with("/job/")) << a.path;
      EXPECT_EQ(a.status, 404);
      continue;
    }
    int n = std::stoi(a.request_id.substr(4));
    seen.insert(a.request_id);
    EXPECT_EQ(a.time, 1000 + n);
    EXPECT_EQ(a.key_id, n % 3 == 0 ? std::optional<std::int64_t>(n) : std::nullopt) << n;
    EXPECT_EQ(a.key_name, n % 3 == 0 ? odd : "") << n;
    EXPECT_EQ(a.path, "/job?x=" + std::to_string(n));
    EXPECT_EQ(a.job_id, n % 2 == 0 ? std::optional<JobId>(n + 1) : std::nullopt) << n;
    EXPECT_EQ(a.status, 200 + n % 300);
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(kThreads * kEach));
  EXPECT_EQ(store_->listAudit({.key_name = odd})->total, kThreads * kEach / 3);
}

TEST_P(AccessConformance, TransitionsAddTheWebhookRowsTheJobAskedFor) {
  NewJob nj = job("hooked");
  nj.webhook = Webhook{"http://127.0.0.1:9/hook", {"started", "completed"}};
  auto j = store_->create(nj);
  ASSERT_TRUE(j);
  ASSERT_TRUE(store_->create(job("plain")));
  auto claimed = store_->claimNext("m", "w", kLease);
  ASSERT_TRUE(claimed && *claimed);
  EXPECT_EQ((*claimed)->webhook->events, (std::vector<std::string>{"started", "completed"}));
  ASSERT_TRUE(store_->complete(j->id, "w", {{"text", "ok"}}));
  auto rows = store_->listDeliveries(j->id);
  ASSERT_TRUE(rows);
  ASSERT_EQ(rows->size(), 2u);  // no "queued": not asked for
  EXPECT_EQ((*rows)[0].event, "started");
  EXPECT_EQ((*rows)[1].event, "completed");
  EXPECT_EQ((*rows)[1].url, "http://127.0.0.1:9/hook");

  // A job's rows go out in order, and a claim leases them: at first only "started" is due, and a
  // second claim at the same time gets nothing.
  Micros now = nowMicros();
  auto due = store_->claimDueDeliveries(now, 30'000'000, 10);
  ASSERT_TRUE(due);
  ASSERT_EQ(due->size(), 1u);
  EXPECT_EQ((*due)[0].event, "started");
  EXPECT_TRUE(store_->claimDueDeliveries(now, 30'000'000, 10)->empty());
  auto id = (*due)[0].id;
  ASSERT_TRUE(store_->recordAttempt(id, {now, 500, "the receiver answered HTTP 500", 3.5}, false, now));
  EXPECT_TRUE(store_->claimDueDeliveries(now, 30'000'000, 10)->size() == 1u);  // the retry, not "completed"
  ASSERT_TRUE(store_->recordAttempt(id, {now + 1, 204, "", 1.5}, true, std::nullopt));
  due = store_->claimDueDeliveries(nowMicros(), 30'000'000, 10);
  ASSERT_EQ(due->size(), 1u);
  EXPECT_EQ((*due)[0].event, "completed");
  auto after = (*store_->listDeliveries(j->id))[0];
  EXPECT_EQ(after.status, "delivered");
  EXPECT_EQ(after.attempts, 2);
  ASSERT_EQ(after.history.size(), 2u);
  EXPECT_EQ(after.history[0].status_code, 500);
  EXPECT_DOUBLE_EQ(after.history[0].duration_ms, 3.5);
  EXPECT_EQ(after.delivered_at, now + 1);

  // Retention removes the job and its rows.
  auto gone = store_->deleteFinishedBefore(nowMicros() + 1);
  ASSERT_TRUE(gone);
  EXPECT_EQ(gone->ids, std::vector<JobId>{j->id});
  EXPECT_TRUE(store_->listDeliveries(j->id)->empty());
  EXPECT_EQ(store_->get(j->id).error().code, ErrorCode::kNotFound);
}

// Nodes record themselves and renew the record; a clean stop removes it; a silent one is
// forgotten after `forget_after`.
TEST_P(AccessConformance, NodesRecordThemselvesAndAreForgottenWhenSilent) {
  NodeRecord a{.id = "node-a", .role = "worker", .version = "1.0"};
  a.models = {{"echo", {{"state", "ready"}, {"running", 1}, {"capacity", 2}}}};
  ASSERT_TRUE(store_->heartbeatNode(a));
  NodeRecord b{.id = "node-b", .role = "api", .version = "1.0"};
  ASSERT_TRUE(store_->heartbeatNode(b));
  auto nodes = store_->listNodes(Micros{600} * 1000000);
  ASSERT_TRUE(nodes) << nodes.error().message;
  ASSERT_EQ(nodes->size(), 2u);
  EXPECT_EQ((*nodes)[0].id, "node-a");
  EXPECT_EQ((*nodes)[0].role, "worker");
  EXPECT_EQ((*nodes)[0].models["echo"]["state"], "ready");
  EXPECT_GE((*nodes)[0].silent_for, 0);
  EXPECT_LT((*nodes)[0].silent_for, Micros{10} * 1000000);
  Micros started = (*nodes)[0].started_at;

  // A renewal keeps started_at and takes the new models.
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  a.models["echo"]["state"] = "unloading";
  ASSERT_TRUE(store_->heartbeatNode(a));
  nodes = store_->listNodes(Micros{600} * 1000000);
  ASSERT_TRUE(nodes);
  EXPECT_EQ((*nodes)[0].started_at, started);
  EXPECT_GT((*nodes)[0].heartbeat_at, started);
  EXPECT_EQ((*nodes)[0].models["echo"]["state"], "unloading");

  ASSERT_TRUE(store_->removeNode("node-b"));
  nodes = store_->listNodes(Micros{600} * 1000000);
  ASSERT_EQ(nodes->size(), 1u);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  nodes = store_->listNodes(Micros{10} * 1000);  // silent for more than 10 ms: forgotten
  ASSERT_TRUE(nodes);
  EXPECT_TRUE(nodes->empty());
}

INSTANTIATE_TEST_SUITE_P(Stores, AccessConformance, ::testing::ValuesIn(testing::storeKinds()), testing::storeKindName);

}  // namespace
}  // namespace statim
