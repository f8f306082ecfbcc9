// TLS policy: how to talk to one MX host (DESIGN.md "TLS policy"), and the per-worker policy
// cache keyed by MX host name.
//
// DerivePolicy() is a pure function of the MX name, the recipient domain's configured policy and
// the global settings: `starttls-…` first label -> STARTTLS required with a PKIX-valid
// certificate for the MX name; `smtps-…` -> implicit TLS on smtps_port first, falling back to
// STARTTLS-required on smtp_port (never plaintext); per-domain config (tls = required |
// opportunistic | disabled, verify = true|false) for unprefixed names; otherwise opportunistic.
// prefix_signals = log-only turns prefix-derived requirements into logged violations; off ignores
// the prefixes. Strongest rule wins (DANE / MTA-STS are later sources):
//   enforce + prefix            -> the prefix policy (required + verify), whatever the domain says
//   log-only + prefix           -> prefix policy with requirement opportunistic, log_only = true,
//                                  verify = true (verify-and-log: SessionParams::log_only), unless
//                                  the domain rule says `required`, which then wins (source config)
//   off, or no prefix           -> domain rule if any (verify only with required), else
//                                  opportunistic
// Prefix = the first label starts with "starttls-" / "smtps-" (ASCII case-insensitive); a prefix
// in another label or "smtps" without the dash is no signal.
//
// PolicyCache belongs to one worker thread (shared-nothing, no locks): per MX host it remembers
// the derived policy, whether the implicit-TLS port failed recently (negative entry with expiry),
// the newest TLS session for resumption, EHLO capabilities seen, and recent failures. Bounded
// (LRU on Get(); Find() does not refresh). A reference from Get()/Find() stays valid until the
// next Get() (which may evict). Move-only. DumpJson() serves `mxburstctl policy` / the log dump:
// one JSON object per line, most recently used first (keys: mx, policy, source, requirement,
// verify, implicit_tls_first, log_only, implicit_tls_failed, implicit_tls_retry_in_s,
// has_session, ehlo, recent_failures, last_failure, last_used, connections, resumed).
//
//   mxb::TlsPolicy p = mxb::DerivePolicy("starttls-mx1.example.net", domain_cfg, global_cfg);
//   mxb::PolicyCache cache(10000);
//   mxb::PolicyEntry& e = cache.Get("smtps-mx.example.net", now);   // creates on miss
//   if (e.implicit_tls_failed_until > now) -> connect to 25 directly
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace mxb {

class TlsSessionTicket;  // tls/tls_session.h
struct DaneAuthority;    // tls/dane.h

enum class PolicySource { kOpportunistic, kPrefix, kConfig, kDane, kMtaSts, kBannerPin };
// "opportunistic", "prefix", "config", "dane", "mta-sts", "banner-pin" (tls/banner_pin.h)
const char* ToString(PolicySource s);

enum class TlsRequirement {
  kDisabled,       // never STARTTLS (config tls = "disabled")
  kOpportunistic,  // STARTTLS when offered, no certificate check, plaintext otherwise
  kRequired,       // STARTTLS (or implicit TLS) must succeed; verify says whether PKIX+name
};
const char* ToString(TlsRequirement r);  // "disabled", "opportunistic", "required"

enum class PrefixSignals { kEnforce, kLogOnly, kOff };
const char* ToString(PrefixSignals p);  // "enforce", "log-only", "off"

struct DomainTlsConfig {  // from the per-domain config; defaults = no rule
  bool has_rule = false;
  TlsRequirement requirement = TlsRequirement::kOpportunistic;
  bool verify = false;
};

struct GlobalTlsConfig {
  PrefixSignals prefix_signals = PrefixSignals::kEnforce;
  bool dane = true;  // [tls] dane = "on" | "off": TLSA lookups and DANE policies (RFC 7672)
  // [tls] honor_tls_required_no: a "TLS-Required: No" header field (RFC 8689 §5) relaxes the
  // TLS policy of its message to opportunistic (violations logged).
  bool honor_tls_required_no = true;
  uint16_t smtp_port = 25;
  uint16_t smtps_port = 26;
  absl::Duration implicit_tls_negative_ttl = absl::Minutes(30);  // after port 26 failed
};

struct TlsPolicy {
  TlsRequirement requirement = TlsRequirement::kOpportunistic;
  bool verify = false;            // PKIX chain + RFC 6125 name check against the MX host name
  bool implicit_tls_first = false;  // smtps-: try smtps_port with TLS from the first byte
  PolicySource source = PolicySource::kOpportunistic;
  // log-only: the prefix asked for `would_require` but we only log violations of it.
  bool log_only = false;
  std::string name;               // short label for logs: "starttls-prefix", "smtps-prefix",
                                  // "config-required", "opportunistic", "dane", ...
  // DANE (tls/hop_policy.h): authenticate by these TLSA records (SessionParams::dane).
  std::shared_ptr<const DaneAuthority> dane;
  // DANE for the implicit-TLS attempt (smtps_port) of an smtps- host: its own port's records.
  std::shared_ptr<const DaneAuthority> implicit_dane;
  // Do not connect: the hop fails at once with this reason ("tlsa-lookup-failed: ...").
  std::string defer_reason;
};

// First label of `mx_host` (case-insensitive) starting with "starttls-" / "smtps-".
bool HasStartTlsPrefix(absl::string_view mx_host);
bool HasSmtpsPrefix(absl::string_view mx_host);

TlsPolicy DerivePolicy(absl::string_view mx_host, const DomainTlsConfig& domain,
                       const GlobalTlsConfig& global);

// Why a strict TLS attempt failed — the exact strings go into logs and test assertions.
enum class TlsFailure {
  kNone,                    // "none"
  kStartTlsNotOffered,      // "starttls-not-offered"
  kStartTlsRefused,         // "starttls-failed"
  kHandshakeFailed,         // "handshake-failed"
  kCertificateExpired,      // "certificate-expired"
  kCertificateHostMismatch, // "certificate-host-mismatch"
  kValidationFailure,       // "validation-failure" (untrusted chain, bad signature, ...)
};
const char* ToString(TlsFailure f);

struct PolicyEntry {
  std::string mx_host;
  TlsPolicy policy;
  absl::Time implicit_tls_failed_until = absl::InfinitePast();  // port 26 negative cache
  std::shared_ptr<TlsSessionTicket> session;  // newest session for resumption (one per MX)
  std::string ehlo_keywords;      // space-separated, as last seen after TLS
  std::string facts_key;          // HopDnsFacts::Key() the policy was decided with
  int recent_failures = 0;  // connections that failed before a ready session since the last one
  TlsFailure last_failure = TlsFailure::kNone;
  std::string last_error;   // text of the newest such failure (connect refused, greeting, TLS)
  absl::Time last_used;
  uint64_t connections = 0, resumed = 0;
};

class PolicyCache {
 public:
  explicit PolicyCache(size_t max_entries) : max_entries_(max_entries) {}
  // The map holds iterators into lru_: a copy would point into the source. Moving a std::list
  // keeps its iterators valid, so moves are fine.
  PolicyCache(const PolicyCache&) = delete;
  PolicyCache& operator=(const PolicyCache&) = delete;
  PolicyCache(PolicyCache&&) = default;
  PolicyCache& operator=(PolicyCache&&) = default;
  // Returns the entry for `mx_host` (lower-cased key), creating it (policy unset: caller fills
  // it) and evicting the least recently used entry when full.
  PolicyEntry& Get(absl::string_view mx_host, absl::Time now, bool* created = nullptr);
  PolicyEntry* Find(absl::string_view mx_host);
  size_t size() const { return map_.size(); }
  // One JSON object per line, for `mxburstctl policy`.
  std::string DumpJson(absl::Time now) const;

 private:
  size_t max_entries_;
  std::list<PolicyEntry> lru_;  // front = most recent
  absl::flat_hash_map<std::string, std::list<PolicyEntry>::iterator> map_;
};

}  // namespace mxb
