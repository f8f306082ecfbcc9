// The TLS policy of one next hop, decided in one place: HopPolicyFor() takes the recipient
// domain, the MX host and what DNS said about them (HopQuery) and returns the policy the engine
// must carry out (tls/policy.h TlsPolicy). The engine never derives a policy itself.
//
// Owns: TlsPolicyRules — the configured inputs of the decision (per-domain rules, the default
// rule for every other domain, the global prefix/port settings). Today the decision is
// DerivePolicy() (prefix signals, domain rules, opportunistic; DESIGN.md "TLS policy"); DANE
// (RFC 7672) and MTA-STS (RFC 8461) plug in here as stronger sources, fed by HopDnsFacts.
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
#include "tls/policy.h"

namespace mxb {

// One TLSA RR (RFC 6698 §2.1) as the DANE check will need it; dns/ parses the wire format and
// the engine copies the fields here (tls/ does not include dns/).
struct TlsaFact {
  uint8_t usage = 0;
  uint8_t selector = 0;
  uint8_t matching_type = 0;
  std::string data;  // raw certificate association data
};

// What DNS said about the hop. Every field has the "nothing known" default, so a static route
// (no DNS at all) is HopDnsFacts{}.
struct HopDnsFacts {
  // The MX answer that named this host carried the AD bit (DNSSEC-validated). Logged with every
  // outcome; RFC 7672 §2.2.1 requires it before TLSA records may be used.
  bool mx_dnssec = false;
  // TLSA at _25._tcp.<mx> (RFC 7672 §2.2.2). Not looked up yet: the DANE work fills these and
  // DecideHopPolicy() starts using them; until then they are ignored.
  bool tlsa_looked_up = false;
  bool tlsa_dnssec = false;       // the TLSA answer was validated (AD)
  std::vector<TlsaFact> tlsa;     // usable records only
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
