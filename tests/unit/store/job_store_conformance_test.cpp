// Store conformance: the job queue and its history (see store_test.h).
#include <atomic>
#include <future>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "core/clock.h"
#include "store_test.h"

namespace statim {
namespace {

constexpr Micros kLease = 60'000'000;

NewJob newJob(std::string prompt, int priority = 0, std::string model = "m") {
  return {.model = std::move(model),
          .type = "completion",
          .prompt = std::move(prompt),
          .params = {{"k", 1}},
          .priority = priority};
}

class JobStoreConformance : public testing::StoreTest {};

TEST_P(JobStoreConformance, CreateThenGetRoundTrips) {
  auto created = store_->create(newJob("hello \xF0\x9F\x90\xB1 world", 5));
  ASSERT_TRUE(created) << created.error().message;
  EXPECT_GT(created->id, 0);
  EXPECT_EQ(created->status, JobStatus::kQueued);
  auto got = store_->get(created->id);
  ASSERT_TRUE(got) << got.error().message;
  EXPECT_EQ(got->prompt, "hello \xF0\x9F\x90\xB1 world");
  EXPECT_EQ(got->params, (nlohmann::json{{"k", 1}}));
  EXPECT_EQ(got->priority, 5);
  EXPECT_EQ(got->created_at, created->created_at);
  EXPECT_EQ(got->attempts, 0);
}

TEST_P(JobStoreConformance, GetUnknownIsNotFound) {
  auto got = store_->get(424242);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(got.error().message, "job 424242 not found");
}

TEST_P(JobStoreConformance, ListPagesNewestFirstWithFilters) {
  for (int i = 0; i < 7; ++i) ASSERT_TRUE(store_->create(newJob("p" + std::to_string(i), 0, i % 2 ? "odd" : "even")));
  auto page = store_->list({.limit = 3, .offset = 1});
  ASSERT_TRUE(page);
  EXPECT_EQ(page->total, 7);
  ASSERT_EQ(page->jobs.size(), 3u);
  EXPECT_EQ(page->jobs[0].prompt, "p5");
  EXPECT_EQ(page->jobs[2].prompt, "p3");
  auto odd = store_->list({.model = "odd", .limit = 10});
  ASSERT_TRUE(odd);
  EXPECT_EQ(odd->total, 3);
  auto claimed = store_->claimNext("even", "w", kLease);
  ASSERT_TRUE(claimed && *claimed);
  auto running = store_->list({.status = JobStatus::kProcessing, .limit = 10});
  ASSERT_TRUE(running);
  ASSERT_EQ(running->total, 1);
  EXPECT_EQ(running->jobs[0].prompt, "p0");
}

TEST_P(JobStoreConformance, ListFiltersByTypeTimeAndPromptText) {
  NewJob chat = newJob("Tell me about Cats");
  chat.type = "chat";
  ASSERT_TRUE(store_->create(chat));
  ASSERT_TRUE(store_->create(newJob("100% of the cats")));
  ASSERT_TRUE(store_->create(newJob("a_b and a dog")));
  auto all = store_->list({.limit = 10});
  ASSERT_TRUE(all && all->jobs.size() == 3);
  // Type.
  auto chats = store_->list({.type = "chat", .limit = 10});
  ASSERT_TRUE(chats);
  ASSERT_EQ(chats->total, 1);
  EXPECT_EQ(chats->jobs[0].prompt, "Tell me about Cats");
  // Text: ASCII letters in any case; '%' and '_' match only themselves.
  auto cats = store_->list({.text = "CATS", .limit = 10});
  ASSERT_TRUE(cats);
  EXPECT_EQ(cats->total, 2);
  auto percent = store_->list({.text = "0% o", .limit = 10});
  ASSERT_TRUE(percent);
  ASSERT_EQ(percent->total, 1);
  EXPECT_EQ(percent->jobs[0].prompt, "100% of the cats");
  EXPECT_EQ(store_->list({.text = "%", .limit = 10})->total, 1);
  EXPECT_EQ(store_->list({.text = "a_b", .limit = 10})->total, 1);
  EXPECT_EQ(store_->list({.text = "a_", .limit = 10})->total, 1) << "'_' is not a wildcard";
  EXPECT_EQ(store_->list({.text = "nothing like it", .limit = 10})->total, 0);
  // Time: [from, before), by created_at.
  Micros first = all->jobs[2].created_at, last = all->jobs[0].created_at;
  ASSERT_LE(first, last);
  EXPECT_EQ(store_->list({.created_from = first, .limit = 10})->total, 3);
  EXPECT_EQ(store_->list({.created_from = last + 1, .limit = 10})->total, 0);
  EXPECT_EQ(store_->list({.created_before = first, .limit = 10})->total, 0);
  EXPECT_EQ(store_->list({.created_from = first, .created_before = last + 1, .limit = 10})->total, 3);
  // Combined with the older filters.
  EXPECT_EQ(store_->list({.model = "m", .type = "completion", .text = "cats", .limit = 10})->total, 1);
}

TEST_P(JobStoreConformance, QueuedAheadCountsTheJobsThatStartFirst) {
  auto low1 = store_->create(newJob("low-1", 0));
  auto high = store_->create(newJob("high", 5));
  auto low2 = store_->create(newJob("low-2", 0));
  auto other = store_->create(newJob("other model", 9, "x"));
  ASSERT_TRUE(low1 && high && low2 && other);
  EXPECT_EQ(*store_->queuedAhead(high->id), std::optional<std::int64_t>(0));
  EXPECT_EQ(*store_->queuedAhead(low1->id), std::optional<std::int64_t>(1));
  EXPECT_EQ(*store_->queuedAhead(low2->id), std::optional<std::int64_t>(2));
  EXPECT_EQ(*store_->queuedAhead(other->id), std::optional<std::int64_t>(0)) << "other models' queues do not count";
  auto claimed = store_->claimNext("m", "w", kLease);
  ASSERT_TRUE(claimed && *claimed && (*claimed)->id == high->id);
  EXPECT_EQ(*store_->queuedAhead(high->id), std::nullopt) << "not queued any more";
  EXPECT_EQ(*store_->queuedAhead(low2->id), std::optional<std::int64_t>(1));
  EXPECT_EQ(*store_->queuedAhead(987654), std::nullopt);
}

TEST_P(JobStoreConformance, ClaimTakesHighestPriorityThenOldest) {
  ASSERT_TRUE(store_->create(newJob("low-1", 0)));
  ASSERT_TRUE(store_->create(newJob("high-1", 10)));
  ASSERT_TRUE(store_->create(newJob("low-2", 0)));
  ASSERT_TRUE(store_->create(newJob("high-2", 10)));
  ASSERT_TRUE(store_->create(newJob("other-model", 99, "x")));
  std::vector<std::string> order;
  while (true) {
    auto c = store_->claimNext("m", "w1", kLease);
    ASSERT_TRUE(c);
    if (!*c) break;
    EXPECT_EQ((*c)->status, JobStatus::kProcessing);
    EXPECT_EQ((*c)->attempts, 1);
    EXPECT_EQ((*c)->lease_owner, "w1");
    EXPECT_TRUE((*c)->started_at.has_value());
    order.push_back((*c)->prompt);
  }
  EXPECT_EQ(order, (std::vector<std::string>{"high-1", "high-2", "low-1", "low-2"}));
}

// A heartbeat renews the lease (the job is then not abandoned) and answers whether a cancel was
// asked for; a worker whose lease expired and whose job another worker took cannot finish it.
TEST_P(JobStoreConformance, HeartbeatsRenewLeasesAndALateWorkerCannotFinish) {
  auto job = store_->create(newJob("x"));
  ASSERT_TRUE(job);
  auto c = store_->claimNext("m", "worker-a", 1'000'000);  // a 1-s lease
  ASSERT_TRUE(c && *c);
  Micros first_expiry = *(*c)->lease_expires_at;
  auto beat = store_->heartbeat(job->id, "worker-a", kLease);
  ASSERT_TRUE(beat) << beat.error().message;
  EXPECT_FALSE(*beat);  // no cancel asked for
  EXPECT_GT(*store_->get(job->id)->lease_expires_at, first_expiry);
  auto report = store_->requeueAbandoned(first_expiry + 1, 3);  // the old lease would have expired
  ASSERT_TRUE(report);
  EXPECT_TRUE(report->requeued.empty());
  ASSERT_TRUE(store_->requestCancel(job->id));
  EXPECT_TRUE(*store_->heartbeat(job->id, "worker-a", kLease));  // told to stop

  // worker-b takes over a job whose lease expired; worker-a comes back too late.
  auto other = store_->create(newJob("y"));
  ASSERT_TRUE(other);
  auto a = store_->claimNext("m", "worker-a", 1);
  ASSERT_TRUE(a && *a);
  EXPECT_EQ((*a)->id, other->id);
  report = store_->requeueAbandoned(nowMicros() + 1, 3);
  ASSERT_TRUE(report);
  EXPECT_EQ(report->requeued, std::vector<JobId>{other->id});
  auto b = store_->claimNext("m", "worker-b", kLease);
  ASSERT_TRUE(b && *b);
  EXPECT_EQ((*b)->attempts, 2);
  auto late = store_->complete(other->id, "worker-a", {{"text", "stale"}});
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error().code, ErrorCode::kConflict);
  EXPECT_FALSE(store_->heartbeat(other->id, "worker-a", kLease));
  ASSERT_TRUE(store_->complete(other->id, "worker-b", {{"text", "fresh"}}));
  EXPECT_EQ(store_->get(other->id)->result["text"], "fresh");
}

// A node renews all its leases in one call: the held ones are renewed (with the cancels asked
// for), a lost one is not.
TEST_P(JobStoreConformance, RenewLeasesRenewsWhatIsHeldAndReportsCancels) {
  std::vector<JobId> ids;
  for (auto p : {"a", "b", "c"}) ids.push_back(store_->create(newJob(p))->id);
  auto claimed = store_->claim("m", {"node/m", 1'000'000}, 3);
  ASSERT_TRUE(claimed && claimed->size() == 3u);
  ASSERT_TRUE(store_->requestCancel(ids[1]));
  auto renewal = store_->renewLeases({{ids[0], "node/m"}, {ids[1], "node/m"}, {ids[2], "someone-else"}}, kLease);
  ASSERT_TRUE(renewal) << renewal.error().message;
  EXPECT_EQ(renewal->renewed, (std::vector<JobId>{ids[0], ids[1]}));
  EXPECT_EQ(renewal->cancel_requested, std::vector<JobId>{ids[1]});
  EXPECT_GT(*store_->get(ids[0])->lease_expires_at, *(*claimed)[0].lease_expires_at);
  EXPECT_EQ(*store_->get(ids[2])->lease_expires_at, *(*claimed)[2].lease_expires_at);
  EXPECT_TRUE(store_->renewLeases({}, kLease)->renewed.empty());
}

// The same node may claim a job again after its own lease expired (it stalled): the end of its
// earlier run (an older attempt) is refused, the newer run's is stored.
TEST_P(JobStoreConformance, AnEarlierAttemptOfTheSameOwnerCannotFinishTheJob) {
  auto job = store_->create(newJob("x"));
  auto first = store_->claimNext("m", "node/m", 1);
  ASSERT_TRUE(first && *first);
  ASSERT_TRUE(store_->requeueAbandoned(nowMicros() + 1, 3));
  auto second = store_->claimNext("m", "node/m", kLease);
  ASSERT_TRUE(second && *second);
  EXPECT_EQ((*second)->attempts, 2);
  auto finish = [&](const Job& run, const char* text) {
    std::promise<Result<Job>> p;
    store_->finishAsync(run, "node/m", {JobStatus::kCompleted, {{"text", text}}, {}, {}},
                        [&](Result<Job> r) { p.set_value(std::move(r)); });
    return p.get_future().get();
  };
  auto stale = finish(**first, "stale");
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, ErrorCode::kConflict);
  ASSERT_TRUE(finish(**second, "fresh"));
  EXPECT_EQ(store_->get(job->id)->result["text"], "fresh");
}

