// SpoolRing: an io_uring owned by the scanner thread for the spool's directory operations — the
// claim renames (incoming/ or deferred/ into active/, engine/scanner.h) — queued per batch and
// submitted with one io_uring_enter (issue 17 item 2). The kernel never completes renameat
// inline: it runs on the ring's io-wq worker, a kernel thread of this process, so its CPU
// (~8 us per claim rename on ext4, bench/README.md "Scanner") leaves the scanner thread while
// the process total stays honest (io-wq threads count in its rusage). The unlinks of finished
// messages stay plain syscalls: on this ring they took ~3 us per message off the scanner thread
// but added ~7% to the process's total CPU (io-wq cost what they cost inline, plus the
// submission and completions; bench/README.md "Scanner: DATA encoding ..."). One
// bounded io-wq worker (IORING_REGISTER_IOWQ_MAX_WORKERS): cross-directory renames serialise on
// the file system's rename lock anyway, more workers would only contend for it.
//
// Nothing here changes what is durable when: a rename in flight at a crash either happened or
// did not, exactly as the same syscall made by the scanner thread (queue/spool.h:
// claims are not fsync'ed).
//
// Thread: the creating thread only (the scanner thread). Paths are kept until completion.
//
//   absl::StatusOr<std::unique_ptr<SpoolRing>> ring = SpoolRing::Create(256);
//   if (!ring.ok()) ... do the syscalls directly ...
//   (*ring)->Rename(from, to, /*cookie=*/7);      // RENAME_NOREPLACE
//   (*ring)->Submit();
//   poll (*ring)->event_fd() ...; (*ring)->Reap([](uint64_t cookie, int res) { ... });
#pragma once

#include <liburing.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"

namespace mxb {

class SpoolRing {
 public:
  // `capacity` operations in flight at most (the caller keeps to it: has_room()).
  // Unavailable with the errno text when io_uring cannot be set up here.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<SpoolRing>> Create(unsigned capacity);
  ~SpoolRing();
  SpoolRing(const SpoolRing&) = delete;
  SpoolRing& operator=(const SpoolRing&) = delete;

  bool has_room() const { return in_flight_ < capacity_; }
  size_t in_flight() const { return in_flight_; }
  // Queue one operation (submitted by Submit()); requires has_room(). `cookie` comes back with
  // the result.
  void Rename(std::string from, std::string to, uint64_t cookie);  // renameat2 RENAME_NOREPLACE
  // Hands everything queued to the kernel (one io_uring_enter).
  void Submit();
  // f(cookie, res) for each finished operation, res 0 or -errno; returns how many.
  size_t Reap(absl::FunctionRef<void(uint64_t cookie, int res)> f);
  // Blocks until every operation in flight finished, reaping them into f.
  void Drain(absl::FunctionRef<void(uint64_t cookie, int res)> f);
  // Readable when operations finished (registered with the ring; Reap clears it).
  int event_fd() const { return event_fd_; }

 private:
  struct Op {
    std::string a, b;
    uint64_t cookie = 0;
  };
  SpoolRing() = default;
  // A free slot for an operation (its index is the SQE's user_data).
  uint32_t TakeSlot();

  io_uring ring_{};
  bool ready_ = false;
  int event_fd_ = -1;
  size_t capacity_ = 0;
  size_t in_flight_ = 0;
  size_t queued_ = 0;  // prepared, not yet submitted
  std::vector<Op> ops_;
  std::vector<uint32_t> free_;
};

}  // namespace mxb
