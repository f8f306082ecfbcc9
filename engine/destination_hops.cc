// Destination (engine/destination.h), its next hops: the MX lookup (or the static route) that
// gives the hop list, the walk to the next MX / address after a failed connection (RFC 5321
// §5.1), what a domain with no usable host gets (null MX, NXDOMAIN, refused private addresses),
// and the dead-destination state once every hop failed. Worker thread, like the rest of
// Destination.
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "dns/address_scope.h"
#include "dns/static_routes.h"
#include "engine/config.h"
#include "engine/destination.h"

namespace mxb {

void HopList::MarkFailed(size_t t) {
  if (t < failed.size() && !failed[t]) {
    failed[t] = true;
    ++failed_count;
  }
  for (size_t i = 0; i < hops.size(); ++i) {
    size_t cand = (t + 1 + i) % hops.size();
    if (!failed[cand]) {
      next = cand;
      return;
    }
  }
}

// A destination looks its MX hosts up again once its answer may have expired; the resolver's
// cache makes that cheap, and its TTL is the authority.
bool Destination::NeedsResolve() const {
  if (state_ == State::kResolving) return false;
  if (state_ == State::kUnresolved) return true;
  return route_ == nullptr && connections_ == 0 && now() - resolved_at_ms_ > 30000;
}

void Destination::Resolve() {
  if (route_ != nullptr) {
    hops_.hops.clear();
    for (const NextHop& h : route_->hops) {
      for (const sockaddr_storage& a : h.addresses) {
        Hop t;
        t.mx = h.host;
        t.addr = HopAddr(a);
        t.port = h.explicit_port ? h.port : ctx_->config->smtp_port;
        hops_.hops.push_back(std::move(t));
      }
    }
    state_ = State::kReady;
    resolved_at_ms_ = now();
    hops_.ResetFailures();
    Pump();
    return;
  }
  state_ = State::kResolving;
  ctx_->host->ResolveMx(this);
}

void Destination::OnMx(const MxResult& mx, const std::vector<HopDnsFacts>& facts) {
  state_ = State::kReady;
  resolved_at_ms_ = now();
  hops_.hops.clear();
  hops_.next = 0;
  // The first address refused for its scope, for the bounce text when nothing else is left.
  std::string refused_mx;
  std::string refused_addr;
  AddressScope refused_scope = AddressScope::kGlobal;
  if (mx.status == DnsStatus::kOk) {
    for (size_t i = 0; i < mx.hosts.size(); ++i) {
      const MxHost& h = mx.hosts[i];
      for (const sockaddr_storage& a : h.addresses) {
        // A published MX (or implicit-MX address) on a loopback/private network would point
        // our engine at our own internal services: not a target unless the operator allows it.
        if (const AddressScope scope = ScopeOf(a);
            IsNonPublic(scope) && !ctx_->config->allow_private_mx) {
          if (refused_mx.empty()) {
            refused_mx = h.name;
            refused_addr = SockaddrIp(a);
            refused_scope = scope;
          }
          continue;
        }
        Hop t;
        t.mx = h.name;
        t.addr = HopAddr(a);
        t.port = ctx_->config->smtp_port;
        t.mx_dnssec = mx.dnssec;
        if (i < facts.size()) {
          t.dns = facts[i];
        } else {
          t.dns.mx_dnssec = mx.dnssec;
          t.dns.host_dnssec = h.dnssec;
        }
        hops_.hops.push_back(std::move(t));
      }
    }
  }
  hops_.ResetFailures();
  if (!hops_.empty()) {
    Pump();
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
      text = absl::StrCat("recipient domain ", domain_, " has a null MX (RFC 7505)");
      break;
    case DnsStatus::kNxDomain:
    case DnsStatus::kNoData:
    case DnsStatus::kBadName:
      klass = DeliveryClass::kBounced;
      code = 550;
      enhanced = "5.1.2";
      text = absl::StrCat("host or domain name not found: ", domain_, " (", ToString(mx.status),
                          mx.error.empty() ? "" : ": ", mx.error, ")");
      break;
    case DnsStatus::kOk:
      text = absl::StrCat("no MX host of ", domain_, " has an address");
      if (!refused_mx.empty()) {
        // Postfix's "mail for X loops back to myself" (5.4.6) for our own addresses; a private
        // network can never be reached from here either (5.4.4 unable to route).
        klass = DeliveryClass::kBounced;
        code = 550;
        const bool local = refused_scope == AddressScope::kLoopback ||
                           refused_scope == AddressScope::kUnspecified;
        enhanced = local ? "5.4.6" : "5.4.4";
        text = absl::StrCat(local ? "mail for " : "unroutable: mail for ", domain_,
                            local ? " loops back to myself" : " goes to a non-public network",
                            ": MX host ", refused_mx, " has the ", ToString(refused_scope),
                            " address ", refused_addr,
                            " (refused; [dns] allow_private_mx = true permits it in a lab)");
      }
      break;
    case DnsStatus::kTempFail:
      text = absl::StrCat("DNS temporary failure for ", domain_, mx.error.empty() ? "" : ": ",
                          mx.error);
      break;
  }
  AttemptInfo attempt;
  attempt.dnssec = mx.dnssec;
  FailQueue(klass, code, enhanced, text, attempt);
  state_ = State::kUnresolved;  // ask again (the resolver's negative cache answers)
}

// A connection to hop `hop` failed before it could deliver anything: the next connection tries
// the next MX / address (RFC 5321 §5.1).
void Destination::HopFailed(size_t hop, absl::string_view reason, const AttemptInfo& attempt,
                            absl::string_view enhanced) {
  last_failure_ = std::string(reason);
  last_failure_enhanced_ = std::string(enhanced);
  hops_.MarkFailed(hop);
  if (connections_ > 0) return;  // others are still trying; the last one decides
  if (hops_.failed_count < hops_.size()) {
    Pump();
    return;
  }
  // Every next hop failed: defer what waits (RFC 5321 §4.5.4.1 retry later), and what
  // arrives for a while, without new attempts.
  hops_.ResetFailures();
  dead_until_ms_ = now() + absl::ToInt64Milliseconds(ctx_->config->dead_destination_time);
  for (DeliveryJob* job : queue_) MarkDead(job);
  FailQueue(DeliveryClass::kDeferred, 0, last_failure_enhanced_, last_failure_, attempt);
}

// The scanner defers this destination's next messages itself until then (no claim, no encoding,
// no round trip through this worker: engine/dead_destinations.h). Wall clock: the scanner's.
void Destination::MarkDead(DeliveryJob* job) const {
  job->dead_until = absl::Now() + absl::Milliseconds(dead_until_ms_ - now());
  job->dead_reason = last_failure_;
}
}  // namespace mxb
