// AmqpInput: RabbitMQ as a message source (issue 15). One thread consumes a durable queue with
// manual acknowledgements (rabbitmq-c, Debian's librabbitmq) and turns each message — its body a
// pickup file, exactly what a producer would drop into the spool (envelope lines, then the RFC
// 5322 message), or the bare message with the envelope in AMQP headers (input/amqp_envelope.h)
// — into a spool file: tmp/ → fsync → rename into incoming/ (up to 8 files of a batch at once,
// on short-lived helper threads), one fsync of incoming/ per batch, and only then one `basic.ack multiple` for the batch. A node that dies
// before the ack gets those messages redelivered by the broker to another consumer: that is the
// only duplicate window (≤ prefetch messages per node), counted as "redelivered".
//
// Back-pressure: while the engine's in-flight budget is full, or more than `prefetch` spooled
// messages wait unclaimed in incoming/, the thread writes and acks nothing; the broker stops
// sending after `prefetch` unacknowledged deliveries, so at most `prefetch` bodies wait in memory.
// The broker down or the connection lost: reconnect with back-off (0.25 s doubling to 5 s), one
// stderr line per state change, metrics (WriteMetrics). Whatever is already in the spool keeps
// being delivered meanwhile; the scanner never waits for this thread.
//
// Threads: Start()/Stop() from the scanner (the owner); the thread runs Loop(); IntakeGauge is
// written by the scanner and read here; WriteMetrics from the control plane's HTTP threads.
//
//   mxb::AmqpInput in(config.amqp, config.spool_dir, &gauge);
//   in.Start();                 // own thread, reconnects by itself
//   gauge.Publish(in_flight, max_in_flight);  // scanner, every loop
//   in.Stop();                  // acks what is durable, closes the connection
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "control/prometheus.h"

namespace mxb {

// `[input.amqp]`: url = "amqp://user:pass@127.0.0.1:5672/vhost", queue, prefetch.
struct AmqpInputConfig {
  std::string url;  // "" = no AMQP input
  std::string queue = "mxburst.outbound";
  int prefetch = 256;  // unacknowledged deliveries the broker may send (basic.qos)
  bool enabled() const { return !url.empty(); }
};

// What the scanner tells the intake threads about its budget (relaxed atomics).
struct IntakeGauge {
  std::atomic<size_t> in_flight{0};
  std::atomic<size_t> max_in_flight{SIZE_MAX};
  std::atomic<uint64_t> claimed_incoming{0};  // files claimed from incoming/ so far
  void Publish(size_t now, size_t max) {
    in_flight.store(now, std::memory_order_relaxed);
    max_in_flight.store(max, std::memory_order_relaxed);
  }
};

// "amqp://…" is one rabbitmq-c accepts (amqp_parse_url); the error names the key.
[[nodiscard]] absl::Status CheckAmqpUrl(const std::string& url);

class AmqpInput {
 public:
  AmqpInput(AmqpInputConfig config, std::string spool_root, IntakeGauge* gauge, bool quiet);
  ~AmqpInput();
  AmqpInput(const AmqpInput&) = delete;
  AmqpInput& operator=(const AmqpInput&) = delete;

  void Start();
  void Stop();
  void WriteMetrics(control::PrometheusText* p) const;

  struct Stats {
    std::atomic<bool> connected{false};
    std::atomic<bool> paused{false};
    std::atomic<uint64_t> received{0};     // deliveries taken off the socket
    std::atomic<uint64_t> spooled{0};      // written into incoming/ (durable)
    std::atomic<uint64_t> acked{0};        // acknowledged to the broker
    std::atomic<uint64_t> redelivered{0};  // deliveries the broker marked as redelivered
    std::atomic<uint64_t> disconnects{0};  // connections lost or refused
    std::atomic<uint64_t> spool_errors{0}; // writes that failed (the message is not acked)
    std::atomic<uint64_t> bad{0};          // header envelopes refused: into bad/ with a .why
  };
  const Stats& stats() const { return stats_; }

 private:
  class Session;
  void Loop();
  // Writes one delivery durably: incoming/ (batched; the caller syncs incoming/), or bad/.
  // `bad` is why the headers' envelope was refused ("" = fine).
  [[nodiscard]] absl::Status Store(const std::string& file, const std::string& bad);
  void SetState(const std::string& state, const std::string& line);

  const AmqpInputConfig config_;
  const std::string spool_root_;
  IntakeGauge* gauge_;
  const bool quiet_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::string state_;  // the loop thread only: the last state logged
  Stats stats_;
};

}  // namespace mxb
