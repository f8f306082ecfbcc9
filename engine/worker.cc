#include "engine/worker.h"

#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <future>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "engine/smtp_reply.h"
#include "engine/smtp_session.h"
#include "engine/timer_wheel.h"
#include "engine/uring_tag.h"

namespace mxb {
namespace {

constexpr unsigned kRingEntries = 4096;
constexpr size_t kRecvBufferSize = 16 * 1024;
constexpr int64_t kTickMs = 100;
constexpr size_t kInboundCapacity = 1 << 16;

int64_t NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

std::string ErrnoText(int err) { return std::strerror(err); }

}  // namespace

// ---------------------------------------------------------------------------------------------
// CompletionQueue

CompletionQueue::CompletionQueue(size_t capacity)
    : q_(capacity), efd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

CompletionQueue::~CompletionQueue() {
  if (efd_ >= 0) close(efd_);
}

void CompletionQueue::Notify() {
  uint64_t one = 1;
  ssize_t n = write(efd_, &one, sizeof(one));
  (void)n;  // EAGAIN only when the counter is saturated: the scanner is awake anyway
}

void CompletionQueue::ClearNotification() {
  uint64_t v;
  ssize_t n = read(efd_, &v, sizeof(v));
  (void)n;
}

// ---------------------------------------------------------------------------------------------
// Worker internals

namespace {

// A destination: one recipient domain owned by this worker, with its queue of jobs waiting for
// a connection and the next hops it may use.
struct Destination {
  std::string domain;
  const Route* route = nullptr;
  std::deque<DeliveryJob*> queue;
  int connections = 0;   // open or opening
  int connecting = 0;    // not yet ready to take a job
  size_t next_target = 0;
  int consecutive_failures = 0;
  std::string last_failure;
  // Every next hop failed: jobs are deferred without a connection attempt until then.
  int64_t dead_until_ms = 0;
  // Connections between transactions, most recent last; entries are checked against the
  // connection's generation and idle flag when popped (a closed one leaves a stale entry).
  std::vector<std::pair<uint32_t, uint32_t>> idle;

  size_t TargetCount() const {
    size_t n = 0;
    for (const NextHop& h : route->hops) n += h.addresses.size();
    return n;
  }
  // The i-th (hop, address) pair, cycling.
  std::pair<const NextHop*, const sockaddr_storage*> Target(size_t i) const {
    size_t n = TargetCount();
    i %= n;
    for (const NextHop& h : route->hops) {
      if (i < h.addresses.size()) return {&h, &h.addresses[i]};
      i -= h.addresses.size();
    }
    return {nullptr, nullptr};
  }
};

enum class ConnPhase { kConnecting, kSmtp, kTlsHandshake, kClosing };

struct Connection {
  uint32_t gen = 0;
  bool used = false;
  ConnPhase phase = ConnPhase::kConnecting;
  int fd = -1;
  Destination* dest = nullptr;
  const NextHop* hop = nullptr;
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  __kernel_timespec connect_timeout{};

  std::optional<SmtpSession> session;
  std::unique_ptr<TlsSession> tls;
  ReplyParser parser;
  std::unique_ptr<char[]> recv_buf;

  std::string send_buf;      // owned by the kernel while send_inflight
  size_t send_off = 0;
  std::string send_pending;  // queued while a send is in flight
  bool send_inflight = false;
  bool recv_inflight = false;
  bool close_posted = false;
  int ops = 0;               // SQEs whose final CQE has not arrived

  int64_t deadline_ms = 0;
  DeliveryJob* job = nullptr;
  int messages = 0;
  bool ready_seen = false;   // reached the idle state at least once
  bool idle = false;         // parked in dest->idle waiting for a job

  void Reset() {
    phase = ConnPhase::kConnecting;
    fd = -1;
    dest = nullptr;
    hop = nullptr;
    session.reset();
    tls.reset();
    parser = ReplyParser();
    send_buf.clear();
    send_off = 0;
    send_pending.clear();
    send_inflight = recv_inflight = close_posted = false;
    ops = 0;
    deadline_ms = 0;
    job = nullptr;
    messages = 0;
    ready_seen = false;
    idle = false;
  }
};

}  // namespace

struct Worker::Impl {
  Worker& w;
  io_uring ring{};
  TimerWheel wheel{kTickMs};
  int64_t now_ms = 0;
  uint64_t wake_buf = 0;
  __kernel_timespec tick_ts{0, kTickMs * 1000000};

