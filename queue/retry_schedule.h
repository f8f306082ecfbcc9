// Retry timing for deferred messages (DESIGN.md "Delivery behaviour users expect").
//
// RetrySchedule: when the next delivery attempt of a deferred message is due. Attempt times are
// measured from the first attempt: after attempt n (1-based) the next one is at
//   first + delays[0] + ... + delays[min(n, k) - 1] + max(0, n - k) * repeat
// (default delays 5m, 10m, 20m, 40m, then every 60m). RFC 5321 §4.5.4.1: retry at least 30
// minutes apart after the first tries and give up after at least 4-5 days; the default max age
// is 4 days. If the next attempt would fall after first + max_age, NextAttempt returns nullopt:
// the message expires now (every pending recipient becomes "expired" and gets a DSN with
// Status 4.4.7, RFC 3463 "delivery time expired"). Immutable after construction; any thread.
//
// DeferredQueue: the deferred messages of spool/deferred/ by due time, in memory, so the engine
// never scans the directory per tick. Loaded once at start (LoadFromSpool reads each file's
// envelope head for x-next-attempt), then fed by Schedule() whenever the engine defers a
// message; PopDue(now) returns the names to Spool::Requeue. Owned by the scanner thread.
//
// Why a binary min-heap rather than a timing wheel: due times spread from 5 minutes to 4 days
// and must come out in order at one-second resolution. A single-level wheel covering 4 days at
// 1 s needs 345,600 slots (or a hierarchy with cascading); at 1-minute slots it still has to
// sort inside a slot. The heap is exact, has no tick to drive, costs O(log n) per operation
// (about 20 comparisons at a million deferred messages), and every pop is followed by a
// rename(2) that costs far more. Removal and rescheduling are lazy: a name -> sequence map marks
// the live heap entry; stale entries are skipped when popped and the heap is rebuilt when they
// outnumber the live ones.
//
//   RetrySchedule schedule;                                   // defaults
//   std::optional<Envelope> next = PlanRetry(env, pending, attempt_start, schedule);
//   if (!next) { expire: journal kExpired + DSN; Complete } else {
//     spool.Defer(name, SerializeEnvelope(*next, body));
//     deferred.Schedule(name, absl::FromUnixSeconds(next->next_attempt)); }
//   for (const std::string& name : deferred.PopDue(absl::Now())) spool.Requeue(name);
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "queue/envelope.h"
#include "queue/spool.h"

namespace mxb {

class RetrySchedule {
 public:
  // 5m, 10m, 20m, 40m, then hourly; give up after 4 days.
  RetrySchedule();
  // Every duration must be > 0 and delays non-empty; max_age > 0. Errors name the bad value.
  [[nodiscard]] static absl::StatusOr<RetrySchedule> Create(std::vector<absl::Duration> delays,
                                                           absl::Duration repeat,
                                                           absl::Duration max_age);

  // The time of attempt attempts+1, given the first attempt's time and the number of attempts
  // made so far; nullopt when it would be later than GiveUpTime (expire now). attempts == 0 is
  // "never attempted": due at first_attempt.
  std::optional<absl::Time> NextAttempt(absl::Time first_attempt, uint32_t attempts) const;
  // The wait after attempt n (1-based) before attempt n+1.
  absl::Duration DelayAfter(uint32_t attempt) const;
  absl::Time GiveUpTime(absl::Time first_attempt) const { return first_attempt + max_age_; }

  const std::vector<absl::Duration>& delays() const { return delays_; }
  absl::Duration repeat() const { return repeat_; }
  absl::Duration max_age() const { return max_age_; }

 private:
  RetrySchedule(std::vector<absl::Duration> delays, absl::Duration repeat, absl::Duration max_age)
      : delays_(std::move(delays)), repeat_(repeat), max_age_(max_age) {}
  std::vector<absl::Duration> delays_;
  absl::Duration repeat_;
  absl::Duration max_age_;
};

// The envelope to write to deferred/ after a delivery pass that left `pending` recipients:
// attempts + 1 (the generation, see queue/envelope.h), x-first-attempt kept or set to
// `attempt_started`, x-next-attempt from the schedule. nullopt: the message has expired.
std::optional<Envelope> PlanRetry(const Envelope& env, std::vector<std::string> pending,
                                  absl::Time attempt_started, const RetrySchedule& schedule);

class DeferredQueue {
 public:
  // Adds `name` due at `due`, or moves it there if already queued.
  void Schedule(const std::string& name, absl::Time due);
  // Forgets `name` (e.g. flushed by hand). False if it was not queued.
  bool Remove(const std::string& name);
  // Names due at or before `now`, earliest first, at most `max`; they leave the queue.
  std::vector<std::string> PopDue(absl::Time now, size_t max = SIZE_MAX);
  // Makes everything due at `now` (mxburstctl flush).
  void FlushAll(absl::Time now);
  // Earliest due time, for the scanner's poll timeout; nullopt when empty.
  std::optional<absl::Time> NextDue();
  size_t size() const { return live_.size(); }
  bool empty() const { return live_.empty(); }

  // Start-up: schedules every file of spool/deferred/ at its retry mark's next attempt
  // (Spool::ReadRetryMark), else at its x-next-attempt (or `now` when the
  // field is absent or the file cannot be read or parsed: the claim then quarantines it).
  // Returns the number scheduled. Reads only the envelope head of each file.
  size_t LoadFromSpool(const Spool& spool, absl::Time now);

 private:
  struct Entry {
    absl::Time due;
    uint64_t seq;
    std::string name;
    bool operator>(const Entry& o) const { return due != o.due ? due > o.due : seq > o.seq; }
  };
  void DropStaleTop();
  void MaybeCompact();

  // A min-heap by (due, seq) under std::push_heap/pop_heap with std::greater.
  std::vector<Entry> heap_;
  absl::flat_hash_map<std::string, uint64_t> live_;  // name -> seq of its live heap entry
  uint64_t next_seq_ = 1;
};

}  // namespace mxb
