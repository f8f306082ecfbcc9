#include "engine/worker.h"

#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <future>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "engine/uring_setup.h"
#include "engine/shaping.h"
#include "engine/smtp_reply.h"
#include "engine/smtp_session.h"
#include "engine/timer_wheel.h"
#include "engine/uring_tag.h"
#include "dns/resolver.h"
#include "tls/policy.h"
#include <poll.h>

namespace mxb {
namespace {

constexpr unsigned kRingEntries = 4096;
constexpr unsigned kCqEntries = 32768;
// Receives come from one provided-buffer ring per worker (engine/uring_setup.h): buffers are
// taken only while bytes wait to be parsed or decrypted, so idle sessions own none. 4 KiB holds
// any SMTP reply and most handshake flights; larger reads simply take several buffers.
constexpr uint32_t kRecvBufCount = 1024;  // power of two; 4 MiB of address space per worker
constexpr uint32_t kRecvBufSize = 4096;
constexpr uint16_t kRecvBufGroup = 1;
// Fallback when the kernel has no buffer rings: one buffer per connection, as before.
constexpr size_t kRecvBufferSize = 16 * 1024;
constexpr size_t kKeepSendCapacity = 1024;
constexpr int64_t kTickMs = 100;
constexpr size_t kInboundCapacity = 1 << 16;
constexpr int64_t kPolicyDumpMs = 30000;

// EHLO keywords as seen, for the policy cache ("PIPELINING SIZE=52428800 8BITMIME ...").
std::string KeywordsOf(const EhloCapabilities& caps) {
  std::string out;
  auto add = [&out](absl::string_view k) { absl::StrAppend(&out, out.empty() ? "" : " ", k); };
  if (caps.starttls) add("STARTTLS");
  if (caps.pipelining) add("PIPELINING");
  if (caps.eightbitmime) add("8BITMIME");
  if (caps.smtputf8) add("SMTPUTF8");
  if (caps.enhancedstatuscodes) add("ENHANCEDSTATUSCODES");
  if (caps.chunking) add("CHUNKING");
  if (caps.requiretls) add("REQUIRETLS");
  if (caps.size > 0) add(absl::StrCat("SIZE=", caps.size));
  return out;
}

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
// One address of one MX host (or static next hop), in the order delivery tries them.
struct Target {
  std::string mx;          // MX host name: keys the TLS policy, checked against certificates
  sockaddr_storage addr{};
  uint16_t port = 25;      // the SMTP (STARTTLS) port
  bool mx_dnssec = false;  // the MX answer that named this host was DNSSEC-validated
};

enum class DestState { kUnresolved, kResolving, kReady };

struct Destination {
  std::string domain;
  const Route* route = nullptr;  // static route (transport map), else DNS MX
  DestState state = DestState::kUnresolved;
  int64_t resolved_at_ms = 0;
  std::vector<Target> targets;
  std::deque<DeliveryJob*> queue;
  int connections = 0;   // open or opening
  int connecting = 0;    // not yet ready to take a job
  size_t next_target = 0;
  // Targets that failed since the destination last reached a ready session. Per target, not a
  // count: several parallel connections failing on one dead host are still one dead host.
  std::vector<bool> failed;
  size_t failed_count = 0;
  std::string last_failure;
  // Every next hop failed: jobs are deferred without a connection attempt until then.
  int64_t dead_until_ms = 0;
  // Connections between transactions, most recent last; entries are checked against the
  // connection's generation and idle flag when popped (a closed one leaves a stale entry).
  std::vector<std::pair<uint32_t, uint32_t>> idle;
  // Traffic shaping (engine/shaping.h). A destination is (recipient domain, source pool): jobs
  // of different pools never share a connection, so the pool key is (MX host, source IP).
  int pool = -1;                    // index into the shaping config's pools, -1 = no bind
  ShapingBudget* budget = nullptr;  // the domain rule's budget, else own_budget
  std::unique_ptr<ShapingBudget> own_budget;
  int64_t shaping_wake_ms = 0;      // waits for a rate slot or a connection budget until then

  size_t TargetCount() const { return targets.size(); }

  void ResetFailures() {
    failed.assign(targets.size(), false);
    failed_count = 0;
  }
  // Marks target `t` failed and moves next_target to the next one that has not failed.
  void MarkFailed(size_t t) {
    if (t < failed.size() && !failed[t]) {
      failed[t] = true;
      ++failed_count;
    }
    for (size_t i = 0; i < targets.size(); ++i) {
      size_t cand = (t + 1 + i) % targets.size();
      if (!failed[cand]) {
        next_target = cand;
        return;
      }
    }
  }
};

void SetPort(sockaddr_storage* a, uint16_t port) {
  if (a->ss_family == AF_INET) reinterpret_cast<sockaddr_in*>(a)->sin_port = htons(port);
  if (a->ss_family == AF_INET6) reinterpret_cast<sockaddr_in6*>(a)->sin6_port = htons(port);
}

enum class ConnPhase { kConnecting, kSmtp, kTlsHandshake, kClosing };

struct Connection {
  uint32_t gen = 0;
  bool used = false;
  ConnPhase phase = ConnPhase::kConnecting;
  int fd = -1;
  bool fixed = false;  // `fd` is a slot of the worker's registered file table (FIXED_FILE)
  Destination* dest = nullptr;
  size_t target = 0;          // index into dest->targets
  std::string mx;             // MX host name (copied: targets may be replaced by a new lookup)
  bool mx_dnssec = false;
  TlsPolicy policy;           // copied from the policy cache when the connection opened
  bool implicit_tls = false;  // connected to the smtps port: TLS before the greeting
  bool session_saved = false; // TLS session stored for resumption
  std::string violation;      // log-only mode: what the prefix policy would have refused
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
  // Shaping: the budgets this connection holds (released when its slot is freed), its
  // messages-per-connection limit and the source address it was bound to.
  BudgetSet budgets;
  bool budgets_held = false;
  int max_messages = 0;
  sockaddr_storage source{};
  bool has_source = false;

