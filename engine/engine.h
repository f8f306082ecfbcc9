// Engine: the scanner thread plus the workers — the whole delivery pipeline of DESIGN.md.
//
// The scanner (the thread that calls Run()) has its Scanner (engine/scanner.h) claim spool files
// (rename into active/), parse the envelope, DKIM-sign, turn the CRLF-normalised, dot-stuffed
// body into its wire form once and split the recipients by domain into DeliveryJobs — on
// `scanner_threads` claim threads or inline — and hands each job to the worker that owns the
// domain (hash). Finished jobs come back through one CompletionQueue; the scanner appends their log
// records, makes the log durable with one fdatasync per batch (group commit), and only then
// removes the spool file (every recipient final) or moves it to deferred/ with only the
// pending recipients.
//
//   mxb::Engine engine(config);
//   if (auto s = engine.Start(); !s.ok()) { print s; exit 1; }
//   absl::Status s = engine.Run();      // until drained (--drain) or RequestStop()
//   PrintSummary(engine.summary());
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cluster/redis_budgets.h"
#include "dns/static_routes.h"
#include "engine/accounting_log.h"
#include "engine/bounce_class.h"
#include "engine/config.h"
#include "engine/dead_destinations.h"
#include "engine/scanner.h"
#include "engine/sts_fetcher.h"
#include "engine/tlsrpt_reporter.h"
#include "engine/worker.h"
#include "input/amqp_input.h"
#include "output/amqp_output.h"
#include "queue/journal.h"
#include "queue/retry_schedule.h"
#include "queue/spool.h"
#include "tls/tls_session.h"

namespace mxb {

class ControlPlane;

struct EngineSummary {
  uint64_t messages = 0;         // spool files finished (completed or deferred)
  uint64_t delivered = 0;        // recipients
  uint64_t deferred = 0;
  uint64_t bounced = 0;
  uint64_t expired = 0;          // recipients given up after the max queue age
  uint64_t dsns = 0;             // DSN files written
  uint64_t quarantined = 0;      // spool files moved to bad/
  uint64_t delivered_tls = 0;    // delivered recipients that went over TLS
  uint64_t connections = 0;
  uint64_t tls_sessions = 0;
  uint64_t tls_resumed = 0;
  uint64_t stale_completions = 0;
  uint64_t local_waits = 0;        // connects held back by a local shortage (engine/connect_gate.h)
  uint64_t port_budget_waits = 0;  // and by a spent ephemeral port budget
  uint64_t pacing_waits = 0;       // and by connect pacing (ConnectGate::kMaxUnready)
  uint64_t wheel_peak = 0;         // the most timer wheel entries one worker held
  // Messages for dead destinations deferred by the scanner without a claim or a worker
  // (engine/dead_destinations.h).
  uint64_t not_tried_by_scanner = 0;
  // Envelope reads of files that might be for a dead destination (Engine::Postpone).
  uint64_t envelope_reads = 0;
  // Of those, read ahead of the claim by the look-ahead thread (engine/envelope_looker.h), and
  // that thread's CPU.
  uint64_t looked_ahead = 0;
  absl::Duration look_cpu;
  uint64_t durable_pauses = 0;   // times claiming paused because a spool write failed (disk full)
  absl::Duration elapsed;        // first claim to last finished message
  // Issue 17: CPU of the scanner thread (commits, logs, spool removal; claims when inline) and
  // of the claim threads, for "scanner CPU per message".
  absl::Duration scanner_cpu;
  absl::Duration claim_cpu;
  int claim_threads = 0;
  absl::flat_hash_map<std::string, uint64_t> tls_suites;  // "TLSv1.3 CIPHER" -> delivered rcpts
  absl::flat_hash_map<std::string, uint64_t> policies;    // TLS policy name -> delivered rcpts
};

// Below this many messages the summary gives totals, not rates per message (fixed costs of a
// run would dominate them).
inline constexpr uint64_t kSummaryRateMinMessages = 100;
// The end-of-run summary line (stdout of mxburst): "mxburst: N messages finished in S s ...".
std::string FormatSummary(const EngineSummary& s);

class Engine : private ClaimGate {
 public:
  explicit Engine(EngineConfig config);
  ~Engine();

