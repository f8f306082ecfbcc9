// Worker (engine/worker.h): the thread, its loop, dispatch of completions by tag, the job
// queues in and out. The DNS sockets polled through the ring: engine/worker_dns.cc. Scheduling
// lives in engine/destination.cc, one connection in engine/connection.cc, the ring in
// engine/ring.cc.
#include "engine/worker.h"

#include <liburing.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "dns/resolver.h"
#include "engine/connection.h"
#include "engine/control_plane.h"
#include "engine/dane_lookup.h"
#include "engine/destination.h"
#include "engine/ring.h"
#include "engine/shaping.h"
#include "engine/timer_wheel.h"
#include "engine/uring_tag.h"
#include "engine/worker_dns.h"
#include "tls/hop_policy.h"
#include "tls/policy.h"

namespace mxb {
namespace {

constexpr unsigned kRingEntries = 4096;
// A CQ of 32k entries: tens of thousands of sessions complete in bursts.
constexpr unsigned kCqEntries = 32768;
// Receives come from one provided-buffer ring per worker (engine/uring_setup.h): buffers are
// taken only while bytes wait to be parsed or decrypted, so idle sessions own none. 4 KiB holds
// any SMTP reply and most handshake flights; larger reads simply take several buffers.
constexpr uint32_t kRecvBufCount = 1024;  // power of two; 4 MiB of address space per worker
constexpr uint32_t kRecvBufSize = 4096;
constexpr uint16_t kRecvBufGroup = 1;
constexpr int64_t kTickMs = 100;
constexpr size_t kInboundCapacity = 1 << 16;
constexpr int64_t kPolicyDumpMs = 30000;
// Ring timeouts for the earliest rate-slot wake-up: the 100 ms tick alone would cap every
// rate at one message per tick. Tagged kTick with this slot.
constexpr uint32_t kShapingTimerSlot = 1;

}  // namespace

void WorkerStats::CountConnectFailure(int err) {
  size_t r = 4;
  switch (err) {
    case ECONNREFUSED: r = 0; break;
    case ECANCELED: case ETIMEDOUT: r = 1; break;
    case ENETUNREACH: case EHOSTUNREACH: case EADDRNOTAVAIL: r = 2; break;
    case ECONNRESET: r = 3; break;
    default: break;
  }
  connect_failures_by[r].fetch_add(1, std::memory_order_relaxed);
}

namespace {

int64_t NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

std::string ErrnoText(int err) { return std::strerror(err); }

// Writes PATH.tmp and renames it over PATH, so readers never see half a file. Best effort: a
// dump that cannot be written is skipped (the next one tries again).
void WriteReplacing(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) return;
  bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  ok = std::fclose(f) == 0 && ok;
  if (ok) std::rename(tmp.c_str(), path.c_str());
}

// The configured inputs of the hop TLS policy decision (tls/hop_policy.h).
TlsPolicyRules RulesOf(const EngineConfig& config) {
  TlsPolicyRules rules;
  rules.domains = config.domain_tls;
  if (config.tls != TlsMode::kOpportunistic) {
    // --tls required|disabled is the default rule for every domain without its own.
    rules.default_rule.has_rule = true;
    rules.default_rule.requirement = config.tls == TlsMode::kRequired
                                         ? TlsRequirement::kRequired
                                         : TlsRequirement::kDisabled;
  }
  rules.global = config.tls_global;
  return rules;
}

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
// Worker internals: the loop, and the host its destinations run on.

struct Worker::Impl : public DestinationHost {
  Worker& w;
  Ring ring;
  TimerWheel wheel{kTickMs};
  int64_t now_ms_ = 0;
  uint64_t wake_buf = 0;
  __kernel_timespec tick_ts{0, kTickMs * 1000000};

  PolicyCache policy_cache{100000};
  TlsPolicyRules tls_rules;
  int64_t last_policy_dump_ms = 0;
  SendBufferPool send_buffers;  // before the slab: connections give their buffers back to it
  ConnectionEnv env;
  ConnectionSlab slab{&env};
  ConnectGate gate;  // local back-pressure: shortages and the ephemeral port budget