TEST_P(JobStoreConformance, OnlyTheLeaseOwnerFinishesAJob) {
  auto job = store_->create(newJob("x"));
  auto c = store_->claimNext("m", "owner-a", kLease);
  ASSERT_TRUE(c && *c);
  auto stolen = store_->complete(job->id, "owner-b", {{"text", "wrong"}});
  ASSERT_FALSE(stolen);
  EXPECT_EQ(stolen.error().code, ErrorCode::kConflict);
  EXPECT_FALSE(store_->heartbeat(job->id, "owner-b", kLease));
  ASSERT_TRUE(store_->heartbeat(job->id, "owner-a", kLease));
  ASSERT_TRUE(store_->complete(job->id, "owner-a", {{"text", "right"}}));
  auto got = store_->get(job->id);
  EXPECT_EQ(got->status, JobStatus::kCompleted);
  EXPECT_EQ(got->result["text"], "right");
  EXPECT_TRUE(got->finished_at.has_value());
  EXPECT_TRUE(got->lease_owner.empty());
  // A finished job cannot be finished again.
  EXPECT_FALSE(store_->fail(job->id, "owner-a", "late"));
}

TEST_P(JobStoreConformance, FailRecordsTheMessage) {
  auto job = store_->create(newJob("x"));
  ASSERT_TRUE(store_->claimNext("m", "w", kLease));
  ASSERT_TRUE(store_->fail(job->id, "w", "llama_decode failed"));
  auto got = store_->get(job->id);
  EXPECT_EQ(got->status, JobStatus::kFailed);
  EXPECT_EQ(got->error, "llama_decode failed");
}

