#include "input/amqp_input.h"

#include <amqp.h>

#include <algorithm>
#include <cstdio>
#include <deque>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "input/amqp_connection.h"
#include "input/amqp_envelope.h"
#include "queue/spool.h"

namespace mxb {
namespace {

constexpr absl::Duration kBackoffMin = absl::Milliseconds(250);
constexpr absl::Duration kBackoffMax = absl::Seconds(5);
constexpr amqp_channel_t kChannel = AmqpChannel::kChannel;
constexpr size_t kStoreThreads = 8;  // concurrent file writes + fsyncs per batch

}  // namespace

absl::Status CheckAmqpUrl(const std::string& url) {
  AmqpUrl p;
  return ParseAmqpUrl(url, &p);
}

// One connection with one channel consuming the queue. Loop thread only.
class AmqpInput::Session {
 public:
  // Connects, logs in, declares the durable queue, sets the prefetch and starts consuming.
  absl::Status Open(const AmqpInputConfig& c) {
    if (absl::Status s = ch_.Open(c.url); !s.ok()) return s;
    conn_ = ch_.conn();
    const amqp_bytes_t queue = amqp_cstring_bytes(c.queue.c_str());
    // Durable, not exclusive, not auto-deleted: the queue outlives every consumer and the
    // broker's restarts (with persistent messages, delivery_mode 2).
    amqp_queue_declare(conn_, kChannel, queue, 0, 1, 0, 0, amqp_empty_table);
    if (absl::Status s = ch_.Check(absl::StrCat("queue.declare ", c.queue).c_str()); !s.ok()) {
      return s;
    }
    amqp_basic_qos(conn_, kChannel, 0, static_cast<uint16_t>(c.prefetch), 0);
    if (absl::Status s = ch_.Check("basic.qos"); !s.ok()) return s;
    // no_ack = 0: manual acknowledgements.
    amqp_basic_consume(conn_, kChannel, queue, amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
    return ch_.Check("basic.consume");
  }

  struct Delivery {
    uint64_t tag = 0;
    bool redelivered = false;
    std::string file;  // the spool file (input/amqp_envelope.h); the raw body when `bad`
    std::string bad;   // why the headers' envelope was refused ("" = fine)
    bool stored = false;  // in incoming/ (or bad/), waiting for the ack
  };
  enum class Next { kDelivery, kNothing, kClosed };

  // Waits up to `wait` for one delivery (heartbeats are answered inside rabbitmq-c).
  Next Receive(absl::Duration wait, Delivery* out, std::string* error) {
    amqp_maybe_release_buffers(conn_);
    amqp_envelope_t env;
    timeval tv = absl::ToTimeval(wait);
    amqp_rpc_reply_t r = amqp_consume_message(conn_, &env, &tv, 0);
    if (r.reply_type == AMQP_RESPONSE_NORMAL) {
      out->tag = env.delivery_tag;
      out->redelivered = env.redelivered != 0;
      const absl::string_view body(static_cast<const char*>(env.message.body.bytes),
                                   env.message.body.len);
      const amqp_basic_properties_t& p = env.message.properties;
      absl::StatusOr<std::string> file =
          SpoolFileForAmqp((p._flags & AMQP_BASIC_HEADERS_FLAG) ? &p.headers : nullptr, body);
      if (file.ok()) {
        out->file = *std::move(file);
        out->bad.clear();
      } else {
        out->file = std::string(body);
        out->bad = std::string(file.status().message());
      }
      amqp_destroy_envelope(&env);
      return Next::kDelivery;
    }
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
        r.library_error == AMQP_STATUS_TIMEOUT) {
      return Next::kNothing;
    }
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
        r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
      // A frame other than a delivery: a close (broker shutting down, queue deleted) ends the
      // session; anything else is ignored.
      amqp_frame_t frame;
      if (amqp_simple_wait_frame(conn_, &frame) != AMQP_STATUS_OK) {
        *error = "connection lost";
        return Next::kClosed;
      }
      if (frame.frame_type == AMQP_FRAME_METHOD) {
        switch (frame.payload.method.id) {
          case AMQP_CONNECTION_CLOSE_METHOD:
            amqp_send_method(conn_, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, nullptr);
            ch_.MarkClosed();
            *error = "the broker closed the connection";
            return Next::kClosed;
          case AMQP_CHANNEL_CLOSE_METHOD:
          case AMQP_BASIC_CANCEL_METHOD:
            *error = "the broker closed the channel (queue deleted?)";
            return Next::kClosed;
          default:
            break;
        }
      }
      return Next::kNothing;
    }
    *error = AmqpReplyText(r, "receive");
    ch_.MarkClosed();
    return Next::kClosed;
  }

