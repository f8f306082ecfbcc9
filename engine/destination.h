// Destination: one (recipient domain, source pool) of a worker — the jobs waiting for it, its
// next hops (HopList, from a static route or the MX answer), the connections it opened (its
// pool), when to open another (Pump), the dead / paused state, the rate-queue cap and the reuse
// of idle connections (its own, and through the worker's MxPool those of every domain on the
// same MX host: destination_pool.cc). It decides; its DestinationHost (the worker) carries the
// decisions out on the ring. The TLS policy of a hop comes from tls/hop_policy.h, not from here.
//
// Owns: the job queue (jobs it holds until a connection takes them or it fails them), the hop
// list and its failure marks, one Lease per connection it opened (hop index, shaping budgets
// held, messages sent), the idle list, its own shaping budget when no domain rule has one.
// Connections report to it as their ConnectionOwner (engine/connection.h).
//
// Thread: the worker thread that owns it, for everything. Destinations are never erased while
// the worker runs (connections, the resolver callback and the throttled set point at them).
//
//   DestinationContext ctx{&config, &shaping, &policy_cache, &tls_rules, &host};
//   Destination d(&ctx, "dest.example", /*pool=*/-1, routes.Find("dest.example"));
//   d.Accept(job);            // queue it; resolve, reuse an idle connection or open one
//   ... host.ResolveMx(&d) answers with d.OnMx(result); connections call d.OnReady(...) ...
//   ... every tick, when throttled: d.ResumeIdle(); d.Pump();
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "dns/resolver.h"
#include "dns/static_routes.h"
#include "engine/connection.h"
#include "engine/delivery.h"
#include "engine/mx_pool.h"
#include "engine/shaping.h"
#include "engine/tlsrpt_reporter.h"
#include "tls/hop_policy.h"
#include "tls/mta_sts.h"
#include "tls/policy.h"

namespace mxb {

struct RelayConfig;  // engine/relay.h

struct EngineConfig;
class Destination;
class Suspensions;
struct ControlCommand;  // engine/control_plane.h
struct SuspensionEntry;

// Fills every outcome of `job` with one result (the job has not been tried, or failed whole).
void SetAllOutcomes(DeliveryJob* job, DeliveryClass klass, int code, absl::string_view enhanced,
                    absl::string_view text, const AttemptInfo& attempt);

// What a destination asks of its worker. The worker implements it on its ring and connection
// slab; tests implement it without a ring.
class DestinationHost {
 public:
  virtual ~DestinationHost() = default;
  virtual int64_t now_ms() const = 0;
  virtual bool stopping() const = 0;
  // `job` has all its outcomes: back to the scanner.
  virtual void Complete(DeliveryJob* job) = 0;
  // Call d->ResumeIdle() and d->Pump() on the next tick once d->shaping_wake_ms() is due ...
  virtual void Throttle(Destination* d) = 0;
  // ... and wake up no later than `at_ms` for it (a rate slot), not only at the 100 ms tick.
  virtual void WakeAt(int64_t at_ms) = 0;
  // Look d->domain() up; answer with d->OnMx().
  virtual void ResolveMx(Destination* d) = 0;
  // Opens a connection owned by `owner`; the error is the reason logged for the hop.
  // ResourceExhausted: a local shortage or the ephemeral port budget (engine/connect_gate.h) —
  // wait until LocalRetryAtMs() and try again; it is never the destination's failure.
  virtual absl::StatusOr<ConnRef> Connect(ConnectionOwner* owner, ConnectSpec spec) = 0;
  virtual int64_t LocalRetryAtMs() const { return now_ms() + 100; }
  // Connection::Transfer / Quit / Park of a connection this destination owns.
  virtual bool Transfer(uint32_t slot, DeliveryJob* job) = 0;
  // Connection::MeetsBannerPins: may this connection still carry mail (a banner pin learned
  // after it opened covers its MX and it has no verified TLS -> false)?
  virtual bool MeetsBannerPins(uint32_t /*slot*/) { return true; }
  virtual void Quit(uint32_t slot) = 0;
  virtual void Park(uint32_t slot, int64_t until_ms) = 0;
  // True (and no longer parked) if `c` is still that connection and parked.
  virtual bool Unpark(ConnRef c) = 0;
  virtual bool IsParked(uint32_t slot) const = 0;
  // Connection `slot` now reports to `owner` (a connection handed between the destinations
  // that share its MX pool, engine/mx_pool.h).
  virtual void Reown(uint32_t slot, ConnectionOwner* owner) = 0;
};

// Shared by every destination of one worker.
struct DestinationContext {
  const EngineConfig* config = nullptr;
  const ShapingTable* shaping = nullptr;
  PolicyCache* policy_cache = nullptr;
  const TlsPolicyRules* tls_rules = nullptr;
  DestinationHost* host = nullptr;
  StsSource* sts = nullptr;  // MTA-STS policies (engine/sts_fetcher.h); nullptr = off
  // TLS-RPT (engine/tlsrpt_reporter.h): connections carry their policy (ConnectSpec::tlsrpt)
  // and report their outcome; nullptr = off.
  TlsRptRecorder* tlsrpt = nullptr;
  // Banner strict-tls pins (tls/banner_pin.h) applied on top of the hop policy; nullptr = off.
  const BannerPinStore* banner_pins = nullptr;
  size_t source_rr = 0;  // rotation over a source pool's addresses, per worker
  // Operator suspensions (engine/control_plane.h); nullptr when the control plane is off.
  const Suspensions* suspensions = nullptr;
  // The worker's connections by MX host and policy, shared by its destinations; nullptr = each
  // destination keeps its own (unit tests).
  MxPool* mx_pool = nullptr;
};

// One address of one MX host (or static next hop), in the order delivery tries them.
// A hop's IPv4 or IPv6 address in 28 bytes: a sockaddr_storage is 128, ~100 bytes more per hop
// of every destination kept in memory (the long tail, issue 17 item 6).
class HopAddr {
 public:
  HopAddr() = default;
  explicit HopAddr(const sockaddr_storage& ss) {
    if (ss.ss_family == AF_INET6) {
      std::memcpy(&u_.in6, &ss, sizeof(u_.in6));
    } else if (ss.ss_family == AF_INET) {
      std::memcpy(&u_.in4, &ss, sizeof(u_.in4));
    }
  }
  sa_family_t family() const { return u_.sa.sa_family; }
  sockaddr_storage storage() const {
    sockaddr_storage ss{};
    std::memcpy(&ss, &u_, sizeof(u_));
    return ss;
  }

