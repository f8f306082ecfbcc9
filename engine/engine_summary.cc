// Engine's reports: the progress line, the end-of-run summary line and the scanner CPU figures
// (engine/engine.h); scanner thread only, like the rest of Engine.
#include <algorithm>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/control_plane.h"
#include "engine/engine.h"

namespace mxb {
void Engine::Progress(bool final) {
  if (config_.quiet) return;
  absl::Time now = absl::Now();
  if (!final && now - last_progress_ < absl::Seconds(2)) return;
  last_progress_ = now;
  std::fprintf(stderr,
               "mxburst: %llu messages done, %zu in flight; recipients: %llu delivered, "
               "%llu deferred, %llu bounced\n",
               static_cast<unsigned long long>(summary_.messages), in_flight_,
               static_cast<unsigned long long>(summary_.delivered),
               static_cast<unsigned long long>(summary_.deferred),
               static_cast<unsigned long long>(summary_.bounced));
}

void Engine::PublishCpu(bool final) {
  const absl::Time now = absl::Now();
  if (!final && now - last_cpu_sample_ < absl::Seconds(1)) return;
  last_cpu_sample_ = now;
  summary_.scanner_cpu = absl::Nanoseconds(ThreadCpuNs());  // Run() is the scanner thread
  summary_.claim_cpu = absl::Nanoseconds(scanner_->claim_cpu_ns());
  summary_.claim_threads = scanner_->threads();
  if (control_) {
    control_->counters().scanner_cpu_ns.store(
        static_cast<uint64_t>(absl::ToInt64Nanoseconds(summary_.scanner_cpu)),
        std::memory_order_relaxed);
    control_->counters().claim_cpu_ns.store(scanner_->claim_cpu_ns(), std::memory_order_relaxed);
  }
}

EngineSummary Engine::summary() const {
  EngineSummary s = summary_;
  for (const auto& w : workers_) {
    s.connections += w->stats().connections.load();
    s.tls_sessions += w->stats().tls_sessions.load();
    s.tls_resumed += w->stats().tls_resumed.load();
    s.stale_completions += w->stats().stale_completions.load();
    s.local_waits += w->stats().local_waits.load();
    s.port_budget_waits += w->stats().port_budget_waits.load();
    s.pacing_waits += w->stats().connect_pacing_waits.load();
  }
  if (first_claim_ != absl::InfinitePast() && last_finish_ > first_claim_) {
    s.elapsed = last_finish_ - first_claim_;
  }
  return s;
}

std::string Engine::SummaryLine() const {
  EngineSummary s = summary();
  double secs = absl::ToDoubleSeconds(s.elapsed);
  double rate = secs > 0 ? static_cast<double>(s.messages) / secs : 0;
  double tls_share =
      s.delivered > 0 ? 100.0 * static_cast<double>(s.delivered_tls) / s.delivered : 0;
  std::string suites;
  for (const auto& [suite, n] : s.tls_suites) {
    absl::StrAppend(&suites, suites.empty() ? "" : ", ", suite, " x", n);
  }
  std::string policies;
  std::vector<std::pair<std::string, uint64_t>> sorted(s.policies.begin(), s.policies.end());
  std::sort(sorted.begin(), sorted.end());
  for (const auto& [policy, n] : sorted) {
    absl::StrAppend(&policies, policies.empty() ? "" : ", ", policy, " x", n);
  }
  return absl::StrFormat(
      "mxburst: %d messages finished in %.2f s (%.0f msgs/s); recipients: %d delivered, "
      "%d deferred, %d bounced (%d expired), %d DSNs; %d quarantined; over TLS: %.1f%% of "
      "delivered (%s); "
      "%d connections, %d TLS sessions (%d resumed); delivered per TLS policy: %s",
      s.messages, secs, rate, s.delivered, s.deferred, s.bounced + s.expired, s.expired, s.dsns,
      s.quarantined, tls_share,
      suites.empty() ? "none" : suites, s.connections, s.tls_sessions, s.tls_resumed,
      policies.empty() ? "none" : policies) +
         (s.local_waits + s.port_budget_waits + s.pacing_waits > 0
              ? absl::StrCat("; connects waited ", s.local_waits, " time(s) for a local shortage, ",
                             s.port_budget_waits, " for the ephemeral port budget, ",
                             s.pacing_waits, " for pacing")
              : std::string()) +
         (s.messages > 0
              ? absl::StrFormat("; scanner CPU %.1f us/msg (scanner thread %.1f, %d claim "
                                "thread(s) %.1f)",
                                absl::ToDoubleMicroseconds(s.scanner_cpu + s.claim_cpu) /
                                    static_cast<double>(s.messages),
                                absl::ToDoubleMicroseconds(s.scanner_cpu) /
                                    static_cast<double>(s.messages),
                                s.claim_threads,
                                absl::ToDoubleMicroseconds(s.claim_cpu) /
                                    static_cast<double>(s.messages))
              : std::string()) +
         (s.not_tried_by_scanner > 0
              ? absl::StrCat("; ", s.not_tried_by_scanner,
                             " message(s) for dead destinations deferred by the scanner")
              : std::string()) +
         (s.durable_pauses > 0
              ? absl::StrCat("; claiming paused ", s.durable_pauses,
                             " time(s) because spool writes failed")
              : std::string());
}

}  // namespace mxb