  void Reset() {
    phase = ConnPhase::kConnecting;
    fd = -1;
    fixed = false;
    dest = nullptr;
    mx.clear();
    mx_dnssec = false;
    policy = TlsPolicy();
    implicit_tls = false;
    session_saved = false;
    violation.clear();
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
    budgets = BudgetSet();
    budgets_held = false;
    max_messages = 0;
    source = sockaddr_storage{};
    has_source = false;
  }
};

// Binds a new socket to the source address chosen for its connection, before connect().
// IP_BIND_ADDRESS_NO_PORT defers the port choice to connect(), so many sources x destinations do
// not exhaust ephemeral ports at bind(). Returns 0 or an errno.
int BindSource(int fd, const sockaddr_storage& source) {
  int one = 1;
  setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
  socklen_t len = source.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  if (bind(fd, reinterpret_cast<const sockaddr*>(&source), len) != 0) return errno;
  return 0;
}

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

  // Traffic shaping: the process-wide rules (their budgets are shared with the other workers)
  // and the destinations waiting for a rate slot or a connection budget, re-pumped every tick.
  ShapingTable no_shaping;
  const ShapingTable* shaping = nullptr;
  absl::flat_hash_set<Destination*> throttled;
  size_t source_rr = 0;
  // Ring timeouts for the earliest rate-slot wake-up: the 100 ms tick alone would cap every
  // rate at one message per tick. Tagged kTick with slot kShapingTimerSlot.
  static constexpr uint32_t kShapingTimerSlot = 1;
  __kernel_timespec shaping_ts{};  // copied by the kernel when the timeout is submitted
  int shaping_timers = 0;           // armed
  int64_t shaping_timer_ms = INT64_MAX;  // the earliest armed one

  void ArmShapingTimer(int64_t at_ms) {
    if (shaping_timers > 0 && shaping_timer_ms <= at_ms) return;
    const int64_t ms = std::max<int64_t>(1, at_ms - now_ms);
    shaping_ts.tv_sec = ms / 1000;
    shaping_ts.tv_nsec = (ms % 1000) * 1000000;
    io_uring_sqe* sqe = Sqe();
    io_uring_prep_timeout(sqe, &shaping_ts, 0, 0);
    Tag(sqe, UringOp::kTick, kShapingTimerSlot, nullptr);
    ++shaping_timers;
    shaping_timer_ms = at_ms;
  }

  // DNS: c-ares sockets polled through the ring (dns/ does not know the ring).
  std::unique_ptr<Resolver> resolver;
  struct DnsWatch {
    bool read = false, write = false;
    bool armed = false;   // a POLL_ADD is in the ring
    uint32_t gen = 0;     // bumped when the watch changes, so stale poll CQEs are ignored
  };
  absl::flat_hash_map<int, DnsWatch> dns_watch;

  PolicyCache policy_cache{100000};
  int64_t last_policy_dump_ms = 0;

  // The policy cache as JSON lines in SPOOL/log/policy-wN.jsonl (`mxburstctl policy`), written
  // every kPolicyDumpMs and at exit. Synchronous file I/O on this thread, but rare and small;
  // tmp + rename so readers never see half a file.
  void DumpPolicies() {
    last_policy_dump_ms = now_ms;
    std::string dir = w.config_.spool_dir + "/log";
    mkdir(dir.c_str(), 0755);  // EEXIST is the normal case
    WriteReplacing(absl::StrCat(dir, "/policy-w", w.index_, ".jsonl"),
                   policy_cache.DumpJson(absl::Now()));
    // The shaping rules' budgets are process-wide: worker 0 writes them, SPOOL/log/shaping.jsonl
    // (`mxburstctl shaping`).
    if (w.index_ == 0 && !shaping->config().rules.empty()) {
      WriteReplacing(dir + "/shaping.jsonl", shaping->DumpJson(now_ms));
    }
  }
  // Writes PATH.tmp and renames it over PATH, so readers never see half a file. Best effort: a
  // dump that cannot be written is skipped (the next one tries again).
  static void WriteReplacing(const std::string& path, const std::string& text) {
    std::string tmp = path + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "w");
    if (f == nullptr) return;
    bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
    ok = std::fclose(f) == 0 && ok;
    if (ok) std::rename(tmp.c_str(), path.c_str());
  }
  std::vector<DeliveryJob*> unsent_completions;
  bool completions_pushed = false;

  bool ring_ready = false;

  // Sockets are direct descriptors (a sparse registered file table per ring, slot i = slab
  // slot i): they are not in the process fd table, so RLIMIT_NOFILE bounds each ring's table,
  // not the process's sessions. 0 = no table (old kernel): regular descriptors.
  uint32_t direct_slots = 0;
  // Receive buffers: the worker's provided-buffer ring; nullptr = per-connection buffers.
  std::unique_ptr<ProvidedBufferRing> bufs;
  bool multishot_recv = true;

  explicit Impl(Worker& worker)
      : w(worker), shaping(worker.config_.shaping ? worker.config_.shaping.get() : &no_shaping) {}

  absl::Status InitRing() {
    // SINGLE_ISSUER + DEFER_TASKRUN: completions are processed only when this thread waits,
    // which batches task work (NOTES.md). Fall back for older kernels.
    // A CQ of 32k entries: tens of thousands of sessions complete in bursts (the kernel would
    // otherwise park the excess on its slower overflow list).
    int rc = -EINVAL;
    for (unsigned flags : {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
                           unsigned{IORING_SETUP_COOP_TASKRUN}, 0u}) {
      io_uring_params p{};
      p.flags = flags | IORING_SETUP_CQSIZE;
      p.cq_entries = kCqEntries;
      rc = io_uring_queue_init_params(kRingEntries, &ring, &p);
      if (rc == 0) break;
    }
    if (rc < 0) return absl::InternalError(absl::StrCat("io_uring_queue_init: ", ErrnoText(-rc)));
    ring_ready = true;
    SetUpSockets();
    policy_cache = PolicyCache(w.config_.policy_cache_entries);
    Resolver::Options ro;
    ro.servers = w.config_.dns_servers;
    ro.ttl_floor = w.config_.dns_ttl_floor;
    ro.ttl_ceiling = w.config_.dns_ttl_ceiling;
    ro.negative_ttl = w.config_.dns_negative_ttl;
    ro.tempfail_ttl = w.config_.dns_tempfail_ttl;
    ro.max_mx_hosts = w.config_.dns_max_mx_hosts;
    absl::StatusOr<std::unique_ptr<Resolver>> r =
        Resolver::Create(ro, [this](int fd, bool rd, bool wr) { WatchDns(fd, rd, wr); });
    if (!r.ok()) {
      // Static routes still work; domains without one are deferred with the reason.
      std::fprintf(stderr, "mxburst: worker %u: DNS unavailable: %s\n", w.index_,
                   std::string(r.status().message()).c_str());
    } else {
      resolver = *std::move(r);
    }
    return absl::OkStatus();
  }

