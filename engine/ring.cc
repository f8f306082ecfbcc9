// Ring (engine/ring.h): io_uring set-up and the SQE helpers shared by the engine and the sink.
#include "engine/ring.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace mxb {

absl::Status Ring::Init(unsigned entries, unsigned cq_entries) {
  // SINGLE_ISSUER + DEFER_TASKRUN: completions are processed only when this thread waits,
  // which batches task work (NOTES.md). Fall back for older kernels.
  int rc = -EINVAL;
  for (unsigned flags : {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
                         unsigned{IORING_SETUP_COOP_TASKRUN}, 0u}) {
    io_uring_params p{};
    p.flags = flags | IORING_SETUP_CQSIZE;
    p.cq_entries = cq_entries;
    rc = io_uring_queue_init_params(entries, &ring_, &p);
    if (rc == 0) break;
  }
  if (rc < 0) return absl::InternalError(absl::StrCat("io_uring_queue_init: ", strerror(-rc)));
  ready_ = true;
  return absl::OkStatus();
}

void Ring::Exit() {
  if (ready_) io_uring_queue_exit(&ring_);
  ready_ = false;
  bufs_.reset();  // after the ring: the kernel may write into a buffer until it is gone
}

io_uring_sqe* Ring::Sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  while (sqe == nullptr) {
    // SQ full in the middle of a batch: hand what we have to the kernel and retry.
    io_uring_submit(&ring_);
    sqe = io_uring_get_sqe(&ring_);
  }
  return sqe;
}

absl::Status Ring::RegisterDirectTable(uint32_t slots) {
  int rc = io_uring_register_files_sparse(&ring_, slots);
  if (rc != 0) return absl::UnavailableError(strerror(-rc));
  direct_slots_ = slots;
  return absl::OkStatus();
}

bool Ring::InstallDirect(uint32_t slot, int fd) {
  if (slot >= direct_slots_) return false;
  if (io_uring_register_files_update(&ring_, slot, &fd, 1) != 1) return false;
  close(fd);
  return true;
}

void Ring::PrepClose(io_uring_sqe* sqe, int fd, bool fixed) {
  if (fixed) {
    io_uring_prep_close_direct(sqe, static_cast<unsigned>(fd));
  } else {
    io_uring_prep_close(sqe, fd);
  }
}

absl::Status Ring::SetUpBuffers(uint16_t group, uint32_t count, uint32_t size) {
  auto b = ProvidedBufferRing::Create(&ring_, group, count, size);
  if (!b.ok()) return b.status();
  bufs_ = *std::move(b);
  return absl::OkStatus();
}

void Ring::PrepBufferedRecv(io_uring_sqe* sqe, int fd, bool fixed) {
  if (multishot_recv_) {
    io_uring_prep_recv_multishot(sqe, fd, nullptr, 0, 0);
  } else {
    io_uring_prep_recv(sqe, fd, nullptr, bufs_->buffer_size(), 0);
  }
  UseFd(sqe, fixed);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = bufs_->group();
}

}  // namespace mxb
