// EnvelopeLooker: reads the envelopes of incoming/ files ahead of the claim, on a thread of its
// own, while a dead destination is known (engine/dead_destinations.h, issue 10 item 4).
//
// Postponing a dead destination's mail needs a look at each file's envelope before the claim:
// lstat, open, fstat, a 4 KiB read, the retry mark's fgetxattr, close and a parse — ~16 us of
// scanner-thread CPU per file on this box. A backlog of 10,000 such files listed among 2,000
// healthy ones cost the scanner thread, which is what bounds the healthy mail's pace, as much
// again as the healthy mail itself (bench/README.md "Dead destination"). The looks are
// independent per file and touch nothing but Spool::ReadHead, so this thread does them for up to
// kLookAhead listed names ahead of the claim; the scanner thread then only decides (a hash
// look-up in the dead table) and claims, postpones or defers.
//
// Thread: Want, TakeReady, outstanding and event_fd from one thread (the scanner thread); the
// looker thread touches only the spool's stateless read and its own queues (mu_).
//
//   EnvelopeLooker looker(&spool);
//   looker.Want({"m1", "m2"}, /*from_incoming=*/true);
//   poll({looker.event_fd(), POLLIN}, ...);
//   if (looker.has_ready())
//     for (LookedFile& f : looker.TakeReady()) { /* f.look.envelope: postpone it, or claim it */ }
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "queue/envelope.h"
#include "queue/spool.h"

namespace mxb {

// Names handed to the looker and not taken back yet: enough that the scanner thread never waits
// for a look while the looker keeps up, few enough that a destination coming back to life (the
// looks are then wasted) costs little.
inline constexpr size_t kLookAhead = 4096;

// What the head of a spool file says.
struct EnvelopeLook {
  // The envelope (no body); an error when the file cannot be read, is not a regular file, or
  // its envelope is bad or longer than kEnvelopeHeadBytes — the claim then reports it.
  absl::StatusOr<Envelope> envelope = absl::UnknownError("not looked at");
  std::optional<RetryMark> mark;  // the retry mark read on the same descriptor
  uint32_t reads = 0;             // head reads it took (two for an envelope past 4 KiB)
};

// Reads `subdir`/`name`'s envelope from its first kEnvelopeFirstBytes, else (a longer envelope:
// many recipients) from at most kEnvelopeHeadBytes. Any thread; `scratch` is the caller's.
// With `dir_fd` (the caller's descriptor of `subdir`), relative to it.
EnvelopeLook LookAtEnvelope(const Spool& spool, absl::string_view subdir, const std::string& name,
                            std::string* scratch, int dir_fd = -1);

// A look done by the looker thread.
struct LookedFile {
  std::string name;
  bool from_incoming = true;  // else deferred/
  EnvelopeLook look;
  // Every recipient's domain was among the dead domains (SetDeadDomains) when it was looked at:
  // a hint for the order only — the scanner thread decides (the source pool counts too).
  bool dead_hint = false;
};

class EnvelopeLooker {
 public:
  explicit EnvelopeLooker(const Spool* spool);  // `spool` outlives the looker
  ~EnvelopeLooker();                            // stops and joins; looks not taken are dropped
  EnvelopeLooker(const EnvelopeLooker&) = delete;
  EnvelopeLooker& operator=(const EnvelopeLooker&) = delete;

  // The recipient domains of the dead destinations, for LookedFile::dead_hint of later looks.
  void SetDeadDomains(const std::vector<std::string>& domains);
  // Queues looks at `names` (in incoming/, else deferred/); results come back in this order.
  void Want(std::vector<std::string> names, bool from_incoming);
  // Finished looks wait to be taken (no system call: an atomic flag).
  bool has_ready() const { return ready_.load(std::memory_order_acquire); }
  // Looks finished since the last call, oldest first (reads the eventfd).
  std::vector<LookedFile> TakeReady();
  // Wanted and not taken back yet.
  size_t outstanding() const { return outstanding_; }
  // Readable when looks are ready to take (written once per batch, not per file).
  int event_fd() const { return event_fd_; }
  // Head reads done by the looker so far (a relaxed counter, any thread).
  uint64_t reads() const;
  // The looker thread's CPU time so far (CLOCK_THREAD_CPUTIME_ID, sampled at each publish).
  uint64_t cpu_ns() const { return cpu_ns_.load(std::memory_order_relaxed); }

 private:
  void ThreadMain();

  const Spool* const spool_;
  // The looker thread's descriptors of incoming/ and deferred/ (-1: by path, as the inline look).
  int incoming_fd_ = -1;
  int deferred_fd_ = -1;
  size_t outstanding_ = 0;  // the caller's thread only
  int event_fd_ = -1;
  std::thread thread_;
  mutable std::mutex mu_;
  std::condition_variable work_cv_;
  std::deque<LookedFile> tasks_;     // guarded by mu_; `look` not set yet
  std::vector<LookedFile> results_;  // guarded by mu_
  std::atomic<bool> ready_{false};   // !results_.empty(), written under mu_
  uint64_t reads_ = 0;               // guarded by mu_
  absl::flat_hash_set<std::string> dead_domains_;  // guarded by mu_
  uint64_t dead_version_ = 0;                      // guarded by mu_
  bool stop_ = false;                // guarded by mu_
  std::atomic<uint64_t> cpu_ns_{0};
};

}  // namespace mxb
