// Scanner: the claim side of the scanner thread (issue 17 item 2). It owns which spool file is
// claimed next — files recovered from active/ first, then fresh mail from incoming/ and due
// retries from deferred/ taking turns — and the per-message work before delivery: claim (rename
// into active/), read, parse the envelope, DKIM-sign (dkim/signer.h), encode the wire form once
// (engine/smtp_data.h), split the recipients into DeliveryJobs per (domain, at most
// max_recipients_per_transaction) with their worker chosen by hash.
//
// That work is independent per message, so it runs on `scanner_threads` claim threads
// (`--scanner-threads`); 0 does it on the scanner thread itself, within a 2 ms slice per call
// (the pre-issue-17 behaviour). Everything durable stays on the scanner thread: the journal,
// the accounting log, spool completions and defers, the in-flight bounds — a claim thread only
// renames into active/ and reads, which is what recovery after a crash already expects to find
// half done (at-least-once). Claimed files come back in the order the threads finish them;
// the order in which files are *chosen* (fresh mail fair with retries) is decided here, on the
// scanner thread, before any thread sees them.
//
// Thread: every public method from the scanner thread (Engine::Run) only. The claim threads
// touch only Spool's stateless read/rename methods, the DKIM signer (libopendkim: a DKIM_LIB
// "can be used by several threads at once", overview.html) and their own task/result queues.
//
//   Scanner scanner(config, &spool, workers.size(), config.scanner_threads);
//   scanner.AddRecovered(std::move(report.redeliver));
//   scanner.Claim([&] { return in_flight + scanner.outstanding() < max; },
//                 [&](ClaimedFile f) { /* hand f.jobs to the workers, or quarantine f.name */ });
//   pollfd fds[] = {{completions.event_fd(), POLLIN}, {scanner.event_fd(), POLLIN}};
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/function_ref.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "engine/config.h"
#include "engine/delivery.h"
#include "engine/envelope_looker.h"
#include "queue/spool.h"
#include "queue/spool_ring.h"

namespace mxb {

// Decides, on the scanner thread, whether a chosen file is claimed at all: the engine postpones
// mail for dead destinations (engine/dead_destinations.h) and defers it last, unclaimed.
class ClaimGate {
 public:
  virtual ~ClaimGate() = default;
  // `name` in incoming/ (else deferred/): true when the gate took it instead of the claim.
  virtual bool Postpone(const std::string& name, bool from_incoming) = 0;
  // The same, with its envelope looked at ahead of the claim (engine/envelope_looker.h) ...
  virtual bool PostponeLooked(const std::string& name, bool from_incoming, EnvelopeLook look) = 0;
  // ... which is worth it only while the gate may postpone anything at all. The look-ahead
  // thread sorts its looks by a hint, the recipient domains of the dead destinations (a
  // version that changes with them): files for live ones are claimed first, the others decided
  // when none of those is ready (engine/envelope_looker.h).
  virtual bool wants_looks() const = 0;
  virtual uint64_t dead_version() const { return 0; }
  virtual std::vector<std::string> dead_domains() const { return {}; }
  // Postponed names not moved yet: listings of incoming/ skip them.
  virtual bool Holds(absl::string_view name) const = 0;
  virtual bool holds_any() const = 0;
  // Postponed files wait (one in kPostponedShare choices goes to them, every one when nothing
  // else waits or when crowded()) ...
  virtual bool has_postponed() const = 0;
  virtual bool crowded() const = 0;
  // ... and this defers the oldest (it may hand it back through Scanner::Requeue).
  virtual void DeferOnePostponed() = 0;
};

// One chosen file after its claim: a message ready for the workers, or why not.
struct ClaimedFile {
  enum class Kind {
    kMessage,     // `message` and `jobs` are set (the caller owns them)
    kQuarantine,  // not a regular file, unparseable, or DKIM refused it: `reason` for bad/
    kShortage,    // EMFILE/ENFILE/ENOMEM: back-pressure; the file waits in active/ (re-queued)
    kGone,        // NotFound: another engine claimed it first
    kError,       // anything else: `reason` is the one-line error
  };
  Kind kind = Kind::kGone;
  std::string name;
  bool from_incoming = false;
  std::string reason;
  MessageRecord* message = nullptr;
  std::vector<DeliveryJob*> jobs;  // each with `worker` set
  uint32_t marked_tries = 0;       // retry mark's count when ahead of the envelope's generation
};

// CPU time of the calling thread (CLOCK_THREAD_CPUTIME_ID), in nanoseconds.
uint64_t ThreadCpuNs();

class Scanner {
 public:
  // `threads` < 0: DefaultThreads(config). `spool` and `config` outlive the scanner.
  Scanner(const EngineConfig& config, Spool* spool, size_t workers, int threads);
  ~Scanner();  // stops and joins the claim threads; unclaimed results are freed (files stay)
  Scanner(const Scanner&) = delete;
  Scanner& operator=(const Scanner&) = delete;

