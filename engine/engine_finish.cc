// What becomes of a message once every job of it is back (Engine, scanner thread): the retry
// plan or expiry of its deferred recipients (PlanFinish), the DSN for bounced ones (WriteDsnFor),
// the accounting-log and journal records of each outcome, and the message text read back from
// spool/active/ for a rewrite or a DSN (ReadBody: MessageRecord holds no copy of the file).
// The group commit and the spool changes that follow are in engine.cc (ProcessCompletions).
#include <algorithm>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "engine/control_plane.h"
#include "engine/engine.h"
#include "queue/dsn.h"
#include "queue/envelope.h"

namespace mxb {

Engine::Finish Engine::PlanFinish(MessageRecord* msg, absl::Time now) {
  msg->outcomes.resize(msg->envelope.recipients.size());  // a no-op once an outcome arrived
  Finish f;
  f.msg = msg;
  std::vector<std::string> pending;
  std::vector<uint32_t> pending_idx;
  bool failures = false;
  for (uint32_t i = 0; i < msg->envelope.recipients.size(); ++i) {
    if (msg->final_class[i] == DeliveryClass::kDeferred) {
      pending.push_back(msg->envelope.recipients[i]);
      pending_idx.push_back(i);
    } else if (msg->final_class[i] == DeliveryClass::kBounced) {
      failures = true;
    }
  }
  f.complete = pending.empty();
  if (!f.complete) {
    // The schedule counts delivery passes (tries), which may be ahead of the generation.
    Envelope current = msg->envelope;
    current.attempts = Tries(*msg);
    const size_t all = msg->envelope.recipients.size();
    std::optional<Envelope> next = PlanRetry(current, std::move(pending), msg->queued_at, schedule_);
    if (next.has_value()) {
      f.next_attempt = absl::FromUnixSeconds(next->next_attempt);
      // No recipient became final: the file stays as it is, only the schedule moves (cheap,
      // no fsync; issue 10). Otherwise the pending recipients are re-numbered: a rewrite with a
      // new generation (tries + 1 > the old generation).
      f.unchanged = next->recipients.size() == all;
      f.mark = {next->attempts, next->first_attempt, next->next_attempt};
      if (!f.unchanged) f.rewrite = *std::move(next);
    } else {
      // RFC 5321 §4.5.4.1: gave up after the maximum queue age.
      f.complete = true;
      failures = true;
      for (uint32_t i : pending_idx) {
        msg->final_class[i] = DeliveryClass::kBounced;
        RecipientOutcome& o = msg->outcomes[i];
        // RFC 8689 §5: a REQUIRETLS message that found no compliant hop bounces as 5.7.30.
        o.enhanced = o.enhanced == "4.7.30" ? std::string("5.7.30") : std::string(kExpiredStatus);
        o.text = absl::StrCat("gave up after ", absl::FormatDuration(config_.max_queue_age),
                              "; last error: ", o.text);
        JournalFinal(*msg, i, FinalClass::kExpired);
        LogOutcome(*msg, i, DomainOf(msg->envelope.recipients[i]), o, now, "expired");
        ++summary_.expired;
        --summary_.deferred;  // counted as deferred when its outcome arrived
      }
    }
  }
  if (failures) WriteDsnFor(*msg, now);
  return f;
}

absl::StatusOr<std::string> Engine::ReadBody(const MessageRecord& msg) const {
  absl::StatusOr<std::string> file = spool_->ReadActive(msg.spool_name);
  if (!file.ok()) return file.status();
  if (file->size() != msg.file_size || file->size() < msg.envelope.body_offset) {
    return absl::DataLossError(absl::StrCat(config_.spool_dir, "/active/", msg.spool_name,
                                            ": changed while claimed (", file->size(),
                                            " bytes, claimed ", msg.file_size, ")"));
  }
  file->erase(0, msg.envelope.body_offset);
  return file;
}

// RFC 3464 DSN to the sender for bounced and expired recipients (none for the null sender).
uint32_t Engine::Tries(const MessageRecord& msg) const {
  auto it = tries_.find(msg.spool_name);
  return it == tries_.end() ? msg.envelope.attempts : std::max(it->second, msg.envelope.attempts);
}

void Engine::LogOutcome(const MessageRecord& msg, uint32_t idx, absl::string_view domain,
                        const RecipientOutcome& o, absl::Time now,
                        absl::string_view status_override) {
  LogRecord r;
  r.time = now;
  r.message_id = msg.spool_name;
  r.job = msg.envelope.job;
  r.envid = msg.envelope.envid;
  r.sender = msg.envelope.sender;
  r.recipient = msg.envelope.recipients[idx];
  r.domain = domain;
  r.outcome = &o;
  r.queue_time = now - msg.queued_at;
  r.attempt = static_cast<int>(Tries(msg)) + 1;
  r.status_override = status_override;
  // Every failure gets its class (engine/bounce_class.h); "expired" keeps its last error's.
  BounceClass klass = BounceClass::kOther;
  if (o.klass != DeliveryClass::kDelivered) {
    klass = bounce_classes_.Classify(o.code, o.enhanced, o.text);
    r.bounce_class = ToString(klass);
  }
  log_->Append(r);
  if (control_) control_->counters().OnOutcome(o, status_override, r.queue_time, klass);
}

void Engine::JournalFinal(const MessageRecord& msg, uint32_t idx, FinalClass final_class) {
  JournalRecord jr;
  jr.name = msg.spool_name;
  jr.generation = msg.envelope.attempts;  // the generation, not the tries
  jr.recipient = idx;
  jr.final_class = final_class;
  journal_->AppendFinal(jr);
}

void Engine::WriteDsnFor(const MessageRecord& msg, absl::Time now) {
  DsnReport report;
  report.reporting_mta = config_.helo_name;
  report.arrival = msg.queued_at;
  report.date = now;
  for (size_t i = 0; i < msg.envelope.recipients.size(); ++i) {
    if (msg.final_class[i] != DeliveryClass::kBounced) continue;
    const RecipientOutcome& o = msg.outcomes[i];
    DsnRecipient r;
    r.recipient = msg.envelope.recipients[i];
    r.action = DsnAction::kFailed;
    r.status = o.enhanced.empty() ? "5.0.0" : o.enhanced;
    r.diagnostic = o.code > 0 ? absl::StrCat("smtp; ", o.code, " ", o.text) : o.text;
    r.remote_mta = o.attempt.mx;
    r.last_attempt = now;
    report.recipients.push_back(std::move(r));
  }
  absl::StatusOr<std::string> body = ReadBody(msg);
  if (!body.ok()) {
    std::fprintf(stderr, "mxburst: DSN for %s: %s; the DSN goes without the message's header\n",
                 msg.spool_name.c_str(), std::string(body.status().message()).c_str());
  }
  std::optional<std::string> dsn = BuildDsn(body.ok() ? *body : "", msg.envelope, report);
  if (!dsn.has_value()) return;  // null sender: never a DSN
  // dsn = "spool": a null-sender pickup file in incoming/, delivered by this engine like any
  // other message (and, having the null sender, never the subject of another DSN).
  absl::Status s = WriteDsn(config_.spool_dir, DsnFileName(msg.spool_name, msg.envelope.attempts),
                            msg.envelope.sender, *dsn, config_.dsn_destination);
  if (!s.ok()) {
    std::fprintf(stderr, "mxburst: DSN for %s: %s\n", msg.spool_name.c_str(),
                 std::string(s.message()).c_str());
    return;
  }
  ++summary_.dsns;
}

}  // namespace mxb
