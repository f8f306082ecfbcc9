// MpscQueue<T>: bounded lock-free multi-producer single-consumer queue for cross-thread hand-off
// (scanner -> worker, worker -> scanner). Any thread may TryPush; exactly one thread may TryPop.
// Capacity is rounded up to a power of two (at least 2). No allocation after construction; T must
// be nothrow-move-constructible. A full queue returns false from TryPush (the caller applies
// back-pressure); it never blocks or spins on a slow consumer.
//
//   mxb::MpscQueue<Job*> q(4096);
//   if (!q.TryPush(job)) { /* full: retry later */ }
//   Job* j; while (q.TryPop(j)) Handle(j);
//
// Design (Dmitry Vyukov's bounded queue, specialised for one consumer): every cell carries a
// sequence number. A cell at index i is free for the producer holding ticket `pos` when
// seq == pos, and holds a value for the consumer at `pos` when seq == pos + 1. Producers reserve
// a ticket with a CAS on tail_, write the value, then publish it with a release store of
// seq = pos + 1; the consumer's acquire load of seq therefore sees the value. After taking the
// value, the consumer releases the cell for the next lap with seq = pos + capacity, which the
// producer one lap later acquires before it overwrites the slot. The tickets and the sequence
// numbers are the only synchronisation; no cell is ever read or written by two threads without
// a release/acquire pair between them.
//
// Progress: TryPush fails only if the cell for the next ticket has not been consumed yet (the
// queue is full, or the consumer is mid-pop on that very cell). TryPop fails only if the producer
// holding the next ticket has not published yet — so a producer pre-empted between its CAS and
// its publish makes the queue look empty to the consumer until it resumes (a property of every
// array-based Vyukov queue; items behind it are not lost, only delayed).
#pragma once

#include <atomic>
#include <bit>
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
  static_assert(std::is_nothrow_move_constructible_v<T>,
                "MpscQueue<T> needs a nothrow move constructor (no exceptions in queue/)");
  static_assert(std::is_nothrow_destructible_v<T>);

  // 64 bytes is the line size of every x86-64 and most arm64 parts we run on. Not
  // std::hardware_destructive_interference_size: GCC warns that its value is ABI-unstable.
  static constexpr size_t kCacheLine = 64;

  struct Cell {
    std::atomic<size_t> seq;
    alignas(T) unsigned char storage[sizeof(T)];

    T* value() { return std::launder(reinterpret_cast<T*>(storage)); }
  };

  // Vyukov's scheme needs at least two cells: with one, the sequence a producer publishes
  // (pos + 1) equals the next producer's ticket and it would overwrite an unread value.
  static size_t RoundCapacity(size_t requested) {
    if (requested < 2) return 2;
    return std::bit_ceil(requested);
  }

  const size_t mask_;
  const std::unique_ptr<Cell[]> cells_;
  // Producers' ticket counter; contended by every producer, so it gets a line of its own.
  alignas(kCacheLine) std::atomic<size_t> tail_{0};
  // Consumer's next ticket. Only the consumer writes it; atomic so SizeApprox can read it.
  // alignas also rounds sizeof(MpscQueue) up, so nothing placed after the object shares this line.
  alignas(kCacheLine) std::atomic<size_t> head_{0};
};

template <typename T>
MpscQueue<T>::MpscQueue(size_t capacity)
    : mask_(RoundCapacity(capacity) - 1), cells_(new Cell[mask_ + 1]) {
  // Cell i is free for ticket i on the first lap. Construction happens before the queue is
  // shared, so relaxed stores suffice; handing the queue to another thread publishes them.
  for (size_t i = 0; i <= mask_; ++i) cells_[i].seq.store(i, std::memory_order_relaxed);
}

template <typename T>
MpscQueue<T>::~MpscQueue() {
  // No other thread may touch the queue now; destroy the values still in it.
  if constexpr (!std::is_trivially_destructible_v<T>) {
    size_t pos = head_.load(std::memory_order_relaxed);
    for (;;) {
      Cell& cell = cells_[pos & mask_];
      if (cell.seq.load(std::memory_order_acquire) != pos + 1) break;
      cell.value()->~T();
      ++pos;
    }
  }
}

template <typename T>
bool MpscQueue<T>::TryPush(T value) {
  size_t pos = tail_.load(std::memory_order_relaxed);
  Cell* cell;
  for (;;) {
    cell = &cells_[pos & mask_];
    // Acquire pairs with the consumer's release in TryPop: the previous lap's value has been
    // moved out and destroyed before we construct over it.
    const size_t seq = cell->seq.load(std::memory_order_acquire);
    const auto diff = static_cast<std::intptr_t>(seq) - static_cast<std::intptr_t>(pos);
    if (diff == 0) {
      // The cell is free for ticket `pos`; claim the ticket. Relaxed is enough: the ticket only
      // arbitrates between producers, the cell's seq carries the data hand-off.
      if (tail_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed,
                                      std::memory_order_relaxed)) {
        break;
      }
      // CAS failure reloaded `pos`; retry with the new ticket.
    } else if (diff < 0) {
      // The cell still holds the value from one lap ago: full.
      return false;
    } else {
      // Another producer took this ticket and already published; catch up.
      pos = tail_.load(std::memory_order_relaxed);
    }
  }
  ::new (static_cast<void*>(cell->storage)) T(std::move(value));
  // Release publishes the constructed value to the consumer's acquire in TryPop.
  cell->seq.store(pos + 1, std::memory_order_release);
  return true;
}

template <typename T>
bool MpscQueue<T>::TryPop(T& out) {
  const size_t pos = head_.load(std::memory_order_relaxed);
  Cell& cell = cells_[pos & mask_];
  // Acquire pairs with the producer's release: the value is fully constructed.
  if (cell.seq.load(std::memory_order_acquire) != pos + 1) return false;
  T* value = cell.value();
  out = std::move(*value);
  value->~T();
  // Release hands the now-empty cell to the producer holding ticket pos + capacity.
  cell.seq.store(pos + mask_ + 1, std::memory_order_release);
  head_.store(pos + 1, std::memory_order_relaxed);
  return true;
}

template <typename T>
size_t MpscQueue<T>::SizeApprox() const {
  // Two independent relaxed loads: a snapshot that may be stale by the time it is used, and may
  // briefly count reserved-but-unpublished cells. Clamped so a racing read never underflows.
  const size_t head = head_.load(std::memory_order_relaxed);
  const size_t tail = tail_.load(std::memory_order_relaxed);
  if (tail <= head) return 0;
  const size_t size = tail - head;
  return size > mask_ + 1 ? mask_ + 1 : size;
}

}  // namespace mxb