  // scanner_threads = -1: with [[dkim]] the RSA signature is the cost (~1 ms per message),
  // so one claim thread per core (at most 8); without it claiming is a few µs and syscalls per
  // message, one claim thread per 4 cores (at most 4), none below 4 cores (two threads on two
  // cores only add hand-offs; bench/README.md "Scanner").
  static int DefaultThreads(const EngineConfig& config);

  // Files left in active/ by a previous run: claimed again before anything else.
  void AddRecovered(std::vector<std::string> names);
  // Dead destinations: `gate` (outlives the scanner) is asked about each chosen file.
  void set_gate(ClaimGate* gate) { gate_ = gate; }
  // A postponed file goes back to be claimed next (its destination's dead time is over).
  void Requeue(std::string name, bool from_incoming);
  // Due retries (deferred/ names), claimed in turn with fresh mail.
  void AddDue(std::vector<std::string> names);
  size_t due() const { return due_.size(); }

  // Chooses and claims files while `may_claim()` and at most 256 per call; `done` gets each
  // finished one (threads: what they finished since the last call, then new names are handed
  // out; inline: claimed here, at most 2 ms). Stops at the first local shortage.
  void Claim(absl::FunctionRef<bool()> may_claim, absl::FunctionRef<void(ClaimedFile)> done);
  // Only what the claim threads finished (while stopping or paused: nothing new is chosen).
  void Collect(absl::FunctionRef<void(ClaimedFile)> done);

  // Handed to claim threads and not yet passed to `done`.
  size_t outstanding() const { return outstanding_; }
  // incoming/ was empty at the last scan and nothing is waiting or outstanding (--drain).
  bool drained() const {
    return incoming_empty_ && pending_.empty() && outstanding_ == 0 && looked_.empty() &&
           looked_dead_.empty() && (looker_ == nullptr || looker_->outstanding() == 0);
  }
  // Readable when claim threads (or the claim renames on the ring) have finished files; -1
  // when neither is in use.
  int event_fd() const { return event_fd_; }
  // Claim renames go through the scanner's io_uring (queue/spool_ring.h): inline claiming
  // only, unless MXB_SPOOL_URING=0 in the environment (for side-by-side measurements).
  bool uses_ring() const { return ring_ != nullptr; }
  int threads() const { return static_cast<int>(threads_.size()); }
  // CPU time of the claim threads so far (CLOCK_THREAD_CPUTIME_ID, sampled after each file).
  uint64_t claim_cpu_ns() const;
  // Listings of incoming/ so far (one readdir pass each).
  uint64_t listings() const { return listings_; }
  // While the gate wants looks, a thread reads the envelopes of listed incoming/ files ahead of
  // the claim (engine/envelope_looker.h; MXB_ENVELOPE_LOOKER=0 in the environment: inline, for
  // side-by-side measurements). Readable when looks are ready; -1 before the first.
  int look_fd() const { return looker_ != nullptr ? looker_->event_fd() : -1; }
  // The last Claim() stopped because the next fresh file's look was not ready: the caller may
  // sleep on look_fd() (nothing else it could choose was left).
  bool waiting_for_look() const { return waiting_for_look_; }
  // Head reads done by the look-ahead thread.
  uint64_t look_reads() const { return looker_ != nullptr ? looker_->reads() : 0; }
  uint64_t look_cpu_ns() const { return looker_ != nullptr ? looker_->cpu_ns() : 0; }
  // The next Claim() lists incoming/ even if the last listing found nothing new a moment ago
  // (after such a listing the next one waits up to 20 ms while messages are out) — unless
  // postponed files are what it found (then the next listing waits its 50 ms).
  void ListAgain();