  // Direct descriptors and the buffer ring, each with a fallback that is announced once per
  // process. MXB_URING_DISABLE=direct,bufring,multishot turns them off (tests, benchmarks).
  void SetUpSockets() {
    const char* env = std::getenv("MXB_URING_DISABLE");
    const std::string disable = env != nullptr ? env : "";
    static std::atomic<bool> direct_noted{false}, bufring_noted{false};
    if (disable.find("direct") != std::string::npos) {
      if (!direct_noted.exchange(true)) {
        std::fprintf(stderr, "mxburst: io_uring direct descriptors off (MXB_URING_DISABLE); "
                     "using regular descriptors (sessions limited by RLIMIT_NOFILE)\n");
      }
    } else {
      uint32_t n = Worker::DirectTableSize();
      int rc = io_uring_register_files_sparse(&ring, n);
      if (rc == 0) {
        direct_slots = n;
      } else if (!direct_noted.exchange(true)) {
        std::fprintf(stderr, "mxburst: io_uring registered file table of %u: %s; using regular "
                     "descriptors (sessions limited by RLIMIT_NOFILE)\n", n,
                     ErrnoText(-rc).c_str());
      }
    }
    multishot_recv = disable.find("multishot") == std::string::npos;
    if (disable.find("bufring") == std::string::npos) {
      auto b = ProvidedBufferRing::Create(&ring, kRecvBufGroup, kRecvBufCount, kRecvBufSize);
      if (b.ok()) {
        bufs = *std::move(b);
      } else if (!bufring_noted.exchange(true)) {
        std::fprintf(stderr, "mxburst: %s; using a %zu-byte receive buffer per connection\n",
                     std::string(b.status().message()).c_str(), kRecvBufferSize);
      }
    }
  }

  // Installs c's socket in the registered file table at index `slot` and closes the regular
  // descriptor (bind() and setsockopt() needed it first). Without a table, or past its end, the
  // connection keeps its regular descriptor.
  void MakeDirect(uint32_t slot, Connection& c) {
    if (slot >= direct_slots) return;
    int fd = c.fd;
    if (io_uring_register_files_update(&ring, slot, &fd, 1) != 1) return;
    close(fd);
    c.fd = static_cast<int>(slot);
    c.fixed = true;
  }

  // Empties a send buffer; one that grew past a few commands (a message body) is freed, so a
  // session waiting for a reply or parked idle does not keep its last message's bytes.
  static void ReleaseIfLarge(std::string& buf) {
    if (buf.capacity() > kKeepSendCapacity) {
      std::string().swap(buf);
    } else {
      buf.clear();
    }
  }

