// Process metrics in the Prometheus text format (0.0.4): counters, gauges and histograms with
// labels. Families are declared once (name, help, type); samples are then added by label values.
//
// Thread-safety: every method may be called from any thread; one mutex guards the samples (each
// update is a map lookup and an add, far below the cost of the work it counts).
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace statim {

class Metrics {
 public:
  using Labels = std::vector<std::pair<std::string, std::string>>;

  void declareCounter(const std::string& name, const std::string& help);
  void declareGauge(const std::string& name, const std::string& help);
  // `buckets`: ascending upper bounds; +Inf is implied.
  void declareHistogram(const std::string& name, const std::string& help, std::vector<double> buckets);

  void add(const std::string& counter, const Labels& labels, double value = 1);
  void set(const std::string& gauge, const Labels& labels, double value);
  void observe(const std::string& histogram, const Labels& labels, double value);

  // The exposition text, families in declaration order, samples sorted by labels.
  std::string render() const;

 private:
  enum class Type { kCounter, kGauge, kHistogram };
  struct Series {
    double value = 0;              // counter / gauge
    std::vector<double> buckets;   // histogram: per-bucket (non-cumulative) counts, last is +Inf
    double sum = 0;
    double count = 0;
  };
  struct Family {
    std::string name, help;
    Type type;
    std::vector<double> bounds;
    std::map<Labels, Series> series;
  };
  Family* find(const std::string& name, Type type);  // requires mu_

  mutable std::mutex mu_;
  std::vector<Family> families_;  // guarded by mu_
};

}  // namespace statim
