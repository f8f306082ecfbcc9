// Retry schedule arithmetic and the deferred-message heap; rationale in retry_schedule.h.
#include "queue/retry_schedule.h"

#include <algorithm>
#include <functional>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace mxb {
namespace {

// Envelope lines are usually a few hundred bytes; 64 KiB covers thousands of recipients.
constexpr size_t kEnvelopeHead = 64 << 10;

}  // namespace

RetrySchedule::RetrySchedule()
    : RetrySchedule({absl::Minutes(5), absl::Minutes(10), absl::Minutes(20), absl::Minutes(40)},
                    absl::Minutes(60), absl::Hours(96)) {}

absl::StatusOr<RetrySchedule> RetrySchedule::Create(std::vector<absl::Duration> delays,
                                                    absl::Duration repeat,
                                                    absl::Duration max_age) {
  if (delays.empty()) return absl::InvalidArgumentError("retry schedule: no delays");
  for (size_t i = 0; i < delays.size(); ++i) {
    if (delays[i] <= absl::ZeroDuration() || delays[i] == absl::InfiniteDuration()) {
      return absl::InvalidArgumentError(absl::StrCat("retry schedule: delay ", i + 1, " is ",
                                                     absl::FormatDuration(delays[i]),
                                                     " (must be > 0 and finite)"));
    }
  }
  if (repeat <= absl::ZeroDuration() || repeat == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "retry schedule: repeat interval is ", absl::FormatDuration(repeat), " (must be > 0)"));
  }
  if (max_age <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "retry schedule: max age is ", absl::FormatDuration(max_age), " (must be > 0)"));
  }
  return RetrySchedule(std::move(delays), repeat, max_age);
}

absl::Duration RetrySchedule::DelayAfter(uint32_t attempt) const {
  if (attempt == 0) return absl::ZeroDuration();
  return attempt <= delays_.size() ? delays_[attempt - 1] : repeat_;
}

std::optional<absl::Time> RetrySchedule::NextAttempt(absl::Time first_attempt,
                                                     uint32_t attempts) const {
  absl::Duration offset = absl::ZeroDuration();
  const size_t listed = std::min<size_t>(attempts, delays_.size());
  for (size_t i = 0; i < listed; ++i) offset += delays_[i];
  if (attempts > delays_.size()) {
    offset += repeat_ * static_cast<int64_t>(attempts - delays_.size());
  }
  if (offset > max_age_) return std::nullopt;
  return first_attempt + offset;
}

std::optional<Envelope> PlanRetry(const Envelope& env, std::vector<std::string> pending,
                                  absl::Time attempt_started, const RetrySchedule& schedule) {
  Envelope next = env;
  next.recipients = std::move(pending);
  next.attempts = env.attempts + 1;
  if (next.first_attempt == 0) next.first_attempt = absl::ToUnixSeconds(attempt_started);
  const std::optional<absl::Time> at =
      schedule.NextAttempt(absl::FromUnixSeconds(next.first_attempt), next.attempts);
  if (!at) return std::nullopt;
  // Never schedule in the past (the engine was down, or attempts ran late): due now then.
  next.next_attempt = std::max(absl::ToUnixSeconds(*at), absl::ToUnixSeconds(attempt_started));
  return next;
}

void DeferredQueue::Schedule(const std::string& name, absl::Time due) {
  const uint64_t seq = next_seq_++;
  live_[name] = seq;
  heap_.push_back(Entry{due, seq, name});
  std::push_heap(heap_.begin(), heap_.end(), std::greater<Entry>());
  MaybeCompact();
}

bool DeferredQueue::Remove(const std::string& name) {
  const bool had = live_.erase(name) > 0;
  MaybeCompact();
  return had;
}

void DeferredQueue::DropStaleTop() {
  while (!heap_.empty()) {
    auto it = live_.find(heap_.front().name);
    if (it != live_.end() && it->second == heap_.front().seq) return;
    std::pop_heap(heap_.begin(), heap_.end(), std::greater<Entry>());
    heap_.pop_back();
  }
}

std::vector<std::string> DeferredQueue::PopDue(absl::Time now, size_t max) {
  std::vector<std::string> out;
  while (out.size() < max) {
    DropStaleTop();
    if (heap_.empty() || heap_.front().due > now) break;
    std::pop_heap(heap_.begin(), heap_.end(), std::greater<Entry>());
    live_.erase(heap_.back().name);
    out.push_back(std::move(heap_.back().name));
    heap_.pop_back();
  }
  return out;
}

void DeferredQueue::FlushAll(absl::Time now) {
  std::vector<std::string> names;
  names.reserve(live_.size());
  for (const auto& [name, seq] : live_) names.push_back(name);
  heap_.clear();
  live_.clear();
  for (const std::string& n : names) Schedule(n, now);
}

std::optional<absl::Time> DeferredQueue::NextDue() {
  DropStaleTop();
  if (heap_.empty()) return std::nullopt;
  return heap_.front().due;
}

void DeferredQueue::MaybeCompact() {
  // Lazy deletion leaves stale entries behind; rebuild once they dominate.
  if (heap_.size() < 1024 || heap_.size() < 2 * live_.size()) return;
  std::erase_if(heap_, [&](const Entry& e) {
    auto it = live_.find(e.name);
    return it == live_.end() || it->second != e.seq;
  });
  std::make_heap(heap_.begin(), heap_.end(), std::greater<Entry>());
}

size_t DeferredQueue::LoadFromSpool(const Spool& spool, absl::Time now) {
  size_t n = 0;
  for (const std::string& name : spool.ListDeferred()) {
    absl::Time due = now;
    // Deferred without a rewrite: the schedule is on the file (Spool::DeferUnchanged), newer
    // than the envelope's fields; no read needed.
    if (std::optional<RetryMark> mark = spool.ReadRetryMark("deferred", name); mark.has_value()) {
      Schedule(name, absl::FromUnixSeconds(mark->next_attempt));
      ++n;
      continue;
    }
    absl::StatusOr<std::string> head = spool.ReadDeferred(name, kEnvelopeHead);
    if (head.ok()) {
      absl::StatusOr<Envelope> env = ParseEnvelope(*head);
      if (!env.ok() && head->size() == kEnvelopeHead) {
        // The envelope did not fit in the head: read the whole file once.
        head = spool.ReadDeferred(name);
        if (head.ok()) env = ParseEnvelope(*head);
      }
      if (env.ok() && env->next_attempt != 0) due = absl::FromUnixSeconds(env->next_attempt);
    }
    Schedule(name, due);
    ++n;
  }
  return n;
}

}  // namespace mxb