  // Traffic shaping: the process-wide rules (their budgets are shared with the other workers)
  // and the destinations waiting for a rate slot or a connection budget, re-pumped every tick.
  ShapingTable no_shaping;
  const ShapingTable* shaping = nullptr;
  DestinationContext dctx;
  DestinationMap dests;
  // Connections shared by the destinations on one MX host (engine/mx_pool.h).
  MxPool mx_pool{w.config_.max_connections_per_mx};
  absl::flat_hash_set<Destination*> throttled;
  __kernel_timespec shaping_ts{};        // copied by the kernel when the timeout is submitted
  int shaping_timers = 0;                // armed
  int64_t shaping_timer_ms = INT64_MAX;  // the earliest armed one

  std::unique_ptr<Resolver> resolver;
  DnsPoller dns{&ring};

  // Domains an operator suspended (the control plane; empty and unused when [http] is off).
  Suspensions suspensions;

  std::vector<DeliveryJob*> unsent_completions;
  bool completions_pushed = false;
  int64_t local_retry_at_ms = 0;  // the gate's last answer for a held-back connect
  bool connects_held = false;     // since the last tick
  int64_t last_expiry_ms = 0;

  explicit Impl(Worker& worker)
      : w(worker),
        gate(worker.ports_, worker.port_sharers_, &worker.stats_, worker.config_.quiet),
        shaping(worker.config_.shaping ? worker.config_.shaping.get() : &no_shaping) {
    env.ring = &ring;
    env.wheel = &wheel;
    env.now_ms = &now_ms_;
    env.policy_cache = &policy_cache;
    env.tls_client = w.tls_client_;
    env.config = &w.config_;
    env.stats = &w.stats_;
    env.gate = &gate;
    env.tlsrpt = w.tlsrpt_;
    env.banner_pins = w.banner_pins_;
    env.send_buffers = &send_buffers;
    tls_rules = RulesOf(w.config_);
    dctx.config = &w.config_;
    dctx.shaping = shaping;
    dctx.policy_cache = &policy_cache;
    dctx.tls_rules = &tls_rules;
    dctx.host = this;
    dctx.sts = w.sts_;
    dctx.mx_pool = &mx_pool;
    dctx.tlsrpt = w.tlsrpt_;
    dctx.banner_pins = w.banner_pins_;
    if (w.control_ != nullptr) dctx.suspensions = &suspensions;
  }

  absl::Status InitRing() {
    if (absl::Status s = ring.Init(kRingEntries, kCqEntries); !s.ok()) return s;
    SetUpSockets();
    policy_cache = PolicyCache(w.config_.policy_cache_entries);
    // DNS sockets polled through this ring (engine/worker_dns.cc); nullptr: DNS unavailable.
    resolver = CreateWorkerResolver(w.config_, w.index_, &dns);
    return absl::OkStatus();
  }

  // Direct descriptors and the buffer ring, each with a fallback that is announced once per
  // process. MXB_URING_DISABLE=direct,bufring,multishot turns them off (tests, benchmarks).
  // Sockets are direct descriptors (slot i of the file table = slab slot i): they are not in
  // the process fd table, so RLIMIT_NOFILE bounds each ring's table, not the process's sessions.
  void SetUpSockets() {
    const char* envv = std::getenv("MXB_URING_DISABLE");
    const std::string disable = envv != nullptr ? envv : "";
    static std::atomic<bool> direct_noted{false}, bufring_noted{false};
    if (disable.find("direct") != std::string::npos) {
      if (!direct_noted.exchange(true)) {
        std::fprintf(stderr, "mxburst: io_uring direct descriptors off (MXB_URING_DISABLE); "
                     "using regular descriptors (sessions limited by RLIMIT_NOFILE)\n");
      }
    } else {
      uint32_t n = Worker::DirectTableSize();
      absl::Status s = ring.RegisterDirectTable(n);
      if (!s.ok() && !direct_noted.exchange(true)) {
        std::fprintf(stderr, "mxburst: io_uring registered file table of %u: %s; using regular "
                     "descriptors (sessions limited by RLIMIT_NOFILE)\n", n,
                     std::string(s.message()).c_str());
      }
    }
    if (disable.find("multishot") != std::string::npos) ring.DisableMultishotRecv();
    if (disable.find("bufring") == std::string::npos) {
      absl::Status s = ring.SetUpBuffers(kRecvBufGroup, kRecvBufCount, kRecvBufSize);
      if (!s.ok() && !bufring_noted.exchange(true)) {
        std::fprintf(stderr, "mxburst: %s; using a %zu-byte receive buffer per connection\n",
                     std::string(s.message()).c_str(), kOwnRecvBufferSize);
      }
    }
  }