TEST_P(JobStoreConformance, JobsSurviveReopen) {
  std::vector<JobId> ids;
  for (int i = 0; i < 20; ++i) ids.push_back(store_->create(newJob("j" + std::to_string(i)))->id);
  reopen();
  for (int i = 0; i < 20; ++i) {
    auto got = store_->get(ids[i]);
    ASSERT_TRUE(got) << got.error().message;
    EXPECT_EQ(got->prompt, "j" + std::to_string(i));
  }
  // Ids are never reused after a reopen.
  EXPECT_GT(store_->create(newJob("next"))->id, ids.back());
}

TEST_P(JobStoreConformance, AbandonedJobsAreRequeuedThenFailedAfterMaxAttempts) {
  auto a = store_->create(newJob("a"));
  EXPECT_EQ(a->earlier_attempts, nlohmann::json::array());
  Micros before = nowMicros();
  auto first = store_->claimNext("m", "dead-node", kLease);  // attempt 1
  ASSERT_TRUE(first && *first);
  auto r = store_->requeueAbandoned(std::numeric_limits<Micros>::max(), 2);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->requeued, std::vector<JobId>{a->id});
  auto got = store_->get(a->id);
  EXPECT_EQ(got->status, JobStatus::kQueued);
  EXPECT_EQ(got->attempts, 1);
  EXPECT_NE(got->status_message.find("requeued"), std::string::npos);
  // The lost attempt is kept: its number, when it started, who ran it, when it was requeued.
  ASSERT_EQ(got->earlier_attempts.size(), 1u) << got->earlier_attempts.dump();
  const auto& lost = got->earlier_attempts[0];
  EXPECT_EQ(lost["attempt"], 1);
  EXPECT_EQ(lost["started_at"], *(*first)->started_at);
  EXPECT_EQ(lost["lease_owner"], "dead-node");
  EXPECT_GE(lost["requeued_at"].get<Micros>(), before);
  ASSERT_TRUE(store_->claimNext("m", "dead-again", kLease));  // attempt 2
  r = store_->requeueAbandoned(std::numeric_limits<Micros>::max(), 2);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->failed, std::vector<JobId>{a->id});
  got = store_->get(a->id);
  EXPECT_EQ(got->status, JobStatus::kFailed);
  EXPECT_NE(got->error.find("abandoned"), std::string::npos) << got->error;
  EXPECT_NE(got->error.find("2 times"), std::string::npos) << got->error;
  // The last attempt is the job's own started_at / finished_at: the list holds the first only.
  EXPECT_EQ(got->earlier_attempts.size(), 1u);
}