  std::vector<std::unique_ptr<Connection>> slab;
  std::vector<uint32_t> free_slots;
  size_t live_connections = 0;

  absl::flat_hash_map<std::string, std::unique_ptr<Destination>> dests;
  std::vector<DeliveryJob*> unsent_completions;
  bool completions_pushed = false;

  bool ring_ready = false;

  explicit Impl(Worker& worker) : w(worker) {}

  absl::Status InitRing() {
    // SINGLE_ISSUER + DEFER_TASKRUN: completions are processed only when this thread waits,
    // which batches task work (NOTES.md). Fall back for older kernels.
    io_uring_params p{};
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    int rc = io_uring_queue_init_params(kRingEntries, &ring, &p);
    if (rc < 0) {
      p = io_uring_params{};
      p.flags = IORING_SETUP_COOP_TASKRUN;
      rc = io_uring_queue_init_params(kRingEntries, &ring, &p);
    }
    if (rc < 0) {
      p = io_uring_params{};
      rc = io_uring_queue_init_params(kRingEntries, &ring, &p);
    }
    if (rc < 0) return absl::InternalError(absl::StrCat("io_uring_queue_init: ", ErrnoText(-rc)));
    ring_ready = true;
    return absl::OkStatus();
  }

  // --- ring plumbing -------------------------------------------------------------------------

  io_uring_sqe* Sqe() {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    while (sqe == nullptr) {
      io_uring_submit(&ring);
      sqe = io_uring_get_sqe(&ring);
    }
    return sqe;
  }

  void Tag(io_uring_sqe* sqe, UringOp op, uint32_t slot, Connection* c) {
    io_uring_sqe_set_data64(sqe, UringTag{op, c ? c->gen : 0, slot}.Encode());
    if (c != nullptr) ++c->ops;
  }

  void PostWake() {
    io_uring_sqe* sqe = Sqe();
    io_uring_prep_read(sqe, w.wake_fd_, &wake_buf, sizeof(wake_buf), 0);
    Tag(sqe, UringOp::kWake, kNoSlot, nullptr);
  }

  void PostTick() {
    io_uring_sqe* sqe = Sqe();
    io_uring_prep_timeout(sqe, &tick_ts, 0, 0);
    Tag(sqe, UringOp::kTick, kNoSlot, nullptr);
  }

  // --- slab ----------------------------------------------------------------------------------

  uint32_t AllocConnection() {
    uint32_t slot;
    if (!free_slots.empty()) {
      slot = free_slots.back();
      free_slots.pop_back();
    } else {
      slot = static_cast<uint32_t>(slab.size());
      slab.push_back(std::make_unique<Connection>());
    }
    Connection& c = *slab[slot];
    c.Reset();
    c.used = true;
    c.gen = (c.gen + 1) & kGenMask;
    ++live_connections;
    return slot;
  }

  void FreeConnection(uint32_t slot) {
    Connection& c = *slab[slot];
    c.used = false;
    c.gen = (c.gen + 1) & kGenMask;
    c.session.reset();
    c.tls.reset();
    c.recv_buf.reset();
    std::string().swap(c.send_buf);
    std::string().swap(c.send_pending);
    free_slots.push_back(slot);
    --live_connections;
  }

  // --- jobs and destinations -----------------------------------------------------------------

  void CompleteJob(DeliveryJob* job) {
    if (!w.done_->Push(job)) {
      unsent_completions.push_back(job);
    } else {
      completions_pushed = true;
    }
  }

  void FlushCompletions() {
    while (!unsent_completions.empty() && w.done_->Push(unsent_completions.front())) {
      unsent_completions.erase(unsent_completions.begin());
      completions_pushed = true;
    }
    if (completions_pushed) {
      w.done_->Notify();
      completions_pushed = false;
    }
  }

  void FailJob(DeliveryJob* job, DeliveryClass klass, int code, absl::string_view enhanced,
               absl::string_view text, const AttemptInfo& attempt) {
    job->outcomes.assign(job->rcpt_index.size(), RecipientOutcome{});
    for (RecipientOutcome& o : job->outcomes) {
      o.klass = klass;
      o.code = code;
      o.enhanced = std::string(enhanced);
      o.text = std::string(text);
      o.attempt = attempt;
    }
    CompleteJob(job);
  }

