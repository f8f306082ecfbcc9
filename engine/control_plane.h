// ControlPlane: the engine's side of the live control and metrics endpoint (DESIGN.md
// "Interfaces"; issue 14). It owns the HTTP server (control/http_server.h, its own threads,
// never a worker ring), the counters the scanner thread publishes (EngineCounters: relaxed
// atomics), and one WorkerChannel per worker: commands (suspend, resume, bounce) go to the
// worker through an MpscQueue and are applied on its next tick (100 ms); the worker answers a
// request for its state with a WorkerSnapshot through another MpscQueue. Workers never lock and
// do no control work unless asked; with `[http] listen = ""` none of this exists.
//
// Threads: the scanner constructs it, attaches the channels before the workers start, calls
// Start()/Stop() and writes counters(); workers call ServeControl-side helpers (Suspensions,
// TakeSnapshot) on their own thread; HTTP handlers run on the server's threads.
//
//   ControlPlane cp(config, workers.size());
//   worker[i]->AttachControl(cp.channel(i));   // before Worker::Start
//   cp.Start(&workers);                         // serving
//   cp.counters().OnOutcome(outcome, "", queue_time, klass);   // scanner, per log record
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "control/prometheus.h"
#include "dns/resolver.h"
#include "engine/bounce_class.h"
#include "engine/config.h"
#include "engine/delivery.h"
#include "queue/mpsc_queue.h"
#include "tls/banner_pin.h"

namespace mxb {

class Destination;
class Worker;
namespace control {
class ControlHttpServer;
}

// An operator's command, on every worker. Its target is a recipient domain, an MX suffix (every
// destination with an MX host at or under it: "yahoodns.net"), or a job (messages whose x-job
// is `job`): exactly one of the three is set (kFlush: none = every destination).
struct ControlCommand {
  // kRelease: the engine stops; suspended destinations hand their jobs back (deferred), or
  // the scanner would wait for them until the suspension ends. kFlush: retry now — dead
  // destinations are tried again at once (the scanner makes deferred/ due).
  enum class Kind { kSuspend, kResume, kBounce, kRelease, kFlush };
  Kind kind = Kind::kSuspend;
  std::string domain;     // lower case
  std::string mx_suffix;  // lower case, no leading "*." / "."
  std::string job;        // as in x-job
  int64_t until_ms = 0;  // kSuspend: CLOCK_MONOTONIC ms (the workers' clock)
  std::string reason;
  // "domain d1.example", "mx yahoodns.net", "job spring-sale", "all".
  std::string Target() const;
};

// What an operator suspended, on one worker (worker thread only). A suspended destination (its
// domain, or one of its MX hosts under a suspended suffix) keeps its jobs queued in memory,
// opens no connection and starts no transaction; a suspended job's messages are held aside at
// each destination while its other mail goes on. Mail stays in active/ and never enters the
// retry schedule. Destinations consult it through DestinationContext.
struct SuspensionEntry {
  int64_t until_ms = 0;
  std::string reason;
};
class Suspensions {
 public:
  using Entry = SuspensionEntry;
  enum class Kind { kDomain, kMxSuffix, kJob };
  bool Suspended(absl::string_view domain, int64_t now_ms) const;
  const Entry* ForDomain(absl::string_view domain, int64_t now_ms) const;
  const Entry* ForMx(absl::string_view mx_host, int64_t now_ms) const;
  const Entry* ForJob(absl::string_view job, int64_t now_ms) const;
  bool any_jobs() const { return !by_job_.empty(); }
  void Apply(const ControlCommand& c);
  // Entries past their time are removed; true when any was (their mail is pumped again).
  bool Expire(int64_t now_ms);
  // Every entry as JSON objects {kind, target, seconds_left, reason}.
  std::vector<std::string> DumpJson(int64_t now_ms) const;

 private:
  absl::flat_hash_map<std::string, Entry> by_domain_;
  absl::flat_hash_map<std::string, Entry> by_mx_;  // suffix -> entry
  absl::flat_hash_map<std::string, Entry> by_job_;
};

// What one destination looks like to an operator, taken on its worker's thread.
struct DestinationView {
  std::string domain;
  int pool = -1;
  uint32_t worker = 0;
  size_t queued = 0;
  int connections = 0;
  std::string state;  // "unresolved" | "resolving" | "ready" | "dead" | "suspended"
  std::string last_error;
  double oldest_age_seconds = 0;  // the oldest queued job's message, since it was claimed
  double dead_for_seconds = 0;
  double suspended_for_seconds = 0;
  std::string suspend_reason;
  size_t held = 0;  // of `queued`: jobs held because their x-job is suspended
};

struct WorkerSnapshot {
  uint32_t worker = 0;
  uint64_t serial = 0;
  size_t open_connections = 0;
  Resolver::Stats dns;
  std::vector<DestinationView> destinations;
  std::string policy_jsonl;  // the policy cache, one JSON object per line
  std::vector<std::string> suspensions;  // Suspensions::DumpJson
};

// One worker's two queues with the HTTP side.
struct WorkerChannel {
  MpscQueue<ControlCommand*> commands{256};
  MpscQueue<WorkerSnapshot*> snapshots{8};
  std::atomic<uint64_t> wanted{0};  // the HTTP side's request serial; the worker answers once
  uint64_t answered = 0;            // worker thread only
};

// Retry-now requests for the scanner (POST /api/v1/flush): the HTTP thread adds, the scanner
// takes them on its next loop and makes the matching deferred/ messages due.
struct FlushRequests {
  std::mutex mu;
  absl::Time at;  // the newest request
  bool all = false;
  std::vector<std::string> domains;
  std::atomic<bool> pending{false};
};

// Counters the scanner thread updates (relaxed atomics) and the HTTP threads read.
struct EngineCounters {
  enum Outcome { kDelivered, kDeferred, kBounced, kExpired, kOutcomes };
  static constexpr const char* kOutcomeNames[kOutcomes] = {"delivered", "deferred", "bounced",
                                                           "expired"};
  // tls/policy.h ToString(PolicySource), "none" for outcomes without a hop tried
  // (AttemptInfo), and "other" for anything else.
  static constexpr const char* kSourceNames[] = {"opportunistic", "prefix", "config", "dane",
                                                 "mta-sts", "banner-pin", "none", "other"};
  static constexpr size_t kSources = sizeof(kSourceNames) / sizeof(kSourceNames[0]);

