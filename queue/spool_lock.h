// SpoolLock: the one-engine-per-spool guarantee.
//
// Two engines on one spool would both recover each other's active/ files and deliver the same
// messages twice, so `mxburst` takes an exclusive flock(2) on SPOOL/lock at start-up and holds
// it for its whole life; the file names the PID of the holder. A second engine gets an error
// naming that PID and exits. The kernel drops the lock when the holder dies, kill -9 included,
// so a crash never leaves a stale lock behind. Readers of the spool (mxburstctl) and producers
// (mxburst-inject, anyone renaming into incoming/) never take it.
//
// Owned by the engine's main thread; not thread-aware.
//
//   absl::StatusOr<SpoolLock> lock = SpoolLock::Acquire("/var/spool/mxburst");
//   if (!lock.ok()) { fprintf(stderr, "mxburst: %s\n", ...); return 1; }
//   ... run the engine; the lock is released when `lock` is destroyed or the process exits.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace mxb {

class SpoolLock {
 public:
  // Creates `spool_root` if missing, opens SPOOL/lock and takes LOCK_EX without blocking.
  // FailedPrecondition ("spool /x is in use by mxburst PID 123 (SPOOL/lock)") when another
  // process holds it; another error when the file cannot be opened or written.
  [[nodiscard]] static absl::StatusOr<SpoolLock> Acquire(const std::string& spool_root);

  SpoolLock(SpoolLock&& other) noexcept;
  SpoolLock& operator=(SpoolLock&& other) noexcept;
  SpoolLock(const SpoolLock&) = delete;
  SpoolLock& operator=(const SpoolLock&) = delete;
  ~SpoolLock();

  const std::string& path() const { return path_; }

 private:
  SpoolLock(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_ = -1;
  std::string path_;
};

}  // namespace mxb
