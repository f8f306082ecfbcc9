// Worker: one thread, one io_uring ring, shared-nothing (STYLE.md "One ring, one thread").
//
// Owns: the thread and its loop; the ring (engine/ring.h); the connection slab
// (engine/connection.h) and the timer wheel of their deadlines; the destinations hashed to it
// (engine/destination.h), each (recipient domain, source pool) with its queue and pool; the
// per-worker TLS policy cache (tls/policy.h, decided by tls/hop_policy.h); the c-ares channel,
// whose sockets it polls through the ring (dns/resolver.h). The loop waits on the ring,
// decodes each completion's tag (engine/uring_tag.h) and hands it to the object it names:
// a Connection, the DNS poller, the tick (deadlines, throttled destinations, DNS timeouts, the
// policy dump) or the wake-up eventfd (new jobs, stop). It is the DestinationHost its
// destinations run on: their decisions (connect, transfer, park, quit) become ring operations
// here.
//
// Threads: Enqueue()/Wake()/RequestStop() are called by the scanner thread; everything else runs
// on the worker's own thread. Finished jobs go back through the CompletionQueue.
//
//   Worker w(0, config, routes, tls_client_ctx, &completions);
//   if (auto s = w.Init(); !s.ok()) ...
//   if (auto s = w.Start(); !s.ok()) ...
//   w.Enqueue(job); w.Wake();
//   ...
//   w.RequestStop(); w.Join();
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "dns/static_routes.h"
#include "engine/config.h"
#include "engine/connect_gate.h"
#include "engine/delivery.h"
#include "queue/mpsc_queue.h"
#include "tls/mta_sts.h"
#include "engine/tlsrpt_reporter.h"
#include "tls/tls_session.h"

namespace mxb {

// Workers -> scanner hand-off of finished jobs, with an eventfd to wake the scanner.
class CompletionQueue {
 public:
  explicit CompletionQueue(size_t capacity);
  ~CompletionQueue();
  // Any worker thread. False when full (retry later).
  [[nodiscard]] bool Push(DeliveryJob* job) { return q_.TryPush(job); }
  void Notify();  // wake the scanner
  // Scanner thread.
  bool Pop(DeliveryJob*& job) { return q_.TryPop(job); }
  int event_fd() const { return efd_; }
  void ClearNotification();

 private:
  MpscQueue<DeliveryJob*> q_;
  int efd_;
};

struct WorkerStats {
  std::atomic<uint64_t> connections{0};
  std::atomic<uint64_t> connect_failures{0};
  // The same failures by errno class (the control plane's mxburst_connection_failures_total).
  static constexpr size_t kConnectFailureReasons = 5;
  static constexpr const char* kConnectFailureNames[kConnectFailureReasons] = {
      "refused", "timeout", "unreachable", "reset", "other"};
  std::atomic<uint64_t> connect_failures_by[kConnectFailureReasons] = {};
  // `err`: the positive errno of the failed connect (ECANCELED = its link timeout fired).
  void CountConnectFailure(int err);
  std::atomic<uint64_t> tls_sessions{0};
  std::atomic<uint64_t> tls_resumed{0};
  std::atomic<uint64_t> transactions{0};
  std::atomic<uint64_t> stale_completions{0};  // a CQE for a freed slot: always a bug
  // Local back-pressure (engine/connect_gate.h): connects held back after a local shortage
  // (socket/bind/connect said EADDRNOTAVAIL, EMFILE, ...) and for a spent port budget.
  std::atomic<uint64_t> local_waits{0};
  std::atomic<uint64_t> port_budget_waits{0};
  std::atomic<uint64_t> connect_pacing_waits{0};  // kMaxUnready sessions not greeted yet
  // Entries in the timer wheel (engine/timer_wheel.h) after the last tick, and the most seen
  // before a tick's expiry: O(connections), not O(replies) (WheelDeadline).
  std::atomic<uint64_t> wheel_entries{0};
  std::atomic<uint64_t> wheel_entries_peak{0};
};

struct WorkerChannel;

class Worker {
 public:
  Worker(uint32_t index, const EngineConfig& config, const StaticRoutes& routes,
         TlsContext* tls_client, CompletionQueue* done);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  [[nodiscard]] absl::Status Init();
  // Creates the ring on the new thread and starts the loop; the error if the ring cannot be set up.
  [[nodiscard]] absl::Status Start();
  // Scanner thread. False when the inbound queue is full.
  [[nodiscard]] bool Enqueue(DeliveryJob* job) { return inbound_.TryPush(job); }
  void Wake();
  // Scanner thread, at SIGTERM: stop taking work now — queued, held and rate-waiting jobs are
  // deferred ("engine shutting down"), connections not ready yet close, idle ones QUIT; only
  // transactions under way go on (RequestAbort bounds them). The loop keeps running (jobs the
  // scanner still hands over are deferred at once) until RequestStop().
  void RequestDrain();
  // Drains (as RequestDrain) and ends the loop once nothing is left.
  void RequestStop();
  // Scanner thread: the shutdown bound passed. Stops the worker (queued jobs are deferred) and
  // aborts every connection, deferring what it carried ("shutdown").
  void RequestAbort();
  void Join();

  const WorkerStats& stats() const { return stats_; }
  // MTA-STS policies for this worker's destinations (before Init; nullptr = off).
  void set_sts(StsSource* sts) { sts_ = sts; }
  // Where connections record TLS-RPT session outcomes (before Init; nullptr = off).
  void set_tlsrpt(TlsRptRecorder* r) { tlsrpt_ = r; }
  // Banner strict-tls pins to apply and learn (tls/banner_pin.h; before Init; nullptr = off).
  void set_banner_pins(BannerPinStore* pins) { banner_pins_ = pins; }
  // The control plane's queues (engine/control_plane.h); before Start(), never with [http] off.
  void AttachControl(WorkerChannel* channel) { control_ = channel; }
  // The ephemeral port range (engine/connect_gate.h) and how many workers share it; before Init.
  void set_ports(const EphemeralPorts& ports, int workers) {
    ports_ = ports;
    port_sharers_ = workers;
  }
  // Any thread (the scanner after SIGHUP, engine/reload.cc): new shaping rules, adopted on the
  // worker's next tick. The table must outlive the worker.
  void ReplaceShaping(const ShapingTable* table) {
    new_shaping_.store(table, std::memory_order_release);
  }

  // Sockets one worker can hold as io_uring direct descriptors (engine/ring.h): its
  // registered file table, min(RLIMIT_NOFILE, 65536) — each worker has its own.
  static uint32_t DirectTableSize();

  struct Impl;

 private:

  uint32_t index_;
  const EngineConfig& config_;
  const StaticRoutes& routes_;
  TlsContext* tls_client_;
  CompletionQueue* done_;
  StsSource* sts_ = nullptr;
  TlsRptRecorder* tlsrpt_ = nullptr;
  BannerPinStore* banner_pins_ = nullptr;
  MpscQueue<DeliveryJob*> inbound_;
  int wake_fd_ = -1;
  std::atomic<bool> drain_{false};
  std::atomic<bool> stop_{false};
  std::atomic<bool> abort_{false};
  std::thread thread_;
  WorkerStats stats_;
  WorkerChannel* control_ = nullptr;
  EphemeralPorts ports_;
  int port_sharers_ = 1;
  std::atomic<const ShapingTable*> new_shaping_{nullptr};
  std::unique_ptr<Impl> impl_;
};

}  // namespace mxb
