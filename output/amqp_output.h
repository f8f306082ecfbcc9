// AmqpOutput: the optional outcome stream (issue 15, `[output.amqp]`). Every accounting record
// (one JSON line of engine/accounting_log.h, after it is durable in the local log) is published
// as one persistent message to a RabbitMQ exchange with a routing key, with publisher confirms
// (RabbitMQ's confirm.select extension to AMQP 0-9-1). The local accounting log stays the
// source of truth: the stream is a copy for dashboards and webhooks, and may lose records.
//
// Its own thread, never a worker ring, and it never blocks the scanner: Offer() pushes into a
// bounded lock-free queue (queue/mpsc_queue.h, `max_queued` rounded up to a power of two) and
// counts a drop when it is full. The broker down or slow: records wait in that queue (bounded
// memory) while the thread reconnects with back-off; once it is full, records are dropped and
// counted (mxburst_amqp_output_dropped_total). Records published but not confirmed when the
// connection is lost are published again on the next connection (so a consumer may see a record
// twice after a reconnect). One stderr line per state change (up, down, dropping, not dropping).
//
// Threads: Offer() from the scanner (the AccountingLog's durable hook); Start()/Stop() from the
// engine's owner; the thread runs Loop(); WriteMetrics from the control plane's HTTP threads.
//
//   mxb::AmqpOutput out(config.amqp_output, config.quiet);
//   out.Start();
//   log->set_on_durable([&out](absl::string_view lines) { out.Offer(lines); });
//   out.Stop();  // up to 2 s to publish what is queued and collect its confirms
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "control/prometheus.h"
#include "queue/mpsc_queue.h"

namespace mxb {

// `[output.amqp]`: url, exchange, routing_key, max_queued.
struct AmqpOutputConfig {
  std::string url;                           // "" = no outcome stream
  std::string exchange = "amq.topic";        // must exist; "" = the default exchange
  std::string routing_key = "mxburst.outcome";
  size_t max_queued = 10000;                 // records waiting for the broker
  bool enabled() const { return !url.empty(); }
};

class AmqpOutput {
 public:
  AmqpOutput(AmqpOutputConfig config, bool quiet);
  ~AmqpOutput();
  AmqpOutput(const AmqpOutput&) = delete;
  AmqpOutput& operator=(const AmqpOutput&) = delete;

  void Start();
  void Stop();
  // Scanner thread: `lines` are complete "\n"-terminated records now durable in the local log.
  // Never blocks; a record that does not fit is dropped and counted.
  void Offer(absl::string_view lines);
  void WriteMetrics(control::PrometheusText* p) const;

  struct Stats {
    std::atomic<bool> connected{false};
    std::atomic<uint64_t> offered{0};      // records handed over by the accounting log
    std::atomic<uint64_t> published{0};    // basic.publish calls (a retry counts again)
    std::atomic<uint64_t> confirmed{0};    // acked by the broker (durable there if routed)
    std::atomic<uint64_t> dropped_full{0};       // the queue was full
    std::atomic<uint64_t> dropped_nacked{0};     // the broker nacked them
    std::atomic<uint64_t> dropped_unroutable{0}; // no queue bound for the routing key
    std::atomic<uint64_t> dropped_shutdown{0};   // still queued or unconfirmed at Stop()
    std::atomic<uint64_t> disconnects{0};  // connections lost or refused
  };
  const Stats& stats() const { return stats_; }

 private:
  class Session;
  void Loop();
  void SetState(const std::string& state, const std::string& line);
  void NoteDrops();

  const AmqpOutputConfig config_;
  const bool quiet_;
  MpscQueue<std::string> queue_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  // The loop thread only.
  std::string state_;                // the last connection state logged
  bool dropping_ = false;            // the last drop state logged
  uint64_t drops_seen_ = 0;
  absl::Time last_drop_ = absl::InfinitePast();
  std::deque<std::string> retry_;    // unconfirmed when the last connection was lost
  Stats stats_;
};

}  // namespace mxb