  // basic.ack with multiple = 1: every delivery up to and including `tag`.
  bool AckUpTo(uint64_t tag) { return amqp_basic_ack(conn_, kChannel, tag, 1) == AMQP_STATUS_OK; }
  const std::string& where() const { return ch_.where(); }

 private:
  AmqpChannel ch_;
  amqp_connection_state_t conn_ = nullptr;
};

AmqpInput::AmqpInput(AmqpInputConfig config, std::string spool_root, IntakeGauge* gauge,
                     bool quiet)
    : config_(std::move(config)), spool_root_(std::move(spool_root)), gauge_(gauge),
      quiet_(quiet) {}

AmqpInput::~AmqpInput() { Stop(); }

void AmqpInput::Start() { thread_ = std::thread([this] { Loop(); }); }

void AmqpInput::Stop() {
  stop_.store(true, std::memory_order_relaxed);
  if (thread_.joinable()) thread_.join();
}

void AmqpInput::SetState(const std::string& state, const std::string& line) {
  if (state == state_) return;  // one line per state change, not per retry
  state_ = state;
  if (!quiet_ || state == "down") std::fprintf(stderr, "mxburst: amqp: %s\n", line.c_str());
}

absl::Status AmqpInput::Store(const std::string& file, const std::string& bad) {
  const std::string name = NewSpoolFileName();
  if (bad.empty()) return InjectFileBatched(spool_root_, name, file);
  // Refused headers: into bad/ with the reason, like a spool file that does not parse (each
  // write is fsync'ed with its directory, so the ack after it loses nothing).
  absl::Status s = ReplaceSpoolFile(spool_root_, "bad", name, file);
  if (s.ok()) s = ReplaceSpoolFile(spool_root_, "bad", name + ".why", bad + "\n");
  if (!s.ok()) return s;
  stats_.bad.fetch_add(1, std::memory_order_relaxed);
  if (!quiet_) std::fprintf(stderr, "mxburst: amqp: bad/%s: %s\n", name.c_str(), bad.c_str());
  return absl::OkStatus();
}