  // The policy cache as JSON lines in SPOOL/log/policy-wN.jsonl (`mxburstctl policy`), written
  // every kPolicyDumpMs and at exit. Synchronous file I/O on this thread, but rare and small;
  // tmp + rename so readers never see half a file.
  void DumpPolicies() {
    last_policy_dump_ms = now_ms_;
    std::string dir = w.config_.spool_dir + "/log";
    mkdir(dir.c_str(), 0755);  // EEXIST is the normal case
    WriteReplacing(absl::StrCat(dir, "/policy-w", w.index_, ".jsonl"),
                   policy_cache.DumpJson(absl::Now()));
    // The shaping rules' budgets are process-wide: worker 0 writes them, SPOOL/log/shaping.jsonl
    // (`mxburstctl shaping`).
    if (w.index_ == 0 && !shaping->config().rules.empty()) {
      WriteReplacing(dir + "/shaping.jsonl", shaping->DumpJson(now_ms_));
    }
  }

  // --- DestinationHost -------------------------------------------------------------------------

  int64_t now_ms() const override { return now_ms_; }
  bool stopping() const override {
    return w.drain_.load(std::memory_order_relaxed) || w.stop_.load(std::memory_order_relaxed);
  }

  void Complete(DeliveryJob* job) override {
    if (!w.done_->Push(job)) {
      unsent_completions.push_back(job);
    } else {
      completions_pushed = true;
    }
  }

  void Throttle(Destination* d) override { throttled.insert(d); }

  void WakeAt(int64_t at_ms) override {
    if (shaping_timers > 0 && shaping_timer_ms <= at_ms) return;
    const int64_t ms = std::max<int64_t>(1, at_ms - now_ms_);
    shaping_ts.tv_sec = ms / 1000;
    shaping_ts.tv_nsec = (ms % 1000) * 1000000;
    io_uring_sqe* sqe = ring.Sqe();
    io_uring_prep_timeout(sqe, &shaping_ts, 0, 0);
    Ring::SetTag(sqe, UringTag{UringOp::kTick, 0, kShapingTimerSlot});
    ++shaping_timers;
    shaping_timer_ms = at_ms;
  }

  void ResolveMx(Destination* d) override {
    // Destinations are never erased while the worker runs.
    ProbeDnssec(resolver.get(), w.config_);
    ResolveMxAndTlsa(resolver.get(), d->domain(), w.config_.smtp_port,
                     w.config_.tls_global.smtps_port, w.config_.tls_global.dane,
                     [d](const MxResult& mx, std::vector<HopDnsFacts> facts) {
                       d->OnMx(mx, facts);
                     });
  }

  // ResourceExhausted: this host cannot afford the connect now (engine/connect_gate.h); the
  // destination waits until LocalRetryAtMs() and defers nobody.
  absl::StatusOr<ConnRef> Connect(ConnectionOwner* owner, ConnectSpec spec) override {
    if (int64_t at = gate.BlockedUntilMs(spec, now_ms_); at > 0) {
      local_retry_at_ms = at;
      connects_held = true;
      return absl::ResourceExhaustedError("ephemeral port budget or local back-off");
    }
    absl::StatusOr<int> fd = OpenSocket(spec);
    if (!fd.ok()) {
      if (absl::IsResourceExhausted(fd.status())) {
        gate.Shortage(errno, absl::StrCat("new socket for ", spec.mx), now_ms_);
        local_retry_at_ms = gate.retry_at_ms();
        connects_held = true;
      }
      return fd.status();
    }
    gate.Opened(spec);
    uint32_t slot = slab.Alloc();
    Connection& c = slab.At(slot);
    c.Connect(*fd, owner, std::move(spec));
    return ConnRef{slot, c.gen()};
  }

