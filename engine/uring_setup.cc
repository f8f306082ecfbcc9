// Provided-buffer ring set-up by hand for liburing 2.3 (see buf_ring.h).
#include "engine/uring_setup.h"

#include <sys/mman.h>
#include <sys/resource.h>

#include <algorithm>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace mxb {

uint32_t DirectTableSize() {
  constexpr rlim_t kMaxPerRing = 1u << 16;
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  return static_cast<uint32_t>(std::min(rl.rlim_cur, kMaxPerRing));
}

absl::StatusOr<std::unique_ptr<ProvidedBufferRing>> ProvidedBufferRing::Create(
    io_uring* ring, uint16_t group, uint32_t count, uint32_t size) {
  if (count == 0 || count > 32768 || (count & (count - 1)) != 0 || size == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("provided buffer ring: ", count, " x ", size,
                     " bytes (count must be a power of two up to 32768)"));
  }
  std::unique_ptr<ProvidedBufferRing> r(new ProvidedBufferRing(group, count, size));
  r->ring_bytes_ = size_t{count} * sizeof(io_uring_buf);
  void* mem = mmap(nullptr, r->ring_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE,
                   -1, 0);
  if (mem == MAP_FAILED) {
    return absl::ResourceExhaustedError(absl::StrCat("mmap buffer ring: ", strerror(errno)));
  }
  r->ring_ = static_cast<io_uring_buf_ring*>(mem);
  // MAP_NORESERVE: the pages cost nothing until the kernel writes a receive into them.
  void* bufs = mmap(nullptr, size_t{count} * size, PROT_READ | PROT_WRITE,
                    MAP_ANONYMOUS | MAP_PRIVATE | MAP_NORESERVE, -1, 0);
  if (bufs == MAP_FAILED) {
    return absl::ResourceExhaustedError(absl::StrCat("mmap receive buffers: ", strerror(errno)));
  }
  r->buffers_ = static_cast<char*>(bufs);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uintptr_t>(mem);
  reg.ring_entries = count;
  reg.bgid = group;
  int ret = io_uring_register_buf_ring(ring, &reg, 0);
  if (ret != 0) {
    return absl::UnavailableError(
        absl::StrCat("io_uring_register_buf_ring: ", strerror(-ret)));
  }
  io_uring_buf_ring_init(r->ring_);
  for (uint32_t i = 0; i < count; ++i) r->Return(static_cast<uint16_t>(i));
  r->Publish();
  return r;
}

ProvidedBufferRing::~ProvidedBufferRing() {
  if (buffers_ != nullptr) munmap(buffers_, size_t{count_} * size_);
  if (ring_ != nullptr) munmap(ring_, ring_bytes_);
}

void ProvidedBufferRing::Return(uint16_t bid) {
  io_uring_buf_ring_add(ring_, Buffer(bid), size_, bid, io_uring_buf_ring_mask(count_),
                        static_cast<int>(pending_));
  ++pending_;
}

void ProvidedBufferRing::Publish() {
  if (pending_ == 0) return;
  io_uring_buf_ring_advance(ring_, static_cast<int>(pending_));
  pending_ = 0;
}

}  // namespace mxb
