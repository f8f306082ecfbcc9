// PrometheusText: builds a metrics page in the Prometheus text exposition format 0.0.4 — one
// "# HELP" and "# TYPE" line per family, then its samples; label values escaped. Names follow the
// Prometheus conventions (prefix mxburst_, counters end in _total, base units: _seconds, _bytes).
// Any thread; one instance per rendering.
//
//   PrometheusText p;
//   p.Family("mxburst_messages_claimed_total", "counter", "Spool files claimed.");
//   p.Sample("mxburst_messages_claimed_total", {}, 42);
//   p.Family("mxburst_recipients_total", "counter", "Recipient outcomes.");
//   p.Sample("mxburst_recipients_total", {{"outcome", "delivered"}}, 40);
//   std::string page = p.Take();
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace mxb::control {

using Labels = std::vector<std::pair<std::string, std::string>>;

class PrometheusText {
 public:
  void Family(absl::string_view name, absl::string_view type, absl::string_view help);
  void Sample(absl::string_view name, const Labels& labels, double value);
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

// A cumulative histogram over fixed bucket bounds (seconds), updated with relaxed atomics by
// one or more threads and read by the HTTP thread. A reading may be mid-update (count one
// ahead of a bucket); Prometheus tolerates that, the next scrape is consistent again.
class Histogram {
 public:
  // Queue time of a bulk MTA: from a second to the 4-day give-up (RFC 5321 §4.5.4.1).
  static constexpr double kBounds[] = {1, 5, 10, 30, 60, 300, 900, 1800, 3600, 14400, 86400,
                                       345600};
  static constexpr size_t kBuckets = sizeof(kBounds) / sizeof(kBounds[0]);

  void Observe(double seconds);
  // Writes NAME_bucket{le=...}, NAME_sum, NAME_count (after a Family(NAME, "histogram", ...)).
  void Write(PrometheusText* p, absl::string_view name) const;

 private:
  std::atomic<uint64_t> buckets_[kBuckets + 1] = {};  // last: above every bound (+Inf only)
  std::atomic<uint64_t> sum_micros_{0};
};

}  // namespace mxb::control