  int64_t LocalRetryAtMs() const override {
    return std::max(local_retry_at_ms, gate.retry_at_ms());
  }

  bool Transfer(uint32_t slot, DeliveryJob* job) override { return slab.At(slot).Transfer(job); }
  bool MeetsBannerPins(uint32_t slot) override { return slab.At(slot).MeetsBannerPins(); }
  void Quit(uint32_t slot) override { slab.At(slot).Quit(); }
  void Park(uint32_t slot, int64_t until_ms) override { slab.At(slot).Park(until_ms); }

  bool Unpark(ConnRef ref) override {
    Connection* c = slab.Find(ref.slot, ref.gen);
    if (c == nullptr || !c->parked()) return false;
    c->Unpark();
    return true;
  }

  void Reown(uint32_t slot, ConnectionOwner* owner) override { slab.At(slot).set_owner(owner); }

  bool IsParked(uint32_t slot) const override {
    const Connection& c = slab.At(slot);
    return c.used() && c.parked();
  }

  // --- jobs ------------------------------------------------------------------------------------

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

  // A destination is (recipient domain, source pool).
  void AcceptJob(DeliveryJob* job) {
    const Envelope& envelope = job->message->envelope;
    const int pool = shaping->PoolFor(envelope.job, DomainOf(envelope.sender));
    const std::string key = pool < 0 ? job->domain : absl::StrCat(job->domain, " ", pool);
    auto it = dests.find(key);
    if (it == dests.end()) {
      const Route* route = w.routes_.Find(job->domain);
      if (route == nullptr && resolver == nullptr) {
        SetAllOutcomes(job, DeliveryClass::kDeferred, 0, "4.4.4",
                       absl::StrCat("no route to ", job->domain,
                                    " (no --route matches, DNS unavailable)"),
                       {});
        Complete(job);
        return;
      }
      it = dests.emplace(key, std::make_unique<Destination>(&dctx, job->domain, pool, route))
               .first;
    }
    it->second->Accept(job);
  }

  void DrainInbound() {
    DeliveryJob* job;
    while (w.inbound_.TryPop(job)) AcceptJob(job);
  }

  // Destinations that waited for a rate slot or a connection budget try again (every tick),
  // after idle connections holding a budget somebody waits for said QUIT.
  void RepumpThrottled() {
    if (shaping->AnyWaiters(now_ms_)) {
      for (auto& [key, d] : dests) d->ReleaseContendedIdle();
    }
    if (throttled.empty()) return;
    std::vector<Destination*> due;
    for (Destination* d : throttled) {
      if (d->shaping_wake_ms() <= now_ms_) due.push_back(d);
    }
    for (Destination* d : due) {
      throttled.erase(d);
      d->ResumeIdle();
      d->Pump();
    }
  }

  // A connect was held back (local shortage, spent port budget): idle connections holding what
  // it waits for — any descriptor during a shortage, a port of the spent (source, destination)
  // — say QUIT now instead of after idle_timeout. The long tail (one message per domain) would
  // otherwise keep a port per domain parked for nothing. Their destinations' idle_ entries go
  // stale (Unpark() checks).
  void QuitIdleForHeldConnects() {
    if (!connects_held) return;
    connects_held = false;
    const bool shortage = gate.retry_at_ms() > now_ms_;
    for (uint32_t s = 0; s < slab.capacity(); ++s) {
      Connection& c = slab.At(s);
      if (!c.used() || !c.parked()) continue;
      if (!shortage && !gate.Spent(c.spec(), now_ms_)) continue;
      c.Unpark();
      c.Quit();
    }
  }

