// Destination (engine/destination.h): scheduling of one (domain, source pool) of a worker: jobs
// in, shaping, the MTA-STS gate, opening connections and the transactions on them. Its next
// hops: engine/destination_hops.cc; the MX pool: destination_pool.cc; operator commands:
// destination_control.cc.
#include "engine/destination.h"

#include <netinet/in.h>

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "dns/static_routes.h"
#include "engine/config.h"
#include "engine/control_plane.h"
#include "engine/tlsrpt_message.h"

namespace mxb {
namespace {

void SetPort(sockaddr_storage* a, uint16_t port) {
  if (a->ss_family == AF_INET) reinterpret_cast<sockaddr_in*>(a)->sin_port = htons(port);
  if (a->ss_family == AF_INET6) reinterpret_cast<sockaddr_in6*>(a)->sin6_port = htons(port);
}

std::string PauseText(const ShapingBudget& b, int64_t now_ms) {
  return absl::StrCat("not tried: ", b.PauseReason(), ", resumes in ",
                      absl::FormatDuration(absl::Milliseconds(b.paused_until_ms() - now_ms)));
}

// A message rate applies (the domain's or one of its MX rules'): connections open one at a
// time, or a backlog would open max_connections sessions that each carry one message.
bool RateLimited(const ShapingBudget& domain, const HopList& hops, const ShapingTable& shaping) {
  if (!domain.limits().max_message_rate.unlimited()) return true;
  for (const Hop& t : hops.hops) {
    const ShapingBudget* mx = shaping.ForMx(t.mx);
    if (mx != nullptr && !mx->limits().max_message_rate.unlimited()) return true;
  }
  return false;
}

// How many jobs a rate-limited destination keeps in memory: what its slowest rate sends until
// the first retry of a deferred message (at least rate_burst). More would hold in-flight slots
// (max_in_flight) that the other destinations need; the excess is deferred to the spool.
size_t RateQueueCap(const ShapingBudget& domain, const HopList& hops, const ShapingTable& shaping,
                    const EngineConfig& config) {
  size_t cap = SIZE_MAX;
  const absl::Duration horizon =
      config.retry_delays.empty() ? absl::Minutes(5) : config.retry_delays.front();
  auto consider = [&](const ShapingBudget* b) {
    if (b == nullptr || b->limits().max_message_rate.unlimited()) return;
    const MessageRate& r = b->limits().max_message_rate;
    const double n = static_cast<double>(r.count) * absl::FDivDuration(horizon, r.period);
    cap = std::min(cap, std::max(static_cast<size_t>(b->limits().rate_burst),
                                 static_cast<size_t>(n)));
  };
  consider(&domain);
  for (const Hop& t : hops.hops) consider(shaping.ForMx(t.mx));
  return cap;
}

}  // namespace

void SetAllOutcomes(DeliveryJob* job, DeliveryClass klass, int code, absl::string_view enhanced,
                    absl::string_view text, const AttemptInfo& attempt) {
  job->outcomes.assign(job->rcpt_index.size(), RecipientOutcome{});
  for (RecipientOutcome& o : job->outcomes) {
    o.klass = klass;
    o.code = code;
    o.enhanced = std::string(enhanced);
    o.text = std::string(text);
    o.attempt = attempt;
  }
}

Destination::Destination(DestinationContext* ctx, std::string domain, int pool, const Route* route)
    : ctx_(ctx),
      domain_(std::move(domain)),
      route_(route),
      relay_(route != nullptr ? FindRelay(ctx->config->relays, route->relay) : nullptr),
      pool_(pool) {
  RebindShaping();
}

void Destination::FailQueue(DeliveryClass klass, int code, absl::string_view enhanced,
                            absl::string_view text, const AttemptInfo& attempt) {
  while (!queue_.empty()) {
    DeliveryJob* job = queue_.front();
    queue_.pop_front();
    SetAllOutcomes(job, klass, code, enhanced, text, attempt);
    ctx_->host->Complete(job);
  }
}

// BounceQueued, oldest_queued_at, Suspended, RebindShaping (SIGHUP) and the other operator
// commands: engine/destination_control.cc.

// ---------------------------------------------------------------------------------------------
// Jobs in

bool Destination::Expirable(int64_t idle_ms) const {
  return queue_.empty() && held_.empty() && connections_ == 0 && leases_.empty() &&
         state_ != State::kResolving && sts_wait_since_ms_ < 0 && now() >= dead_until_ms_ &&
         now() >= shaping_wake_ms_ && now() - last_active_ms_ >= idle_ms;
}

void Destination::Accept(DeliveryJob* job) {
  DestinationHost& host = *ctx_->host;
  last_active_ms_ = now();
  // RFC 8689 §5 (REQUIRETLS, when both are present, wins): decided by the scanner
  // (Scanner, engine/scanner.cc), with [tls] honor_tls_required_no.
  if (job->message != nullptr && job->message->tls_required_no) job->tls_optional = true;
  auto fail = [&](absl::string_view enhanced, absl::string_view text) {
    SetAllOutcomes(job, DeliveryClass::kDeferred, 0, enhanced, text, {});
    host.Complete(job);
  };
  if (host.stopping()) {
    fail("4.3.2", "engine shutting down");
    return;
  }
  if (now() < dead_until_ms_) {
    MarkDead(job);
    fail("4.4.1", NotTriedText(last_failure_));
    return;
  }
  if (const ShapingBudget* paused = PausedFor()) {
    fail("4.4.5", PauseText(*paused, now()));
    return;
  }
  if (const size_t cap = RateQueueCap(*budget_, hops_, *ctx_->shaping, *ctx_->config);
      queue_.size() >= cap) {
    fail("4.4.5", absl::StrCat("not tried: ", cap, " messages for ", domain_,
                               " already wait for max_message_rate"));
    return;
  }
  if (HoldIfJobSuspended(job)) return;
  queue_.push_back(job);
  ResumeIdle();
  if (NeedsResolve()) {
    Resolve();
    return;
  }
  Pump();
}

void Destination::Shutdown() {
  ReleaseForStop();
  FailQueue(DeliveryClass::kDeferred, 0, "4.3.2", "engine shutting down", {});
  while (!idle_.empty()) {
    ConnRef c = idle_.back();
    idle_.pop_back();
    if (Owns(c) && ctx_->host->Unpark(c)) ctx_->host->Quit(c.slot);
  }
}

// Next hops (Resolve, OnMx, HopFailed, MarkDead, HopList::MarkFailed):
// engine/destination_hops.cc.

// ---------------------------------------------------------------------------------------------
// Traffic shaping (engine/shaping.h)

// The back-off that stops this destination now: its domain budget's, or — once its next hops
// are known — its MX rules' when every next hop is behind a paused one. nullptr = not paused.
const ShapingBudget* Destination::PausedFor() const {
  if (budget_->Paused(now())) return budget_;
  if (state_ != State::kReady || hops_.empty()) return nullptr;
  const ShapingBudget* paused = nullptr;
  for (const Hop& t : hops_.hops) {
    const ShapingBudget* mx = ctx_->shaping->ForMx(t.mx);
    if (mx == nullptr || !mx->Paused(now())) return nullptr;
    paused = mx;
  }
  return paused;
}

// A paused destination hands back what waits (deferred with the reason; the retry schedule
// brings it back), so a throttled domain never holds in-flight slots others could use.
bool Destination::DeferIfPaused() {
  const ShapingBudget* paused = PausedFor();
  if (paused == nullptr) return false;
  FailQueue(DeliveryClass::kDeferred, 0, "4.4.5", PauseText(*paused, now()), {});
  return true;
}

// Waits for a rate slot: true when the next message must wait; then the host re-pumps this
// destination once the slot is due.
bool Destination::RateBlocked(const Lease& l) {
  const int64_t wait_us = l.budgets.WaitBeforeMessageUs(now() * 1000);
  if (wait_us <= 0) return false;
  shaping_wake_ms_ = now() + (wait_us + 999) / 1000;
  ctx_->host->Throttle(this);
  ctx_->host->WakeAt(shaping_wake_ms_);
  return true;
}

// Takes one connection from every budget that applies (domain, MX, source) and picks the
// source address: the pool's addresses in rotation, skipping those whose source rule is full.
// kFull: nothing taken, the destination tries again on the next tick.
Destination::BudgetResult Destination::TakeBudgets(const Hop& hop, BudgetSet* set,
                                                   std::optional<sockaddr_storage>* source) {
  const ShapingTable& shaping = *ctx_->shaping;
  set->budgets = {budget_, shaping.ForMx(hop.mx), nullptr};
  source->reset();
  if (pool_ < 0) {
    if (set->TryOpenConnection(now())) return BudgetResult::kOk;
  } else {
    const SourcePool& pool = shaping.config().pools[pool_];
    bool family = false;
    for (size_t i = 0; i < pool.sockaddrs.size(); ++i) {
      size_t k = (ctx_->source_rr + i) % pool.sockaddrs.size();
      if (pool.sockaddrs[k].ss_family != hop.addr.family()) continue;
      family = true;
      set->budgets[BudgetSet::kSource] = shaping.ForSource(pool.addresses[k]);
      if (set->TryOpenConnection(now())) {
        ctx_->source_rr = k + 1;
        *source = pool.sockaddrs[k];
        return BudgetResult::kOk;
      }
    }
    if (!family) return BudgetResult::kNoSource;
  }
  ctx_->host->Throttle(this);
  return BudgetResult::kFull;
}

// Idle connections holding a budget somebody waits for say QUIT at once instead of after idle.
void Destination::ReleaseContendedIdle() {
  if (!queue_.empty()) return;
  std::vector<ConnRef> quit;
  for (const auto& [slot, l] : leases_) {
    if (ctx_->host->IsParked(slot) && l.budgets.HasWaiters(now())) quit.push_back({slot, l.gen});
  }
  for (ConnRef c : quit) {
    if (ctx_->host->Unpark(c)) ctx_->host->Quit(c.slot);  // its idle_ entry goes stale
  }
}

// ---------------------------------------------------------------------------------------------
// The pool

// RFC 8461 applies to MX delivery: a static route is the operator's choice of next hop. The
// policy is the recipient domain's (never the MX host's), so it lives here and not in the
// per-MX PolicyCache: two domains sharing MX hosts keep their own policies (DESIGN.md).
bool Destination::StsReady() {
  sts_.reset();
  sts_failure_.clear();
  if (ctx_->sts == nullptr || route_ != nullptr) return true;
  StsLookup l = ctx_->sts->Lookup(domain_, absl::Now());
  if (l.state == StsLookup::State::kPending) {
    if (sts_wait_since_ms_ < 0) sts_wait_since_ms_ = now();
    if (now() - sts_wait_since_ms_ >=
        absl::ToInt64Milliseconds(ctx_->config->mta_sts_wait)) {
      sts_wait_since_ms_ = -1;
      FailQueue(DeliveryClass::kDeferred, 451, "4.7.0",
                absl::StrCat("MTA-STS policy of ", domain_, " not known yet (fetch in progress)"),
                {});
      return false;
    }
    ctx_->host->Throttle(this);  // pumped again on the next tick
    return false;
  }
  sts_wait_since_ms_ = -1;
  if (l.state == StsLookup::State::kPolicy && l.policy->mode != StsMode::kNone) {
    sts_ = std::move(l.policy);
  }
  sts_failure_ = l.state == StsLookup::State::kNoPolicy ? l.failure : std::string();
  return true;
}

// RFC 8461 §4.1/§5: in enforce mode only MX hosts matching the policy may be used — except
// hosts that DANE covers: §2 has DANE-validating senders apply DANE, not MTA-STS, to an MX host
// with a validated TLSA RRset, so its "mx:" patterns do not filter such a host out.
bool Destination::StsCandidate(const Hop& hop) const {
  if (ctx_->config->tls_global.dane && hop.dns.tlsa == TlsaLookup::kFound) return true;
  return sts_ == nullptr || sts_->mode != StsMode::kEnforce || sts_->MatchesMx(hop.mx);
}

// RFC 8460 §3: sessions that carry only reports are not counted (reports never trigger
// reports).
bool Destination::CarriesOnlyReports() const {
  return std::all_of(queue_.begin(), queue_.end(), [](const DeliveryJob* j) {
    return j->message->envelope.job == kTlsRptJob;
  });
}

void Destination::Pump() {
  if (state_ != State::kReady || hops_.empty() || Suspended()) return;
  if (queue_.empty()) return;
  if (!StsReady()) return;
  if (DeferIfPaused()) return;
  if (now() < shaping_wake_ms_) {  // no new connections while waiting for a rate slot
    if (!queue_.empty()) ctx_->host->Throttle(this);
    return;
  }
  // now() < shaping_wake_ms_ again: a connection taken from the MX pool parked for a rate slot.
  while (!queue_.empty() && connections_ < ctx_->config->max_connections_per_destination &&
         now() >= shaping_wake_ms_ &&
         static_cast<int>(queue_.size()) > connecting_ &&
         (hops_.failed_count == 0 || connecting_ == 0) &&
         (connecting_ == 0 || !RateLimited(*budget_, hops_, *ctx_->shaping))) {
    if (!OpenConnection()) break;
  }
}

bool Destination::OpenConnection() {
  if (hops_.empty()) return false;
  const ShapingTable& shaping = *ctx_->shaping;
  size_t index = hops_.size();
  for (size_t i = 0; i < hops_.size() && index == hops_.size(); ++i) {
    const size_t t = (hops_.next + i) % hops_.size();
    if (StsCandidate(hops_.hops[t])) index = t;
  }
  if (index == hops_.size()) {
    // RFC 8461 §5: enforce, and no MX host matches: no delivery (no fallback to another MX).
    FailQueue(DeliveryClass::kDeferred, 451, "4.7.0",
              absl::StrCat("no MX host of ", domain_, " matches its MTA-STS policy (id ", sts_->id,
                           ")"),
              {});
    return false;
  }
  // Skip next hops behind a backing-off MX rule (PausedFor() said one is not).
  for (size_t i = 0; i < hops_.size(); ++i) {
    size_t t = (hops_.next + i) % hops_.size();
    if (!StsCandidate(hops_.hops[t])) continue;
    const ShapingBudget* mx = shaping.ForMx(hops_.hops[t].mx);
    if (mx == nullptr || !mx->Paused(now())) {
      index = t;
      break;
    }
  }
  const Hop& hop = hops_.hops[index];
  const bool relaxed = !queue_.empty() && queue_.front()->tls_optional;
  // The hop's TLS policy is decided in tls/ (cached per MX host); this only carries it out.
  HopQuery query;
  query.recipient_domain = domain_;
  query.mx_host = hop.mx;
  query.dns = hop.dns;
  query.dns.mx_dnssec = hop.mx_dnssec;
  PolicyEntry& policy = HopPolicyFor(ctx_->policy_cache, query, *ctx_->tls_rules, absl::Now());
  if (!policy.policy.defer_reason.empty() && !relaxed) {
    // RFC 7672 §2.2: a secure host whose TLSA lookup failed is not tried at all (no downgrade);
    // the next MX is, and when none is left the jobs defer with this reason.
    AttemptInfo a;
    a.mx = hop.mx;
    a.port = hop.port;
    a.policy = policy.policy.name;
    a.policy_source = ToString(policy.policy.source);
    a.dnssec = hop.mx_dnssec;
    a.dane = "tlsa-lookup-failed";
    if (ctx_->tlsrpt != nullptr && !CarriesOnlyReports()) {
      TlsRptSession r;  // RFC 8460 §4.3.2.1 dnssec-invalid: no session was attempted
      r.policy = TlsRptInfoFor(domain_, nullptr, "", policy.policy, hop.mx).policy;
      r.result = TlsRptResult::kDnssecInvalid;
      r.reason_code = "tlsa-lookup-failed";
      r.receiving_mx = hop.mx;
      r.receiving_ip = SockaddrIp(hop.addr.storage());
      ctx_->tlsrpt->Record(std::move(r));
    }
    HopFailed(index, absl::StrCat(hop.mx, ": ", policy.policy.defer_reason), a, "4.7.5");
    return false;
  }
  const bool implicit =
      policy.policy.implicit_tls_first && policy.implicit_tls_failed_until < absl::Now();
  ConnectSpec spec;
  spec.mx = hop.mx;
  spec.mx_dnssec = hop.mx_dnssec;
  spec.mx_sts_listed = sts_ != nullptr && sts_->mode != StsMode::kNone && sts_->MatchesMx(hop.mx);
  spec.addr = hop.addr.storage();
  SetPort(&spec.addr, implicit ? ctx_->config->tls_global.smtps_port : hop.port);
  // The domain's MTA-STS policy on top of the per-MX one (tls/mta_sts.h: DANE still wins).
  spec.policy = sts_ != nullptr ? ApplyStsPolicy(policy.policy, *sts_) : policy.policy;
  // A banner pin learned from a verified greeting (tls/banner_pin.h): like a starttls- prefix.
  if (ctx_->banner_pins != nullptr && relay_ == nullptr &&
      ctx_->banner_pins->Match(hop.mx, absl::Now())) {
    spec.policy = ApplyBannerPin(std::move(spec.policy));
  }
  // An smtps- host's implicit-TLS port has TLSA records of its own (tls/hop_policy.cc).
  if (implicit && spec.policy.implicit_dane != nullptr) spec.policy.dane = spec.policy.implicit_dane;
  bool relaxed_policy = false;
  if (relaxed && spec.policy.requirement == TlsRequirement::kRequired) {
    relaxed_policy = true;
    // RFC 8689 §5: "TLS-Required: No" — STARTTLS when offered, the policy checked and logged
    // (policy_violation) but not enforced.
    spec.policy.requirement = TlsRequirement::kOpportunistic;
    spec.policy.log_only = spec.policy.verify || spec.policy.dane != nullptr;
    spec.policy.name += "+tls-required-no";
  }
  spec.implicit_tls = implicit;
  // Domains on the same MX host share its connections (engine/mx_pool.h): an idle one of the
  // same key first, else a new one while the key is under max_connections_per_mx, else wait.
  // A relay (smarthost) destination keeps its own connections: their TLS and AUTH are the
  // relay's, set below.
  bool relay_probe = false;
  std::string key;
  if (MxPool* pool = ctx_->mx_pool; pool != nullptr && relay_ == nullptr) {
    key = MxPool::KeyOf(spec, pool_, relaxed_policy);
    if (Adopt(key, index)) return true;
    if (pool->Full(key)) {
      pool->Wait(key, this);
      return false;
    }
  }
  BudgetSet budgets;
  std::optional<sockaddr_storage> source;
  switch (TakeBudgets(hop, &budgets, &source)) {
    case BudgetResult::kOk:
      break;
    case BudgetResult::kFull:
      return false;
    case BudgetResult::kNoSource: {
      AttemptInfo a;
      a.mx = hop.mx;
      HopFailed(index,
                absl::StrCat("source pool ", shaping.config().pools[pool_].name,
                             " has no address of ", hop.mx, "'s family"),
                a);
      return false;
    }
  }
  spec.source = source;
  if (relay_ != nullptr) {
    // A smarthost: its own TLS (implicit or mandatory STARTTLS, always verified) and AUTH.
    if (const int64_t until = relay_->gate->ClosedUntil(now()); until > 0) {
      budgets.CloseConnection();
      FailQueue(DeliveryClass::kDeferred, 0, "4.7.0", RelayPausedText(*relay_, until, now()), {});
      return false;
    }
    if (!relay_->gate->MayConnect(&relay_probe)) {  // another connection is authenticating
      budgets.CloseConnection();
      ctx_->host->Throttle(this);
      return false;
    }
    SetPort(&spec.addr, hop.port);
    spec.policy = RelayTlsPolicy(*relay_);  // never relaxed: the credentials need it
    relaxed_policy = false;
    spec.implicit_tls = relay_->implicit_tls;
    spec.relay = relay_;
  }
  // A smarthost is not the recipient domain's MX: its sessions are not reported (RFC 8460).
  if (ctx_->tlsrpt != nullptr && relay_ == nullptr && !CarriesOnlyReports()) {
    spec.tlsrpt = std::make_shared<const TlsRptConnInfo>(
        TlsRptInfoFor(domain_, sts_.get(), sts_failure_, spec.policy, hop.mx));
  }
  absl::StatusOr<ConnRef> c = ctx_->host->Connect(this, std::move(spec));
  if (!c.ok()) {
    budgets.CloseConnection();
    if (relay_probe) relay_->gate->ProbeDone(false);
    if (absl::IsResourceExhausted(c.status())) {
      WaitForLocalResources();
      return false;
    }
    AttemptInfo a;
    a.mx = hop.mx;
    HopFailed(index, c.status().message(), a);
    return false;
  }
  ++policy.connections;
  Lease& l = leases_[c->slot];
  l = Lease();
  l.gen = c->gen;
  l.hop = index;
  l.budgets = budgets;
  l.max_messages = budgets.MaxMessagesPerConnection(ctx_->config->max_messages_per_connection);
  l.relaxed = relaxed_policy;
  l.relay_probe = relay_probe;
  l.key = std::move(key);
  if (!l.key.empty()) ctx_->mx_pool->Opened(l.key);
  ++connections_;
  ++connecting_;
  return true;
}

void Destination::StartTransaction(uint32_t slot, bool may_hand_over) {
  DestinationHost& host = *ctx_->host;
  Lease& l = leases_[slot];
  // A banner pin learned since this connection opened: without verified TLS it carries nothing
  // more; closing it lets the next one open under the pin (OnClosed pumps).
  if (!host.MeetsBannerPins(slot)) {
    host.Quit(slot);
    return;
  }
  // Keep the session (and its TLS state) for the next job of this destination or of another
  // one on the same MX pool key, or until the rate budget allows the next message.
  auto park = [&] {
    idle_.push_back({slot, l.gen});
    if (!l.key.empty()) ctx_->mx_pool->Park(l.key, {slot, l.gen}, this);
    host.Park(slot, now() + absl::ToInt64Milliseconds(ctx_->config->idle_timeout));
  };
  const bool may_send = !host.stopping() && !Suspended() && l.messages < l.max_messages &&
                        l.budgets.PausedBy(now()) == nullptr;
  // Domains sharing the MX take turns, one transaction each: a domain with a long queue never
  // holds every connection of the key while others wait for the cap.
  if (may_send && may_hand_over && !l.key.empty()) {
    const std::string key = l.key;
    if (HandOver(slot)) {  // `l` is gone
      if (!queue_.empty()) ctx_->mx_pool->Wait(key, this);
      return;
    }
  }
  if (may_send && !queue_.empty() && RateBlocked(l)) {
    park();
    return;
  }
  // An idle connection gives its budget back at once when another destination waits for it
  // (several domains behind one MX rule): idling would hold their mail up for idle_timeout.
  if (may_send && queue_.empty() && !l.budgets.HasWaiters(now())) {
    park();
    return;
  }
  if (queue_.empty() || !may_send) {
    host.Quit(slot);
    return;
  }
  // A loop, not recursion: a job the session finishes synchronously (all its addresses
  // invalid, too big for SIZE) hands the connection straight to the next one.
  while (!queue_.empty()) {
    DeliveryJob* job = PopJobFor(l);
    if (job == nullptr) break;
    ++l.messages;
    l.budgets.TakeMessage(now() * 1000);
    if (host.Transfer(slot, job)) return;
    if (l.messages >= l.max_messages) break;
    if (!queue_.empty() && RateBlocked(l)) {
      park();
      return;
    }
  }
  host.Quit(slot);
}

DeliveryJob* Destination::PopJobFor(const Lease& l) {
  for (auto it = queue_.begin(); it != queue_.end(); ++it) {
    // A relaxed connection (TLS-Required: No) never carries a job that needs the real policy.
    if (l.relaxed && !(*it)->tls_optional) continue;
    DeliveryJob* job = *it;
    queue_.erase(it);
    return job;
  }
  return nullptr;
}

void Destination::ResumeIdle() {
  while (!queue_.empty() && !idle_.empty() && !Suspended()) {
    if (now() < shaping_wake_ms_) {  // a connection just parked for a rate slot
      ctx_->host->Throttle(this);
      return;
    }
    ConnRef c = idle_.back();
    idle_.pop_back();
    if (!Owns(c) || !ctx_->host->Unpark(c)) continue;  // handed to another domain, or gone
    StartTransaction(c.slot);
  }
}

// ---------------------------------------------------------------------------------------------
// ConnectionOwner

void Destination::OnReady(uint32_t slot, bool first) {
  if (first) {
    if (connecting_ > 0) --connecting_;
    hops_.ResetFailures();
    if (auto it = leases_.find(slot); it != leases_.end() && it->second.relay_probe) {
      it->second.relay_probe = false;
      relay_->gate->ProbeDone(true);  // authenticated: the other connections may open now
    }
  }
  StartTransaction(slot);
}

// A reply (or a failed greeting) feeds the back-off of the domain and MX budgets.
void Destination::OnReplyCode(uint32_t slot, int code) {
  auto it = leases_.find(slot);
  if (it == leases_.end()) return;
  BudgetSet& budgets = it->second.budgets;
  if (code <= 0 || !budgets.OnReply(code, now())) return;
  if (!ctx_->config->quiet) {
    const ShapingBudget* b = budgets.PausedBy(now());
    std::fprintf(stderr, "mxburst: %s: %s\n", domain_.c_str(),
                 b != nullptr ? b->PauseReason().c_str() : "back-off");
  }
  DeferIfPaused();
}

void Destination::OnJobDone(DeliveryJob* job) { ctx_->host->Complete(job); }

void Destination::OnClosing(uint32_t /*slot*/, bool was_connecting) {
  --connections_;
  if (was_connecting && connecting_ > 0) --connecting_;
}

void Destination::OnFailedBeforeReady(uint32_t slot, absl::string_view reason,
                                      absl::string_view enhanced, const AttemptInfo& attempt) {
  auto it = leases_.find(slot);
  HopFailed(it != leases_.end() ? it->second.hop : hops_.next, reason, attempt, enhanced);
}

void Destination::OnImplicitTlsFailed(uint32_t /*slot*/) { OpenConnection(); }

void Destination::OnLocalShortage(uint32_t /*slot*/) { WaitForLocalResources(); }

void Destination::WaitForLocalResources() {
  shaping_wake_ms_ = std::max(shaping_wake_ms_, ctx_->host->LocalRetryAtMs());
  ctx_->host->Throttle(this);
  ctx_->host->WakeAt(shaping_wake_ms_);
}

void Destination::OnClosed(uint32_t slot) {
  last_active_ms_ = now();
  if (auto it = leases_.find(slot); it != leases_.end()) {
    it->second.budgets.CloseConnection();  // after close(): the peer saw it go
    if (it->second.relay_probe) relay_->gate->ProbeDone(false);  // closed before it was ready
    const std::string key = std::move(it->second.key);
    leases_.erase(it);
    ReleaseLeaseTable();
    // A place under the key's cap is free: the destination that waited longest opens it.
    if (!key.empty()) {
      if (Destination* d = ctx_->mx_pool->Closed(key); d != nullptr && d != this) d->Pump();
    }
  }
  // Jobs still waiting get a new connection now that this one is gone.
  Pump();
}

}  // namespace mxb
