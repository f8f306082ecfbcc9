// DecideHopPolicy / HopPolicyFor (tls/hop_policy.h).
#include "tls/hop_policy.h"

namespace mxb {

TlsPolicy DecideHopPolicy(const HopQuery& q, const TlsPolicyRules& rules) {
  const DomainTlsConfig* domain = &rules.default_rule;
  if (auto it = rules.domains.find(q.recipient_domain); it != rules.domains.end()) {
    domain = &it->second;
  }
  return DerivePolicy(q.mx_host, *domain, rules.global);
}

PolicyEntry& HopPolicyFor(PolicyCache* cache, const HopQuery& q, const TlsPolicyRules& rules,
                          absl::Time now) {
  bool created = false;
  PolicyEntry& e = cache->Get(q.mx_host, now, &created);
  if (created) e.policy = DecideHopPolicy(q, rules);
  return e;
}

}  // namespace mxb