  void AcceptJob(DeliveryJob* job) {
    auto it = dests.find(job->domain);
    if (it == dests.end()) {
      const Route* route = w.routes_.Find(job->domain);
      if (route == nullptr) {
        FailJob(job, DeliveryClass::kDeferred, 0, "4.4.4",
                absl::StrCat("no route to ", job->domain, " (no --route matches)"), {});
        return;
      }
      auto d = std::make_unique<Destination>();
      d->domain = job->domain;
      d->route = route;
      it = dests.emplace(job->domain, std::move(d)).first;
    }
    Destination& d = *it->second;
    if (w.stop_.load(std::memory_order_relaxed)) {
      FailJob(job, DeliveryClass::kDeferred, 0, "4.3.2", "engine shutting down", {});
      return;
    }
    if (now_ms < d.dead_until_ms) {
      FailJob(job, DeliveryClass::kDeferred, 0, "4.4.1",
              absl::StrCat("destination not tried: all next hops failed recently (",
                           d.last_failure, ")"),
              {});
      return;
    }
    d.queue.push_back(job);
    ResumeIdle(d);
    Pump(d);
  }

  // Hands waiting jobs to idle connections before any new connection is opened.
  void ResumeIdle(Destination& d) {
    while (!d.queue.empty() && !d.idle.empty()) {
      auto [slot, gen] = d.idle.back();
      d.idle.pop_back();
      Connection& c = *slab[slot];
      if (!c.used || c.gen != gen || !c.idle) continue;
      c.idle = false;
      StartTransaction(slot, c);
    }
  }

  // Sends QUIT on every idle connection of `d` (shutdown).
  void QuitIdle(Destination& d) {
    while (!d.idle.empty()) {
      auto [slot, gen] = d.idle.back();
      d.idle.pop_back();
      Connection& c = *slab[slot];
      if (!c.used || c.gen != gen || !c.idle) continue;
      c.idle = false;
      Handle(slot, c, c.session->Quit());
    }
  }

  // Opens connections while jobs wait and the destination is under its limit. After a failure
  // only one attempt at a time probes the next hop, so a dead host is not hammered.
  void Pump(Destination& d) {
    while (!d.queue.empty() && d.connections < w.config_.max_connections_per_destination &&
           static_cast<int>(d.queue.size()) > d.connecting &&
           (d.consecutive_failures == 0 || d.connecting == 0)) {
      if (!OpenConnection(d)) break;
    }
  }

  // A connection to `d` failed before it could deliver anything.
  void DestinationFailure(Destination& d, absl::string_view reason, const AttemptInfo& attempt) {
    d.last_failure = std::string(reason);
    ++d.consecutive_failures;
    ++d.next_target;  // the next connection tries the next MX / address
    if (d.connections > 0) return;  // others are still trying; the last one decides
    if (static_cast<size_t>(d.consecutive_failures) < d.TargetCount()) {
      Pump(d);
      return;
    }
    // Every next hop failed: defer what waits (RFC 5321 §4.5.4.1 retry later), and what
    // arrives for a while, without new attempts.
    d.consecutive_failures = 0;
    d.dead_until_ms = now_ms + absl::ToInt64Milliseconds(w.config_.dead_destination_time);
    while (!d.queue.empty()) {
      DeliveryJob* job = d.queue.front();
      d.queue.pop_front();
      FailJob(job, DeliveryClass::kDeferred, 0, "4.4.1", d.last_failure, attempt);
    }
  }

  AttemptInfo AttemptOf(const Connection& c) const {
    AttemptInfo a;
    if (c.hop != nullptr) a.mx = c.hop->host;
    a.ip = SockaddrIp(c.addr);
    a.port = SockaddrPort(c.addr);
    if (c.tls != nullptr && c.tls->handshake_done()) {
      a.tls_version = c.tls->version();
      a.tls_cipher = c.tls->cipher();
    }
    a.policy = ToString(w.config_.tls);
    a.policy_source = w.config_.tls == TlsMode::kOpportunistic ? "default" : "config";
    return a;
  }

