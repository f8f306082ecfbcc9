// AmqpChannel: one rabbitmq-c connection (Debian's librabbitmq) with channel 1 open, shared by
// the AMQP input (input/amqp_input.h, consumes) and the outcome stream (output/amqp_output.h,
// publishes): URL parsing, TCP connect with a timeout, SASL PLAIN login with heartbeats, and a
// readable one-line text for any rabbitmq-c reply. One thread owns an AmqpChannel (rabbitmq-c
// connections are not thread-safe); closing is the destructor.
//
//   mxb::AmqpChannel ch;
//   if (absl::Status s = ch.Open(url); !s.ok()) ...;     // "127.0.0.1:5672: connect: ..."
//   amqp_basic_publish(ch.conn(), mxb::AmqpChannel::kChannel, ...);
#pragma once

#include <amqp.h>

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace mxb {

struct AmqpUrl {
  std::vector<char> buffer;  // amqp_parse_url points into it
  amqp_connection_info info{};
};

// "amqp://[user[:password]@]host[:port][/vhost]"; an empty vhost means the default "/".
[[nodiscard]] absl::Status ParseAmqpUrl(const std::string& url, AmqpUrl* out);

// "what: <library error | reply code and text>", "" for a normal reply.
std::string AmqpReplyText(const amqp_rpc_reply_t& r, const char* what);

class AmqpChannel {
 public:
  static constexpr amqp_channel_t kChannel = 1;
  // AMQP 0-9-1 §4.2.7 heartbeat: a dead peer is noticed within two intervals even without a RST
  // (rabbitmq-c answers and checks heartbeats inside its wait calls).
  static constexpr int kHeartbeatSeconds = 10;

  AmqpChannel() = default;
  ~AmqpChannel();
  AmqpChannel(const AmqpChannel&) = delete;
  AmqpChannel& operator=(const AmqpChannel&) = delete;

  // Connects (2 s timeout), logs in and opens channel 1. Errors name the broker address.
  [[nodiscard]] absl::Status Open(const std::string& url);
  // The channel or connection is gone (a close from the broker, a socket error): the destructor
  // then only frees, it sends no close.
  void MarkClosed() { open_ = false; }
  // Errors of the last RPC on the channel as an Unavailable status naming the broker.
  [[nodiscard]] absl::Status Check(const char* what);

  amqp_connection_state_t conn() const { return conn_; }
  const std::string& where() const { return where_; }

 private:
  amqp_connection_state_t conn_ = nullptr;
  bool open_ = false;
  std::string where_;
};

}  // namespace mxb
