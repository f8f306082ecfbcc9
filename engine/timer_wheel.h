// TimerWheel: per-worker hashed timing wheel for reply and idle deadlines (one thread).
//
// Entries are {slot, generation, deadline}; nothing is ever removed early — a connection that
// closes just leaves a stale entry, which Advance() drops when the owner says it no longer
// matches. Insert and expiry are O(1); deadlines past one revolution wait extra rounds.
// WheelDeadline (below) is one owner's re-armable deadline on the wheel: it keeps at most one
// entry queued per owner however often the deadline moves (every SMTP reply moves it).
//
//   TimerWheel w(/*tick_ms=*/100);
//   w.Insert(slot, gen, now_ms + 300000);
//   w.Advance(now_ms, [&](uint32_t slot, uint32_t gen, int64_t deadline) { ... });
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace mxb {

class TimerWheel {
 public:
  explicit TimerWheel(int64_t tick_ms, size_t buckets = 1024)
      : tick_ms_(tick_ms), buckets_(buckets) {}

  void Start(int64_t now_ms) { current_ = now_ms / tick_ms_; }

  void Insert(uint32_t slot, uint32_t gen, int64_t deadline_ms) {
    int64_t tick = deadline_ms / tick_ms_;
    if (tick <= current_) tick = current_ + 1;
    buckets_[static_cast<size_t>(tick) % buckets_.size()].push_back({slot, gen, deadline_ms});
    ++size_;
  }

  // Calls fire(slot, gen, deadline) for every entry whose deadline is <= now_ms.
  template <typename Fire>
  void Advance(int64_t now_ms, Fire&& fire) {
    int64_t target = now_ms / tick_ms_;
    while (current_ < target && size_ > 0) {
      ++current_;
      std::vector<Entry>& bucket = buckets_[static_cast<size_t>(current_) % buckets_.size()];
      if (bucket.empty()) continue;
      std::vector<Entry> due;
      due.swap(bucket);
      for (const Entry& e : due) {
        if (e.deadline_ms / tick_ms_ > current_) {
          bucket.push_back(e);  // a later revolution
        } else {
          --size_;
          fire(e.slot, e.gen, e.deadline_ms);
        }
      }
    }
    if (current_ < target) current_ = target;
  }

  size_t size() const { return size_; }
  // Inside Advance's fire callback (or after it): `deadline_ms` falls in a tick already reached,
  // so an entry for it would have fired by now.
  bool Due(int64_t deadline_ms) const { return deadline_ms / tick_ms_ <= current_; }

 private:
  struct Entry {
    uint32_t slot;
    uint32_t gen;
    int64_t deadline_ms;
  };
  int64_t tick_ms_;
  int64_t current_ = 0;
  size_t size_ = 0;
  std::vector<std::vector<Entry>> buckets_;
};

// One owner's re-armable deadline ({slot, gen} on `wheel`), for a connection's reply and idle
// deadlines. Re-arming after each reply used to insert an entry each time, and the stale ones
// stayed until their own deadline (5-10 minutes): ~5 per message, millions per worker at 10k
// msgs/s, all walked by Advance. Now the wheel holds the entry of the earliest deadline asked
// for since the last one fired: an earlier deadline queues a new entry, a later one only updates
// armed_ms_ and is queued again when the queued entry fires (OnFired). Only the newest entry is
// live; older ones wait out their time but each is for a shorter timeout than the one before it
// (a later time plus a shorter timeout), so an owner has a few entries, never one per reply.
// Deadlines still fire in their own tick.
//
//   WheelDeadline d;                     // reset with `d = WheelDeadline()` for a new owner
//   d.Arm(&wheel, slot, gen, now + 300000);
//   ... in the fire callback: if (d.OnFired(&wheel, slot, gen, deadline)) { timed out }
class WheelDeadline {
 public:
  // The deadline is now `at_ms` (0 = none).
  void Arm(TimerWheel* wheel, uint32_t slot, uint32_t gen, int64_t at_ms) {
    armed_ms_ = at_ms;
    if (at_ms == 0 || (queued_ms_ != 0 && queued_ms_ <= at_ms)) return;  // fires first
    queued_ms_ = at_ms;
    wheel->Insert(slot, gen, at_ms);
  }
  void Disarm() { armed_ms_ = 0; }
  // A wheel entry of this owner fired for `fired_ms`. True: the armed deadline has passed (its
  // tick is reached). Otherwise the entry was superseded by an earlier one, or the deadline
  // moved later and is queued again now.
  bool OnFired(TimerWheel* wheel, uint32_t slot, uint32_t gen, int64_t fired_ms) {
    if (fired_ms != queued_ms_) return false;  // an earlier entry replaced it
    queued_ms_ = 0;
    if (armed_ms_ == 0) return false;
    if (wheel->Due(armed_ms_)) return true;
    Arm(wheel, slot, gen, armed_ms_);
    return false;
  }
  int64_t armed_ms() const { return armed_ms_; }

 private:
  int64_t armed_ms_ = 0;   // the deadline asked for; 0 = none
  int64_t queued_ms_ = 0;  // the deadline of this owner's live entry in the wheel; 0 = none
};

}  // namespace mxb
