// PostgresEventBus: job events between nodes over LISTEN/NOTIFY, on a real server (skipped,
// saying why, without one). Two buses on one database stand for two nodes.
#include "events/postgres/postgres_bus.h"

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "../store/store_test.h"
#include "store/postgres/postgres_store.h"

namespace statim {
namespace {

using namespace std::chrono_literals;

// Polls `pred` up to 10 s.
bool eventually(const std::function<bool()>& pred) {
  for (int i = 0; i < 1000; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return pred();
}

struct Seen {
  std::mutex mu;
  std::vector<JobEvent> events;
  EventBus::Listener listener() {
    return [this](const JobEvent& e) {
      std::lock_guard lock(mu);
      events.push_back(e);
      return true;
    };
  }
  std::vector<std::string> types() {
    std::lock_guard lock(mu);
    std::vector<std::string> out;
    for (auto& e : events) out.push_back(e.type);
    return out;
  }
  std::optional<JobEvent> last() {
    std::lock_guard lock(mu);
    if (events.empty()) return std::nullopt;
    return events.back();
  }
};

class PostgresEventBusTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (testing::testPostgresUrl().empty()) GTEST_SKIP() << "no PostgreSQL server: set STATIM_TEST_POSTGRES_URL";
    url_ = testing::postgresUrlFor(dir_.path());
    auto s = PostgresStore::open({.url = url_, .files_dir = dir_.path() / "files"});
    ASSERT_TRUE(s) << s.error().message;
    store_ = std::move(*s);
  }
  std::unique_ptr<PostgresEventBus> node(const std::string& id, std::chrono::milliseconds poll = 1000ms) {
    auto b = PostgresEventBus::open({.url = url_, .node_id = id, .poll_interval = poll}, *store_);
    EXPECT_TRUE(b) << b.error().message;
    return b ? std::move(*b) : nullptr;
  }
  testing::TempDir dir_;
  std::string url_;
  std::unique_ptr<PostgresStore> store_;
};

// The ended job travels in its terminal event's notification: the node that follows it has it
// without a store read (here the store has no such job at all), files excepted (their paths are
// a node's own: such a job is read from the store, and this one is not there: id and status).
TEST_F(PostgresEventBusTest, TheEndedJobTravelsInItsNotification) {
  auto a = node("a"), b = node("b");
  Job ended;
  ended.id = 424242;  // not in the store
  ended.model = "m";
  ended.type = "chat";
  ended.prompt = "hi";
  ended.params = {{"max_tokens", 3}};
  ended.status = JobStatus::kCompleted;
  ended.status_message = "completed";
  ended.created_at = 1'000'000;
  ended.started_at = 2'000'000;
  ended.finished_at = 3'000'000;
  ended.result = {{"text", "carried"}, {"tokens_out", 3}};
  ended.attempts = 1;
  ended.owner_key_id = 7;
  ended.webhook = Webhook{"http://example.invalid/hook", {"completed"}};
  Seen on_b;
  b->subscribe(ended.id, on_b.listener());
  a->publish({ended.id, "completed", {{"status", "COMPLETED"}}, ended});
  ASSERT_TRUE(eventually([&] { return on_b.last().has_value(); }));
  auto got = on_b.last();
  ASSERT_TRUE(got->job);
  EXPECT_EQ(got->job->result, ended.result);
  EXPECT_EQ(got->job->params, ended.params);
  EXPECT_EQ(got->job->status, JobStatus::kCompleted);
  EXPECT_EQ(got->job->started_at, ended.started_at);
  EXPECT_EQ(got->job->finished_at, ended.finished_at);
  EXPECT_EQ(got->job->owner_key_id, 7);
  ASSERT_TRUE(got->job->webhook);
  EXPECT_EQ(got->job->webhook->url, "http://example.invalid/hook");
  EXPECT_FALSE(got->data.contains("job")) << "the carried job is not left in the event's data";

  Job with_file = ended;
  with_file.id = 424243;
  with_file.artifacts.push_back({.name = "a.wav", .content_type = "audio/wav", .bytes = 4, .sha256 = "00"});
  Seen on_b2;
  b->subscribe(with_file.id, on_b2.listener());
  a->publish({with_file.id, "completed", {{"status", "COMPLETED"}}, with_file});
  ASSERT_TRUE(eventually([&] { return on_b2.last().has_value(); }));
  ASSERT_TRUE(on_b2.last()->job);
  EXPECT_TRUE(on_b2.last()->job->result.is_null()) << "not carried, not in the store: id and status only";
  EXPECT_EQ(on_b2.last()->job->status, JobStatus::kCompleted);
}

// What one node publishes reaches the other's listeners, in order, marked remote, and its own
// listeners at once; "result" stays on its node; the terminal event carries the ended job.
TEST_F(PostgresEventBusTest, EventsCrossToTheOtherNodeInOrderWithTheStoredJobAtTheEnd) {
  auto a = node("a"), b = node("b");
  auto job = store_->create({.model = "m", .type = "completion", .prompt = "x"});
  ASSERT_TRUE(job);
  Seen on_b, all_b, on_a;
  b->subscribe(job->id, on_b.listener());
  b->subscribeAll(all_b.listener());
  a->subscribe(job->id, on_a.listener());
  auto claimed = store_->claimNext("m", "a/m", 60'000'000);
  ASSERT_TRUE(claimed && *claimed);
  a->publish({job->id, "started", {{"attempt", 1}}});
  for (int i = 0; i < 50; ++i) a->publish({job->id, "token", {{"text", std::to_string(i) + " "}}});
  ASSERT_TRUE(store_->complete(job->id, "a/m", {{"text", "done"}}));
  Job ended = *store_->get(job->id);
  a->publish({job->id, "result", {{"status", "COMPLETED"}}, ended});
  a->publish({job->id, "completed", {{"status", "COMPLETED"}}, ended});
  ASSERT_TRUE(eventually([&] { return on_b.types().size() == 52; })) << on_b.types().size();
  auto types = on_b.types();
  EXPECT_EQ(types.front(), "started");
  EXPECT_EQ(types.back(), "completed");
  std::string text;
  for (auto& e : on_b.events) {
    EXPECT_TRUE(e.remote);
    EXPECT_EQ(e.job_id, job->id);
    if (e.type == "token") text += e.data["text"].get<std::string>();
  }
  EXPECT_EQ(text.substr(0, 6), "0 1 2 ");
  ASSERT_TRUE(on_b.last()->job);
  EXPECT_EQ(on_b.last()->job->result["text"], "done");  // the ended job (carried in the notification)
  EXPECT_EQ(b->listeners(), 1u);                        // the job's listener is gone; subscribeAll stays
  EXPECT_EQ(all_b.types().size(), 52u);
  // A's own listener got everything once, "result" included, none marked remote.
  EXPECT_EQ(on_a.types().size(), 53u);
  for (auto& e : on_a.events) EXPECT_FALSE(e.remote);
  EXPECT_GE(b->eventsReceived(), 52);
  EXPECT_LT(a->notificationsSent(), 52) << "events are batched into fewer notifications";
  // The end that came from node a is remembered on b: a later follower there is told so.
  auto late = b->subscribe(job->id, [](const JobEvent&) { return true; });
  EXPECT_TRUE(late.ended);
  b->unsubscribe(late.token);
}

// A node that reads only some types (a worker: what its scheduler acts on) gets those from the
// other nodes and nothing else, whether they came alone or in one notification with others.
TEST_F(PostgresEventBusTest, ANodeThatReadsOnlySomeTypesGetsThoseAndNothingElse) {
  auto api = node("api"), full = node("full");
  auto w = PostgresEventBus::open({.url = url_, .node_id = "w", .only_types = {"queued", "cancelling"}}, *store_);
  ASSERT_TRUE(w) << w.error().message;
  Seen on_w, on_full;
  (*w)->subscribeAll(on_w.listener());
  full->subscribeAll(on_full.listener());
  api->publish({7, "started", {{"attempt", 1}}});  // alone: this notification is not parsed on w
  ASSERT_TRUE(eventually([&] { return on_full.types().size() == 1; }));
  api->publish({7, "token", {{"text", "queued"}}});  // names "queued", but only as text
  api->publish({8, "queued", {{"model", "m"}, {"claimed", false}}});
  api->publish({7, "cancelling", nlohmann::json::object()});
  ASSERT_TRUE(eventually([&] { return on_full.types().size() == 4; })) << on_full.types().size();
  ASSERT_TRUE(eventually([&] { return on_w.types().size() == 2; })) << on_w.types().size();
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(on_w.types(), (std::vector<std::string>{"queued", "cancelling"}));
  EXPECT_EQ(on_w.events[0].job_id, 8);
  EXPECT_TRUE(on_w.events[0].remote);
  EXPECT_EQ((*w)->eventsReceived(), 2);
}

// At low load a job's end is not held back by the pause after a small NOTIFY: the client waiting
// for it is on another node. Here the pause after the hello (one event) is a quarter of a
// 60-second batch_delay: "started" waits in it, and "completed" cuts it short, taking "started"
// along. (The old sender held both for 15 s.)
TEST_F(PostgresEventBusTest, AJobsEndAtLowLoadGoesAtOnce) {
  auto b = node("b");
  Seen on_b;
  b->subscribeAll(on_b.listener());
  auto a = PostgresEventBus::open({.url = url_, .node_id = "a", .batch_delay = 60s}, *store_);
  ASSERT_TRUE(a) << a.error().message;
  std::this_thread::sleep_for(200ms);  // a's hello has gone: the sender is in its pause
  (*a)->publish({9, "started", {{"attempt", 1}}});
  Job ended;
  ended.id = 9;
  ended.status = JobStatus::kCompleted;
  ended.status_message = "completed";
  (*a)->publish({9, "completed", {{"status", "COMPLETED"}}, ended});
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (on_b.types().size() < 2 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(on_b.types(), (std::vector<std::string>{"started", "completed"}));
}

// A late subscriber on the other node gets the text so far (its bus tracked the running job).
TEST_F(PostgresEventBusTest, ALateFollowerOnAnotherNodeGetsTheTextSoFar) {
  auto a = node("a"), b = node("b");
  // (Listening to all of b's events first: only to know when b has heard them. Subscribed after
  // the publishes, it could miss them on a busy machine - CI caught that.)
  Seen all_b;
  b->subscribeAll(all_b.listener());
  a->publish({42, "started"});
  a->publish({42, "token", {{"text", "Hello"}}});
  a->publish({42, "token", {{"text", " world"}}});
  ASSERT_TRUE(eventually([&] { return all_b.types().size() == 3; }));
  auto sub = b->subscribe(42, [](const JobEvent&) { return true; });
  EXPECT_EQ(sub.text_so_far, "Hello world");
}

// A notification that never comes (here: the job ends in the store, nobody publishes) still ends
// the followers: the followed jobs are re-read from the store every poll interval.
TEST_F(PostgresEventBusTest, AFollowerGetsTheEndFromTheStoreWhenNoNotificationComes) {
  auto b = node("b", 100ms);
  auto job = store_->create({.model = "m", .type = "completion", .prompt = "x"});
  ASSERT_TRUE(job);
  Seen on_b;
  b->subscribe(job->id, on_b.listener());
  ASSERT_TRUE(store_->claimNext("m", "gone/m", 60'000'000));
  ASSERT_TRUE(store_->fail(job->id, "gone/m", "the backend failed"));
  ASSERT_TRUE(eventually([&] { return !on_b.types().empty(); }));
  auto end = on_b.last();
  EXPECT_EQ(end->type, "failed");
  ASSERT_TRUE(end->job);
  EXPECT_EQ(end->job->error, "the backend failed");
  EXPECT_TRUE(end->terminal());
  // The real notification arriving afterwards is not delivered a second time.
  auto a = node("a");
  a->publish({job->id, "failed", {{"status", "FAILED"}}, *end->job});
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(on_b.types().size(), 1u);
}

// The listening connection is terminated by the server: the bus listens again, and the jobs it
// follows get their end from the store meanwhile.
TEST_F(PostgresEventBusTest, ALostListeningConnectionIsReopened) {
  auto a = node("a"), b = node("b", 100ms);
  // Only this test's listeners (its schema's channel): other tests share the server and run at
  // the same time (ctest -j), and must not lose theirs.
  auto killed = store_->query(
      "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = "
      "'LISTEN \"statim_events_' || current_schema() || '\"' AND pid <> pg_backend_pid()) t");
  ASSERT_TRUE(killed);
  EXPECT_EQ(killed->int64(0, 0), 2) << "both nodes' listening connections";
  Seen all_b;
  b->subscribeAll(all_b.listener());
  ASSERT_TRUE(eventually([&] {
    a->publish({7, "token", {{"text", "x"}}});
    std::this_thread::sleep_for(50ms);
    return !all_b.types().empty();
  }));
}

// Two statim clusters in two schemas of one database do not hear each other (NOTIFY is
// database-wide: the channel is named after the schema).
TEST_F(PostgresEventBusTest, ClustersInTwoSchemasOfOneDatabaseDoNotHearEachOther) {
  auto a = node("a"), b = node("b");
  testing::TempDir other_dir;
  auto other_url = testing::postgresUrlFor(other_dir.path());
  auto other_store = PostgresStore::open({.url = other_url, .files_dir = other_dir.path() / "files"});
  ASSERT_TRUE(other_store) << other_store.error().message;
  auto stranger = PostgresEventBus::open({.url = other_url, .node_id = "c"}, **other_store);
  ASSERT_TRUE(stranger) << stranger.error().message;
  Seen on_b, on_stranger;
  b->subscribeAll(on_b.listener());
  (*stranger)->subscribeAll(on_stranger.listener());
  a->publish({9, "token", {{"text", "x"}}});
  ASSERT_TRUE(eventually([&] { return on_b.types().size() == 1; }));
  std::this_thread::sleep_for(200ms);
  EXPECT_TRUE(on_stranger.types().empty());
}

}  // namespace
}  // namespace statim
