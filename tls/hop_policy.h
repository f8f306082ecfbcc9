// The TLS policy of one next hop, decided in one place: HopPolicyFor() takes the recipient
// domain, the MX host and what DNS said about them (HopQuery) and returns the policy the engine
// must carry out (tls/policy.h TlsPolicy). The engine never derives a policy itself.
//
// Owns: TlsPolicyRules — the configured inputs of the decision (per-domain rules, the default
// rule for every other domain, the global prefix/port settings). The decision: DANE (RFC 7672,
// from HopDnsFacts) when the MX and address answers were validated and the TLSA lookup found or
// failed something, else DerivePolicy() (prefix signals, domain rules, opportunistic;
// DESIGN.md "TLS policy"). MTA-STS (RFC 8461) plugs in here as the next source.
//
// DANE outcomes (RFC 7672 §2.2), by the TLSA lookup of a host whose MX and A/AAAA answers were
// DNSSEC-validated (`[tls] dane = on`, the default):
//   usable records         -> STARTTLS required, authenticated by TLSA only (policy "dane",
//                             TlsPolicy::dane set; no CA store, no PKIX), beats prefixes/config
//   records, none usable   -> STARTTLS required, unauthenticated ("dane-unusable"), unless a
//                             prefix/config rule already requires a verified certificate
//   lookup failed          -> no connection at all: the hop defers ("tlsa-lookup-failed"),
//                             never a downgrade
//   denied (NXDOMAIN/NODATA with AD), insecure answer, or an insecure MX/address: no DANE
//
// The result is cached per MX host in the worker's PolicyCache and derived on first sight of
// that MX: a later domain sharing the MX host shares the cached policy (as before the split).
//
// Thread: any for the pure DecideHopPolicy(); HopPolicyFor() on the thread that owns the cache.
//
//   TlsPolicyRules rules{config.domain_tls, default_rule, config.tls_global};
//   HopQuery q{"dest.example", "starttls-mx1.dest.example", HopDnsFacts{.mx_dnssec = true}};
//   PolicyEntry& e = HopPolicyFor(&cache, q, rules, absl::Now());
//   if (e.policy.requirement == TlsRequirement::kRequired) ...
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "tls/dane.h"
#include "tls/policy.h"

namespace mxb {

// What the TLSA lookup at _<port>._tcp.<mx> found (RFC 7672 §2.2).
enum class TlsaLookup {
  kNotDone,   // not asked (insecure MX or address, DANE off, static route)
  kFound,     // a validated (AD) RRset: HopDnsFacts::dane
  kDenied,    // validated NXDOMAIN / NODATA: authenticated denial, no DANE for the host
  kInsecure,  // an answer without AD (insecure delegation): no DANE
  kFailed,    // SERVFAIL (bogus), timeout, ...: the hop must defer
};
const char* ToString(TlsaLookup t);  // "not-done", "found", "denied", "insecure", "failed"

// What DNS said about the hop. Every field has the "nothing known" default, so a static route
// (no DNS at all) is HopDnsFacts{}.
struct HopDnsFacts {
  // The MX answer that named this host carried the AD bit (DNSSEC-validated). Logged with every
  // outcome; RFC 7672 §2.2.1 requires it before TLSA records may be used.
  bool mx_dnssec = false;
  // The host's A/AAAA answers were validated too (RFC 7672 §2.2.2: needed for DANE).
  bool host_dnssec = false;
  TlsaLookup tlsa = TlsaLookup::kNotDone;
  std::shared_ptr<const DaneAuthority> dane;  // kFound: the RRset and the reference names
  std::string tlsa_error;                     // kFailed: the resolver's text
  // The TLSA RRset at _<smtps_port>._tcp.<host> of an smtps- host (RFC 6698: TLSA records are
  // per port), for its implicit-TLS attempt; kNotDone for every other host.
  TlsaLookup implicit_tlsa = TlsaLookup::kNotDone;
  std::shared_ptr<const DaneAuthority> implicit_dane;
  // A short key of the DANE-relevant facts: a cached policy is decided again when it changes.
  std::string Key() const;
};

struct HopQuery {
  absl::string_view recipient_domain;  // the job's domain, as the config keys it (lower case)
  absl::string_view mx_host;           // MX (or static next hop) host name
  HopDnsFacts dns;
};

struct TlsPolicyRules {
  absl::flat_hash_map<std::string, DomainTlsConfig> domains;  // key: lower-case domain
  DomainTlsConfig default_rule;  // for every domain without its own (has_rule = false: none)
  GlobalTlsConfig global;
};

// Pure: the policy for this hop under `rules`.
TlsPolicy DecideHopPolicy(const HopQuery& q, const TlsPolicyRules& rules);

// The cached entry for q.mx_host, its policy decided by DecideHopPolicy() when the entry is new.
PolicyEntry& HopPolicyFor(PolicyCache* cache, const HopQuery& q, const TlsPolicyRules& rules,
                          absl::Time now);

}  // namespace mxb
