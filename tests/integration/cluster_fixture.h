// Fixtures for the scaling-out tests (issue 15): a private RabbitMQ broker and a private Redis on
// 127.0.0.1, each started once per test binary (they are slow to start: RabbitMQ ~5–15 s), and
// helpers to publish to a queue with rabbitmq-c and to count what a sink received.
//
// RabbitMQ listens only on loopback: AMQP on 127.0.0.1:PORT, Erlang distribution on
// 127.0.0.1:PORT+1 (inet_dist_use_interface), and its own epmd (started here, not as a daemon)
// on 127.0.0.1:PORT+2 — never the shared epmd port 4369, never another agent's broker. Node
// name, Mnesia and log directories are private to the test's directory.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tests/integration/fixture.h"

namespace mxb::testing {

class RabbitMqServer {
 public:
  // "" when the Debian packages are there, else why not (for GTEST_SKIP).
  static std::string Missing();
  explicit RabbitMqServer(std::string dir);
  ~RabbitMqServer();
  // Starts epmd (once) and the broker; returns when a client can log in (or false on timeout).
  bool Start(absl::Duration timeout = absl::Seconds(90));
  // SIGTERM and wait: a clean shutdown (durable queues and persistent messages survive).
  void Stop();
  std::string url() const;  // amqp://guest:guest@127.0.0.1:PORT
  const std::string& log_path() const { return log_; }

 private:
  std::string dir_, log_;
  int port_ = 0;
  int starts_ = 0;
  std::unique_ptr<Subprocess> epmd_, broker_;
};

class RedisServer {
 public:
  static std::string Missing();
  explicit RedisServer(std::string dir);
  // redis-server on 127.0.0.1 (the same port on every start), no persistence.
  bool Start(absl::Duration timeout = absl::Seconds(20));
  void Stop();  // SIGKILL: Redis gone at once, its state with it
  std::string url() const;  // redis://127.0.0.1:PORT
  int port() const { return port_; }

 private:
  std::string dir_;
  int port_ = 0;
  std::unique_ptr<Subprocess> proc_;
};

// Publishes each body as a persistent message (delivery_mode 2) to `queue` (declared durable)
// through the default exchange, with publisher confirms, so that every one is in the broker.
// With `envelopes` (one per body), each message also carries AMQP headers x-sender (string) and
// x-receiver (an array of strings): the header form of input/amqp_envelope.h.
struct HeaderEnvelope {
  std::string sender;
  std::vector<std::string> receivers;
};
absl::Status PublishAmqp(const std::string& url, const std::string& queue,
                         const std::vector<std::string>& bodies,
                         const std::vector<HeaderEnvelope>* envelopes = nullptr);
// Messages ready in the queue (not counting deliveries awaiting an ack); -1 on error.
int QueueReady(const std::string& url, const std::string& queue);
// Declares `queue` durable and binds it to `exchange` with `routing_key` (the outcome stream).
absl::Status BindQueue(const std::string& url, const std::string& queue,
                       const std::string& exchange, const std::string& routing_key);
// Takes (basic.get, acknowledged) every message ready in `queue`; bodies in queue order.
absl::StatusOr<std::vector<std::string>> TakeAll(const std::string& url, const std::string& queue);
// Deletes the queue (a clean start for a test); OK when it did not exist.
absl::Status DeleteQueue(const std::string& url, const std::string& queue);

// A pickup file (spool format) to dom-N.example with Message-ID <ID@cluster.test>.
std::string PickupFile(const std::string& id, int domain);

// Message-ID -> times received, over every sink directory's *.eml files.
std::map<std::string, int> ReceivedIds(const std::vector<std::string>& out_dirs);
// Number of *.env files (complete messages) in `out_dir`.
size_t CountReceived(const std::string& out_dir);

}  // namespace mxb::testing
