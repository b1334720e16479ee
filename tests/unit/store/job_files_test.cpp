// Store conformance (store_test.h), the files of jobs: deleting a job removes the files only it referred to, never
// those another job (or an upload in flight) still needs; the retention sweep removes files no job refers to.
#include <gtest/gtest.h>

#include <format>
#include <fstream>
#include <thread>

#include "core/clock.h"
#include "scheduler/housekeeping.h"
#include "store_test.h"

namespace statim {
namespace {

constexpr Micros kLease = 60'000'000;

class JobFilesTest : public testing::StoreTest {
 protected:
  BlobStore& blobs() { return store_->blobs(); }
  // A job with one input file, run to COMPLETED with one artifact.
  Job finishedJob(std::string_view input, std::string_view artifact) {
    auto in = blobs().put("image", "image/png", input);
    EXPECT_TRUE(in);
    NewJob nj{.model = "m", .type = "ocr", .prompt = ""};
    nj.inputs.push_back(*in);
    auto job = store_->create(nj);
    EXPECT_TRUE(job) << job.error().message;
    auto claimed = store_->claimNext("m", "w", kLease);
    EXPECT_TRUE(claimed && *claimed);
    auto out = blobs().put("out.png", "image/png", artifact);
    EXPECT_TRUE(out);
    EXPECT_TRUE(store_->complete(job->id, "w", {{"text", "done"}}, {*out}));
    return *store_->get(job->id);
  }
};

TEST_P(JobFilesTest, DeletingAJobRemovesItsFilesButNotThoseAnotherJobShares) {
  Job a = finishedJob("shared input", "artifact of a");
  Job b = finishedJob("shared input", "artifact of b");
  ASSERT_EQ(a.inputs.size(), 1u);
  ASSERT_EQ(a.artifacts.size(), 1u);
  auto shared = a.inputs[0].path, a_out = a.artifacts[0].path, b_out = b.artifacts[0].path;
  ASSERT_TRUE(std::filesystem::exists(shared) && std::filesystem::exists(a_out));

  auto deleted = store_->deleteJob(a.id);
  ASSERT_TRUE(deleted) << deleted.error().message;
  EXPECT_EQ(deleted->ids, std::vector<JobId>{a.id});
  EXPECT_EQ(deleted->orphaned_files, std::vector<std::string>{a.artifacts[0].sha256});
  EXPECT_EQ(deleted->released_at, *a.finished_at);
  EXPECT_EQ(blobs().removeReleased(deleted->orphaned_files, deleted->released_at), 1u);
  EXPECT_FALSE(std::filesystem::exists(a_out));
  EXPECT_TRUE(std::filesystem::exists(shared)) << "job b still reads it";
  EXPECT_EQ(store_->get(a.id).error().code, ErrorCode::kNotFound);

  auto again = store_->deleteJob(a.id);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(again.error().message, std::format("job {} not found", a.id));

  deleted = store_->deleteJob(b.id);
  ASSERT_TRUE(deleted);
  EXPECT_EQ(deleted->orphaned_files.size(), 2u);
  EXPECT_EQ(blobs().removeReleased(deleted->orphaned_files, deleted->released_at), 2u);
  EXPECT_FALSE(std::filesystem::exists(shared));
  EXPECT_FALSE(std::filesystem::exists(b_out));
}

TEST_P(JobFilesTest, AQueuedOrRunningJobIsNotDeleted) {
  auto job = store_->create({.model = "m", .type = "completion", .prompt = "x"});
  ASSERT_TRUE(job);
  auto r = store_->deleteJob(job->id);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kConflict);
  EXPECT_EQ(r.error().message, std::format("job {0} is QUEUED: only an ended job can be deleted; cancel it first "
                                           "(POST /job/{0}/cancel)",
                                           job->id));
  ASSERT_TRUE(store_->claimNext("m", "w", kLease));
  EXPECT_NE(store_->deleteJob(job->id).error().message.find("is PROCESSING"), std::string::npos);
  EXPECT_TRUE(store_->get(job->id));
}

TEST_P(JobFilesTest, AFileUploadedAgainAfterTheJobEndedIsKept) {
  Job a = finishedJob("input bytes", "output bytes");
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  // A new request brings the same bytes: its row is not committed yet when `a` is deleted.
  auto again = blobs().put("image", "image/png", "input bytes");
  ASSERT_TRUE(again);
  auto deleted = store_->deleteJob(a.id);
  ASSERT_TRUE(deleted);
  EXPECT_EQ(deleted->orphaned_files.size(), 2u);
  EXPECT_EQ(blobs().removeReleased(deleted->orphaned_files, deleted->released_at), 1u);
  EXPECT_TRUE(std::filesystem::exists(again->path));
  EXPECT_FALSE(std::filesystem::exists(a.artifacts[0].path));
}

TEST_P(JobFilesTest, RetentionExpiresJobsWithTheirFilesAndSweepsFilesNoJobRefersTo) {
  Job a = finishedJob("old input", "old output");
  // A refused request's upload: written, never referenced.
  auto stray = blobs().put("image", "image/png", "nobody's file");
  ASSERT_TRUE(stray);
  auto dir = stray->path.parent_path();
  std::filesystem::path tmp = dir / (stray->sha256 + ".tmp-00000000deadbeef");
  { std::ofstream(tmp) << "half a write"; }
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  auto sqlite = dynamic_cast<AuditStore*>(store_.get());
  {
    // Nothing expires yet (retention 1 day), but every file is past a zero grace period.
    Housekeeping h(*store_, *sqlite, {.jobs_days = 1, .interval = std::chrono::hours(1), .blobs = &blobs(),
                                      .orphan_grace = std::chrono::milliseconds(0)});
    h.sweep();  // the thread's first sweep may not have run yet
  }
  EXPECT_FALSE(std::filesystem::exists(stray->path)) << "an unreferenced file is swept";
  EXPECT_FALSE(std::filesystem::exists(tmp)) << "an interrupted write is swept";
  EXPECT_TRUE(std::filesystem::exists(a.inputs[0].path));
  EXPECT_TRUE(std::filesystem::exists(a.artifacts[0].path));
  EXPECT_TRUE(store_->get(a.id));

  {
    // Its thread's first sweep may be the one that deletes the job: checked once it has ended.
    Housekeeping h(*store_, *sqlite, {.jobs_days = 1e-12, .interval = std::chrono::hours(1), .blobs = &blobs()});
    h.sweep();
  }
  EXPECT_EQ(store_->get(a.id).error().code, ErrorCode::kNotFound);
  EXPECT_FALSE(std::filesystem::exists(a.inputs[0].path));
  EXPECT_FALSE(std::filesystem::exists(a.artifacts[0].path));
}

TEST_P(JobFilesTest, FilesYoungerThanTheGraceAreLeftAlone) {
  auto stray = blobs().put("image", "image/png", "just uploaded");
  ASSERT_TRUE(stray);
  auto sqlite = dynamic_cast<AuditStore*>(store_.get());
  Housekeeping h(*store_, *sqlite, {.interval = std::chrono::hours(1), .blobs = &blobs()});
  h.sweep();
  EXPECT_TRUE(std::filesystem::exists(stray->path));
}

INSTANTIATE_TEST_SUITE_P(Stores, JobFilesTest, ::testing::ValuesIn(testing::storeKinds()), testing::storeKindName);

}  // namespace
}  // namespace statim