  // --- connections ---------------------------------------------------------------------------

  bool OpenConnection(Destination& d) {
    auto [hop, addr] = d.Target(d.next_target);
    if (hop == nullptr) return false;
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      int err = errno;
      AttemptInfo a;
      a.mx = hop->host;
      DestinationFailure(d, absl::StrCat("socket: ", ErrnoText(err)), a);
      return false;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    uint32_t slot = AllocConnection();
    Connection& c = *slab[slot];
    c.fd = fd;
    c.dest = &d;
    c.hop = hop;
    c.addr = *addr;
    c.addr_len = addr->ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
    int64_t ms = absl::ToInt64Milliseconds(w.config_.connect_timeout);
    c.connect_timeout.tv_sec = ms / 1000;
    c.connect_timeout.tv_nsec = (ms % 1000) * 1000000;
    ++d.connections;
    ++d.connecting;
    w.stats_.connections.fetch_add(1, std::memory_order_relaxed);

    io_uring_sqe* sqe = Sqe();
    io_uring_prep_connect(sqe, fd, reinterpret_cast<sockaddr*>(&c.addr), c.addr_len);
    sqe->flags |= IOSQE_IO_LINK;
    Tag(sqe, UringOp::kConnect, slot, &c);
    sqe = Sqe();
    io_uring_prep_link_timeout(sqe, &c.connect_timeout, 0);
    Tag(sqe, UringOp::kLinkTimeout, slot, &c);
    return true;
  }

  void PostRecv(uint32_t slot, Connection& c) {
    if (c.recv_inflight || c.phase == ConnPhase::kClosing) return;
    if (!c.recv_buf) c.recv_buf.reset(new char[kRecvBufferSize]);
    io_uring_sqe* sqe = Sqe();
    io_uring_prep_recv(sqe, c.fd, c.recv_buf.get(), kRecvBufferSize, 0);
    Tag(sqe, UringOp::kRecv, slot, &c);
    c.recv_inflight = true;
  }

  void FlushSend(uint32_t slot, Connection& c) {
    if (c.send_inflight || c.phase == ConnPhase::kClosing) return;
    if (c.send_off >= c.send_buf.size()) {
      if (c.send_pending.empty()) return;
      c.send_buf.swap(c.send_pending);
      c.send_pending.clear();
      c.send_off = 0;
    }
    io_uring_sqe* sqe = Sqe();
    io_uring_prep_send(sqe, c.fd, c.send_buf.data() + c.send_off, c.send_buf.size() - c.send_off,
                       MSG_NOSIGNAL);
    Tag(sqe, UringOp::kSend, slot, &c);
    c.send_inflight = true;
  }

  // Queues bytes for the peer: encrypted when TLS is up, as-is otherwise.
  bool Output(uint32_t slot, Connection& c, absl::string_view bytes, absl::string_view body) {
    if (c.tls != nullptr) {
      if ((!bytes.empty() && c.tls->Write(bytes) != TlsStatus::kOk) ||
          (!body.empty() && c.tls->Write(body) != TlsStatus::kOk)) {
        return false;
      }
      MoveCiphertext(c);
    } else {
      c.send_pending.append(bytes.data(), bytes.size());
      c.send_pending.append(body.data(), body.size());
    }
    FlushSend(slot, c);
    return true;
  }

  void MoveCiphertext(Connection& c) {
    if (!c.tls->has_ciphertext_out()) return;
    if (c.send_pending.empty()) {
      c.send_pending = c.tls->TakeCiphertext();
    } else {
      c.send_pending.append(c.tls->TakeCiphertext());
    }
  }

  void ArmDeadline(uint32_t slot, Connection& c, absl::Duration d) {
    if (d == absl::InfiniteDuration()) {  // nothing awaited (idle between commands)
      c.deadline_ms = 0;
      return;
    }
    c.deadline_ms = now_ms + static_cast<int64_t>(absl::ToDoubleMilliseconds(d) *
                                                  w.config_.reply_timeout_scale);
    wheel.Insert(slot, c.gen, c.deadline_ms);
  }

