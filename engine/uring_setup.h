// io_uring resources shared by the engine's workers and mxburst-sink's: the provided-buffer ring
// for receives and the size of a ring's registered file table (direct descriptors).
//
// ProvidedBufferRing: the receive buffers of one io_uring, shared by all its connections.
//
// A provided-buffer ring (IORING_REGISTER_PBUF_RING, kernel 5.19+) of `count` buffers of `size`
// bytes, registered as buffer group `group`. A recv with IOSQE_BUFFER_SELECT (single or
// multishot) takes a buffer only when data arrives, so an idle connection pins no receive memory;
// the buffer id comes back in the CQE flags. The owner hands each buffer back with Return() as
// soon as its bytes are parsed or copied (into TLS), and makes the returns visible to the kernel
// with one Publish() per completion batch (one release store, not one per buffer).
// liburing 2.3 has no io_uring_setup_buf_ring() (2.4): the ring and the buffers are mmap()ed
// here and registered by hand. Buffer memory becomes resident only as the kernel fills it.
//
// Thread: the thread that owns the io_uring. Destroy it after io_uring_queue_exit() (the kernel
// may write into a buffer until the ring is gone).
//
//   auto bufs = ProvidedBufferRing::Create(&ring, /*group=*/1, 1024, 4096);
//   if (!bufs.ok()) ... fall back to per-connection buffers ...
//   sqe->flags |= IOSQE_BUFFER_SELECT; sqe->buf_group = (*bufs)->group();
//   ... on a CQE: if (auto bid = ProvidedBufferRing::BufferId(cqe)) {
//         Consume((*bufs)->Buffer(*bid), cqe->res); (*bufs)->Return(*bid); }
//   ... after the batch: (*bufs)->Publish();
#pragma once

#include <liburing.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>

#include "absl/status/statusor.h"

namespace mxb {

// Slots of one ring's sparse registered file table: min(RLIMIT_NOFILE soft limit, 65536). The
// kernel refuses a larger table (EMFILE), but direct descriptors do not count against the limit,
// so N rings hold N times as many sockets as one process could open as regular descriptors.
uint32_t DirectTableSize();

class ProvidedBufferRing {
 public:
  // `count` must be a power of two (at most 32768), `size` > 0. The error names the call that
  // failed (EINVAL from io_uring_register_buf_ring means the kernel has no buffer rings).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<ProvidedBufferRing>> Create(
      io_uring* ring, uint16_t group, uint32_t count, uint32_t size);
  ~ProvidedBufferRing();
  ProvidedBufferRing(const ProvidedBufferRing&) = delete;
  ProvidedBufferRing& operator=(const ProvidedBufferRing&) = delete;

  // The buffer id a CQE carries (IORING_CQE_F_BUFFER), if any.
  static std::optional<uint16_t> BufferId(const io_uring_cqe* cqe) {
    if ((cqe->flags & IORING_CQE_F_BUFFER) == 0) return std::nullopt;
    return static_cast<uint16_t>(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
  }

  char* Buffer(uint16_t bid) const { return buffers_ + size_t{bid} * size_; }
  uint32_t buffer_size() const { return size_; }
  uint32_t count() const { return count_; }
  uint16_t group() const { return group_; }

  // Queues buffer `bid` for the kernel again; visible after Publish().
  void Return(uint16_t bid);
  void Publish();
  // Buffers handed to the kernel and not yet returned to it by us (for tests and stats).
  uint32_t unpublished() const { return pending_; }

 private:
  ProvidedBufferRing(uint16_t group, uint32_t count, uint32_t size)
      : group_(group), count_(count), size_(size) {}

  uint16_t group_;
  uint32_t count_;
  uint32_t size_;
  io_uring_buf_ring* ring_ = nullptr;
  size_t ring_bytes_ = 0;
  char* buffers_ = nullptr;
  uint32_t pending_ = 0;  // Return()ed since the last Publish()
};

}  // namespace mxb
