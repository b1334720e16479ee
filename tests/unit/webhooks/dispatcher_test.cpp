// The webhook dispatcher against a real store and a scripted transport: signing, retries with
// backoff, giving up, and a receiver that never answers not holding up the others.
#include "webhooks/dispatcher.h"

#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "../test_util.h"
#include "core/clock.h"
#include "core/crypto.h"
#include "store/sqlite/sqlite_store.h"

namespace statim {
namespace {

using namespace std::chrono_literals;

// Answers each POST with the next scripted status (the last one repeats); -1 = never answer.
class ScriptedTransport final : public WebhookTransport {
 public:
  struct Sent {
    std::string url;
    std::map<std::string, std::string> headers;
    std::string body;
  };
  explicit ScriptedTransport(std::map<std::string, std::vector<int>> script) : script_(std::move(script)) {}
  void post(const std::string& url, const std::vector<std::pair<std::string, std::string>>& headers, std::string body,
            double, Done done) override {
    int status;
    {
      std::lock_guard lock(mu_);
      sent_.push_back({url, {headers.begin(), headers.end()}, body});
      auto& s = script_[url];
      status = s.size() > 1 ? s.front() : s.empty() ? 200 : s[0];
      if (s.size() > 1) s.erase(s.begin());
      if (status < 0) {
        parked_.push_back(std::move(done));  // never answered while the test runs
        return;
      }
    }
    done(status, "");
  }
  std::vector<Sent> sent() {
    std::lock_guard lock(mu_);
    return sent_;
  }
  ~ScriptedTransport() override {
    for (auto& d : parked_) d(std::nullopt, "timeout");
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::vector<int>> script_;
  std::vector<Sent> sent_;
  std::vector<Done> parked_;
};

class DispatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = SqliteStore::open(dir_.path() / "statim.db");
    ASSERT_TRUE(s) << s.error().message;
    store_ = std::move(*s);
  }
  // A job with a webhook that completes at once (so one "completed" row is due).
  JobId completedJob(const std::string& url) {
    NewJob nj{.model = "m", .type = "completion", .prompt = "p"};
    nj.webhook = Webhook{url, {"completed"}};
    auto j = store_->create(nj);
    EXPECT_TRUE(j);
    auto claimed = store_->claimNext("m", "w", 60'000'000);
    EXPECT_TRUE(claimed && *claimed && (*claimed)->id == j->id);
    EXPECT_TRUE(store_->complete(j->id, "w", {{"text", "done"}}));
    return j->id;
  }
  WebhookDelivery waitFor(JobId id, const std::string& status) {
    for (int i = 0; i < 500; ++i) {
      auto rows = store_->listDeliveries(id);
      if (rows && !rows->empty() && (*rows)[0].status == status) return (*rows)[0];
      std::this_thread::sleep_for(10ms);
    }
    ADD_FAILURE() << "delivery of job " << id << " never became " << status;
    return {};
  }
  WebhookOptions options() {
    return {.secret = "s3cret", .max_attempts = 3, .retry_base_seconds = 0.05, .retry_max_seconds = 1,
            .timeout_seconds = 1, .poll = 20ms, .max_in_flight = 4};
  }
  static std::string render(const Job& j) { return std::format(R"({{"id":{}}})", j.id); }

  testing::TempDir dir_;
  std::unique_ptr<SqliteStore> store_;
};

TEST_F(DispatcherTest, DeliversASignedBody) {
  ScriptedTransport t({{"http://r/ok", {204}}});
  JobId id = completedJob("http://r/ok");
  WebhookDispatcher d(*store_, *store_, t, render, options());
  auto row = waitFor(id, "delivered");
  EXPECT_EQ(row.attempts, 1);
  auto sent = t.sent();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].body, std::format(R"({{"event":"completed","delivery_id":{},"job":{{"id":{}}}}})", row.id, id));
  auto& h = sent[0].headers;
  EXPECT_EQ(h["X-Statim-Event"], "completed");
  EXPECT_EQ(h["X-Statim-Delivery"], std::to_string(row.id));
  EXPECT_EQ(h["X-Statim-Signature"], "sha256=" + crypto::hmacSha256Hex("s3cret", h["X-Statim-Timestamp"] + "." + sent[0].body));
  EXPECT_NEAR(std::stod(h["X-Statim-Timestamp"]), nowMicros() / 1e6, 5);
}

TEST_F(DispatcherTest, RetriesWithBackoffThenDeliversOrGivesUp) {
  ScriptedTransport t({{"http://r/flaky", {500, 503, 200}}, {"http://r/down", {500}}});
  JobId flaky = completedJob("http://r/flaky");
  JobId down = completedJob("http://r/down");
  WebhookDispatcher d(*store_, *store_, t, render, options());
  auto ok = waitFor(flaky, "delivered");
  EXPECT_EQ(ok.attempts, 3);
  auto rows = *store_->listDeliveries(flaky);
  ASSERT_EQ(rows[0].history.size(), 3u);
  EXPECT_EQ(rows[0].history[0].status_code, 500);
  EXPECT_EQ(rows[0].history[0].error, "the receiver answered HTTP 500");
  EXPECT_EQ(rows[0].history[1].status_code, 503);
  // Backoff: the second retry waits twice the first (0.05 s, then 0.1 s).
  EXPECT_GE(rows[0].history[1].at - rows[0].history[0].at, 45'000);
  EXPECT_GE(rows[0].history[2].at - rows[0].history[1].at, 95'000);
  auto failed = waitFor(down, "failed");
  EXPECT_EQ(failed.attempts, 3);
  EXPECT_EQ(failed.last_status_code, 500);
  EXPECT_DOUBLE_EQ(WebhookDispatcher::backoffSeconds(options(), 10), 1);  // capped at retry_max
}

TEST_F(DispatcherTest, AReceiverThatNeverAnswersDoesNotHoldUpOthers) {
  ScriptedTransport t({{"http://r/hang", {-1}}, {"http://r/ok", {200}}});
  JobId hang = completedJob("http://r/hang");
  std::vector<JobId> others;
  for (int i = 0; i < 10; ++i) others.push_back(completedJob("http://r/ok"));
  WebhookDispatcher d(*store_, *store_, t, render, options());
  for (JobId id : others) waitFor(id, "delivered");
  EXPECT_EQ((*store_->listDeliveries(hang))[0].status, "pending");
}

}  // namespace
}  // namespace statim