  // Closing is a protocol: cancel what the kernel holds, wait for every CQE, close, free.
  void StartClose(uint32_t slot, Connection& c) {
    if (c.phase == ConnPhase::kClosing) return;
    bool was_connecting = c.phase == ConnPhase::kConnecting;
    c.phase = ConnPhase::kClosing;
    c.deadline_ms = 0;
    c.idle = false;
    Destination& d = *c.dest;
    --d.connections;
    if (was_connecting || !c.ready_seen) {
      // counted in `connecting` until it reached the idle state
      if (d.connecting > 0) --d.connecting;
    }
    if (c.job != nullptr) {
      // The session always reports every recipient of an aborted transaction; this is the
      // safety net so that a job can never be lost.
      FinishJob(c, "connection closed");
    }
    if (c.ops > 0) {
      io_uring_sqe* sqe = Sqe();
      io_uring_prep_cancel_fd(sqe, c.fd, IORING_ASYNC_CANCEL_ALL);
      Tag(sqe, UringOp::kCancel, slot, &c);
    }
    MaybeFinishClose(slot, c);
    // Jobs still waiting for `d` get a new connection when this one's close completes.
  }

  void MaybeFinishClose(uint32_t slot, Connection& c) {
    if (c.phase != ConnPhase::kClosing || c.ops > 0 || c.close_posted) return;
    c.close_posted = true;
    io_uring_sqe* sqe = Sqe();
    io_uring_prep_close(sqe, c.fd);
    Tag(sqe, UringOp::kClose, slot, &c);
  }

  // Moves the session's results into the job; hands back the job once its transaction ended.
  void CollectResults(Connection& c) {
    if (!c.session) return;
    std::vector<RecipientResult> results = c.session->TakeResults();
    if (results.empty()) return;
    AttemptInfo attempt = AttemptOf(c);
    for (RecipientResult& r : results) {
      DeliveryJob* job = reinterpret_cast<DeliveryJob*>(r.txn_id);
      if (job == nullptr || r.rcpt_index >= job->outcomes.size()) continue;
      RecipientOutcome& o = job->outcomes[r.rcpt_index];
      o.klass = r.klass;
      o.code = r.code;
      o.enhanced = std::move(r.enhanced);
      o.text = std::move(r.text);
      o.attempt = attempt;
    }
    if (c.job != nullptr && !c.session->in_transaction()) FinishJob(c, "no result");
  }

  // Hands c.job back; any recipient the session did not report is deferred with `why`.
  void FinishJob(Connection& c, absl::string_view why) {
    DeliveryJob* job = c.job;
    c.job = nullptr;
    AttemptInfo attempt = AttemptOf(c);
    for (RecipientOutcome& o : job->outcomes) {
      if (o.code < 0) {
        o.klass = DeliveryClass::kDeferred;
        o.code = 0;
        o.enhanced = "4.4.2";
        o.text = std::string(why);
        o.attempt = attempt;
      }
    }
    w.stats_.transactions.fetch_add(1, std::memory_order_relaxed);
    CompleteJob(job);
  }

  void StartTransaction(uint32_t slot, Connection& c) {
    Destination& d = *c.dest;
    bool stopping = w.stop_.load(std::memory_order_relaxed);
    if (d.queue.empty() && !stopping && c.messages < w.config_.max_messages_per_connection) {
      // Keep the session (and its TLS state) for the next job of this destination.
      c.idle = true;
      d.idle.emplace_back(slot, c.gen);
      c.deadline_ms = now_ms + absl::ToInt64Milliseconds(w.config_.idle_timeout);
      wheel.Insert(slot, c.gen, c.deadline_ms);
      return;
    }
    if (d.queue.empty() || c.messages >= w.config_.max_messages_per_connection || stopping) {
      Handle(slot, c, c.session->Quit());
      return;
    }
    // A loop, not recursion: a job the session finishes synchronously (all its addresses
    // invalid, too big for SIZE) hands the connection straight to the next one.
    while (!d.queue.empty()) {
      DeliveryJob* job = d.queue.front();
      d.queue.pop_front();
      c.job = job;
      ++c.messages;
      RecipientOutcome unset;
      unset.code = -1;
      job->outcomes.assign(job->rcpt_index.size(), unset);
      const MessageRecord& m = *job->message;
      Transaction txn;
      txn.id = reinterpret_cast<uint64_t>(job);
      txn.sender = m.envelope.sender;
      txn.recipients.reserve(job->rcpt_index.size());
      for (uint32_t i : job->rcpt_index) txn.recipients.push_back(m.envelope.recipients[i]);
      txn.wire_body = m.wire;
      txn.eight_bit = m.eight_bit;
      Action a = c.session->StartTransaction(std::move(txn));
      if (a.kind != Action::Kind::kNeedTransaction) {
        Handle(slot, c, std::move(a));
        return;
      }
      CollectResults(c);
      if (c.messages >= w.config_.max_messages_per_connection) break;
    }
    Handle(slot, c, c.session->Quit());
  }