  [[nodiscard]] absl::Status Start();
  [[nodiscard]] absl::Status Run();
  // Async-signal-safe: stop claiming, let in-flight transactions finish, then return from Run().
  void RequestStop() { stop_.store(true, std::memory_order_relaxed); }
  // Async-signal-safe (SIGHUP): reopen the accounting log and reload the shaping rules from the
  // config file on the scanner's next loop (engine/reload.cc).
  void RequestReload() { reload_.store(true, std::memory_order_relaxed); }

  EngineSummary summary() const;
  // Claiming is paused because a durable write failed (for the metrics endpoint).
  bool claiming_paused() const { return durable_blocked_; }
  std::string SummaryLine() const;

 private:
  void ClaimBatch();
  // A claimed file from the scanner: its jobs to the workers' queues, or quarantine / log.
  void Adopt(ClaimedFile f);
  // bad/ with a .why (or removed if it cannot be moved), a log record and one stderr line.
  void QuarantineFile(const std::string& name, const std::string& reason);
  void FlushOverflow();
  [[nodiscard]] absl::Status ProcessCompletions();
  // Moves due retries from the heap into the scanner, which interleaves them with fresh mail.
  void CollectDueRetries();
  // ClaimGate (engine/scanner.h), for dead destinations (engine/dead_destinations.h,
  // engine_postponed.cc): a file whose every recipient's destination is dead is postponed
  // (it stays unclaimed) ...
  bool Postpone(const std::string& name, bool from_incoming) override;
  bool PostponeLooked(const std::string& name, bool from_incoming, EnvelopeLook look) override;
  bool wants_looks() const override { return xattr_ok_ && dead_.any(); }
  uint64_t dead_version() const override { return dead_.version(); }
  std::vector<std::string> dead_domains() const override { return dead_.Domains(); }
  bool Holds(absl::string_view name) const override { return dead_.Holds(name); }
  bool holds_any() const override { return dead_.holds_any(); }
  bool has_postponed() const override { return dead_.has_postponed(); }
  bool crowded() const override { return dead_.postponed() >= config_.max_messages_in_flight; }
  // ... and, later, deferred: logged now, moved after the next commit ...
  void DeferOnePostponed() override;
  // ... by this, after the commit (ResourceExhausted/Unavailable: kept, retried with back-off).
  absl::Status MovePostponed(absl::Time now);
  // Delivery passes so far (the retry mark's count when ahead of the envelope's generation).
  uint32_t Tries(const MessageRecord& msg) const;
  // Deferred recipients: the next attempt's envelope, or expiry (journaled, logged, DSN).
  struct Finish {
    MessageRecord* msg;
    bool complete;             // every recipient final: remove from active/
    std::optional<Envelope> rewrite;  // else: the envelope for deferred/ (when !unchanged)
    bool unchanged = false;    // no recipient became final: only the schedule moves
    RetryMark mark;            // that schedule
    absl::Time next_attempt;
  };
  Finish PlanFinish(MessageRecord* msg, absl::Time now);
  void WriteDsnFor(const MessageRecord& msg, absl::Time now);
  // The message text of a claimed file (after its envelope lines), read back from active/
  // (MessageRecord keeps no copy). DataLoss when the file is not the one claimed.
  absl::StatusOr<std::string> ReadBody(const MessageRecord& msg) const;
  // One accounting-log record for recipient `idx` of `msg` (status_override: e.g. "expired").
  void LogOutcome(const MessageRecord& msg, uint32_t idx, absl::string_view domain,
                  const RecipientOutcome& o, absl::Time now, absl::string_view status_override = {});
  // The recipient's final outcome in the journal (recovery will not send it again).
  void JournalFinal(const MessageRecord& msg, uint32_t idx, FinalClass final_class);
  void Progress(bool final);
  // Scanner and claim thread CPU into summary_ and the metrics (once a second, or now).
  void PublishCpu(bool final);
  // A journal/log/spool write failed: pause claiming (said once), retry with back-off.
  void BlockDurable(const absl::Status& error, absl::Time now);
  // SIGHUP, scanner thread (engine/reload.cc): the log is reopened between batches; new
  // shaping rules go to every worker, new bounce rules to the scanner; a config that does not
  // load changes nothing.
  void ServeReload();
  void ReloadRules();
  // Retry-now requests from the control plane (engine/retry_now.cc), every loop.
  void ServeRetryNow();

