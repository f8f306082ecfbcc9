#include "output/amqp_output.h"

#include <amqp.h>

#include <algorithm>
#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "input/amqp_connection.h"

namespace mxb {
namespace {

constexpr absl::Duration kBackoffMin = absl::Milliseconds(250);
constexpr absl::Duration kBackoffMax = absl::Seconds(5);
constexpr absl::Duration kStopBudget = absl::Seconds(2);
constexpr amqp_channel_t kChannel = AmqpChannel::kChannel;
// Published and not yet confirmed: bounds what a lost connection makes us publish again.
constexpr size_t kWindow = 1000;

}  // namespace

// One connection in confirm mode publishing to the exchange. Loop thread only.
class AmqpOutput::Session {
 public:
  explicit Session(const AmqpOutputConfig& c, Stats* stats) : c_(c), stats_(stats) {}

  absl::Status Open() {
    if (absl::Status s = ch_.Open(c_.url); !s.ok()) return s;
    conn_ = ch_.conn();
    if (!c_.exchange.empty()) {
      // Passive: the operator owns the exchange (its type and bindings); a missing one is a
      // clear "404 NOT_FOUND" now rather than a channel closed by the first publish.
      amqp_exchange_declare(conn_, kChannel, amqp_cstring_bytes(c_.exchange.c_str()),
                            amqp_cstring_bytes("topic"), 1, 0, 0, 0, amqp_empty_table);
      if (absl::Status s = ch_.Check(absl::StrCat("exchange ", c_.exchange).c_str()); !s.ok()) {
        return s;
      }
    }
    amqp_confirm_select(conn_, kChannel);
    return ch_.Check("confirm.select");
  }

  // One persistent JSON message; mandatory, so that an unroutable record comes back as
  // basic.return (counted) instead of vanishing. false: the connection is gone.
  bool Publish(std::string record) {
    amqp_basic_properties_t props{};
    props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG;
    props.delivery_mode = 2;
    props.content_type = amqp_cstring_bytes("application/json");
    const amqp_bytes_t body{record.size(), record.data()};
    if (amqp_basic_publish(conn_, kChannel, amqp_cstring_bytes(c_.exchange.c_str()),
                           amqp_cstring_bytes(c_.routing_key.c_str()), 1, 0, &props, body) !=
        AMQP_STATUS_OK) {
      unconfirmed_.emplace_back(next_seq_, std::move(record));  // resent on the next connection
      return false;
    }
    stats_->published.fetch_add(1, std::memory_order_relaxed);
    unconfirmed_.emplace_back(next_seq_++, std::move(record));
    return true;
  }

  // Reads the frames that arrived within `wait`: confirms, returns, a close. false: the
  // connection is gone (*error says why).
  bool Poll(absl::Duration wait, std::string* error) {
    for (bool first = true;; first = false) {
      amqp_frame_t frame;
      timeval tv = absl::ToTimeval(first ? wait : absl::ZeroDuration());
      const int rc = amqp_simple_wait_frame_noblock(conn_, &frame, &tv);
      if (rc == AMQP_STATUS_TIMEOUT) return true;
      if (rc != AMQP_STATUS_OK) {
        *error = amqp_error_string2(rc);
        ch_.MarkClosed();
        return false;
      }
      if (frame.frame_type != AMQP_FRAME_METHOD) continue;
      switch (frame.payload.method.id) {
        case AMQP_BASIC_ACK_METHOD: {
          const auto* m = static_cast<amqp_basic_ack_t*>(frame.payload.method.decoded);
          Settle(m->delivery_tag, m->multiple != 0, &stats_->confirmed);
          break;
        }
        case AMQP_BASIC_NACK_METHOD: {
          const auto* m = static_cast<amqp_basic_nack_t*>(frame.payload.method.decoded);
          Settle(m->delivery_tag, m->multiple != 0, &stats_->dropped_nacked);
          break;
        }
        case AMQP_BASIC_RETURN_METHOD: {
          // The returned content follows; the broker still acks the message afterwards.
          amqp_message_t returned;
          if (amqp_read_message(conn_, kChannel, &returned, 0).reply_type ==
              AMQP_RESPONSE_NORMAL) {
            amqp_destroy_message(&returned);
          }
          stats_->dropped_unroutable.fetch_add(1, std::memory_order_relaxed);
          break;
        }
        case AMQP_CONNECTION_CLOSE_METHOD:
          amqp_send_method(conn_, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, nullptr);
          ch_.MarkClosed();
          *error = "the broker closed the connection";
          return false;
        case AMQP_CHANNEL_CLOSE_METHOD:
          ch_.MarkClosed();
          *error = "the broker closed the channel";
          return false;
        default:
          break;
      }
    }
  }

