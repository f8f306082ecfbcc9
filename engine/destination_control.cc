// The operator's side of a Destination (engine/destination.h, engine/control_plane.h): what a
// suspension by domain, MX suffix or job does to its jobs, the administrative bounce, retry-now.
// Worker thread, like the rest of Destination.
#include <algorithm>

#include "engine/control_plane.h"
#include "engine/destination.h"

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
  std::deque<DeliveryJob*> still;
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
  for (std::deque<DeliveryJob*>* q : {&queue_, &held_}) {
    for (auto it = q->begin(); it != q->end();) {
      DeliveryJob* job = *it;
      if (job->message->envelope.job == job_id) {
        it = q->erase(it);
        SetAllOutcomes(job, DeliveryClass::kBounced, 0, "5.0.0", reason, {});
        ctx_->host->Complete(job);
      } else {
        ++it;
      }
    }
  }
}

void Destination::ReleaseForStop() {
  for (DeliveryJob* job : held_) {
    SetAllOutcomes(job, DeliveryClass::kDeferred, 0, "4.3.2", "engine shutting down", {});
    ctx_->host->Complete(job);
  }
  held_.clear();
  if (Suspended()) FailQueue(DeliveryClass::kDeferred, 0, "4.3.2", "engine shutting down", {});
}

void Destination::Revive() {
  dead_until_ms_ = 0;
  hops_.ResetFailures();
}

}  // namespace mxb