  EngineConfig config_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> reload_{false};
  bool reopen_log_ = false;  // SIGHUP seen, the log not reopened yet (a batch was in the way)
  // Every shaping table since start (SIGHUP adds one): connections opened under an older one
  // still hold leases on its budgets, so none is freed before the engine.
  std::vector<std::shared_ptr<const ShapingTable>> shaping_generations_;
  std::unique_ptr<Spool> spool_;
  std::unique_ptr<Scanner> scanner_;  // after spool_: its claim threads use it
  std::unique_ptr<StaticRoutes> routes_;
  std::unique_ptr<AccountingLog> log_;
  BounceClassifier bounce_classes_;  // built in Start(), replaced on SIGHUP
  std::unique_ptr<Journal> journal_;
  RetrySchedule schedule_;
  DeferredQueue deferred_;
  std::unique_ptr<TlsContext> tls_client_;
  // TLS-RPT (engine/tlsrpt_reporter.h); nullptr when off. Declared before sts_, whose thread
  // calls back into it, so that thread is joined first.
  std::unique_ptr<TlsRptReporter> tlsrpt_;
  std::unique_ptr<StsFetcher> sts_;  // MTA-STS (and TLS-RPT's network steps); outlives workers
  // Banner strict-tls pins (tls/banner_pin.h), shared by the workers; nullptr when off.
  std::unique_ptr<BannerPinStore> banner_pins_;
  std::unique_ptr<CompletionQueue> completions_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::deque<DeliveryJob*>> overflow_;  // per worker, when its queue was full
  std::vector<bool> wake_;
  DeadDestinations dead_{config_.shaping.get()};
  // Postponed files deferred and logged, to be moved once the log records are durable.
  struct PostponedMove {
    std::string name;
    bool from_incoming;
    RetryMark mark;
  };
  std::vector<PostponedMove> moves_;
  std::string head_scratch_;  // Postpone's envelope reads (no allocation per file)

  absl::Time last_shortage_log_ = absl::InfinitePast();  // claiming hit EMFILE/ENOMEM
  std::vector<Finish> held_;     // finished, waiting for a durable commit or spool write
  bool durable_blocked_ = false;
  absl::Duration durable_backoff_;
  absl::Time durable_retry_at_;
  bool xattr_ok_ = true;         // Spool::DeferUnchanged works on this file system
  absl::flat_hash_map<std::string, uint32_t> tries_;  // in-flight messages whose mark is ahead
  size_t in_flight_ = 0;
  size_t in_flight_bytes_ = 0;
  EngineSummary summary_;
  absl::Time first_claim_ = absl::InfinitePast();
  absl::Time last_finish_;
  absl::Time last_progress_;
  absl::Time last_cpu_sample_ = absl::InfinitePast();
  absl::Time last_pop_ = absl::InfinitePast();
  absl::Time stop_seen_ = absl::InfinitePast();  // when Run() first saw the stop request
  bool abort_sent_ = false;
  std::vector<uint32_t> commit_window_us_;  // per commit with outcomes: previous pop -> durable
  // [http] (engine/control_plane.h); nullptr when off.
  std::unique_ptr<ControlPlane> control_;
  // Issue 15: [cluster] leases for scope = "cluster" rules (before the workers start, stopped
  // after they joined), and [input.amqp] (fed the budget through intake_).
  std::vector<std::unique_ptr<ClusterShare>> cluster_shares_;
  std::unique_ptr<RedisBudgets> redis_;
  IntakeGauge intake_;
  std::unique_ptr<AmqpInput> amqp_;
  std::unique_ptr<AmqpOutput> outcomes_;  // [output.amqp], fed by log_'s durable hook

};

}  // namespace mxb
