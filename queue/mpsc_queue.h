// MpscQueue<T>: bounded lock-free multi-producer single-consumer queue for cross-thread hand-off
// (scanner -> worker, worker -> scanner). Any thread may TryPush; exactly one thread may TryPop.
// Capacity is rounded up to a power of two. No allocation after construction; T must be
// nothrow-move-constructible. A full queue returns false from TryPush (the caller applies
// back-pressure); it never blocks or spins on a slow consumer.
//
//   mxb::MpscQueue<Job*> q(4096);
//   if (!q.TryPush(job)) { /* full: retry later */ }
//   Job* j; while (q.TryPop(j)) Handle(j);
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <optional>
#include <type_traits>
#include <utility>

namespace mxb {

template <typename T>
class MpscQueue {
 public:
  explicit MpscQueue(size_t capacity);
  ~MpscQueue();
  MpscQueue(const MpscQueue&) = delete;
  MpscQueue& operator=(const MpscQueue&) = delete;

  // Any thread. False when full.
  [[nodiscard]] bool TryPush(T value);
  // Consumer thread only. False when empty.
  [[nodiscard]] bool TryPop(T& out);
  // Approximate; any thread.
  size_t SizeApprox() const;
  size_t capacity() const { return mask_ + 1; }

 private:
  // (implementation: helper fills in — Vyukov-style sequence-numbered cells)
  size_t mask_ = 0;
};

}  // namespace mxb
