// The job engine's Prometheus metrics: what the scheduler counts as jobs move through it.
// Queue depth and running jobs are gauges read from the scheduler when /metrics is scraped.
#pragma once

#include "core/metrics.h"
#include "statim/backend.h"
#include "statim/job.h"

namespace statim {

class JobMetrics {
 public:
  explicit JobMetrics(Metrics& metrics);  // declares the families
  void submitted(const Job& job);
  void started(const Job& job);   // job as claimed (started_at set)
  void finished(const Job& job);  // the final job (COMPLETED, FAILED or CANCELLED)
  // A batch session's steps since the last call: their time by phase, the steps and tokens.
  void stepped(const std::string& model, const BatchSession::StepTimes& times);

 private:
  Metrics& m_;
};

}  // namespace statim
