#include "control/prometheus.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "control/http_server.h"

namespace mxb::control {
namespace {

// HELP text escaping (format 0.0.4: backslash and newline).
std::string EscapeHelp(absl::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return absl::StrFormat("%.0f", v);
  return absl::StrFormat("%.6g", v);
}

}  // namespace

void PrometheusText::Family(absl::string_view name, absl::string_view type,
                            absl::string_view help) {
  absl::StrAppend(&out_, "# HELP ", name, " ", EscapeHelp(help), "\n# TYPE ", name, " ", type,
                  "\n");
}

void PrometheusText::Sample(absl::string_view name, const Labels& labels, double value) {
  absl::StrAppend(&out_, name);
  if (!labels.empty()) {
    out_ += '{';
    for (size_t i = 0; i < labels.size(); ++i) {
      absl::StrAppend(&out_, i == 0 ? "" : ",", labels[i].first, "=\"",
                      EscapeLabel(labels[i].second), "\"");
    }
    out_ += '}';
  }
  absl::StrAppend(&out_, " ", FormatValue(value), "\n");
}

void Histogram::Observe(double seconds) {
  size_t i = 0;
  while (i < kBuckets && seconds > kBounds[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  const double us = seconds > 0 ? seconds * 1e6 : 0;
  sum_micros_.fetch_add(static_cast<uint64_t>(us), std::memory_order_relaxed);
}

void Histogram::Write(PrometheusText* p, absl::string_view name) const {
  const std::string bucket = absl::StrCat(name, "_bucket");
  uint64_t cumulative = 0;
  for (size_t i = 0; i < kBuckets; ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    p->Sample(bucket, {{"le", FormatValue(kBounds[i])}}, static_cast<double>(cumulative));
  }
  cumulative += buckets_[kBuckets].load(std::memory_order_relaxed);
  p->Sample(bucket, {{"le", "+Inf"}}, static_cast<double>(cumulative));
  p->Sample(absl::StrCat(name, "_sum"), {},
            static_cast<double>(sum_micros_.load(std::memory_order_relaxed)) / 1e6);
  // _count equals the +Inf bucket (the format requires it), whatever raced in since.
  p->Sample(absl::StrCat(name, "_count"), {}, static_cast<double>(cumulative));
}

}  // namespace mxb::control