  // Issue 17: forget destinations idle for destination_idle_time, so memory follows the
  // domains in use, not every domain ever seen. Expirable() guarantees nothing points at one.
  void ExpireIdleDestinations() {
    last_expiry_ms = now_ms_;
    const int64_t idle = absl::ToInt64Milliseconds(w.config_.destination_idle_time);
    ForgetIdleDestinations(&dests, &mx_pool, idle, [&](Destination* d) { throttled.erase(d); });
  }

  // --- the loop --------------------------------------------------------------------------------

  void PostWake() {
    io_uring_sqe* sqe = ring.Sqe();
    io_uring_prep_read(sqe, w.wake_fd_, &wake_buf, sizeof(wake_buf), 0);
    Ring::SetTag(sqe, UringTag{UringOp::kWake, 0, kNoSlot});
  }

  void PostTick() {
    io_uring_sqe* sqe = ring.Sqe();
    io_uring_prep_timeout(sqe, &tick_ts, 0, 0);
    Ring::SetTag(sqe, UringTag{UringOp::kTick, 0, kNoSlot});
  }

  void OnTick() {
    if (wheel.size() > w.stats_.wheel_entries_peak.load(std::memory_order_relaxed)) {
      w.stats_.wheel_entries_peak.store(wheel.size(), std::memory_order_relaxed);
    }
    wheel.Advance(now_ms_, [this](uint32_t s, uint32_t g, int64_t deadline) {
      if (Connection* c = slab.Find(s, g)) c->OnDeadline(deadline);  // else re-used or gone
    });
    w.stats_.wheel_entries.store(wheel.size(), std::memory_order_relaxed);
    QuitIdleForHeldConnects();
    if (const ShapingTable* t = w.new_shaping_.exchange(nullptr, std::memory_order_acquire)) {
      AdoptShaping(t);
    }
    RepumpThrottled();
    if (resolver != nullptr) resolver->ProcessTimeouts();
    if (now_ms_ - last_policy_dump_ms >= kPolicyDumpMs) DumpPolicies();
    if (now_ms_ - last_expiry_ms >= 1000) ExpireIdleDestinations();
    if (w.control_ != nullptr) ServeControl();
    PostTick();
  }

  // SIGHUP's shaping rules (engine/reload.cc): new connections and messages use the new budgets;
  // open connections keep their leases on the old ones until they close.
  void AdoptShaping(const ShapingTable* t) {
    shaping = t;
    dctx.shaping = t;
    for (auto& [key, d] : dests) d->RebindShaping();
  }

  // The control plane (engine/control_plane.h), every tick: apply the operator's commands, let
  // expired suspensions go, and answer a request for a snapshot. Nothing here blocks.
  void ServeControl() {
    WorkerChannel& ch = *w.control_;
    ControlCommand* raw;
    bool repump = false;
    while (ch.commands.TryPop(raw)) {
      std::unique_ptr<ControlCommand> cmd(raw);
      using Kind = ControlCommand::Kind;
      if (cmd->kind == Kind::kRelease) {
        for (auto& [key, d] : dests) d->ReleaseForStop();
        continue;
      }
      suspensions.Apply(*cmd);
      for (auto& [key, d] : dests) d->Apply(*cmd);
      if (cmd->kind == Kind::kResume) repump = true;
    }
    if (suspensions.Expire(now_ms_)) repump = true;
    if (repump) {
      for (auto& [key, d] : dests) {
        d->ReleaseHeldJobs();
        d->ResumeIdle();
        d->Pump();
      }
    }
    const uint64_t wanted = ch.wanted.load(std::memory_order_relaxed);
    if (wanted == ch.answered) return;
    ch.answered = wanted;
    std::vector<const Destination*> list;
    list.reserve(dests.size());
    for (const auto& [key, d] : dests) list.push_back(d.get());
    WorkerSnapshot* s = TakeSnapshot(w.index_, now_ms_, absl::Now(), list, suspensions,
                                     slab.live(), resolver.get(),
                                     policy_cache.DumpJson(absl::Now()));
    s->serial = wanted;
    if (!ch.snapshots.TryPush(s)) delete s;  // nobody reads: drop it
  }