 private:
  union {
    sockaddr sa;
    sockaddr_in in4;
    sockaddr_in6 in6;
  } u_{};
};

struct Hop {
  std::string mx;          // MX host name: keys the TLS policy, checked against certificates
  HopAddr addr;
  uint16_t port = 25;      // the SMTP (STARTTLS) port
  bool mx_dnssec = false;  // the MX answer that named this host was DNSSEC-validated
  HopDnsFacts dns;         // DNSSEC and TLSA facts of the host (tls/hop_policy.h decides)
};

// The next hops with the ones that failed since the destination last reached a ready session.
// Per hop, not a count: several parallel connections failing on one dead host are still one.
struct HopList {
  std::vector<Hop> hops;
  std::vector<bool> failed;
  size_t failed_count = 0;
  size_t next = 0;

  size_t size() const { return hops.size(); }
  bool empty() const { return hops.empty(); }
  void ResetFailures() {
    failed.assign(hops.size(), false);
    failed_count = 0;
  }
  // Marks hop `t` failed and moves `next` to the next one that has not failed.
  void MarkFailed(size_t t);
};

// A destination's waiting jobs. The deque exists only while jobs wait: libstdc++ allocates
// ~576 bytes for an empty std::deque, and the long tail keeps ~100,000 idle destinations
// (issue 17 item 6: <= 1 KiB each).
class JobQueue {
 public:
  using Deque = std::deque<DeliveryJob*>;
  bool empty() const { return q_ == nullptr; }
  size_t size() const { return q_ == nullptr ? 0 : q_->size(); }
  DeliveryJob* front() const { return q_->front(); }
  void push_back(DeliveryJob* job) {
    if (q_ == nullptr) q_ = std::make_unique<Deque>();
    q_->push_back(job);
  }
  void pop_front() {
    q_->pop_front();
    if (q_->empty()) q_.reset();
  }
  // Value-initialised iterators compare equal: an empty queue iterates nothing.
  Deque::iterator begin() { return q_ == nullptr ? Deque::iterator() : q_->begin(); }
  Deque::iterator end() { return q_ == nullptr ? Deque::iterator() : q_->end(); }
  Deque::const_iterator begin() const {
    return q_ == nullptr ? Deque::const_iterator() : q_->cbegin();
  }
  Deque::const_iterator end() const { return q_ == nullptr ? Deque::const_iterator() : q_->cend(); }
  void clear() { q_.reset(); }
  void swap(JobQueue& other) noexcept { q_.swap(other.q_); }
  Deque::iterator erase(Deque::iterator it) {
    it = q_->erase(it);
    if (!q_->empty()) return it;
    q_.reset();
    return Deque::iterator();  // == end() of the now empty queue
  }

 private:
  std::unique_ptr<Deque> q_;
};

class Destination : public ConnectionOwner {
 public:
  enum class State { kUnresolved, kResolving, kReady };

  // `pool`: index into the shaping config's source pools, -1 = no bind. `route`: the static
  // route (transport map) for the domain, nullptr = DNS MX.
  Destination(DestinationContext* ctx, std::string domain, int pool, const Route* route);

