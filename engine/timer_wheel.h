// TimerWheel: per-worker hashed timing wheel for reply and idle deadlines (one thread).
//
// Entries are {slot, generation, deadline}; nothing is ever removed early — a connection that
// re-arms or closes just leaves a stale entry, which Advance() drops when the owner says it no
// longer matches. Insert and expiry are O(1); deadlines past one revolution wait extra rounds.
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

}  // namespace mxb