TEST_P(JobStoreConformance, LiveLeasesAreNotRequeued) {
  ASSERT_TRUE(store_->create(newJob("a")));
  ASSERT_TRUE(store_->claimNext("m", "alive", kLease));
  auto r = store_->requeueAbandoned(nowMicros(), 3);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->requeued.empty());
  EXPECT_TRUE(r->failed.empty());
}

TEST_P(JobStoreConformance, QueuedByModelCounts) {
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(store_->create(newJob("a", 0, "m1")));
  ASSERT_TRUE(store_->create(newJob("b", 0, "m2")));
  ASSERT_TRUE(store_->claimNext("m1", "w", kLease));
  auto counts = store_->queuedByModel();
  ASSERT_TRUE(counts);
  EXPECT_EQ((*counts)["m1"], 2);
  EXPECT_EQ((*counts)["m2"], 1);
}

// Many threads submitting at once: every job is stored once, and ids are distinct.
TEST_P(JobStoreConformance, ConcurrentCreatesAreEachStoredOnce) {
  constexpr int kThreads = 16, kPerThread = 50;
  int errors = 0;
  auto ids = testing::createConcurrently(*store_, kThreads, kPerThread, errors);
  EXPECT_EQ(errors, 0);
  EXPECT_EQ(ids.size(), static_cast<size_t>(kThreads * kPerThread));
  auto page = store_->list({.limit = 1});
  EXPECT_EQ(page->total, kThreads * kPerThread);
}

