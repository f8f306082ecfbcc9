// DeadDestinations: the scanner's view of the destinations its workers found dead, and the
// messages for them that it defers itself, postponed behind all other mail.
//
// A destination (recipient domain, source pool) is dead when every next hop failed: for
// [timeouts] dead_destination_time its worker defers each new job "not tried" without a
// connection attempt (engine/destination.h). Sending that mail through the whole pipeline —
// rename into active/, read, encode for the wire, hand to the worker and back, rename into
// deferred/ — cost the scanner as much as healthy mail, so a dead backlog of 10,000 slowed the
// healthy domains next to it 3-5x (issue 10 item 4). Instead:
//  - the scanner learns dead destinations from the jobs that come back (DeliveryJob::dead_until,
//    set by the worker; the entry lapses with it, and the next message goes to the worker, which
//    tries the hosts again);
//  - while one is known, it reads only the envelope of each file before claiming it — on the
//    look-ahead thread (engine/envelope_looker.h), up to kLookAhead listed files ahead of the
//    claim, which hints the files whose every recipient's domain is dead: those are decided
//    only when no other fresh file is ready, so the scanner thread reaches the healthy mail in
//    a dead backlog first; a file whose every recipient goes to a dead destination is
//    postponed (it stays where it is, unclaimed; listings skip it);
//  - postponed files are deferred last, at low priority (Scanner::NextTask: one after every
//    kPostponedShare claims while other mail waits — postponements are not claims —, all of
//    them once none does or too many wait), with the worker's log text, straight from incoming/ to deferred/ (one rename, the
//    schedule in the file's retry mark, queue/spool.h) or, for a due retry, by moving only its
//    mark. Nothing is encoded, nothing is fsynced per message, no worker sees them.
// Like Postfix's qmgr, which defers a dead site's recipients without a delivery agent.
//
// Thread: the scanner thread only.
//
//   DeadDestinations dead(config.shaping.get());
//   dead.Learn(*job);                                  // each job back from a worker
//   if (auto text = dead.NotTried(envelope, now)) dead.Postpone({name, ..., *text, ...});
//   while (dead.has_postponed()) Defer(dead.PopPostponed());  // later; Release() once moved
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "engine/delivery.h"
#include "queue/envelope.h"
#include "queue/spool.h"

namespace mxb {

class ShapingTable;

// While other mail waits, one postponed deferral per this many claims (so a dead backlog is
// never starved by a steady stream of healthy mail, nor the reverse); every turn once
// max_messages_in_flight files are postponed (each holds its envelope in memory).
inline constexpr size_t kPostponedShare = 16;
// The envelope is read from the first kEnvelopeFirstBytes of the file, else (a longer envelope:
// many recipients) from at most kEnvelopeHeadBytes; a longer one still takes the normal path.
inline constexpr size_t kEnvelopeFirstBytes = 4 << 10;
inline constexpr size_t kEnvelopeHeadBytes = 64 << 10;

// A message postponed because every recipient's destination is dead.
struct PostponedFile {
  std::string name;
  bool from_incoming = true;  // else a due retry in deferred/
  Envelope envelope;          // parsed from the head of the file; no body
  uint32_t tries = 0;         // delivery passes before this one
  RetryMark mark;             // the schedule after this pass
};

class DeadDestinations {
 public:
  explicit DeadDestinations(const ShapingTable* shaping) : shaping_(shaping) {}

  // A job back from a worker: remembers its destination while DeliveryJob::dead_until lasts.
  void Learn(const DeliveryJob& job);
  // When every recipient of `env` goes to a destination dead at `now`: the outcome text
  // (NotTriedText of the first one's last failure). Forgets lapsed entries.
  std::optional<std::string> NotTried(const Envelope& env, absl::Time now);
  bool any() const { return !dead_.empty(); }
  // Retry now (engine/retry_now.cc): the workers forgot their dead destinations, so must we, or
  // the flushed messages would be deferred again without a try.
  void Forget() {
    dead_.clear();
    ++version_;
  }
  // The recipient domains of the dead destinations (any source pool), and a number that changes
  // whenever that set may have: the look-ahead thread's hint (engine/envelope_looker.h).
  std::vector<std::string> Domains() const;
  uint64_t version() const { return version_; }

  void Postpone(PostponedFile f);
  bool has_postponed() const { return !postponed_.empty(); }
  size_t postponed() const { return postponed_.size(); }
  PostponedFile PopPostponed();
  // A postponed file's name, until Release: listings of incoming/ skip it.
  bool Holds(absl::string_view name) const { return held_.contains(name); }
  void Release(const std::string& name) { held_.erase(name); }
  bool holds_any() const { return !held_.empty(); }

 private:
  struct Dead {
    absl::Time until;
    std::string reason;  // the last hop failure
  };
  // The worker's key (engine/worker.cc AcceptJob): "domain" or "domain POOL".
  std::string KeyOf(absl::string_view domain, const Envelope& env) const;

  const ShapingTable* const shaping_;  // source pools; nullptr = none
  absl::flat_hash_map<std::string, Dead> dead_;
  uint64_t version_ = 0;
  std::deque<PostponedFile> postponed_;
  absl::flat_hash_set<std::string> held_;
};

}  // namespace mxb
