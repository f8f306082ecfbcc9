// The operator's side of a Destination (engine/destination.h, engine/control_plane.h): what a
// suspension by domain, MX suffix or job does to its jobs, the administrative bounce, retry-now,
// and the shaping rules SIGHUP reloaded (engine/reload.cc). Worker thread, like the rest of
// Destination.
#include <algorithm>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/control_plane.h"
#include "engine/destination.h"
#include "engine/shaping.h"

namespace mxb {

absl::Time Destination::oldest_queued_at() const {
  if (queue_.empty()) return held_.front()->message->queued_at;
  if (held_.empty()) return queue_.front()->message->queued_at;
  return std::min(queue_.front()->message->queued_at, held_.front()->message->queued_at);
}

const SuspensionEntry* Destination::Suspension() const {
  const Suspensions* s = ctx_->suspensions;
  if (s == nullptr) return nullptr;
  if (const SuspensionEntry* e = s->ForDomain(domain_, now())) return e;
  for (const Hop& h : hops_.hops) {
    if (const SuspensionEntry* e = s->ForMx(h.mx, now())) return e;
  }
  return nullptr;
}

bool Destination::HoldIfJobSuspended(DeliveryJob* job) {
  const Suspensions* s = ctx_->suspensions;
  if (s == nullptr || !s->any_jobs() || job->message->envelope.job.empty() ||
      s->ForJob(job->message->envelope.job, now()) == nullptr) {
    return false;
  }
  held_.push_back(job);
  return true;
}

void Destination::HoldSuspendedJobs() {
  for (auto it = queue_.begin(); it != queue_.end();) {
    DeliveryJob* job = *it;
    if (!job->message->envelope.job.empty() &&
        ctx_->suspensions->ForJob(job->message->envelope.job, now()) != nullptr) {
      held_.push_back(job);
      it = queue_.erase(it);
    } else {
      ++it;
    }
  }
}

void Destination::ReleaseHeldJobs() {
  JobQueue still;
  bool any = false;
  for (DeliveryJob* job : held_) {
    if (ctx_->suspensions->ForJob(job->message->envelope.job, now()) != nullptr) {
      still.push_back(job);
    } else {
      queue_.push_back(job);
      any = true;
    }
  }
  held_.swap(still);
  if (any) {
    ResumeIdle();
    if (NeedsResolve()) {
      Resolve();
    } else {
      Pump();
    }
  }
}

void Destination::BounceQueued(absl::string_view reason) {
  for (DeliveryJob* job : held_) queue_.push_back(job);
  held_.clear();
  FailQueue(DeliveryClass::kBounced, 0, "5.0.0", reason, {});
}

void Destination::BounceJob(absl::string_view job_id, absl::string_view reason) {
  auto bounce_in = [&](auto& q) {  // queue_ and held_
    for (auto it = q.begin(); it != q.end();) {
      DeliveryJob* job = *it;
      if (job->message->envelope.job == job_id) {
        it = q.erase(it);
        SetAllOutcomes(job, DeliveryClass::kBounced, 0, "5.0.0", reason, {});
        ctx_->host->Complete(job);
      } else {
        ++it;
      }
    }
  };
  bounce_in(queue_);
  bounce_in(held_);
}

void Destination::ReleaseForStop() {
  for (DeliveryJob* job : held_) {
    SetAllOutcomes(job, DeliveryClass::kDeferred, 0, "4.3.2", "engine shutting down", {});
    ctx_->host->Complete(job);
  }
  held_.clear();
  if (Suspended()) FailQueue(DeliveryClass::kDeferred, 0, "4.3.2", "engine shutting down", {});
}

void Destination::RebindShaping() {
  budget_ = ctx_->shaping->ForDomain(domain_);
  if (budget_ != nullptr) return;
  ShapingLimits own;
  own.backoff = ctx_->shaping->config().default_backoff;
  if (own_budget_ != nullptr) {
    const BackoffSettings& had = own_budget_->limits().backoff;
    if (had.enabled == own.backoff.enabled && had.after_4xx == own.backoff.after_4xx &&
        had.base == own.backoff.base && had.max == own.backoff.max) {
      budget_ = own_budget_.get();  // unchanged: keep its back-off state
      return;
    }
    retired_budgets_.push_back(std::move(own_budget_));
  }
  own_budget_ = std::make_unique<ShapingBudget>(absl::StrCat("domain ", domain_), own);
  budget_ = own_budget_.get();
}

void Destination::Apply(const ControlCommand& cmd) {
  const bool domain_match = !cmd.domain.empty() && domain_ == cmd.domain;
  switch (cmd.kind) {
    case ControlCommand::Kind::kSuspend:
      if (!cmd.job.empty()) HoldSuspendedJobs();
      break;
    case ControlCommand::Kind::kBounce:
      if (domain_match) BounceQueued(cmd.reason);
      if (!cmd.job.empty()) BounceJob(cmd.job, cmd.reason);
      break;
    case ControlCommand::Kind::kFlush:
      if (cmd.domain.empty() || domain_match) {
        Revive();
        Pump();
      }
      break;
    default:
      break;
  }
}

void Destination::Revive() {
  dead_until_ms_ = 0;
  hops_.ResetFailures();
}

}  // namespace mxb