// Workers claiming concurrently never get the same job twice.
TEST_P(JobStoreConformance, ConcurrentClaimsAreExclusive) {
  for (int i = 0; i < 200; ++i) ASSERT_TRUE(store_->create(newJob("j")));
  std::mutex mu;
  std::vector<JobId> claimed;
  std::vector<std::thread> workers;
  for (int w = 0; w < 8; ++w) {
    workers.emplace_back([&, w] {
      while (true) {
        auto c = store_->claimNext("m", "w" + std::to_string(w), kLease);
        if (!c || !*c) return;
        std::lock_guard l(mu);
        claimed.push_back((*c)->id);
      }
    });
  }
  for (auto& t : workers) t.join();
  std::set<JobId> unique(claimed.begin(), claimed.end());
  EXPECT_EQ(claimed.size(), 200u);
  EXPECT_EQ(unique.size(), 200u);
}

TEST_P(JobStoreConformance, CancelQueuedRunningFinishedAndUnknown) {
  auto unknown = store_->requestCancel(999);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().message, "job 999 not found");

  auto queued = store_->create(newJob("q"));
  auto c = store_->requestCancel(queued->id);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->before, JobStatus::kQueued);
  EXPECT_EQ(c->job.status, JobStatus::kCancelled);
  EXPECT_EQ(c->job.status_message, "cancelled before it started");
  EXPECT_TRUE(c->job.finished_at.has_value());

  auto running = store_->create(newJob("r"));
  ASSERT_TRUE(store_->claimNext("m", "w", kLease));
  c = store_->requestCancel(running->id);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->before, JobStatus::kProcessing);
  EXPECT_EQ(c->job.status, JobStatus::kProcessing);
  EXPECT_TRUE(c->job.cancel_requested);
  auto hb = store_->heartbeat(running->id, "w", kLease);
  ASSERT_TRUE(hb);
  EXPECT_TRUE(*hb);  // the owner learns of the cancel through its heartbeat
  ASSERT_TRUE(store_->finishCancelled(running->id, "w", {{"text", "partial"}}));
  auto got = store_->get(running->id);
  EXPECT_EQ(got->status, JobStatus::kCancelled);
  EXPECT_EQ(got->result["text"], "partial");

  // Cancelling a finished job changes nothing.
  c = store_->requestCancel(running->id);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->before, JobStatus::kCancelled);
  EXPECT_EQ(c->job.result["text"], "partial");
}

