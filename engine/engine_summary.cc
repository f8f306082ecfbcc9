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
  summary_.look_cpu = absl::Nanoseconds(scanner_->look_cpu_ns());
  if (control_) {
    control_->counters().scanner_cpu_ns.store(
        static_cast<uint64_t>(absl::ToInt64Nanoseconds(summary_.scanner_cpu)),
        std::memory_order_relaxed);
    control_->counters().claim_cpu_ns.store(scanner_->claim_cpu_ns(), std::memory_order_relaxed);
  }
}

EngineSummary Engine::summary() const {
  EngineSummary s = summary_;
  s.looked_ahead = scanner_ != nullptr ? scanner_->look_reads() : 0;
  s.envelope_reads += s.looked_ahead;
  for (const auto& w : workers_) {
    s.connections += w->stats().connections.load();
    s.tls_sessions += w->stats().tls_sessions.load();
    s.tls_resumed += w->stats().tls_resumed.load();
    s.stale_completions += w->stats().stale_completions.load();
    s.local_waits += w->stats().local_waits.load();
    s.port_budget_waits += w->stats().port_budget_waits.load();
    s.pacing_waits += w->stats().connect_pacing_waits.load();
    s.wheel_peak = std::max<uint64_t>(s.wheel_peak, w->stats().wheel_entries_peak.load());
  }
  if (first_claim_ != absl::InfinitePast() && last_finish_ > first_claim_) {
    s.elapsed = last_finish_ - first_claim_;
  }
  return s;
}

std::string Engine::SummaryLine() const { return FormatSummary(summary()); }

std::string FormatSummary(const EngineSummary& s) {
  const double secs = absl::ToDoubleSeconds(s.elapsed);
  // Per-message figures only when fixed costs (thread start-up, the first claim round, the last
  // commit) no longer dominate: 5 messages in 4 ms are not 1250 msgs/s, and the scanner's
  // start-up over 5 messages is not its cost per message.
  const bool per_message = s.messages >= kSummaryRateMinMessages;
  const double n = static_cast<double>(s.messages);
  double tls_share =
      s.delivered > 0 ? 100.0 * static_cast<double>(s.delivered_tls) / s.delivered : 0;
  std::string suites;
  for (const auto& [suite, count] : s.tls_suites) {
    absl::StrAppend(&suites, suites.empty() ? "" : ", ", suite, " x", count);
  }
  std::string policies;
  std::vector<std::pair<std::string, uint64_t>> sorted(s.policies.begin(), s.policies.end());
  std::sort(sorted.begin(), sorted.end());
  for (const auto& [policy, count] : sorted) {
    absl::StrAppend(&policies, policies.empty() ? "" : ", ", policy, " x", count);
  }
  std::string out = absl::StrFormat("mxburst: %d messages finished in %.3f s", s.messages, secs);
  if (per_message && secs > 0) absl::StrAppendFormat(&out, " (%.0f msgs/s)", n / secs);
  absl::StrAppendFormat(
      &out,
      "; recipients: %d delivered, %d deferred, %d bounced (%d expired), %d DSNs; %d "
      "quarantined; over TLS: %.1f%% of delivered (%s); %d connections, %d TLS sessions (%d "
      "resumed); delivered per TLS policy: %s",
      s.delivered, s.deferred, s.bounced + s.expired, s.expired, s.dsns, s.quarantined,
      tls_share, suites.empty() ? "none" : suites, s.connections, s.tls_sessions, s.tls_resumed,
      policies.empty() ? "none" : policies);
  if (s.local_waits + s.port_budget_waits + s.pacing_waits > 0) {
    absl::StrAppend(&out, "; connects waited ", s.local_waits,
                    " time(s) for a local shortage, ", s.port_budget_waits,
                    " for the ephemeral port budget, ", s.pacing_waits, " for pacing");
  }
  const double scanner_us = absl::ToDoubleMicroseconds(s.scanner_cpu);
  const double claim_us = absl::ToDoubleMicroseconds(s.claim_cpu);
  if (per_message) {
    absl::StrAppendFormat(&out,
                          "; scanner CPU %.1f us/msg (scanner thread %.1f, %d claim thread(s) "
                          "%.1f)",
                          (scanner_us + claim_us) / n, scanner_us / n, s.claim_threads,
                          claim_us / n);
  } else if (s.messages > 0) {
    absl::StrAppendFormat(&out,
                          "; scanner CPU %.1f ms in all (scanner thread %.1f, %d claim "
                          "thread(s) %.1f)",
                          (scanner_us + claim_us) / 1000, scanner_us / 1000, s.claim_threads,
                          claim_us / 1000);
  }
  if (s.wheel_peak > 0) absl::StrAppend(&out, "; timer wheel peak ", s.wheel_peak, " entries");
  if (s.not_tried_by_scanner > 0) {
    absl::StrAppend(&out, "; ", s.not_tried_by_scanner,
                    " message(s) for dead destinations deferred by the scanner (",
                    s.envelope_reads, " envelope read(s))");
  }
  if (s.looked_ahead > 0) {
    absl::StrAppendFormat(&out, "; look-ahead thread: %u envelope read(s) in %.1f ms of CPU",
                          static_cast<unsigned>(s.looked_ahead),
                          absl::ToDoubleMilliseconds(s.look_cpu));
  }
  if (s.durable_pauses > 0) {
    absl::StrAppend(&out, "; claiming paused ", s.durable_pauses,
                    " time(s) because spool writes failed");
  }
  return out;
}

}  // namespace mxb