  // Carries out what the session asked for.
  void Handle(uint32_t slot, Connection& c, Action a) {
    if (c.phase == ConnPhase::kClosing) return;
    switch (a.kind) {
      case Action::Kind::kWait:
        ArmDeadline(slot, c, c.session->reply_timeout());
        break;
      case Action::Kind::kSend:
        if (!Output(slot, c, a.bytes, a.body)) {
          Handle(slot, c, c.session->OnConnectionLost(
                              absl::StrCat("tls write failed: ", c.tls->last_error())));
          return;
        }
        ArmDeadline(slot, c, c.session->reply_timeout());
        break;
      case Action::Kind::kStartTls: {
        // RFC 3207 §5 / CVE-2011-0411 class: anything buffered after "220 ready" was not
        // protected by TLS and is dropped; the caller also stops processing replies.
        c.parser.Reset();
        c.tls = w.tls_client_->NewSession(c.hop->host);
        if (c.tls == nullptr) {
          Handle(slot, c, c.session->OnTlsFailed("cannot create TLS session"));
          return;
        }
        c.phase = ConnPhase::kTlsHandshake;
        ArmDeadline(slot, c, DefaultReplyTimeout(c.session->state()));
        DriveHandshake(slot, c);
        break;
      }
      case Action::Kind::kNeedTransaction:
        CollectResults(c);
        if (!c.ready_seen) {
          c.ready_seen = true;
          if (c.dest->connecting > 0) --c.dest->connecting;
          c.dest->consecutive_failures = 0;
        }
        StartTransaction(slot, c);
        break;
      case Action::Kind::kClose: {
        CollectResults(c);
        const SessionFailure& f = c.session->failure();
        if (f.failed && !c.ready_seen) {
          Destination& d = *c.dest;
          AttemptInfo attempt = AttemptOf(c);
          StartClose(slot, c);
          DestinationFailure(d, f.reason, attempt);
          return;
        }
        StartClose(slot, c);
        break;
      }
    }
  }

  void DriveHandshake(uint32_t slot, Connection& c) {
    TlsStatus st = c.tls->Handshake();
    MoveCiphertext(c);
    FlushSend(slot, c);
    if (st == TlsStatus::kOk) {
      c.phase = ConnPhase::kSmtp;
      w.stats_.tls_sessions.fetch_add(1, std::memory_order_relaxed);
      if (c.tls->resumed()) w.stats_.tls_resumed.fetch_add(1, std::memory_order_relaxed);
      Handle(slot, c, c.session->OnTlsReady());
    } else if (st != TlsStatus::kWantIo) {
      Handle(slot, c, c.session->OnTlsFailed(c.tls->last_error()));
    }
  }

  // --- completions ---------------------------------------------------------------------------

  void OnConnect(uint32_t slot, Connection& c, int res) {
    if (c.phase == ConnPhase::kClosing) return;
    if (res < 0) {
      w.stats_.connect_failures.fetch_add(1, std::memory_order_relaxed);
      Destination& d = *c.dest;
      AttemptInfo attempt = AttemptOf(c);
      std::string reason =
          res == -ECANCELED
              ? absl::StrCat("connect to ", attempt.mx, " [", SockaddrToString(c.addr),
                             "]: timed out")
              : absl::StrCat("connect to ", attempt.mx, " [", SockaddrToString(c.addr),
                             "]: ", ErrnoText(-res));
      StartClose(slot, c);
      DestinationFailure(d, reason, attempt);
      return;
    }
    c.phase = ConnPhase::kSmtp;
    SessionOptions opts;
    opts.helo_name = w.config_.helo_name;
    opts.tls = w.config_.tls;
    opts.max_rcpts_per_transaction = w.config_.max_recipients_per_transaction;
    c.session.emplace(std::move(opts));
    ArmDeadline(slot, c, DefaultReplyTimeout(SmtpState::kGreeting));
    PostRecv(slot, c);
  }