  // A new job: queued (then resolve, reuse or connect), or failed at once when the destination
  // is dead, paused, over its rate-queue cap or the worker stops.
  void Accept(DeliveryJob* job);
  // After SIGHUP the context's ShapingTable is new: take the domain budget from it (or a fresh
  // own budget with the new default back-off). Leases of open connections keep the old ones.
  void RebindShaping();
  // `facts`: one per mx.hosts entry (engine/dane_lookup.h), or empty = only mx.dnssec known.
  void OnMx(const MxResult& mx, const std::vector<HopDnsFacts>& facts = {});
  // Opens connections while jobs wait and the destination is under its limits. After a failure
  // only one attempt at a time probes the next hop, so a dead host is not hammered.
  void Pump();
  // Hands waiting jobs to idle connections before any new connection is opened.
  void ResumeIdle();
  // Idle connections holding a budget somebody else waits for say QUIT (every tick).
  void ReleaseContendedIdle();
  // Stop: defer what waits, QUIT the idle connections.
  void Shutdown();
  // The operator's administrative bounce (control plane): every queued job bounces with
  // 5.0.0 and `reason`; jobs already in a transaction finish it.
  void BounceQueued(absl::string_view reason);
  // The operator's commands by job and for retry-now (engine/destination_control.cc).
  // Suspension(): what suspends this destination (its domain, or an MX suffix one of its hosts
  // is under), nullptr if nothing. Jobs whose x-job is suspended wait in held_, apart from the
  // queue, while the destination's other mail goes on.
  const SuspensionEntry* Suspension() const;
  void HoldSuspendedJobs();   // after a job suspension: queued jobs of it move to held_
  void ReleaseHeldJobs();     // after a resume or expiry: back to the queue, then Pump()
  void BounceJob(absl::string_view job, absl::string_view reason);  // queued and held ones
  void ReleaseForStop();      // the engine stops: suspended/held jobs are deferred
  void Revive();              // retry now: a dead destination is tried again at once
  // A suspend (of a job), bounce or flush command, on each destination of the worker.
  void Apply(const ControlCommand& cmd);
  size_t held() const { return held_.size(); }

  const std::string& domain() const { return domain_; }
  size_t queued() const { return queue_.size() + held_.size(); }
  int connections() const { return connections_; }
  State state() const { return state_; }
  const HopList& hops() const { return hops_; }
  int64_t shaping_wake_ms() const { return shaping_wake_ms_; }
  int64_t dead_until_ms() const { return dead_until_ms_; }
  int pool() const { return pool_; }
  const std::string& last_failure() const { return last_failure_; }
  absl::Time oldest_queued_at() const;  // queued() > 0 (the queue or held_)
  // Nothing queued or held (a job suspension), no connection (closing ones included), no
  // lookup or MTA-STS wait pending, not dead, no back-off or rate wait, and nothing happened
  // for `idle_ms`: the worker may erase it (no connection, resolver callback or throttled entry
  // can point at it then).
  bool Expirable(int64_t idle_ms) const;

  // ConnectionOwner
  void OnReady(uint32_t slot, bool first) override;
  void OnReplyCode(uint32_t slot, int code) override;
  void OnJobDone(DeliveryJob* job) override;
  void OnClosing(uint32_t slot, bool was_connecting) override;
  void OnFailedBeforeReady(uint32_t slot, absl::string_view reason, absl::string_view enhanced,
                           const AttemptInfo& attempt) override;
  void OnImplicitTlsFailed(uint32_t slot) override;
  void OnLocalShortage(uint32_t slot) override;
  void OnClosed(uint32_t slot) override;

 private:
  // What this destination keeps about one connection it opened.
  struct Lease {
    uint32_t gen = 0;
    size_t hop = 0;        // index into hops_ when it opened
    BudgetSet budgets;     // released when the slot is freed (after close: the peer saw it go)
    int max_messages = 0;  // messages-per-connection limit
    int messages = 0;
    // Opened with the policy relaxed for TLS-Required: No jobs: carries only those (its
    // achieved security is below what the other jobs of the destination require).
    bool relaxed = false;
    bool relay_probe = false;  // the relay's probe connection (RelayGate::MayConnect)
    std::string key;  // MxPool::KeyOf when it opened ("" without a pool, or for a relay)
  };
  enum class BudgetResult { kOk, kFull, kNoSource };

