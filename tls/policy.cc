// DerivePolicy (DESIGN.md "TLS policy") and the per-worker PolicyCache.
//
// DumpJson uses nlohmann_json (linked privately by mxb_tls) so that MX names and EHLO keywords,
// which come from the network, are always escaped correctly.
#include "tls/policy.h"

#include <nlohmann/json.hpp>

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace mxb {
namespace {

constexpr absl::string_view kStartTlsPrefix = "starttls-";
constexpr absl::string_view kSmtpsPrefix = "smtps-";

absl::string_view FirstLabel(absl::string_view host) {
  const size_t dot = host.find('.');
  return dot == absl::string_view::npos ? host : host.substr(0, dot);
}

// Only the first label counts: "mx.starttls-example.com" carries no signal, and neither does
// "smtps.example.com" (the dash is part of the prefix).
bool FirstLabelStartsWith(absl::string_view host, absl::string_view prefix) {
  return absl::StartsWithIgnoreCase(FirstLabel(host), prefix);
}

TlsPolicy PrefixPolicy(bool smtps, bool log_only) {
  TlsPolicy p;
  p.requirement = log_only ? TlsRequirement::kOpportunistic : TlsRequirement::kRequired;
  p.verify = true;
  p.implicit_tls_first = smtps;
  p.source = PolicySource::kPrefix;
  p.log_only = log_only;
  p.name = absl::StrCat(smtps ? "smtps-prefix" : "starttls-prefix", log_only ? "(log-only)" : "");
  return p;
}

TlsPolicy ConfigPolicy(const DomainTlsConfig& domain) {
  TlsPolicy p;
  p.requirement = domain.requirement;
  // Verification only means something when TLS is required: opportunistic TLS (RFC 7435)
  // never authenticates, and a failed check must not turn into a plaintext retry.
  p.verify = domain.requirement == TlsRequirement::kRequired && domain.verify;
  p.source = PolicySource::kConfig;
  p.name = absl::StrCat("config-", ToString(domain.requirement));
  return p;
}

std::string FormatLogTime(absl::Time t) {
  if (t == absl::InfinitePast()) return "never";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", t, absl::UTCTimeZone());
}

}  // namespace

const char* ToString(PolicySource s) {
  switch (s) {
    case PolicySource::kOpportunistic:
      return "opportunistic";
    case PolicySource::kPrefix:
      return "prefix";
    case PolicySource::kConfig:
      return "config";
    case PolicySource::kDane:
      return "dane";
    case PolicySource::kMtaSts:
      return "mta-sts";
    case PolicySource::kBannerPin:
      return "banner-pin";
  }
  return "unknown";
}

const char* ToString(TlsRequirement r) {
  switch (r) {
    case TlsRequirement::kDisabled:
      return "disabled";
    case TlsRequirement::kOpportunistic:
      return "opportunistic";
    case TlsRequirement::kRequired:
      return "required";
  }
  return "unknown";
}

const char* ToString(PrefixSignals p) {
  switch (p) {
    case PrefixSignals::kEnforce:
      return "enforce";
    case PrefixSignals::kLogOnly:
      return "log-only";
    case PrefixSignals::kOff:
      return "off";
  }
  return "unknown";
}

const char* ToString(TlsFailure f) {
  switch (f) {
    case TlsFailure::kNone:
      return "none";
    case TlsFailure::kStartTlsNotOffered:
      return "starttls-not-offered";
    case TlsFailure::kStartTlsRefused:
      return "starttls-failed";
    case TlsFailure::kHandshakeFailed:
      return "handshake-failed";
    case TlsFailure::kCertificateExpired:
      return "certificate-expired";
    case TlsFailure::kCertificateHostMismatch:
      return "certificate-host-mismatch";
    case TlsFailure::kValidationFailure:
      return "validation-failure";
  }
  return "unknown";
}

bool HasStartTlsPrefix(absl::string_view mx_host) {
  return FirstLabelStartsWith(mx_host, kStartTlsPrefix);
}

bool HasSmtpsPrefix(absl::string_view mx_host) {
  return FirstLabelStartsWith(mx_host, kSmtpsPrefix);
}

TlsPolicy DerivePolicy(absl::string_view mx_host, const DomainTlsConfig& domain,
                       const GlobalTlsConfig& global) {
  const bool smtps = HasSmtpsPrefix(mx_host);
  const bool prefixed = smtps || HasStartTlsPrefix(mx_host);
  if (prefixed && global.prefix_signals == PrefixSignals::kEnforce) {
    // A prefix requires TLS with verification: nothing a domain rule can say is stronger.
    return PrefixPolicy(smtps, /*log_only=*/false);
  }
  if (prefixed && global.prefix_signals == PrefixSignals::kLogOnly) {
    // Strongest wins: an enforced `tls = required` domain rule beats an observed-only prefix;
    // anything weaker (opportunistic, disabled) does not.
    if (domain.has_rule && domain.requirement == TlsRequirement::kRequired) {
      return ConfigPolicy(domain);
    }
    return PrefixPolicy(smtps, /*log_only=*/true);
  }
  if (domain.has_rule) return ConfigPolicy(domain);
  TlsPolicy p;
  p.name = "opportunistic";
  return p;
}

// ---------------------------------------------------------------------------------------------
// PolicyCache

PolicyEntry& PolicyCache::Get(absl::string_view mx_host, absl::Time now, bool* created) {
  std::string key = absl::AsciiStrToLower(mx_host);
  if (auto it = map_.find(key); it != map_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second);
    it->second->last_used = now;
    if (created != nullptr) *created = false;
    return *it->second;
  }
  const size_t cap = max_entries_ == 0 ? 1 : max_entries_;
  while (map_.size() >= cap && !lru_.empty()) {
    map_.erase(lru_.back().mx_host);
    lru_.pop_back();
  }
  lru_.emplace_front();
  PolicyEntry& e = lru_.front();
  e.mx_host = key;
  e.last_used = now;
  map_.emplace(std::move(key), lru_.begin());
  if (created != nullptr) *created = true;
  return e;
}

PolicyEntry* PolicyCache::Find(absl::string_view mx_host) {
  auto it = map_.find(absl::AsciiStrToLower(mx_host));
  return it == map_.end() ? nullptr : &*it->second;
}

std::string PolicyCache::DumpJson(absl::Time now) const {
  std::string out;
  for (const PolicyEntry& e : lru_) {  // most recently used first
    nlohmann::ordered_json j;
    j["mx"] = e.mx_host;
    j["policy"] = e.policy.name;
    j["source"] = ToString(e.policy.source);
    j["requirement"] = ToString(e.policy.requirement);
    j["verify"] = e.policy.verify;
    j["implicit_tls_first"] = e.policy.implicit_tls_first;
    j["log_only"] = e.policy.log_only;
    const bool negative = e.implicit_tls_failed_until > now;
    j["implicit_tls_failed"] = negative;
    j["implicit_tls_retry_in_s"] =
        negative ? absl::ToInt64Seconds(e.implicit_tls_failed_until - now) : 0;
    j["has_session"] = e.session != nullptr;
    j["ehlo"] = e.ehlo_keywords;
    j["recent_failures"] = e.recent_failures;
    j["last_failure"] = ToString(e.last_failure);
    j["last_error"] = e.last_error;
    j["last_used"] = FormatLogTime(e.last_used);
    j["connections"] = e.connections;
    j["resumed"] = e.resumed;
    // Replace invalid UTF-8 (EHLO text is network input) instead of failing the dump.
    out += j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
    out += '\n';
  }
  return out;
}

}  // namespace mxb