// A job created with a start lease is stored claimed: it is not queued, and its owner ends it.
TEST_P(JobStoreConformance, CreateWithALeaseStoresTheJobClaimed) {
  std::promise<Result<Job>> p;
  store_->createAsync(newJob("now"), LeaseRequest{"node/m", kLease}, [&](Result<Job> r) { p.set_value(std::move(r)); });
  auto job = p.get_future().get();
  ASSERT_TRUE(job) << job.error().message;
  auto got = store_->get(job->id);
  ASSERT_TRUE(got);
  for (const Job* j : {&*job, &*got}) {
    EXPECT_EQ(j->status, JobStatus::kProcessing);
    EXPECT_EQ(j->status_message, "running");
    EXPECT_EQ(j->attempts, 1);
    EXPECT_EQ(j->started_at, j->created_at);
    EXPECT_EQ(j->lease_owner, "node/m");
    EXPECT_EQ(j->lease_expires_at, j->created_at + kLease);
  }
  EXPECT_FALSE(*store_->claimNext("m", "other", kLease));  // nothing queued
  EXPECT_EQ(store_->complete(job->id, "other", {}).error().code, ErrorCode::kConflict);
  ASSERT_TRUE(store_->complete(job->id, "node/m", {{"text", "done"}}));
  EXPECT_EQ(store_->get(job->id)->status, JobStatus::kCompleted);
}

// claim(max) takes several queued jobs at once, best first.
TEST_P(JobStoreConformance, ClaimTakesUpToMaxBestFirst) {
  for (auto [name, prio] : {std::pair{"a", 0}, {"b", 5}, {"c", 0}, {"d", 9}})
    ASSERT_TRUE(store_->create(newJob(name, prio)));
  auto jobs = store_->claim("m", {"w", kLease}, 3);
  ASSERT_TRUE(jobs) << jobs.error().message;
  std::vector<std::string> order;
  for (auto& j : *jobs) order.push_back(j.prompt);
  EXPECT_EQ(order, (std::vector<std::string>{"d", "b", "a"}));
  auto rest = store_->claim("m", {"w", kLease}, 3);
  ASSERT_EQ(rest->size(), 1u);
  EXPECT_EQ(rest->front().prompt, "c");
}

// finishAsync builds the final job instead of reading it back: it must equal the stored row.
TEST_P(JobStoreConformance, TheFinishedJobHandedBackEqualsTheStoredOne) {
  ASSERT_TRUE(store_->create(newJob("x")));
  auto claimed = store_->claimNext("m", "w", kLease);
  ASSERT_TRUE(claimed && *claimed);
  auto blob = store_->blobs().put("out.txt", "text/plain", "bytes");
  ASSERT_TRUE(blob);
  std::promise<Result<Job>> p;
  store_->finishAsync(**claimed, "w", {JobStatus::kCompleted, {{"text", "done"}}, {}, {*blob}},
                      [&](Result<Job> r) { p.set_value(std::move(r)); });
  auto handed = p.get_future().get();
  ASSERT_TRUE(handed) << handed.error().message;
  auto stored = store_->get(handed->id);
  ASSERT_TRUE(stored);
  EXPECT_EQ(handed->status, stored->status);
  EXPECT_EQ(handed->status_message, stored->status_message);
  EXPECT_EQ(handed->result, stored->result);
  EXPECT_EQ(handed->error, stored->error);
  EXPECT_EQ(handed->finished_at, stored->finished_at);
  EXPECT_EQ(handed->started_at, stored->started_at);
  EXPECT_EQ(handed->attempts, stored->attempts);
  EXPECT_EQ(handed->lease_owner, stored->lease_owner);
  EXPECT_EQ(handed->lease_expires_at, stored->lease_expires_at);
  ASSERT_EQ(handed->artifacts.size(), 1u);
  ASSERT_EQ(stored->artifacts.size(), 1u);
  EXPECT_EQ(handed->artifacts[0].name, stored->artifacts[0].name);
  EXPECT_EQ(handed->artifacts[0].path, stored->artifacts[0].path);
  EXPECT_EQ(handed->artifacts[0].sha256, stored->artifacts[0].sha256);
}

INSTANTIATE_TEST_SUITE_P(Stores, JobStoreConformance, ::testing::ValuesIn(testing::storeKinds()),
                         testing::storeKindName);

}  // namespace
}  // namespace statim