  static void UseFd(io_uring_sqe* sqe, const Connection& c) {
    if (c.fixed) sqe->flags |= IOSQE_FIXED_FILE;
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
    if (c.budgets_held) c.budgets.CloseConnection();  // after close(): the peer saw it go
    c.budgets_held = false;
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
    const Envelope& env = job->message->envelope;
    const int pool = shaping->PoolFor(env.job, DomainOf(env.sender));
    const std::string key = pool < 0 ? job->domain : absl::StrCat(job->domain, " ", pool);
    auto it = dests.find(key);
    if (it == dests.end()) {
      auto d = std::make_unique<Destination>();
      d->domain = job->domain;
      d->pool = pool;
      d->budget = shaping->ForDomain(job->domain);
      if (d->budget == nullptr) {
        ShapingLimits own;
        own.backoff = shaping->config().default_backoff;
        d->own_budget = std::make_unique<ShapingBudget>(absl::StrCat("domain ", job->domain), own);
        d->budget = d->own_budget.get();
      }
      d->route = w.routes_.Find(job->domain);
      if (d->route == nullptr && resolver == nullptr) {
        FailJob(job, DeliveryClass::kDeferred, 0, "4.4.4",
                absl::StrCat("no route to ", job->domain, " (no --route matches, DNS unavailable)"),
                {});
        return;
      }
      it = dests.emplace(key, std::move(d)).first;
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
    if (const ShapingBudget* paused = PausedFor(d)) {
      FailJob(job, DeliveryClass::kDeferred, 0, "4.4.5", PauseText(*paused), {});
      return;
    }
    if (const size_t cap = RateQueueCap(d); d.queue.size() >= cap) {
      FailJob(job, DeliveryClass::kDeferred, 0, "4.4.5",
              absl::StrCat("not tried: ", cap, " messages for ", d.domain,
                           " already wait for max_message_rate"),
              {});
      return;
    }
    d.queue.push_back(job);
    ResumeIdle(d);
    if (NeedsResolve(d)) {
      Resolve(d);
      return;
    }
    Pump(d);
  }

  // A destination looks its MX hosts up again once its answer may have expired; the resolver's
  // cache makes that cheap, and its TTL is the authority.
  bool NeedsResolve(const Destination& d) const {
    if (d.state == DestState::kResolving) return false;
    if (d.state == DestState::kUnresolved) return true;
    return d.route == nullptr && d.connections == 0 && now_ms - d.resolved_at_ms > 30000;
  }

  void Resolve(Destination& d) {
    if (d.route != nullptr) {
      d.targets.clear();
      for (const NextHop& h : d.route->hops) {
        for (const sockaddr_storage& a : h.addresses) {
          Target t;
          t.mx = h.host;
          t.addr = a;
          t.port = h.explicit_port ? h.port : w.config_.smtp_port;
          d.targets.push_back(std::move(t));
        }
      }
      d.state = DestState::kReady;
      d.resolved_at_ms = now_ms;
      d.ResetFailures();
      Pump(d);
      return;
    }
    d.state = DestState::kResolving;
    Destination* dp = &d;  // destinations are never erased while the worker runs
    resolver->ResolveMx(d.domain, [this, dp](const MxResult& mx) { OnMx(*dp, mx); });
  }

  void OnMx(Destination& d, const MxResult& mx) {
    d.state = DestState::kReady;
    d.resolved_at_ms = now_ms;
    d.targets.clear();
    d.next_target = 0;
    if (mx.status == DnsStatus::kOk) {
      for (const MxHost& h : mx.hosts) {
        for (const sockaddr_storage& a : h.addresses) {
          Target t;
          t.mx = h.name;
          t.addr = a;
          t.port = w.config_.smtp_port;
          t.mx_dnssec = mx.dnssec;
          d.targets.push_back(std::move(t));
        }
      }
    }
    d.ResetFailures();
    if (!d.targets.empty()) {
      Pump(d);
      return;
    }
    // No usable host: RFC 7505 null MX and non-existent domains bounce at once; anything that
    // might be temporary defers (a DNS failure never bounces).
    DeliveryClass klass = DeliveryClass::kDeferred;
    int code = 451;
    std::string enhanced = "4.4.3";
    std::string text;
    switch (mx.status) {
      case DnsStatus::kNullMx:
        klass = DeliveryClass::kBounced;
        code = 556;
        enhanced = "5.1.10";
        text = absl::StrCat("recipient domain ", d.domain, " has a null MX (RFC 7505)");
        break;
      case DnsStatus::kNxDomain:
      case DnsStatus::kNoData:
      case DnsStatus::kBadName:
        klass = DeliveryClass::kBounced;
        code = 550;
        enhanced = "5.1.2";
        text = absl::StrCat("host or domain name not found: ", d.domain, " (",
                            ToString(mx.status), mx.error.empty() ? "" : ": ", mx.error, ")");
        break;
      case DnsStatus::kOk:
        text = absl::StrCat("no MX host of ", d.domain, " has an address");
        break;
      case DnsStatus::kTempFail:
        text = absl::StrCat("DNS temporary failure for ", d.domain,
                            mx.error.empty() ? "" : ": ", mx.error);
        break;
    }
    AttemptInfo attempt;
    attempt.dnssec = mx.dnssec;
    while (!d.queue.empty()) {
      DeliveryJob* job = d.queue.front();
      d.queue.pop_front();
      FailJob(job, klass, code, enhanced, text, attempt);
    }
    d.state = DestState::kUnresolved;  // ask again (the resolver's negative cache answers)
  }

  // --- DNS sockets through the ring ----------------------------------------------------------

  void WatchDns(int fd, bool read, bool write) {
    DnsWatch& wt = dns_watch[fd];
    if (wt.armed) {
      // Cancel the armed poll; its CQE (if any) is stale from now on.
      io_uring_sqe* sqe = Sqe();
      io_uring_prep_poll_remove(sqe, UringTag{UringOp::kDnsPoll, wt.gen,
                                              static_cast<uint32_t>(fd)}.Encode());
      Tag(sqe, UringOp::kCancel, kNoSlot, nullptr);
      wt.armed = false;
    }
    wt.gen = (wt.gen + 1) & kGenMask;
    wt.read = read;
    wt.write = write;
    if (!read && !write) {
      dns_watch.erase(fd);
      return;
    }
    ArmDns(fd, wt);
  }

  void ArmDns(int fd, DnsWatch& wt) {
    io_uring_sqe* sqe = Sqe();
    unsigned mask = (wt.read ? POLLIN : 0) | (wt.write ? POLLOUT : 0);
    io_uring_prep_poll_add(sqe, fd, mask);
    io_uring_sqe_set_data64(sqe, UringTag{UringOp::kDnsPoll, wt.gen,
                                          static_cast<uint32_t>(fd)}.Encode());
    wt.armed = true;
  }

  void OnDnsPoll(const UringTag& tag, int res) {
    int fd = static_cast<int>(tag.slot);
    auto it = dns_watch.find(fd);
    if (it == dns_watch.end() || it->second.gen != tag.gen) return;  // stale
    it->second.armed = false;
    if (res > 0 && (res & (POLLIN | POLLERR | POLLHUP))) resolver->OnReadable(fd);
    it = dns_watch.find(fd);  // the resolver may have changed the watch
    if (it != dns_watch.end() && it->second.gen == tag.gen && res > 0 && (res & POLLOUT)) {
      resolver->OnWritable(fd);
    }
    it = dns_watch.find(fd);
    if (it != dns_watch.end() && !it->second.armed) ArmDns(fd, it->second);
  }

  // --- traffic shaping (engine/shaping.h) ----------------------------------------------------

  // The back-off that stops `d` now: its domain budget's, or — once its next hops are known —
  // its MX rules' when every next hop is behind a paused one. nullptr = not paused.
  const ShapingBudget* PausedFor(const Destination& d) const {
    if (d.budget->Paused(now_ms)) return d.budget;
    if (d.state != DestState::kReady || d.targets.empty()) return nullptr;
    const ShapingBudget* paused = nullptr;
    for (const Target& t : d.targets) {
      const ShapingBudget* mx = shaping->ForMx(t.mx);
      if (mx == nullptr || !mx->Paused(now_ms)) return nullptr;
      paused = mx;
    }
    return paused;
  }

  std::string PauseText(const ShapingBudget& b) const {
    return absl::StrCat("not tried: ", b.PauseReason(), ", resumes in ",
                        absl::FormatDuration(absl::Milliseconds(b.paused_until_ms() - now_ms)));
  }

  // A paused destination hands back what waits (deferred with the reason; the retry schedule
  // brings it back), so a throttled domain never holds in-flight slots others could use.
  bool DeferIfPaused(Destination& d) {
    const ShapingBudget* paused = PausedFor(d);
    if (paused == nullptr) return false;
    std::string text = PauseText(*paused);
    while (!d.queue.empty()) {
      DeliveryJob* job = d.queue.front();
      d.queue.pop_front();
      FailJob(job, DeliveryClass::kDeferred, 0, "4.4.5", text, {});
    }
    return true;
  }

  // A reply (or a failed greeting) of connection `c` feeds the back-off of its domain and MX.
  void ShapingReply(Connection& c, int code) {
    if (code <= 0 || !c.budgets.OnReply(code, now_ms)) return;
    if (!w.config_.quiet) {
      const ShapingBudget* b = c.budgets.PausedBy(now_ms);
      std::fprintf(stderr, "mxburst: %s: %s\n", c.dest->domain.c_str(),
                   b != nullptr ? b->PauseReason().c_str() : "back-off");
    }
    DeferIfPaused(*c.dest);
  }

  // Waits for a rate slot (destination `d` over connection `c`): true when the message must
  // wait; then `d` is woken by the tick once the slot is due.
  bool RateBlocked(Destination& d, Connection& c) {
    const int64_t wait_us = c.budgets.WaitBeforeMessageUs(now_ms * 1000);
    if (wait_us <= 0) return false;
    d.shaping_wake_ms = now_ms + (wait_us + 999) / 1000;
    throttled.insert(&d);
    ArmShapingTimer(d.shaping_wake_ms);
    return true;
  }

  // Idle connections holding a budget somebody waits for say QUIT (every tick).
  void ReleaseContendedIdle() {
    if (!shaping->AnyWaiters(now_ms)) return;
    for (uint32_t slot = 0; slot < slab.size(); ++slot) {
      Connection& c = *slab[slot];
      if (!c.used || !c.idle || !c.dest->queue.empty() || !c.budgets.HasWaiters(now_ms)) continue;
      c.idle = false;  // its entry in dest->idle goes stale
      Handle(slot, c, c.session->Quit());
    }
  }

  // A message rate applies to `d` (its domain's or one of its MX rules'): connections open one
  // at a time, or a backlog would open max_connections sessions that each carry one message.
  bool RateLimited(const Destination& d) const {
    if (!d.budget->limits().max_message_rate.unlimited()) return true;
    for (const Target& t : d.targets) {
      const ShapingBudget* mx = shaping->ForMx(t.mx);
      if (mx != nullptr && !mx->limits().max_message_rate.unlimited()) return true;
    }
    return false;
  }

  // How many jobs a rate-limited destination keeps in memory: what its slowest rate sends until
  // the first retry of a deferred message (at least rate_burst). More would hold in-flight slots
  // (max_in_flight) that the other destinations need; the excess is deferred to the spool.
  size_t RateQueueCap(const Destination& d) const {
    size_t cap = SIZE_MAX;
    const absl::Duration horizon =
        w.config_.retry_delays.empty() ? absl::Minutes(5) : w.config_.retry_delays.front();
    auto consider = [&](const ShapingBudget* b) {
      if (b == nullptr || b->limits().max_message_rate.unlimited()) return;
      const MessageRate& r = b->limits().max_message_rate;
      const double n = static_cast<double>(r.count) * absl::FDivDuration(horizon, r.period);
      cap = std::min(cap, std::max(static_cast<size_t>(b->limits().rate_burst),
                                   static_cast<size_t>(n)));
    };
    consider(d.budget);
    for (const Target& t : d.targets) consider(shaping->ForMx(t.mx));
    return cap;
  }

  // Destinations that waited for a rate slot or a connection budget try again (every tick).
  void RepumpThrottled() {
    ReleaseContendedIdle();
    if (throttled.empty()) return;
    std::vector<Destination*> due;
    for (Destination* d : throttled) {
      if (d->shaping_wake_ms <= now_ms) due.push_back(d);
    }
    for (Destination* d : due) {
      throttled.erase(d);
      ResumeIdle(*d);
      Pump(*d);
    }
  }

  // Hands waiting jobs to idle connections before any new connection is opened.
  void ResumeIdle(Destination& d) {
    while (!d.queue.empty() && !d.idle.empty()) {
      if (now_ms < d.shaping_wake_ms) {  // a connection just parked for a rate slot
        throttled.insert(&d);
        return;
      }
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
    if (d.state != DestState::kReady || d.targets.empty()) return;
    if (DeferIfPaused(d)) return;
    if (now_ms < d.shaping_wake_ms) {  // no new connections while waiting for a rate slot
      if (!d.queue.empty()) throttled.insert(&d);
      return;
    }
    while (!d.queue.empty() && d.connections < w.config_.max_connections_per_destination &&
           static_cast<int>(d.queue.size()) > d.connecting &&
           (d.failed_count == 0 || d.connecting == 0) &&
           (d.connecting == 0 || !RateLimited(d))) {
      if (!OpenConnection(d)) break;
    }
  }

  // A connection to `d` failed before it could deliver anything.
  // A connection to target `target` of `d` failed before it could deliver anything: the next
  // connection tries the next MX / address (RFC 5321 §5.1).
  void DestinationFailure(Destination& d, size_t target, absl::string_view reason,
                          const AttemptInfo& attempt) {
    d.last_failure = std::string(reason);
    d.MarkFailed(target);
    if (d.connections > 0) return;  // others are still trying; the last one decides
    if (d.failed_count < d.TargetCount()) {
      Pump(d);
      return;
    }
    // Every next hop failed: defer what waits (RFC 5321 §4.5.4.1 retry later), and what
    // arrives for a while, without new attempts.
    d.ResetFailures();
    d.dead_until_ms = now_ms + absl::ToInt64Milliseconds(w.config_.dead_destination_time);
    while (!d.queue.empty()) {
      DeliveryJob* job = d.queue.front();
      d.queue.pop_front();
      FailJob(job, DeliveryClass::kDeferred, 0, "4.4.1", d.last_failure, attempt);
    }
  }

  AttemptInfo AttemptOf(const Connection& c) const {
    AttemptInfo a;
    a.mx = c.mx;
    a.ip = SockaddrIp(c.addr);
    a.port = SockaddrPort(c.addr);
    if (c.tls != nullptr && c.tls->handshake_done()) {
      a.tls_version = c.tls->version();
      a.tls_cipher = c.tls->cipher();
      a.tls_resumed = c.tls->resumed();
    }
    a.policy = c.policy.name;
    a.policy_source = ToString(c.policy.source);
    a.dnssec = c.mx_dnssec;
    a.violation = c.violation;
    return a;
  }

  // --- connections ---------------------------------------------------------------------------

  // The policy for an MX host: from the cache, derived on first sight.
  PolicyEntry& PolicyFor(const Destination& d, const std::string& mx) {
    bool created = false;
    PolicyEntry& e = policy_cache.Get(mx, absl::Now(), &created);
    if (created) {
      DomainTlsConfig domain_cfg;
      if (auto it = w.config_.domain_tls.find(d.domain); it != w.config_.domain_tls.end()) {
        domain_cfg = it->second;
      } else if (w.config_.tls != TlsMode::kOpportunistic) {
        // --tls required|disabled is the default rule for every domain without its own.
        domain_cfg.has_rule = true;
        domain_cfg.requirement = w.config_.tls == TlsMode::kRequired ? TlsRequirement::kRequired
                                                                     : TlsRequirement::kDisabled;
      }
      e.policy = DerivePolicy(mx, domain_cfg, w.config_.tls_global);
    }
    return e;
  }

  enum class BudgetResult { kOk, kFull, kNoSource };

  // Takes one connection from every budget that applies (domain, MX, source) and picks the
  // source address: the destination's pool in rotation, skipping addresses whose source rule is
  // full. kFull: nothing taken, `d` tries again on the next tick.
  BudgetResult TakeBudgets(Destination& d, const Target& t, BudgetSet* set,
                           sockaddr_storage* source, bool* has_source) {
    set->budgets = {d.budget, shaping->ForMx(t.mx), nullptr};
    *has_source = false;
    if (d.pool < 0) {
      if (set->TryOpenConnection(now_ms)) return BudgetResult::kOk;
    } else {
      const SourcePool& pool = shaping->config().pools[d.pool];
      bool family = false;
      for (size_t i = 0; i < pool.sockaddrs.size(); ++i) {
        size_t k = (source_rr + i) % pool.sockaddrs.size();
        if (pool.sockaddrs[k].ss_family != t.addr.ss_family) continue;
        family = true;
        set->budgets[BudgetSet::kSource] = shaping->ForSource(pool.addresses[k]);
        if (set->TryOpenConnection(now_ms)) {
          source_rr = k + 1;
          *source = pool.sockaddrs[k];
          *has_source = true;
          return BudgetResult::kOk;
        }
      }
      if (!family) return BudgetResult::kNoSource;
    }
    throttled.insert(&d);
    return BudgetResult::kFull;
  }

  bool OpenConnection(Destination& d) {
    if (d.targets.empty()) return false;
    size_t target_index = d.next_target % d.targets.size();
    // Skip next hops behind a backing-off MX rule (PausedFor() said one is not).
    for (size_t i = 0; i < d.targets.size(); ++i) {
      size_t t = (d.next_target + i) % d.targets.size();
      const ShapingBudget* mx = shaping->ForMx(d.targets[t].mx);
      if (mx == nullptr || !mx->Paused(now_ms)) {
        target_index = t;
        break;
      }
    }
    const Target& target = d.targets[target_index];
    BudgetSet budgets;
    sockaddr_storage source{};
    bool has_source = false;
    switch (TakeBudgets(d, target, &budgets, &source, &has_source)) {
      case BudgetResult::kOk:
        break;
      case BudgetResult::kFull:
        return false;
      case BudgetResult::kNoSource: {
        AttemptInfo a;
        a.mx = target.mx;
        DestinationFailure(d, target_index,
                           absl::StrCat("source pool ", shaping->config().pools[d.pool].name,
                                        " has no address of ", target.mx, "'s family"),
                           a);
        return false;
      }
    }
    PolicyEntry& policy = PolicyFor(d, target.mx);
    bool implicit = policy.policy.implicit_tls_first &&
                    policy.implicit_tls_failed_until < absl::Now();
    sockaddr_storage addr = target.addr;
    SetPort(&addr, implicit ? w.config_.tls_global.smtps_port : target.port);
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int bind_err = fd >= 0 && has_source ? BindSource(fd, source) : 0;
    if (fd < 0 || bind_err != 0) {
      int err = fd < 0 ? errno : bind_err;
      if (fd >= 0) close(fd);
      budgets.CloseConnection();
      AttemptInfo a;
      a.mx = target.mx;
      DestinationFailure(d, target_index,
                         fd < 0 ? absl::StrCat("socket: ", ErrnoText(err))
                                : absl::StrCat("bind ", SockaddrIp(source), ": ", ErrnoText(err)),
                         a);
      return false;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    uint32_t slot = AllocConnection();
    Connection& c = *slab[slot];
    c.fd = fd;
    c.budgets = budgets;
    c.budgets_held = true;
    c.max_messages = budgets.MaxMessagesPerConnection(w.config_.max_messages_per_connection);
    c.source = source;
    c.has_source = has_source;
    c.dest = &d;
    c.target = target_index;
    c.mx = target.mx;
    c.mx_dnssec = target.mx_dnssec;
    c.policy = policy.policy;
    c.implicit_tls = implicit;
    c.addr = addr;
    c.addr_len = addr.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
    ++policy.connections;
    int64_t ms = absl::ToInt64Milliseconds(w.config_.connect_timeout);
    c.connect_timeout.tv_sec = ms / 1000;
    c.connect_timeout.tv_nsec = (ms % 1000) * 1000000;
    ++d.connections;
    ++d.connecting;
    w.stats_.connections.fetch_add(1, std::memory_order_relaxed);

    MakeDirect(slot, c);  // after bind/setsockopt, which need the regular descriptor
    io_uring_sqe* sqe = Sqe();
    io_uring_prep_connect(sqe, c.fd, reinterpret_cast<sockaddr*>(&c.addr), c.addr_len);
    UseFd(sqe, c);
    sqe->flags |= IOSQE_IO_LINK;
    Tag(sqe, UringOp::kConnect, slot, &c);
    sqe = Sqe();
    io_uring_prep_link_timeout(sqe, &c.connect_timeout, 0);
    Tag(sqe, UringOp::kLinkTimeout, slot, &c);
    return true;
  }

  // Arms the connection's receive: multishot from the buffer ring (stays armed across
  // completions; re-armed only after a CQE without IORING_CQE_F_MORE), else one-shot.
  void PostRecv(uint32_t slot, Connection& c) {
    if (c.recv_inflight || c.phase == ConnPhase::kClosing) return;
    io_uring_sqe* sqe = Sqe();
    if (bufs != nullptr) {
      if (multishot_recv) {
        io_uring_prep_recv_multishot(sqe, c.fd, nullptr, 0, 0);
      } else {
        io_uring_prep_recv(sqe, c.fd, nullptr, bufs->buffer_size(), 0);
      }
      sqe->flags |= IOSQE_BUFFER_SELECT;
      sqe->buf_group = bufs->group();
    } else {
      if (!c.recv_buf) c.recv_buf.reset(new char[kRecvBufferSize]);
      io_uring_prep_recv(sqe, c.fd, c.recv_buf.get(), kRecvBufferSize, 0);
    }
    UseFd(sqe, c);
    Tag(sqe, UringOp::kRecv, slot, &c);
    c.recv_inflight = true;
  }

  void FlushSend(uint32_t slot, Connection& c) {
    if (c.send_inflight || c.phase == ConnPhase::kClosing) return;
    if (c.send_off >= c.send_buf.size()) {
      if (c.send_pending.empty()) return;
      c.send_buf.swap(c.send_pending);
      ReleaseIfLarge(c.send_pending);
      c.send_off = 0;
    }
    io_uring_sqe* sqe = Sqe();
    io_uring_prep_send(sqe, c.fd, c.send_buf.data() + c.send_off, c.send_buf.size() - c.send_off,
                       MSG_NOSIGNAL);
    UseFd(sqe, c);
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
      const unsigned fixed = c.fixed ? IORING_ASYNC_CANCEL_FD_FIXED : 0;
      io_uring_prep_cancel_fd(sqe, c.fd, IORING_ASYNC_CANCEL_ALL | fixed);
      Tag(sqe, UringOp::kCancel, slot, &c);
    }
    MaybeFinishClose(slot, c);
    // Jobs still waiting for `d` get a new connection when this one's close completes.
  }

  void MaybeFinishClose(uint32_t slot, Connection& c) {
    if (c.phase != ConnPhase::kClosing || c.ops > 0 || c.close_posted) return;
    c.close_posted = true;
    io_uring_sqe* sqe = Sqe();
    if (c.fixed) {
      io_uring_prep_close_direct(sqe, static_cast<unsigned>(c.fd));  // frees table slot `slot`
    } else {
      io_uring_prep_close(sqe, c.fd);
    }
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
      ShapingReply(c, r.code);
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
    // Keep the session (and its TLS state) for the next job of this destination, or until
    // the rate budget allows the next message.
    auto park = [&] {
      c.idle = true;
      d.idle.emplace_back(slot, c.gen);
      c.deadline_ms = now_ms + absl::ToInt64Milliseconds(w.config_.idle_timeout);
      wheel.Insert(slot, c.gen, c.deadline_ms);
    };
    const bool may_send =
        !stopping && c.messages < c.max_messages && c.budgets.PausedBy(now_ms) == nullptr;
    if (may_send && !d.queue.empty() && RateBlocked(d, c)) {
      park();
      return;
    }
    // An idle connection gives its budget back at once when another destination waits for it
    // (several domains behind one MX rule): idling would hold their mail up for idle_timeout.
    if (may_send && d.queue.empty() && !c.budgets.HasWaiters(now_ms)) {
      park();
      return;
    }
    if (d.queue.empty() || !may_send) {
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
      c.budgets.TakeMessage(now_ms * 1000);
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
      if (c.messages >= c.max_messages) break;
      if (!d.queue.empty() && RateBlocked(d, c)) {
        park();
        return;
      }
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
        if (!NewTls(c)) {
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
          if (c.policy.log_only && !c.session->tls_active()) {
            // log-only: deliver, but say what enforcement would have refused.
            c.violation = "starttls-not-offered";
          }
          c.ready_seen = true;
          if (PolicyEntry* e = policy_cache.Find(c.mx)) {
            e->ehlo_keywords = KeywordsOf(c.session->capabilities());
            e->last_used = absl::Now();
          }
          if (c.dest->connecting > 0) --c.dest->connecting;
          c.dest->ResetFailures();
        }
        StartTransaction(slot, c);
        break;
      case Action::Kind::kClose: {
        CollectResults(c);
        const SessionFailure& f = c.session->failure();
        // A 421 or 4xx greeting, or a 421 between transactions, reaches no recipient result.
        if (f.failed && (!c.ready_seen || f.code == 421)) ShapingReply(c, f.code);
        if (f.failed && !c.ready_seen) {
          Destination& d = *c.dest;
          AttemptInfo attempt = AttemptOf(c);
          StartClose(slot, c);
          DestinationFailure(d, c.target, f.reason, attempt);
          return;
        }
        StartClose(slot, c);
        break;
      }
    }
  }

  // A client TLS session for c's MX host: verification per policy, resumption when the policy
  // cache holds a session for this host.
  bool NewTls(Connection& c) {
    SessionParams params;
    params.verify = c.policy.verify;
    params.log_only = c.policy.log_only;  // verify, but let the handshake finish
    PolicyEntry* e = policy_cache.Find(c.mx);
    if (w.config_.tls_resumption && e != nullptr && e->session != nullptr) {
      params.resume = e->session.get();
    }
    c.tls = w.tls_client_->NewSession(c.mx, params);
    return c.tls != nullptr;
  }

  void DriveHandshake(uint32_t slot, Connection& c) {
    TlsStatus st = c.tls->Handshake();
    MoveCiphertext(c);
    FlushSend(slot, c);
    if (st == TlsStatus::kOk) {
      c.phase = ConnPhase::kSmtp;
      if (c.policy.log_only && c.tls->failure() != TlsFailure::kNone) {
        c.violation = ToString(c.tls->failure());  // log-only: logged, not enforced
      }
      w.stats_.tls_sessions.fetch_add(1, std::memory_order_relaxed);
      if (c.tls->resumed()) {
        w.stats_.tls_resumed.fetch_add(1, std::memory_order_relaxed);
        if (PolicyEntry* e = policy_cache.Find(c.mx)) ++e->resumed;
      }
      if (c.implicit_tls) {
        // TLS from the first byte: the greeting comes next, inside TLS.
        ArmDeadline(slot, c, DefaultReplyTimeout(SmtpState::kGreeting));
        return;
      }
      Handle(slot, c, c.session->OnTlsReady());
    } else if (st != TlsStatus::kWantIo) {
      TlsFailure f = c.tls->failure();
      if (c.implicit_tls && f == TlsFailure::kHandshakeFailed) {
        ImplicitTlsFailed(slot, c, c.tls->last_error());
        return;
      }
      RecordTlsFailure(c, f);
      Handle(slot, c, c.session->OnTlsFailed(absl::StrCat(ToString(f), ": ",
                                                          c.tls->last_error())));
    }
  }

  void RecordTlsFailure(Connection& c, TlsFailure f) {
    if (PolicyEntry* e = policy_cache.Find(c.mx)) {
      ++e->recent_failures;
      e->last_failure = f;
      e->session.reset();  // never resume into a session that just failed
    }
  }

  // The implicit-TLS port (26) refused, reset, timed out or did not speak TLS: remember it in
  // the policy cache (negative entry with expiry) and go to port 25 with mandatory STARTTLS for
  // the same host right away — never plaintext, and not a failure of the destination.
  void ImplicitTlsFailed(uint32_t slot, Connection& c, absl::string_view why) {
    if (PolicyEntry* e = policy_cache.Find(c.mx)) {
      e->implicit_tls_failed_until = absl::Now() + w.config_.tls_global.implicit_tls_negative_ttl;
    }
    if (!w.config_.quiet) {
      std::fprintf(stderr, "mxburst: %s port %u (implicit TLS) failed: %s; using STARTTLS on %u\n",
                   c.mx.c_str(), w.config_.tls_global.smtps_port, std::string(why).c_str(),
                   w.config_.tls_global.smtp_port);
    }
    Destination& d = *c.dest;
    StartClose(slot, c);
    OpenConnection(d);
  }

  // --- completions ---------------------------------------------------------------------------

  void OnConnect(uint32_t slot, Connection& c, int res) {
    if (c.phase == ConnPhase::kClosing) return;
    if (res < 0 && c.implicit_tls) {
      ImplicitTlsFailed(slot, c, res == -ECANCELED ? "connect timed out" : ErrnoText(-res));
      return;
    }
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
      DestinationFailure(d, c.target, reason, attempt);
      return;
    }
    c.phase = ConnPhase::kSmtp;
    SessionOptions opts;
    opts.helo_name = w.config_.helo_name;
    switch (c.policy.requirement) {
      case TlsRequirement::kDisabled: opts.tls = TlsMode::kDisabled; break;
      case TlsRequirement::kOpportunistic: opts.tls = TlsMode::kOpportunistic; break;
      case TlsRequirement::kRequired: opts.tls = TlsMode::kRequired; break;
    }
    opts.implicit_tls = c.implicit_tls;
    opts.max_rcpts_per_transaction = w.config_.max_recipients_per_transaction;
    c.session.emplace(std::move(opts));
    ArmDeadline(slot, c, DefaultReplyTimeout(SmtpState::kGreeting));
    PostRecv(slot, c);
    if (c.implicit_tls) {
      if (!NewTls(c)) {
        Handle(slot, c, c.session->OnTlsFailed("cannot create TLS session"));
        return;
      }
      c.phase = ConnPhase::kTlsHandshake;
      DriveHandshake(slot, c);
    }
  }

  void OnRecv(uint32_t slot, Connection& c, const io_uring_cqe* cqe) {
    const int res = cqe->res;
    if ((cqe->flags & IORING_CQE_F_MORE) == 0) c.recv_inflight = false;  // multishot ended
    // A provided buffer goes back to the ring when this returns: by then its bytes have been
    // parsed (the reply parser keeps a partial line) or copied into the TLS session.
    struct GiveBack {
      ProvidedBufferRing* ring;
      std::optional<uint16_t> bid;
      ~GiveBack() {
        if (ring != nullptr && bid) ring->Return(*bid);
      }
    } give_back{bufs.get(), ProvidedBufferRing::BufferId(cqe)};
    if (c.phase == ConnPhase::kClosing) return;
    if (res == -ENOBUFS && bufs != nullptr) {
      // Every buffer was in a CQE of this batch; they are back before the next submit.
      PostRecv(slot, c);
      return;
    }
    if (res == -EINVAL && bufs != nullptr && multishot_recv && !c.recv_inflight) {
      multishot_recv = false;  // kernel without multishot recv (< 6.0): one-shot from here on
      PostRecv(slot, c);
      return;
    }
    if (res > 0 && bufs != nullptr && !give_back.bid) {
      Handle(slot, c, c.session->OnConnectionLost("recv completed without a buffer"));
      return;
    }
    if (res <= 0) {
      std::string why = res == 0 ? "connection closed by peer"
                                 : absl::StrCat("recv: ", ErrnoText(-res));
      if (c.implicit_tls && c.phase == ConnPhase::kTlsHandshake) {
        ImplicitTlsFailed(slot, c, why);
        return;
      }
      if (c.phase == ConnPhase::kTlsHandshake) {
        Handle(slot, c, c.session->OnTlsFailed(absl::StrCat("handshake-failed: ", why)));
        return;
      }
      Handle(slot, c, c.session->OnConnectionLost(why));
      return;
    }
    absl::string_view data(bufs != nullptr ? bufs->Buffer(*give_back.bid) : c.recv_buf.get(),
                           static_cast<size_t>(res));
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
    if (c.tls != nullptr && !c.session_saved && !replies.empty()) {
      // TLS 1.3 tickets arrive after the handshake, before the server's first reply inside
      // TLS: now the session can be kept for the next connection to this MX (newest only).
      c.session_saved = true;
      if (std::shared_ptr<TlsSessionTicket> t = c.tls->SaveSession()) {
        if (PolicyEntry* e = policy_cache.Find(c.mx)) e->session = std::move(t);
      }
    }
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
      ReleaseIfLarge(c.send_buf);
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
      if (c.implicit_tls) {
        ImplicitTlsFailed(slot, c, "handshake timed out");
        return;
      }
      Handle(slot, c, c.session->OnTlsFailed("handshake-failed: timed out"));
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
    if (tag.op == UringOp::kTick && tag.slot == kShapingTimerSlot) {
      --shaping_timers;
      shaping_timer_ms = INT64_MAX;  // re-armed by whoever still waits
      RepumpThrottled();
      return;
    }
    if (tag.op == UringOp::kTick) {
      wheel.Advance(now_ms, [this](uint32_t s, uint32_t g, int64_t d) { OnDeadline(s, g, d); });
      RepumpThrottled();
      if (resolver != nullptr) resolver->ProcessTimeouts();
      if (now_ms - last_policy_dump_ms >= kPolicyDumpMs) DumpPolicies();
      PostTick();
      return;
    }
    if (tag.op == UringOp::kDnsPoll) {
      OnDnsPoll(tag, res);
      return;
    }
    if (tag.slot == kNoSlot) return;  // worker-level op without a connection (poll remove)
    if (tag.slot >= slab.size() || !slab[tag.slot]->used || slab[tag.slot]->gen != tag.gen) {
      w.stats_.stale_completions.fetch_add(1, std::memory_order_relaxed);
      // Still hand back a buffer the kernel gave us, or the ring would lose it.
      if (auto bid = ProvidedBufferRing::BufferId(cqe); bid && bufs != nullptr) bufs->Return(*bid);
      return;
    }
    Connection& c = *slab[tag.slot];
    // A multishot receive stays in flight until its CQE without F_MORE.
    if ((cqe->flags & IORING_CQE_F_MORE) == 0) --c.ops;
    switch (tag.op) {
      case UringOp::kConnect:
        OnConnect(tag.slot, c, res);
        break;
      case UringOp::kRecv:
        OnRecv(tag.slot, c, cqe);
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
      if (w.stop_.load(std::memory_order_acquire) && Idle()) {
        DumpPolicies();
        break;
      }

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
      if (bufs != nullptr) bufs->Publish();  // one release store for the whole batch
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

uint32_t Worker::DirectTableSize() { return mxb::DirectTableSize(); }

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
