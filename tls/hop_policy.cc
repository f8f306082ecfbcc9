// DecideHopPolicy / HopPolicyFor (tls/hop_policy.h).
#include "tls/hop_policy.h"

#include "absl/strings/str_cat.h"

namespace mxb {

const char* ToString(TlsaLookup t) {
  switch (t) {
    case TlsaLookup::kNotDone: return "not-done";
    case TlsaLookup::kFound: return "found";
    case TlsaLookup::kDenied: return "denied";
    case TlsaLookup::kInsecure: return "insecure";
    case TlsaLookup::kFailed: return "failed";
  }
  return "unknown";
}

std::string HopDnsFacts::Key() const {
  return absl::StrCat(mx_dnssec ? 1 : 0, host_dnssec ? 1 : 0, static_cast<int>(tlsa), ":",
                      dane != nullptr ? dane->binding : "", ":", static_cast<int>(implicit_tlsa),
                      ":", implicit_dane != nullptr ? implicit_dane->binding : "");
}

TlsPolicy DecideHopPolicy(const HopQuery& q, const TlsPolicyRules& rules) {
  const DomainTlsConfig* domain = &rules.default_rule;
  if (auto it = rules.domains.find(q.recipient_domain); it != rules.domains.end()) {
    domain = &it->second;
  }
  TlsPolicy base = DerivePolicy(q.mx_host, *domain, rules.global);
  // RFC 7672 §2.2.1 / §2.2.2: DANE applies only when the MX answer and the host's address
  // answers were validated; anything else ignores TLSA records entirely.
  const HopDnsFacts& dns = q.dns;
  if (!rules.global.dane || !dns.mx_dnssec || !dns.host_dnssec) return base;
  TlsPolicy p = base;
  p.requirement = TlsRequirement::kRequired;
  p.verify = false;     // TLSA, not PKIX (RFC 7672 §3.1: no CA store involved)
  p.log_only = false;
  p.source = PolicySource::kDane;
  switch (dns.tlsa) {
    case TlsaLookup::kNotDone:
    case TlsaLookup::kDenied:
    case TlsaLookup::kInsecure:
      return base;
    case TlsaLookup::kFailed:
      // §2.2: a failed TLSA lookup on a secure host must not fall back to plaintext or to
      // unauthenticated TLS: the hop is not tried (the next MX is, and then it defers).
      p.name = "dane";
      p.defer_reason = absl::StrCat("tlsa-lookup-failed: ", dns.tlsa_error);
      return p;
    case TlsaLookup::kFound:
      break;
  }
  if (dns.dane == nullptr || dns.dane->usable.empty()) {
    // §2.2: TLSA records exist but none is usable: TLS is still mandatory, unauthenticated —
    // unless a prefix or domain rule already asks for more (a verified certificate).
    if (base.requirement == TlsRequirement::kRequired && base.verify && !base.log_only) {
      return base;
    }
    p.name = "dane-unusable";
    return p;
  }
  // DANE beats MTA-STS and the prefixes (RFC 8461 §2; DESIGN.md "TLS policy").
  p.name = "dane";
  p.dane = dns.dane;
  if (p.implicit_tls_first) {
    // An smtps- host: its implicit-TLS port is authenticated by that port's own TLSA RRset
    // (RFC 6698 §3: _<port>._tcp). Without a usable one the session there could not be
    // DANE-authenticated, so the hop goes straight to STARTTLS on the SMTP port, where it can.
    if (dns.implicit_tlsa == TlsaLookup::kFound && dns.implicit_dane != nullptr &&
        !dns.implicit_dane->usable.empty()) {
      p.implicit_dane = dns.implicit_dane;
    } else {
      p.implicit_tls_first = false;
    }
  }
  return p;
}

PolicyEntry& HopPolicyFor(PolicyCache* cache, const HopQuery& q, const TlsPolicyRules& rules,
                          absl::Time now) {
  bool created = false;
  PolicyEntry& e = cache->Get(q.mx_host, now, &created);
  // Decided on first sight of the MX, and again when its DNSSEC/TLSA facts change (a TLSA
  // RRset rolled over, a failed lookup that now succeeds).
  std::string key = q.dns.Key();
  if (created || key != e.facts_key) {
    e.policy = DecideHopPolicy(q, rules);
    e.facts_key = std::move(key);
  }
  return e;
}

}  // namespace mxb