  void OnRecv(uint32_t slot, Connection& c, int res) {
    c.recv_inflight = false;
    if (c.phase == ConnPhase::kClosing) return;
    if (res <= 0) {
      std::string why = res == 0 ? "connection closed by peer"
                                 : absl::StrCat("recv: ", ErrnoText(-res));
      Handle(slot, c, c.session->OnConnectionLost(why));
      return;
    }
    absl::string_view data(c.recv_buf.get(), static_cast<size_t>(res));
    std::string plain;
    if (c.tls != nullptr) {
      c.tls->FeedCiphertext(data);
      if (c.phase == ConnPhase::kTlsHandshake) {
        DriveHandshake(slot, c);
        if (c.phase != ConnPhase::kSmtp) {
          PostRecv(slot, c);
          return;
        }
      }
      TlsStatus st = c.tls->ReadPlaintext(&plain);
      MoveCiphertext(c);  // post-handshake messages (tickets, key updates) may need replies
      FlushSend(slot, c);
      if (st == TlsStatus::kError || st == TlsStatus::kClosed) {
        if (!plain.empty()) DispatchReplies(slot, c, plain);
        if (c.phase == ConnPhase::kClosing) return;
        Handle(slot, c, c.session->OnConnectionLost(
                            st == TlsStatus::kClosed
                                ? std::string("TLS closed by peer")
                                : absl::StrCat("TLS error: ", c.tls->last_error())));
        return;
      }
      data = plain;
    }
    DispatchReplies(slot, c, data);
    PostRecv(slot, c);
  }

  void DispatchReplies(uint32_t slot, Connection& c, absl::string_view data) {
    std::vector<SmtpReply> replies;
    absl::Status st = c.parser.Feed(data, &replies);
    for (const SmtpReply& r : replies) {
      if (c.phase != ConnPhase::kSmtp) return;
      Action a = c.session->OnReply(r);
      bool starttls = a.kind == Action::Kind::kStartTls;
      Handle(slot, c, std::move(a));
      // Replies after "220 ready to start TLS" in the same read are injected plaintext.
      if (starttls) return;
    }
    if (!st.ok() && c.phase == ConnPhase::kSmtp) {
      Handle(slot, c, c.session->OnConnectionLost(absl::StrCat("protocol error: ", st.message())));
    }
  }

  void OnSend(uint32_t slot, Connection& c, int res) {
    c.send_inflight = false;
    if (c.phase == ConnPhase::kClosing) return;
    if (res < 0) {
      Handle(slot, c, c.session->OnConnectionLost(absl::StrCat("send: ", ErrnoText(-res))));
      return;
    }
    c.send_off += static_cast<size_t>(res);
    if (c.send_off >= c.send_buf.size()) {
      c.send_buf.clear();
      c.send_off = 0;
    }
    FlushSend(slot, c);
  }

  void OnDeadline(uint32_t slot, uint32_t gen, int64_t deadline) {
    if (slot >= slab.size()) return;
    Connection& c = *slab[slot];
    if (!c.used || c.gen != gen || c.deadline_ms != deadline) return;  // re-armed or gone
    if (c.phase != ConnPhase::kSmtp && c.phase != ConnPhase::kTlsHandshake) return;
    if (c.idle) {
      c.idle = false;  // its entry in dest->idle goes stale
      Handle(slot, c, c.session->Quit());
      return;
    }
    if (c.phase == ConnPhase::kTlsHandshake) {
      Handle(slot, c, c.session->OnTlsFailed("handshake timed out"));
      return;
    }
    Handle(slot, c, c.session->OnTimeout());
  }

