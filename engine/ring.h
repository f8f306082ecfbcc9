// Ring: one thread's io_uring, with what every ring of ours needs — set-up with the flag
// fallbacks, Sqe() that submits when the submission queue is full, the registered file table
// (direct descriptors) and the provided-buffer ring for receives (engine/uring_setup.h). The
// engine's workers (engine/worker.cc, engine/connection.cc) and mxburst-sink's
// (tools/sink/sink_worker.cc) use this one class; user_data is a BasicUringTag
// (engine/uring_tag.h).
//
// Owns: the io_uring, its file table registration, its ProvidedBufferRing (destroyed after the
// ring exits: the kernel may write into a buffer until then) and the "multishot recv works"
// flag (cleared on the first EINVAL, kernels < 6.0).
//
// Thread: the thread that calls Init() is the only one that may use it afterwards
// (IORING_SETUP_SINGLE_ISSUER binds the ring to its creator).
//
//   Ring ring;
//   if (auto s = ring.Init(4096, 32768); !s.ok()) ...
//   (void)ring.RegisterDirectTable(DirectTableSize());   // !ok: regular descriptors
//   (void)ring.SetUpBuffers(/*group=*/1, 1024, 4096);     // !ok: own receive buffers
//   io_uring_sqe* sqe = ring.Sqe();
//   ring.PrepBufferedRecv(sqe, fd, fixed);
//   Ring::SetTag(sqe, UringTag{UringOp::kRecv, gen, slot});
//   ring.SubmitAndWait(1);
//   ring.ForEachCompletion([&](io_uring_cqe* cqe) { Dispatch(cqe); });   // also Publish()es
#pragma once

#include <liburing.h>

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "engine/uring_setup.h"
#include "engine/uring_tag.h"

namespace mxb {

class Ring {
 public:
  Ring() = default;
  ~Ring() { Exit(); }
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  // SINGLE_ISSUER + DEFER_TASKRUN, else COOP_TASKRUN, else no flags (older kernels); always
  // IORING_SETUP_CQSIZE = `cq_entries` (tens of thousands of sessions complete in bursts; the
  // kernel would otherwise park the excess on its slower overflow list).
  // Error: "io_uring_queue_init: <errno text>".
  [[nodiscard]] absl::Status Init(unsigned entries, unsigned cq_entries);
  // io_uring_queue_exit(), then the buffer ring. Idempotent; the destructor calls it.
  void Exit();
  bool ready() const { return ready_; }
  io_uring* raw() { return &ring_; }

  // A free SQE; when the submission queue is full, what is queued is submitted first.
  io_uring_sqe* Sqe();
  template <typename Op>
  static void SetTag(io_uring_sqe* sqe, BasicUringTag<Op> tag) {
    io_uring_sqe_set_data64(sqe, tag.Encode());
  }
  int Submit() { return io_uring_submit(&ring_); }
  int SubmitAndWait(unsigned n) { return io_uring_submit_and_wait(&ring_, n); }
  // Calls f(cqe) for every completion ready now, advances the CQ past them and hands the
  // receive buffers returned meanwhile back to the kernel (one release store per batch).
  template <typename F>
  unsigned ForEachCompletion(F&& f) {
    unsigned head;
    unsigned seen = 0;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      f(cqe);
      ++seen;
    }
    io_uring_cq_advance(&ring_, seen);
    if (bufs_ != nullptr) bufs_->Publish();
    return seen;
  }

  // --- direct descriptors: a sparse registered file table of `slots` entries -----------------
  // Error: the errno text of io_uring_register_files_sparse (the caller says what it falls back
  // to). Direct descriptors do not count against RLIMIT_NOFILE.
  [[nodiscard]] absl::Status RegisterDirectTable(uint32_t slots);
  uint32_t direct_slots() const { return direct_slots_; }  // 0 = no table
  // Installs regular descriptor `fd` at table index `slot` and closes `fd` (bind() and
  // setsockopt() need the regular one first). False: no table or past its end; `fd` is kept.
  bool InstallDirect(uint32_t slot, int fd);
  static void UseFd(io_uring_sqe* sqe, bool fixed) {
    if (fixed) sqe->flags |= IOSQE_FIXED_FILE;
  }
  // close(2) of a regular descriptor, or of table slot `fd` (frees the slot).
  static void PrepClose(io_uring_sqe* sqe, int fd, bool fixed);

  // --- receive buffers: one provided-buffer ring shared by every connection of this ring -----
  [[nodiscard]] absl::Status SetUpBuffers(uint16_t group, uint32_t count, uint32_t size);
  ProvidedBufferRing* buffers() const { return bufs_.get(); }
  // A recv that takes a provided buffer when data arrives: multishot while the kernel supports
  // it (armed across completions until a CQE without IORING_CQE_F_MORE), else one-shot.
  // Requires SetUpBuffers().
  void PrepBufferedRecv(io_uring_sqe* sqe, int fd, bool fixed);
  bool multishot_recv() const { return multishot_recv_; }
  void DisableMultishotRecv() { multishot_recv_ = false; }
  // Hands back the buffer a CQE carries, if any (completions nobody consumes: stale ones).
  void ReturnBuffer(const io_uring_cqe* cqe) {
    if (auto bid = ProvidedBufferRing::BufferId(cqe); bid && bufs_ != nullptr) bufs_->Return(*bid);
  }

 private:
  io_uring ring_{};
  bool ready_ = false;
  uint32_t direct_slots_ = 0;
  std::unique_ptr<ProvidedBufferRing> bufs_;
  bool multishot_recv_ = true;
};

}  // namespace mxb