  void Dispatch(io_uring_cqe* cqe) {
    UringTag tag = UringTag::Decode(io_uring_cqe_get_data64(cqe));
    switch (tag.op) {
      case UringOp::kWake:
        PostWake();
        return;
      case UringOp::kTick:
        if (tag.slot == kShapingTimerSlot) {
          --shaping_timers;
          shaping_timer_ms = INT64_MAX;  // re-armed by whoever still waits
          RepumpThrottled();
        } else {
          OnTick();
        }
        return;
      case UringOp::kDnsPoll:
        dns.OnPoll(tag, cqe->res);
        return;
      default:
        break;
    }
    if (tag.slot == kNoSlot) return;  // worker-level op without a connection (poll remove)
    Connection* c = slab.Find(tag.slot, tag.gen);
    if (c == nullptr) {
      w.stats_.stale_completions.fetch_add(1, std::memory_order_relaxed);
      ring.ReturnBuffer(cqe);  // still hand back a buffer the kernel gave us
      return;
    }
    if (c->OnCompletion(tag.op, cqe)) {  // the close completed
      ConnectionOwner* owner = c->owner();
      gate.Closed(c->spec(), c->established(), c->ready_seen(), now_ms_);
      slab.Free(tag.slot);
      if (owner != nullptr) owner->OnClosed(tag.slot);
    }
  }

  bool Idle() const {
    if (slab.live() > 0 || !unsent_completions.empty()) return false;
    for (const auto& [name, d] : dests) {
      if (d->queued() > 0) return false;
    }
    return true;
  }

  // Draining: connections that never became ready carry no job (jobs go only to ready
  // sessions); they close now rather than after their peer's greeting or handshake timeout
  // (RFC 5321 §4.5.3.2: 5 minutes).
  void CloseUnready() {
    for (uint32_t s = 0; s < slab.capacity(); ++s) slab.At(s).CloseIfNotReady();
  }

  void Loop() {
    bool aborted = false;
    int64_t next_unready_sweep_ms = 0;
    now_ms_ = NowMs();
    wheel.Start(now_ms_);
    PostWake();
    PostTick();
    while (true) {
      DrainInbound();
      if (stopping()) {
        for (auto& [name, d] : dests) d->Shutdown();
        if (now_ms_ >= next_unready_sweep_ms) {  // again each tick: a fallback may open one
          next_unready_sweep_ms = now_ms_ + kTickMs;
          CloseUnready();
        }
        if (!aborted && w.abort_.load(std::memory_order_acquire)) {
          aborted = true;
          for (uint32_t s = 0; s < slab.capacity(); ++s) {
            slab.At(s).Abort("shutdown: aborted after the shutdown timeout");
          }
        }
      }
      FlushCompletions();
      if (w.stop_.load(std::memory_order_acquire) && Idle()) {
        DumpPolicies();
        break;
      }

      int rc = ring.SubmitAndWait(1);
      if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
        std::fprintf(stderr, "mxburst: worker %u: io_uring_submit_and_wait: %s\n", w.index_,
                     ErrnoText(-rc).c_str());
      }
      now_ms_ = NowMs();
      // One release store for the whole batch's returned buffers (inside).
      ring.ForEachCompletion([this](io_uring_cqe* cqe) { Dispatch(cqe); });
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
  // The ring goes before the connections whose buffers the kernel may still hold.
  if (impl_) impl_->ring.Exit();
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

void Worker::RequestDrain() {
  drain_.store(true, std::memory_order_release);
  Wake();
}

void Worker::RequestStop() {
  stop_.store(true, std::memory_order_release);
  Wake();
}

void Worker::RequestAbort() {
  abort_.store(true, std::memory_order_release);
  RequestStop();  // queued jobs are deferred too ("engine shutting down")
}

void Worker::Join() {
  if (thread_.joinable()) thread_.join();
}

}  // namespace mxb
