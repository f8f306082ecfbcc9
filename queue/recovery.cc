// Startup recovery of spool/active against the outcome journal; the rules are in recovery.h.
#include "queue/recovery.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace mxb {

Envelope FilterPending(const Envelope& env, const FinalSet& final_set) {
  if (final_set.generation != env.attempts || final_set.recipients.empty()) return env;
  Envelope out = env;
  out.recipients.clear();
  for (size_t i = 0; i < env.recipients.size(); ++i) {
    if (!final_set.recipients.contains(static_cast<uint32_t>(i))) {
      out.recipients.push_back(env.recipients[i]);
    }
  }
  out.attempts = env.attempts + 1;
  return out;
}

absl::StatusOr<RecoveryReport> RecoverSpool(Spool& spool, const RecoveredJournal& recovered,
                                            Journal& journal) {
  RecoveryReport report;
  for (std::string& name : spool.ListActive()) {
    absl::StatusOr<std::string> file = spool.ReadActive(name);
    if (!file.ok()) {
      report.redeliver.push_back(std::move(name));
      continue;
    }
    absl::StatusOr<Envelope> env = ParseEnvelope(*file);
    if (!env.ok()) {
      ++report.unparsable;
      report.redeliver.push_back(std::move(name));
      continue;
    }
    // Crash inside Spool::Defer after its rename: deferred/ holds the next generation.
    if (absl::StatusOr<std::string> deferred = spool.ReadDeferred(name); deferred.ok()) {
      absl::StatusOr<Envelope> denv = ParseEnvelope(*deferred);
      if (denv.ok() && denv->attempts > env->attempts) {
        if (absl::Status s = spool.Complete(name); !s.ok()) return s;
        ++report.duplicates;
        continue;
      }
    }
    auto it = recovered.messages.find(name);
    if (it == recovered.messages.end() || it->second.generation != env->attempts) {
      report.redeliver.push_back(std::move(name));
      continue;
    }
    const FinalSet& final_set = it->second;
    for (const auto& [idx, cls] : final_set.recipients) {
      if (cls != FinalClass::kDelivered && idx < env->recipients.size()) {
        report.messages_with_failures.push_back(name);
        break;
      }
    }
    Envelope rest = FilterPending(*env, final_set);
    if (rest.recipients.empty()) {
      if (absl::Status s = spool.Complete(name); !s.ok()) return s;
      ++report.completed;
      continue;
    }
    if (rest.recipients.size() == env->recipients.size()) {
      // Every journaled index was out of range: nothing to drop, keep the file as it is.
      report.redeliver.push_back(std::move(name));
      continue;
    }
    const absl::string_view body = absl::string_view(*file).substr(env->body_offset);
    if (absl::Status s = spool.RewriteActive(name, SerializeEnvelope(rest, body)); !s.ok()) {
      return s;
    }
    ++report.rewritten;
    report.redeliver.push_back(std::move(name));
  }
  // The unlinks above must be durable before the records that justified them go away.
  if (absl::Status s = spool.SyncDirs(); !s.ok()) return s;
  if (absl::Status s = journal.DropRecoveredSegments(); !s.ok()) return s;
  return report;
}

}  // namespace mxb