  size_t unconfirmed() const { return unconfirmed_.size(); }
  // The connection is gone: what it did not confirm, oldest first.
  std::deque<std::string> TakeUnconfirmed() {
    std::deque<std::string> out;
    for (auto& [seq, record] : unconfirmed_) out.push_back(std::move(record));
    unconfirmed_.clear();
    return out;
  }
  const std::string& where() const { return ch_.where(); }

 private:
  // Confirm tags count publishes on the channel from 1; `multiple` settles every one up to tag.
  void Settle(uint64_t tag, bool multiple, std::atomic<uint64_t>* counter) {
    uint64_t n = 0;
    if (multiple) {
      while (!unconfirmed_.empty() && unconfirmed_.front().first <= tag) {
        unconfirmed_.pop_front();
        ++n;
      }
    } else {
      auto it = std::find_if(unconfirmed_.begin(), unconfirmed_.end(),
                             [tag](const auto& u) { return u.first == tag; });
      if (it != unconfirmed_.end()) {
        unconfirmed_.erase(it);
        n = 1;
      }
    }
    counter->fetch_add(n, std::memory_order_relaxed);
  }

  const AmqpOutputConfig& c_;
  Stats* stats_;
  AmqpChannel ch_;
  amqp_connection_state_t conn_ = nullptr;
  uint64_t next_seq_ = 1;
  std::deque<std::pair<uint64_t, std::string>> unconfirmed_;
};

AmqpOutput::AmqpOutput(AmqpOutputConfig config, bool quiet)
    : config_(std::move(config)), quiet_(quiet), queue_(config_.max_queued) {}

AmqpOutput::~AmqpOutput() { Stop(); }

void AmqpOutput::Start() { thread_ = std::thread([this] { Loop(); }); }

void AmqpOutput::Stop() {
  stop_.store(true, std::memory_order_relaxed);
  if (thread_.joinable()) thread_.join();
}

void AmqpOutput::Offer(absl::string_view lines) {
  while (!lines.empty()) {
    const size_t nl = lines.find('\n');
    const absl::string_view record = lines.substr(0, nl);
    lines.remove_prefix(nl == absl::string_view::npos ? lines.size() : nl + 1);
    if (record.empty()) continue;
    stats_.offered.fetch_add(1, std::memory_order_relaxed);
    if (!queue_.TryPush(std::string(record))) {
      stats_.dropped_full.fetch_add(1, std::memory_order_relaxed);
    }
  }
}

void AmqpOutput::SetState(const std::string& state, const std::string& line) {
  if (state == state_) return;  // one line per state change, not per retry
  state_ = state;
  if (!quiet_ || state == "down") std::fprintf(stderr, "mxburst: amqp output: %s\n", line.c_str());
}

// Drops happen on the scanner thread; this thread notices them and logs the change once. The
// "room again" line waits for 1 s without a drop, so a queue that hovers at full does not log
// a pair of lines per burst.
void AmqpOutput::NoteDrops() {
  const uint64_t drops = stats_.dropped_full.load(std::memory_order_relaxed);
  const absl::Time now = absl::Now();
  if (drops != drops_seen_) {
    drops_seen_ = drops;
    last_drop_ = now;
  }
  const bool dropping = now - last_drop_ < absl::Seconds(1);
  if (dropping == dropping_) return;
  dropping_ = dropping;
  std::fprintf(stderr, "mxburst: amqp output: %s\n",
               dropping ? absl::StrCat("queue full (", queue_.capacity(),
                                       " records): dropping outcome records (the accounting log "
                                       "keeps them)").c_str()
                        : "queue has room again: no more records dropped");
}

void AmqpOutput::Loop() {
  absl::Duration backoff = kBackoffMin;
  absl::Time stop_deadline = absl::InfiniteFuture();
  auto stopping = [&] {
    if (!stop_.load(std::memory_order_relaxed)) return false;
    if (stop_deadline == absl::InfiniteFuture()) stop_deadline = absl::Now() + kStopBudget;
    return true;
  };
  while (!stopping()) {
    Session session(config_, &stats_);
    if (absl::Status s = session.Open(); !s.ok()) {
      stats_.disconnects.fetch_add(1, std::memory_order_relaxed);
      SetState("down", absl::StrCat(s.message(), " — queueing up to ", queue_.capacity(),
                                    " records, retrying with back-off"));
      for (absl::Time until = absl::Now() + backoff; absl::Now() < until && !stopping();) {
        NoteDrops();
        absl::SleepFor(absl::Milliseconds(50));
      }
      backoff = std::min(backoff * 2, kBackoffMax);
      continue;
    }
    backoff = kBackoffMin;
    stats_.connected.store(true, std::memory_order_relaxed);
    SetState("up", absl::StrCat("publishing outcomes to exchange '", config_.exchange,
                                "' routing key '", config_.routing_key, "' at ", session.where()));
    std::string error;
    bool alive = true;
    while (alive) {
      const bool stop = stopping();
      // Publish what is waiting (the last connection's unconfirmed first), within the window.
      bool published = false;
      while (alive && session.unconfirmed() < kWindow) {
        std::string record;
        if (!retry_.empty()) {
          record = std::move(retry_.front());
          retry_.pop_front();
        } else if (!queue_.TryPop(record)) {
          break;
        }
        alive = session.Publish(std::move(record));
        published = true;
        if (!alive) error = "basic.publish failed";
      }
      if (!alive) break;
      if (stop && (session.unconfirmed() == 0 || absl::Now() >= stop_deadline)) break;
      NoteDrops();
      // Idle or waiting for confirms: up to 100 ms; more to publish: just collect what arrived.
      alive = session.Poll(published && session.unconfirmed() < kWindow
                               ? absl::ZeroDuration()
                               : absl::Milliseconds(stop ? 10 : 100),
                           &error);
    }
    stats_.connected.store(false, std::memory_order_relaxed);
    std::deque<std::string> lost = session.TakeUnconfirmed();
    retry_.insert(retry_.begin(), std::make_move_iterator(lost.begin()),
                  std::make_move_iterator(lost.end()));
    if (!alive) {
      stats_.disconnects.fetch_add(1, std::memory_order_relaxed);
      SetState("down", absl::StrCat(session.where(), ": ", error, " — ", retry_.size(),
                                    " unconfirmed record(s) kept for the next connection; "
                                    "reconnecting"));
    }
  }
  // What the broker never confirmed is still in the local log; count it.
  uint64_t left = retry_.size();
  retry_.clear();
  for (std::string record; queue_.TryPop(record);) ++left;
  stats_.dropped_shutdown.fetch_add(left, std::memory_order_relaxed);
  if (left > 0) {
    std::fprintf(stderr,
                 "mxburst: amqp output: stopping with %llu record(s) not confirmed by the "
                 "broker (they are in the accounting log)\n",
                 static_cast<unsigned long long>(left));
  }
}

void AmqpOutput::WriteMetrics(control::PrometheusText* p) const {
  auto u = [](const std::atomic<uint64_t>& a) {
    return static_cast<double>(a.load(std::memory_order_relaxed));
  };
  p->Family("mxburst_amqp_output_connected", "gauge",
            "1 while the outcome stream is connected to the broker.");
  p->Sample("mxburst_amqp_output_connected", {}, stats_.connected.load() ? 1 : 0);
  p->Family("mxburst_amqp_output_records_total", "counter",
            "Accounting records on the outcome stream by stage.");
  p->Sample("mxburst_amqp_output_records_total", {{"stage", "offered"}}, u(stats_.offered));
  p->Sample("mxburst_amqp_output_records_total", {{"stage", "published"}}, u(stats_.published));
  p->Sample("mxburst_amqp_output_records_total", {{"stage", "confirmed"}}, u(stats_.confirmed));
  p->Family("mxburst_amqp_output_dropped_total", "counter",
            "Accounting records the outcome stream did not deliver (the local log has them).");
  p->Sample("mxburst_amqp_output_dropped_total", {{"reason", "queue_full"}},
            u(stats_.dropped_full));
  p->Sample("mxburst_amqp_output_dropped_total", {{"reason", "nacked"}}, u(stats_.dropped_nacked));
  p->Sample("mxburst_amqp_output_dropped_total", {{"reason", "unroutable"}},
            u(stats_.dropped_unroutable));
  p->Sample("mxburst_amqp_output_dropped_total", {{"reason", "shutdown"}},
            u(stats_.dropped_shutdown));
  p->Family("mxburst_amqp_output_disconnects_total", "counter",
            "Outcome stream connections lost or connection attempts that failed.");
  p->Sample("mxburst_amqp_output_disconnects_total", {}, u(stats_.disconnects));
}

}  // namespace mxb
