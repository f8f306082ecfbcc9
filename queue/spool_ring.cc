#include "queue/spool_ring.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace mxb {

absl::StatusOr<std::unique_ptr<SpoolRing>> SpoolRing::Create(unsigned capacity) {
  std::unique_ptr<SpoolRing> r(new SpoolRing);
  io_uring_params p{};
  // The CQ holds every operation in flight, so completions never overflow.
  p.flags = IORING_SETUP_CQSIZE;
  p.cq_entries = 2 * capacity;
  int rc = io_uring_queue_init_params(capacity, &r->ring_, &p);
  if (rc < 0) {
    return absl::UnavailableError(absl::StrCat("io_uring_queue_init: ", std::strerror(-rc)));
  }
  r->ready_ = true;
  // renameat is "bounded" io-wq work: one worker (see the header).
  unsigned workers[2] = {1, 0};
  (void)io_uring_register_iowq_max_workers(&r->ring_, workers);
  r->event_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (r->event_fd_ < 0 || io_uring_register_eventfd(&r->ring_, r->event_fd_) != 0) {
    return absl::UnavailableError(absl::StrCat("io_uring eventfd: ", std::strerror(errno)));
  }
  r->capacity_ = capacity;
  r->ops_.resize(capacity);
  for (uint32_t i = capacity; i > 0; --i) r->free_.push_back(i - 1);
  return r;
}

SpoolRing::~SpoolRing() {
  // The kernel copied the paths when the SQEs were submitted; exiting waits for its work.
  if (ready_) io_uring_queue_exit(&ring_);
  if (event_fd_ >= 0) close(event_fd_);
}

uint32_t SpoolRing::TakeSlot() {
  const uint32_t slot = free_.back();
  free_.pop_back();
  ++in_flight_;
  return slot;
}

void SpoolRing::Rename(std::string from, std::string to, uint64_t cookie) {
  const uint32_t slot = TakeSlot();
  Op& op = ops_[slot];
  op.a = std::move(from);
  op.b = std::move(to);
  op.cookie = cookie;
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) {  // cannot happen while in_flight <= SQ entries, but never lose an op
    Submit();
    sqe = io_uring_get_sqe(&ring_);
  }
  io_uring_prep_renameat(sqe, AT_FDCWD, op.a.c_str(), AT_FDCWD, op.b.c_str(), RENAME_NOREPLACE);
  io_uring_sqe_set_data64(sqe, slot);
  ++queued_;
}

void SpoolRing::Submit() {
  while (queued_ > 0) {
    const int n = io_uring_submit(&ring_);
    if (n == -EINTR) continue;
    if (n < 0) {
      // -EAGAIN/-ENOMEM: the kernel is short of memory for requests; try again at the next
      // call (the SQEs stay queued in the ring).
      return;
    }
    queued_ -= static_cast<size_t>(n) < queued_ ? static_cast<size_t>(n) : queued_;
    if (n == 0) return;
  }
}

size_t SpoolRing::Reap(absl::FunctionRef<void(uint64_t cookie, int res)> f) {
  uint64_t ignored;
  (void)!read(event_fd_, &ignored, sizeof ignored);
  if (queued_ > 0) Submit();
  size_t seen = 0;
  io_uring_cqe* cqe;
  while (io_uring_peek_cqe(&ring_, &cqe) == 0) {
    const uint32_t slot = static_cast<uint32_t>(io_uring_cqe_get_data64(cqe));
    const int res = cqe->res;
    io_uring_cqe_seen(&ring_, cqe);
    Op& op = ops_[slot];
    const uint64_t cookie = op.cookie;
    op.a.clear();
    op.b.clear();
    free_.push_back(slot);
    --in_flight_;
    ++seen;
    f(cookie, res);
  }
  return seen;
}

void SpoolRing::Drain(absl::FunctionRef<void(uint64_t cookie, int res)> f) {
  for (Submit(); queued_ > 0; Submit()) usleep(1000);  // the kernel was short of memory
  while (in_flight_ > 0) {
    io_uring_cqe* cqe;
    const int rc = io_uring_wait_cqe(&ring_, &cqe);
    if (rc < 0 && rc != -EINTR) return;  // nothing more will come
    Reap(f);
  }
}

}  // namespace mxb