 private:
  enum class Source { kIncoming, kActive, kDeferred };  // kActive: recovered
  struct Task {
    std::string name;
    Source source = Source::kIncoming;
  };
  struct ClaimThread {
    std::thread thread;
    std::atomic<uint64_t> cpu_ns{0};
  };

  // Next file to claim, fresh and retries in turn; kGated: the gate took a turn instead (a
  // postponed deferral, or `out` was postponed); kNone: nothing to choose; kWait: nothing until
  // the look-ahead thread finishes the next look.
  enum class Pick { kNone, kTask, kGated, kWait };
  Pick NextTask(bool* listed, Task* out);
  // While the gate wants looks: hands listed incoming/ names to the looker (at most kLookAhead
  // ahead) and takes the finished looks into looked_. True while looks are wanted.
  bool LookAhead();
  // Finished looks into looked_ / looked_dead_ (by the looker's hint).
  void TakeLooks();
  // The oldest look of `from` becomes `out`; true when the gate postponed it (else claim it).
  bool DecideLooked(std::deque<LookedFile>* from, Task* out);
  // The claim itself and everything up to the jobs: any thread.
  ClaimedFile Process(const Task& task) const;
  ClaimedFile Prepare(const std::string& name, absl::string_view contents,
                      const std::optional<RetryMark>& mark) const;
  void ThreadMain(ClaimThread* self);
  // Inline claiming with the ring: finished renames are read and prepared, then new names are
  // chosen and their renames submitted in one batch (the file is read once it is in active/).
  void ClaimOnRing(absl::FunctionRef<bool()> may_claim, absl::FunctionRef<void(ClaimedFile)> done);
  void ReapRing(absl::FunctionRef<void(ClaimedFile)> done);
  // A claim that failed: the kind for `status` (shortage, quarantine, gone, error).
  static ClaimedFile Failed(const Task& task, const absl::Status& status);
  // Scanner thread: a result leaves the scanner (shortage: the file goes back to the front).
  void Finish(ClaimedFile f, absl::FunctionRef<void(ClaimedFile)> done);

  const EngineConfig& config_;
  Spool* spool_;
  size_t workers_;
  std::deque<Task> pending_;
  std::deque<std::string> due_;
  bool retry_turn_ = false;
  bool incoming_empty_ = false;
  ClaimGate* gate_ = nullptr;
  size_t postponed_turn_ = 0;
  absl::Time next_listing_ = absl::InfinitePast();  // after a listing that found nothing new
  uint64_t listings_ = 0;
  size_t outstanding_ = 0;
  bool shortage_ = false;  // set by Finish: stop choosing for this call
  // Look-ahead (created at the first look wanted); finished looks, in listing order.
  std::unique_ptr<EnvelopeLooker> looker_;
  std::deque<LookedFile> looked_;       // the looker's hint: for live destinations
  std::deque<LookedFile> looked_dead_;  // and for dead ones: decided when no other is ready
  uint64_t dead_version_ = 0;           // the dead domains the looker was last given
  bool looker_allowed_ = true;  // MXB_ENVELOPE_LOOKER=0: looks stay inline
  bool waiting_for_look_ = false;
  // Names handed to claim threads, or to the looker and not chosen yet: still listed.
  absl::flat_hash_set<std::string> in_claim_;

  // Inline claim renames in flight on the ring, by cookie.
  std::unique_ptr<SpoolRing> ring_;
  absl::flat_hash_map<uint64_t, Task> ring_tasks_;
  uint64_t next_cookie_ = 1;
  bool rename_fallback_ = false;  // the ring's rename failed with EINVAL: syscalls instead

  // Claim threads (empty when inline).
  std::vector<std::unique_ptr<ClaimThread>> threads_;
  std::mutex mu_;
  std::condition_variable work_cv_;
  std::deque<Task> tasks_;            // guarded by mu_
  std::vector<ClaimedFile> results_;  // guarded by mu_
  bool stop_ = false;                 // guarded by mu_
  int event_fd_ = -1;
};

}  // namespace mxb
