// DANE in the hop policy (tls/hop_policy.h, RFC 7672 §2.2): which DNS facts make a hop DANE,
// unauthenticated-mandatory, deferred or ordinary, and precedence over prefixes and config.
#include <gtest/gtest.h>

#include <string>

#include "tls/dane.h"
#include "tls/hop_policy.h"
#include "tls/policy.h"

namespace mxb {
namespace {

std::shared_ptr<const DaneAuthority> Auth(uint8_t usage) {
  DaneRecord r;
  r.usage = usage;
  r.selector = 1;
  r.matching_type = 1;
  r.data = std::string(32, 'x');
  return DaneAuthority::Make({r}, {"mx.example"});
}

HopDnsFacts Facts(bool mx, bool host, TlsaLookup t, std::shared_ptr<const DaneAuthority> a) {
  HopDnsFacts f;
  f.mx_dnssec = mx;
  f.host_dnssec = host;
  f.tlsa = t;
  f.dane = std::move(a);
  f.tlsa_error = "SERVFAIL";
  return f;
}

TEST(HopPolicyDane, Table) {
  struct Case {
    const char* what;
    const char* mx;
    HopDnsFacts dns;
    bool dane_on;
    const char* name;
    PolicySource source;
    TlsRequirement requirement;
    bool verify;
    bool has_dane;
    bool defers;
  };
  const auto kReq = TlsRequirement::kRequired;
  const auto kOpp = TlsRequirement::kOpportunistic;
  const Case cases[] = {
      {"usable TLSA", "mx.example", Facts(true, true, TlsaLookup::kFound, Auth(3)), true, "dane",
       PolicySource::kDane, kReq, false, true, false},
      {"DANE beats the starttls- prefix", "starttls-mx.example",
       Facts(true, true, TlsaLookup::kFound, Auth(2)), true, "dane", PolicySource::kDane, kReq,
       false, true, false},
      {"only PKIX-EE: mandatory, unauthenticated", "mx.example",
       Facts(true, true, TlsaLookup::kFound, Auth(1)), true, "dane-unusable",
       PolicySource::kDane, kReq, false, false, false},
      {"unusable TLSA, prefix verifies: prefix stays", "starttls-mx.example",
       Facts(true, true, TlsaLookup::kFound, Auth(1)), true, "starttls-prefix",
       PolicySource::kPrefix, kReq, true, false, false},
      {"TLSA lookup failed on a secure host: defer", "mx.example",
       Facts(true, true, TlsaLookup::kFailed, nullptr), true, "dane", PolicySource::kDane, kReq,
       false, false, true},
      {"authenticated denial: no DANE", "mx.example",
       Facts(true, true, TlsaLookup::kDenied, nullptr), true, "opportunistic",
       PolicySource::kOpportunistic, kOpp, false, false, false},
      {"insecure TLSA answer: no DANE", "mx.example",
       Facts(true, true, TlsaLookup::kInsecure, nullptr), true, "opportunistic",
       PolicySource::kOpportunistic, kOpp, false, false, false},
      {"insecure MX: TLSA ignored", "mx.example", Facts(false, true, TlsaLookup::kFound, Auth(3)),
       true, "opportunistic", PolicySource::kOpportunistic, kOpp, false, false, false},
      {"insecure address: TLSA ignored", "mx.example",
       Facts(true, false, TlsaLookup::kFound, Auth(3)), true, "opportunistic",
       PolicySource::kOpportunistic, kOpp, false, false, false},
      {"insecure MX: a failed lookup does not defer", "mx.example",
       Facts(false, false, TlsaLookup::kFailed, nullptr), true, "opportunistic",
       PolicySource::kOpportunistic, kOpp, false, false, false},
      {"dane = off", "mx.example", Facts(true, true, TlsaLookup::kFound, Auth(3)), false,
       "opportunistic", PolicySource::kOpportunistic, kOpp, false, false, false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    TlsPolicyRules rules;
    rules.global.dane = c.dane_on;
    HopQuery q;
    q.recipient_domain = "example";
    q.mx_host = c.mx;
    q.dns = c.dns;
    const TlsPolicy p = DecideHopPolicy(q, rules);
    EXPECT_EQ(p.name, c.name);
    EXPECT_EQ(p.source, c.source);
    EXPECT_EQ(p.requirement, c.requirement);
    EXPECT_EQ(p.verify, c.verify);
    EXPECT_EQ(p.dane != nullptr, c.has_dane);
    EXPECT_EQ(!p.defer_reason.empty(), c.defers) << p.defer_reason;
    if (c.defers) {
      EXPECT_EQ(p.defer_reason, "tlsa-lookup-failed: SERVFAIL");
    }
  }
}

TEST(HopPolicyDane, CachedPolicyFollowsTheTlsaFacts) {
  TlsPolicyRules rules;
  PolicyCache cache(10);
  const absl::Time t = absl::FromUnixSeconds(1700000000);
  HopQuery q;
  q.recipient_domain = "example";
  q.mx_host = "mx.example";
  q.dns = Facts(true, true, TlsaLookup::kFailed, nullptr);
  EXPECT_FALSE(HopPolicyFor(&cache, q, rules, t).policy.defer_reason.empty());
  // The next lookup succeeds: the cached entry must not keep deferring.
  q.dns = Facts(true, true, TlsaLookup::kFound, Auth(3));
  PolicyEntry& e = HopPolicyFor(&cache, q, rules, t);
  EXPECT_TRUE(e.policy.defer_reason.empty());
  EXPECT_EQ(e.policy.name, "dane");
  EXPECT_EQ(cache.size(), 1u);
}

}  // namespace
}  // namespace mxb