  std::atomic<uint64_t> claimed{0};
  std::atomic<uint64_t> finished{0};
  std::atomic<uint64_t> quarantined{0};
  std::atomic<uint64_t> recipients[kOutcomes] = {};
  std::atomic<uint64_t> by_source[kOutcomes][kSources] = {};
  std::atomic<uint64_t> over_tls[kOutcomes] = {};
  std::atomic<uint64_t> by_class[kOutcomes][kBounceClasses] = {};  // not for kDelivered
  std::atomic<int64_t> in_flight_messages{0};
  std::atomic<int64_t> in_flight_bytes{0};
  // CPU so far of the scanner thread and of the claim threads (engine/scanner.h), sampled
  // once a second: their sum over mxburst_messages_finished_total is the scanner's cost.
  std::atomic<uint64_t> scanner_cpu_ns{0};
  std::atomic<uint64_t> claim_cpu_ns{0};
  control::Histogram queue_time;  // claimed -> final outcome (delivered, bounced, expired)

  // One accounting-log record (status_override: "expired" or empty).
  void OnOutcome(const RecipientOutcome& o, absl::string_view status_override,
                 absl::Duration queue_time, BounceClass klass);
};

// Worker thread: the snapshot of its destinations and caches.
WorkerSnapshot* TakeSnapshot(uint32_t worker, int64_t now_ms, absl::Time now,
                             const std::vector<const Destination*>& dests,
                             const Suspensions& suspensions, size_t open_connections,
                             const Resolver* resolver, const std::string& policy_jsonl);

class ControlPlane {
 public:
  ControlPlane(const EngineConfig& config, size_t workers);
  ~ControlPlane();
  WorkerChannel* channel(size_t i) { return channels_[i].get(); }
  EngineCounters& counters() { return counters_; }

  // Registers the routes and starts listening; `workers` outlives the server.
  [[nodiscard]] absl::Status Start(const std::vector<std::unique_ptr<Worker>>* workers);
  void Stop();
  std::string url() const;
  // Before Start(): more metric families from another part of the engine (the AMQP input,
  // the cluster budgets); called on the HTTP threads for every /metrics.
  void AddMetrics(std::function<void(control::PrometheusText*)> write) {
    metric_writers_.push_back(std::move(write));
  }
  // Scanner thread, once when it starts stopping (see ControlCommand::kRelease).
  void OnStopping();
  // Scanner thread, every loop: retry-now requests since the last call (false: none). *all:
  // every deferred message; else those with a recipient at one of *domains. A request is handed
  // out 250 ms after it came, when every worker has applied the same kFlush on its 100 ms tick
  // (revived its dead destinations): else the retried mail would meet them still dead.
  bool TakeFlush(bool* all, std::vector<std::string>* domains);
  // Scanner thread, after SIGHUP loaded new rules (the table outlives the server).
  void SetShaping(const ShapingTable* table) { shaping_.store(table, std::memory_order_release); }
  // Before Start(): the learned banner pins (tls/banner_pin.h; nullptr: not learning), listed
  // by /api/v1/policy next to the workers' policy caches. The store outlives the server.
  void SetBannerPins(const BannerPinStore* pins) { banner_pins_ = pins; }
  // Scanner thread, every loop.
  void PublishInFlight(size_t messages, size_t bytes) {
    counters_.in_flight_messages.store(static_cast<int64_t>(messages), std::memory_order_relaxed);
    counters_.in_flight_bytes.store(static_cast<int64_t>(bytes), std::memory_order_relaxed);
  }

 private:
  // The newest snapshot of every worker, at most `wait` old-ish: asks each worker, waits for
  // the answers (a stopped worker keeps its last one).
  std::vector<std::shared_ptr<const WorkerSnapshot>> Snapshots(absl::Duration wait);
  std::string RenderMetrics();
  std::string RenderDestinations(bool all);
  std::string RenderStatus();
  std::string RenderPolicy();
  void Broadcast(const ControlCommand& c);

  const EngineConfig& config_;
  std::atomic<const ShapingTable*> shaping_{nullptr};  // after SIGHUP; else config_.shaping
  const BannerPinStore* banner_pins_ = nullptr;
  const std::vector<std::unique_ptr<Worker>>* workers_ = nullptr;
  std::vector<std::unique_ptr<WorkerChannel>> channels_;
  EngineCounters counters_;
  FlushRequests flush_;
  std::unique_ptr<control::ControlHttpServer> http_;
  absl::Time started_ = absl::Now();
  std::mutex snapshot_mu_;  // HTTP threads only: the snapshot queues have one consumer
  uint64_t serial_ = 0;
  bool stopping_ = false;  // scanner thread
  std::vector<std::shared_ptr<const WorkerSnapshot>> latest_;
  std::vector<std::function<void(control::PrometheusText*)>> metric_writers_;
};

}  // namespace mxb