  // Suspended by the operator: jobs stay queued, no connection opens, no transaction starts.
  bool Suspended() const { return Suspension() != nullptr; }
  bool HoldIfJobSuspended(DeliveryJob* job);  // true: into held_
  bool NeedsResolve() const;
  bool StsReady();
  bool StsCandidate(const Hop& hop) const;
  bool CarriesOnlyReports() const;
  void Resolve();
  const ShapingBudget* PausedFor() const;
  bool DeferIfPaused();
  bool RateBlocked(const Lease& l);
  BudgetResult TakeBudgets(const Hop& hop, BudgetSet* set, std::optional<sockaddr_storage>* src);
  bool OpenConnection();
  // MX pool (engine/mx_pool.h): an idle connection of `key` taken over for hop `hop`.
  bool Adopt(const std::string& key, size_t hop);
  // Gives ready connection `slot` to a destination waiting for its key; true: it is theirs.
  bool HandOver(uint32_t slot);
  // Takes lease `l` of connection `slot` from `from` if this destination has a job for it and
  // room in its budgets; then starts its transaction.
  bool Receive(uint32_t slot, Lease&& l, Destination* from, size_t hop);
  bool Owns(ConnRef c) const;
  // With no lease left, frees the lease table's buckets (an idle destination keeps none).
  void ReleaseLeaseTable() {
    if (leases_.empty()) std::unordered_map<uint32_t, Lease>().swap(leases_);
  }
  // The next queued job connection `l` may carry (nullptr: none).
  DeliveryJob* PopJobFor(const Lease& l);
  void HopFailed(size_t hop, absl::string_view reason, const AttemptInfo& attempt,
                 absl::string_view enhanced = "4.4.1");
  // `may_hand_over`: between two of this destination's jobs the connection may go to another
  // destination waiting for its MX pool key (not right after it was handed here).
  void StartTransaction(uint32_t slot, bool may_hand_over = true);
  // Back-pressure from this host (ports, descriptors): jobs stay queued, Pump() runs again at
  // the host's LocalRetryAtMs(); no hop is marked failed.
  void WaitForLocalResources();
  // Tells the scanner that `job` met a dead destination (DeliveryJob::dead_until).
  void MarkDead(DeliveryJob* job) const;
  void FailQueue(DeliveryClass klass, int code, absl::string_view enhanced,
                 absl::string_view text, const AttemptInfo& attempt);
  int64_t now() const { return ctx_->host->now_ms(); }

  DestinationContext* const ctx_;
  const std::string domain_;
  const Route* const route_;
  const RelayConfig* const relay_;  // a "relay:NAME" route's relay (engine/relay.h), else null
  State state_ = State::kUnresolved;
  int64_t resolved_at_ms_ = 0;
  int64_t last_active_ms_ = 0;  // last Accept() or connection close
  HopList hops_;
  JobQueue queue_;
  int connections_ = 0;  // open or opening
  int connecting_ = 0;   // not yet ready to take a job
  std::string last_failure_;
  std::string last_failure_enhanced_ = "4.4.1";  // RFC 3463 code of last_failure_
  // The domain's MTA-STS policy (RFC 8461) for this pump, mode testing/enforce only; when the
  // first check is pending, since when jobs wait for it.
  std::shared_ptr<const StsPolicy> sts_;
  std::string sts_failure_;  // the last MTA-STS check's failure when no policy applies (TLS-RPT)
  int64_t sts_wait_since_ms_ = -1;
  // Every next hop failed: jobs are deferred without a connection attempt until then.
  int64_t dead_until_ms_ = 0;
  // Connections between transactions, most recent last; checked with Unpark() when popped (a
  // closed or re-used one leaves a stale entry).
  std::vector<ConnRef> idle_;
  // Traffic shaping (engine/shaping.h). Jobs of different pools never share a connection: the
  // source pool is part of the MX pool key (engine/mx_pool.h).
  const int pool_;
  ShapingBudget* budget_ = nullptr;  // the domain rule's budget, else own_budget_
  std::unique_ptr<ShapingBudget> own_budget_;
  std::vector<std::unique_ptr<ShapingBudget>> retired_budgets_;  // own budgets before a reload
  JobQueue held_;  // jobs of a suspended x-job (destination_control.cc)
  int64_t shaping_wake_ms_ = 0;  // waits for a rate slot or a connection budget until then
  // Node-based: a Lease& stays valid while other connections open and close.
  std::unordered_map<uint32_t, Lease> leases_;
};

// A worker's destinations by their (domain, pool) key (engine/worker.cc AcceptJob).
using DestinationMap = absl::flat_hash_map<std::string, std::unique_ptr<Destination>>;

// Issue 17: erases the destinations of `dests` that are Expirable(idle_ms), once `pool` (nullptr:
// none) forgot them — its wait lists and stale parked entries name destinations, and a later
// Closed() or Adopt() would call a freed one. `erasing` runs for each first (the worker drops it
// from its throttled set). Returns how many went. Worker thread.
size_t ForgetIdleDestinations(DestinationMap* dests, MxPool* pool, int64_t idle_ms,
                              absl::FunctionRef<void(Destination*)> erasing);

}  // namespace mxb