  void Dispatch(io_uring_cqe* cqe) {
    UringTag tag = UringTag::Decode(io_uring_cqe_get_data64(cqe));
    int res = cqe->res;
    if (tag.op == UringOp::kWake) {
      PostWake();
      return;
    }
    if (tag.op == UringOp::kTick) {
      wheel.Advance(now_ms, [this](uint32_t s, uint32_t g, int64_t d) { OnDeadline(s, g, d); });
      PostTick();
      return;
    }
    if (tag.slot >= slab.size() || !slab[tag.slot]->used || slab[tag.slot]->gen != tag.gen) {
      w.stats_.stale_completions.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    Connection& c = *slab[tag.slot];
    --c.ops;
    switch (tag.op) {
      case UringOp::kConnect:
        OnConnect(tag.slot, c, res);
        break;
      case UringOp::kRecv:
        OnRecv(tag.slot, c, res);
        break;
      case UringOp::kSend:
        OnSend(tag.slot, c, res);
        break;
      case UringOp::kClose: {
        Destination* d = c.dest;
        FreeConnection(tag.slot);
        if (d != nullptr) Pump(*d);
        return;
      }
      case UringOp::kLinkTimeout:
      case UringOp::kCancel:
      default:
        break;
    }
    if (c.used && c.phase == ConnPhase::kClosing) MaybeFinishClose(tag.slot, c);
  }

  void DrainInbound() {
    DeliveryJob* job;
    while (w.inbound_.TryPop(job)) AcceptJob(job);
  }

  bool Idle() const {
    if (live_connections > 0 || !unsent_completions.empty()) return false;
    for (const auto& [name, d] : dests) {
      if (!d->queue.empty()) return false;
    }
    return true;
  }

  void Loop() {
    now_ms = NowMs();
    wheel.Start(now_ms);
    PostWake();
    PostTick();
    while (true) {
      DrainInbound();
      if (w.stop_.load(std::memory_order_acquire)) {
        for (auto& [name, d] : dests) {
          while (!d->queue.empty()) {
            DeliveryJob* job = d->queue.front();
            d->queue.pop_front();
            FailJob(job, DeliveryClass::kDeferred, 0, "4.3.2", "engine shutting down", {});
          }
          QuitIdle(*d);
        }
      }
      FlushCompletions();
      if (w.stop_.load(std::memory_order_acquire) && Idle()) break;

      int rc = io_uring_submit_and_wait(&ring, 1);
      if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
        std::fprintf(stderr, "mxburst: worker %u: io_uring_submit_and_wait: %s\n", w.index_,
                     ErrnoText(-rc).c_str());
      }
      now_ms = NowMs();
      unsigned head;
      unsigned seen = 0;
      io_uring_cqe* cqe;
      io_uring_for_each_cqe(&ring, head, cqe) {
        Dispatch(cqe);
        ++seen;
      }
      io_uring_cq_advance(&ring, seen);
    }
  }
};

// ---------------------------------------------------------------------------------------------
// Worker

Worker::Worker(uint32_t index, const EngineConfig& config, const StaticRoutes& routes,
               TlsContext* tls_client, CompletionQueue* done)
    : index_(index),
      config_(config),
      routes_(routes),
      tls_client_(tls_client),
      done_(done),
      inbound_(kInboundCapacity) {}

Worker::~Worker() {
  if (thread_.joinable()) {
    RequestStop();
    Join();
  }
  if (impl_ && impl_->ring_ready) io_uring_queue_exit(&impl_->ring);
  if (wake_fd_ >= 0) close(wake_fd_);
}

absl::Status Worker::Init() {
  wake_fd_ = eventfd(0, EFD_CLOEXEC);
  if (wake_fd_ < 0) return absl::InternalError(absl::StrCat("eventfd: ", ErrnoText(errno)));
  impl_ = std::make_unique<Impl>(*this);
  return absl::OkStatus();
}

absl::Status Worker::Start() {
  std::promise<absl::Status> ready;
  std::future<absl::Status> started = ready.get_future();
  thread_ = std::thread([this, &ready] {
    // The ring is created on this thread: SINGLE_ISSUER binds it to its creator.
    absl::Status s = impl_->InitRing();
    bool ok = s.ok();
    ready.set_value(std::move(s));
    if (ok) impl_->Loop();
  });
  absl::Status s = started.get();
  if (!s.ok()) thread_.join();
  return s;
}

void Worker::Wake() {
  uint64_t one = 1;
  ssize_t n = write(wake_fd_, &one, sizeof(one));
  (void)n;
}

void Worker::RequestStop() {
  stop_.store(true, std::memory_order_release);
  Wake();
}

void Worker::Join() {
  if (thread_.joinable()) thread_.join();
}

}  // namespace mxb
