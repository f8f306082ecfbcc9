// The scanner's side of dead destinations (engine/dead_destinations.h): mail whose every
// recipient's destination is dead is postponed without a claim, deferred last, and moved to
// deferred/ after its log records are durable. Engine members; the rest of the scanner is in
// engine.cc.
#include <algorithm>
#include <cstdio>

#include "engine/engine.h"
#include "queue/envelope.h"

namespace mxb {

bool Engine::Postpone(const std::string& name, bool incoming) {
  // Without extended attributes every deferral is a rewrite: nothing to save, the normal path.
  if (!wants_looks()) return false;
  EnvelopeLook look =
      LookAtEnvelope(*spool_, incoming ? "incoming" : "deferred", name, &head_scratch_);
  summary_.envelope_reads += look.reads;
  return PostponeLooked(name, incoming, std::move(look));
}

bool Engine::PostponeLooked(const std::string& name, bool incoming, EnvelopeLook look) {
  // The destination may have come back to life since the look (then the claim takes it).
  if (!wants_looks()) return false;
  // Unreadable, bad, or longer than kEnvelopeHeadBytes: the normal path (the claim reports it).
  if (!look.envelope.ok()) return false;
  const absl::Time now = absl::Now();
  absl::StatusOr<Envelope>& env = look.envelope;
  std::optional<RetryMark>& mark = look.mark;
  std::optional<std::string> text = dead_.NotTried(*env, now);
  if (!text.has_value()) return false;
  // The schedule counts passes as the normal path does (Dispatch + PlanFinish): the retry mark
  // when it is ahead of the envelope's generation.
  if (mark.has_value()) {
    env->attempts = std::max(env->attempts, mark->attempts);
    if (env->first_attempt == 0) env->first_attempt = mark->first_attempt;
  }
  std::optional<Envelope> next = PlanRetry(*env, env->recipients, now, schedule_);
  if (!next.has_value()) return false;  // gives up now: expiry and its DSN go the normal way
  PostponedFile p;
  p.name = name;
  p.from_incoming = incoming;
  p.tries = env->attempts;
  p.mark = {next->attempts, next->first_attempt, next->next_attempt};
  p.envelope = *std::move(env);
  dead_.Postpone(std::move(p));
  return true;
}

void Engine::DeferOnePostponed() {
  const absl::Time now = absl::Now();
  PostponedFile p = dead_.PopPostponed();
  std::optional<std::string> text = dead_.NotTried(p.envelope, now);
  if (!text.has_value()) {
    // The destination's dead time is over: the normal claim hands it to its worker, which
    // tries the next hops again.
    dead_.Release(p.name);
    scanner_->Requeue(std::move(p.name), p.from_incoming);
    return;
  }
  MessageRecord m;
  m.spool_name = p.name;
  m.envelope = std::move(p.envelope);
  m.envelope.attempts = p.tries;  // logged as attempt tries + 1, like the worker's deferral
  m.queued_at = now;
  // The worker's "not tried" outcome (engine/destination.cc Accept), word for word.
  RecipientOutcome o;
  o.klass = DeliveryClass::kDeferred;
  o.enhanced = "4.4.1";
  o.text = *std::move(text);
  for (uint32_t i = 0; i < m.envelope.recipients.size(); ++i) {
    LogOutcome(m, i, DomainOf(m.envelope.recipients[i]), o, now);
    ++summary_.deferred;
  }
  ++summary_.messages;
  ++summary_.not_tried_by_scanner;
  if (p.from_incoming) intake_.claimed_incoming.fetch_add(1, std::memory_order_relaxed);
  moves_.push_back({std::move(p.name), p.from_incoming, p.mark});
}

absl::Status Engine::MovePostponed(absl::Time now) {
  std::vector<PostponedMove> retry;
  absl::Status first_error;
  for (PostponedMove& m : moves_) {
    absl::Status s =
        xattr_ok_ ? spool_->DeferUnchanged(m.name, m.mark, m.from_incoming ? "incoming" : "deferred")
                  : absl::UnimplementedError("no user extended attributes");
    if (absl::IsResourceExhausted(s) || absl::IsUnavailable(s)) {
      if (first_error.ok()) first_error = s;  // disk full: kept, retried with the back-off
      retry.push_back(std::move(m));
      continue;
    }
    dead_.Release(m.name);
    if (absl::IsUnimplemented(s)) {
      // This file system has no user attributes: the file stays where it is and takes the
      // normal path (a rewrite) next time.
      if (xattr_ok_) {
        xattr_ok_ = false;
        std::fprintf(stderr, "mxburst: %s: deferrals rewrite the file\n",
                     std::string(s.message()).c_str());
      }
      if (!m.from_incoming && !config_.drain) deferred_.Schedule(m.name, now);
      continue;
    }
    if (!s.ok()) {
      std::fprintf(stderr, "mxburst: %s\n", std::string(s.message()).c_str());
      continue;
    }
    if (!config_.drain) deferred_.Schedule(m.name, absl::FromUnixSeconds(m.mark.next_attempt));
  }
  moves_ = std::move(retry);
  return first_error;
}

}  // namespace mxb