void AmqpInput::Loop() {
  absl::Duration backoff = kBackoffMin;
  const uint64_t claimed_at_start = gauge_->claimed_incoming.load(std::memory_order_relaxed);
  const size_t batch_max = static_cast<size_t>(std::max(1, config_.prefetch / 2));
  while (!stop_.load(std::memory_order_relaxed)) {
    Session session;
    if (absl::Status s = session.Open(config_); !s.ok()) {
      stats_.disconnects.fetch_add(1, std::memory_order_relaxed);
      SetState("down", absl::StrCat(s.message(), " — retrying with back-off (up to ",
                                    absl::FormatDuration(kBackoffMax), ")"));
      for (absl::Time until = absl::Now() + backoff;
           absl::Now() < until && !stop_.load(std::memory_order_relaxed);) {
        absl::SleepFor(absl::Milliseconds(50));
      }
      backoff = std::min(backoff * 2, kBackoffMax);
      continue;
    }
    backoff = kBackoffMin;
    stats_.connected.store(true, std::memory_order_relaxed);
    SetState("up", absl::StrCat("consuming queue ", config_.queue, " at ", session.where(),
                                " (prefetch ", config_.prefetch, ")"));
    std::deque<Session::Delivery> held;  // received, not yet durable: at most `prefetch`
    std::string error;
    bool paused = false;
    while (!stop_.load(std::memory_order_relaxed)) {
      // Wait for the first delivery, then take what is already there without waiting.
      Session::Delivery d;
      const absl::Duration wait =
          held.empty() || paused ? absl::Milliseconds(100) : absl::ZeroDuration();
      Session::Next n = session.Receive(wait, &d, &error);
      if (n == Session::Next::kClosed) break;
      if (n == Session::Next::kDelivery) {
        stats_.received.fetch_add(1, std::memory_order_relaxed);
        if (d.redelivered) stats_.redelivered.fetch_add(1, std::memory_order_relaxed);
        held.push_back(std::move(d));
        if (held.size() < batch_max) continue;
      }
      if (held.empty()) continue;
      // Back-pressure: the engine's budget is full, or our files pile up unclaimed.
      const uint64_t claimed =
          gauge_->claimed_incoming.load(std::memory_order_relaxed) - claimed_at_start;
      const uint64_t spooled = stats_.spooled.load(std::memory_order_relaxed);
      const bool full = gauge_->in_flight.load(std::memory_order_relaxed) >=
                            gauge_->max_in_flight.load(std::memory_order_relaxed) ||
                        spooled > claimed + static_cast<uint64_t>(config_.prefetch);
      if (full != paused) {
        paused = full;
        stats_.paused.store(full, std::memory_order_relaxed);
        SetState(full ? "paused" : "up",
                 full ? "in-flight budget full: not consuming until it drains"
                      : absl::StrCat("consuming queue ", config_.queue, " again"));
      }
      if (paused) continue;
      // Durable first (file fsync, rename, one directory fsync for the batch), then the ack.
      // The files' fsyncs run on kStoreThreads threads at once: one after the other they bound
      // a node at a few hundred messages/s (bench/README.md "Scaling out"), while concurrent
      // fsyncs share the file system's journal commits. The ack covers the stored prefix; a
      // delivery stored after a failed one is not written again by the retry.
      std::vector<absl::Status> stored(held.size());
      {
        const size_t threads = std::min(kStoreThreads, held.size());
        auto store_from = [&](size_t first) {
          for (size_t i = first; i < held.size(); i += threads) {
            if (held[i].stored) continue;  // written by an earlier, partly failed attempt
            stored[i] = Store(held[i].file, held[i].bad);
            held[i].stored = stored[i].ok();
          }
        };
        std::vector<std::thread> pool;
        for (size_t t = 1; t < threads; ++t) pool.emplace_back(store_from, t);
        store_from(0);
        for (std::thread& th : pool) th.join();
      }
      size_t durable = 0;
      while (durable < held.size() && held[durable].stored) ++durable;
      if (durable < held.size()) {
        stats_.spool_errors.fetch_add(1, std::memory_order_relaxed);
        SetState("spool-error",
                 absl::StrCat(stored[durable].message(), ": not acknowledging; retrying"));
      }
      if (durable > 0) {
        if (absl::Status s = SyncIncoming(spool_root_); !s.ok()) {
          stats_.spool_errors.fetch_add(1, std::memory_order_relaxed);
          SetState("spool-error", absl::StrCat(s.message(), ": not acknowledging; retrying"));
          // The renames may not survive a crash: no ack (the broker keeps its copies); the
          // files stay marked stored, so the retry only syncs incoming/ again.
          durable = 0;
        }
      }
      stats_.spooled.fetch_add(durable, std::memory_order_relaxed);
      if (durable > 0) {
        if (!session.AckUpTo(held[durable - 1].tag)) {
          error = "basic.ack failed";
          break;
        }
        stats_.acked.fetch_add(durable, std::memory_order_relaxed);
        held.erase(held.begin(), held.begin() + static_cast<ptrdiff_t>(durable));
        if (state_ == "spool-error") SetState("up", "spool writes succeed again");
      } else {
        absl::SleepFor(absl::Milliseconds(100));
      }
    }
    stats_.connected.store(false, std::memory_order_relaxed);
    stats_.paused.store(false, std::memory_order_relaxed);
    if (stop_.load(std::memory_order_relaxed)) break;
    // Deliveries not yet durable are dropped: the broker requeues every unacknowledged one.
    stats_.disconnects.fetch_add(1, std::memory_order_relaxed);
    SetState("down", absl::StrCat(session.where(), ": ", error, " — ", held.size(),
                                  " unacknowledged deliveries left to the broker; reconnecting"));
  }
}

void AmqpInput::WriteMetrics(control::PrometheusText* p) const {
  auto u = [](const std::atomic<uint64_t>& a) {
    return static_cast<double>(a.load(std::memory_order_relaxed));
  };
  p->Family("mxburst_amqp_connected", "gauge", "1 while the AMQP input consumes its queue.");
  p->Sample("mxburst_amqp_connected", {}, stats_.connected.load() ? 1 : 0);
  p->Family("mxburst_amqp_paused", "gauge",
            "1 while the AMQP input does not consume because the in-flight budget is full.");
  p->Sample("mxburst_amqp_paused", {}, stats_.paused.load() ? 1 : 0);
  p->Family("mxburst_amqp_messages_total", "counter", "AMQP deliveries by stage.");
  p->Sample("mxburst_amqp_messages_total", {{"stage", "received"}}, u(stats_.received));
  p->Sample("mxburst_amqp_messages_total", {{"stage", "spooled"}}, u(stats_.spooled));
  p->Sample("mxburst_amqp_messages_total", {{"stage", "acked"}}, u(stats_.acked));
  p->Sample("mxburst_amqp_messages_total", {{"stage", "redelivered"}}, u(stats_.redelivered));
  p->Sample("mxburst_amqp_messages_total", {{"stage", "bad"}}, u(stats_.bad));
  p->Family("mxburst_amqp_disconnects_total", "counter",
            "AMQP connections lost or connection attempts that failed.");
  p->Sample("mxburst_amqp_disconnects_total", {}, u(stats_.disconnects));
  p->Family("mxburst_amqp_spool_errors_total", "counter",
            "AMQP deliveries that could not be written to the spool (not acknowledged).");
  p->Sample("mxburst_amqp_spool_errors_total", {}, u(stats_.spool_errors));
}

}  // namespace mxb
