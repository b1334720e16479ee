#include "core/metrics.h"

#include <algorithm>
#include <cmath>
#include <format>
#include <stdexcept>

namespace statim {
namespace {

std::string escapeLabel(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  return std::format("{}", v);
}

std::string labelText(const Metrics::Labels& labels, const std::string& extra = {}) {
  std::string out;
  for (auto& [k, v] : labels) out += std::format("{}{}=\"{}\"", out.empty() ? "" : ",", k, escapeLabel(v));
  if (!extra.empty()) out += (out.empty() ? "" : ",") + extra;
  return out.empty() ? "" : "{" + out + "}";
}

}  // namespace

void Metrics::declareCounter(const std::string& name, const std::string& help) {
  std::lock_guard lock(mu_);
  families_.push_back({name, help, Type::kCounter, {}, {}});
}

void Metrics::declareGauge(const std::string& name, const std::string& help) {
  std::lock_guard lock(mu_);
  families_.push_back({name, help, Type::kGauge, {}, {}});
}

void Metrics::declareHistogram(const std::string& name, const std::string& help, std::vector<double> buckets) {
  std::lock_guard lock(mu_);
  std::ranges::sort(buckets);
  families_.push_back({name, help, Type::kHistogram, std::move(buckets), {}});
}

Metrics::Family* Metrics::find(const std::string& name, Type type) {
  for (auto& f : families_) {
    if (f.name == name) {
      if (f.type != type) throw std::logic_error("metric " + name + " used with the wrong type");
      return &f;
    }
  }
  throw std::logic_error("metric " + name + " was not declared");
}

void Metrics::add(const std::string& counter, const Labels& labels, double value) {
  std::lock_guard lock(mu_);
  find(counter, Type::kCounter)->series[labels].value += value;
}

void Metrics::set(const std::string& gauge, const Labels& labels, double value) {
  std::lock_guard lock(mu_);
  find(gauge, Type::kGauge)->series[labels].value = value;
}

void Metrics::observe(const std::string& histogram, const Labels& labels, double value) {
  std::lock_guard lock(mu_);
  Family* f = find(histogram, Type::kHistogram);
  Series& s = f->series[labels];
  if (s.buckets.empty()) s.buckets.assign(f->bounds.size() + 1, 0);
  auto it = std::ranges::lower_bound(f->bounds, value);  // first bound >= value: `le` is inclusive
  s.buckets[static_cast<size_t>(it - f->bounds.begin())] += 1;
  s.sum += value;
  s.count += 1;
}

std::string Metrics::render() const {
  std::lock_guard lock(mu_);
  std::string out;
  for (const Family& f : families_) {
    const char* type = f.type == Type::kCounter ? "counter" : f.type == Type::kGauge ? "gauge" : "histogram";
    out += std::format("# HELP {} {}\n# TYPE {} {}\n", f.name, f.help, f.name, type);
    for (const auto& [labels, s] : f.series) {
      if (f.type != Type::kHistogram) {
        out += std::format("{}{} {}\n", f.name, labelText(labels), number(s.value));
        continue;
      }
      double cumulative = 0;
      for (size_t i = 0; i <= f.bounds.size(); ++i) {
        cumulative += s.buckets[i];
        double le = i < f.bounds.size() ? f.bounds[i] : INFINITY;
        out += std::format("{}_bucket{} {}\n", f.name, labelText(labels, "le=\"" + number(le) + "\""), number(cumulative));
      }
      out += std::format("{}_sum{} {}\n", f.name, labelText(labels), number(s.sum));
      out += std::format("{}_count{} {}\n", f.name, labelText(labels), number(s.count));
    }
  }
  return out;
}

}  // namespace statim
