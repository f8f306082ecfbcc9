// SMTP TLS Reporting (RFC 8460): what one delivery session achieved against the recipient
// domain's TLS policy, the per-day counters of those outcomes, the `_smtp._tls` TXT record and
// the JSON report of §4.4.
//
// Owns: the pure pieces — the result types of §4.3 (TlsRptResult) and the mapping from the
// engine's failure labels to them, TlsRptCounters (per UTC day, policy domain and policy: the
// successful sessions and the failed ones per result type, sending IP, MX host and receiving IP),
// their JSON form (the spool snapshot and the journal deltas that make them durable, see
// engine/tlsrpt_reporter.h), the §3 TXT parser and the §4.4 report builder.
//
// Thread: everything here is a value type or a pure function (any thread). The engine keeps its
// one TlsRptCounters on the scanner thread.
//
//   TlsRptSession s;
//   s.policy = {TlsRptPolicyType::kSts, "d.example", policy.lines, policy.mx};
//   s.result = TlsRptResult::kStartTlsNotSupported;   // or s.success = true
//   s.receiving_mx = "mx1.d.example"; s.receiving_ip = "192.0.2.25"; s.sending_ip = "192.0.2.1";
//   TlsRptCounters c;  c.Add(s, absl::Now());
//   std::string json = BuildTlsRptReport(info, c.Extract(TlsRptDay(absl::Now()), "d.example"));
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "tls/mta_sts.h"
#include "tls/policy.h"

namespace mxb {

// RFC 8460 §4.3 result types (IANA "STARTTLS Validation Result Types").
enum class TlsRptResult {
  kStartTlsNotSupported,     // "starttls-not-supported"
  kCertificateHostMismatch,  // "certificate-host-mismatch"
  kCertificateExpired,       // "certificate-expired"
  kCertificateNotTrusted,    // "certificate-not-trusted"
  kValidationFailure,        // "validation-failure"
  kTlsaInvalid,              // "tlsa-invalid"
  kDnssecInvalid,            // "dnssec-invalid"
  kDaneRequired,             // "dane-required"
  kStsPolicyFetchError,      // "sts-policy-fetch-error"
  kStsPolicyInvalid,         // "sts-policy-invalid"
  kStsWebpkiInvalid,         // "sts-webpki-invalid"
};
const char* ToString(TlsRptResult r);
std::optional<TlsRptResult> TlsRptResultFromString(absl::string_view s);

// The result type for a failure as the engine labels it (the leading word of a hop failure, a
// log-only violation, an MTA-STS check failure, a DANE reason): "starttls-not-offered",
// "starttls-failed" -> starttls-not-supported; "certificate-host-mismatch", "certificate-expired"
// as is; "validation-failure" -> certificate-not-trusted when the text says the chain has no
// trusted signer, else validation-failure; "handshake-failed" -> validation-failure (§4.3.2.? the
// catch-all); DANE "tlsa-mismatch" -> tlsa-invalid, "tlsa-lookup-failed" -> dnssec-invalid,
// "tlsa-unusable" (TLSA records, none usable) -> tlsa-invalid; "sts-*" as is. nullopt: not a TLS negotiation failure (a
// refused connection, a 4xx greeting), which TLS-RPT does not count.
std::optional<TlsRptResult> TlsRptResultForFailure(absl::string_view reason);

enum class TlsRptPolicyType { kSts, kTlsa, kNoPolicyFound };
const char* ToString(TlsRptPolicyType t);  // "sts", "tlsa", "no-policy-found"

// §4.4 "policy": what was applied to the session.
struct TlsRptPolicy {
  TlsRptPolicyType type = TlsRptPolicyType::kNoPolicyFound;
  std::string domain;                // policy-domain (the recipient domain, lower case)
  std::vector<std::string> strings;  // policy-string: the STS policy lines / TLSA records
  std::vector<std::string> mx_host;  // mx-host: the STS mx patterns / the DANE MX host
  auto Tie() const { return std::tie(type, domain, strings, mx_host); }
  bool operator<(const TlsRptPolicy& o) const { return Tie() < o.Tie(); }
  bool operator==(const TlsRptPolicy& o) const { return Tie() == o.Tie(); }
};

// What a connection is counted under (engine/connection.h ConnectSpec::tlsrpt).
struct TlsRptConnInfo {
  TlsRptPolicy policy;
  std::optional<TlsRptResult> preset;  // counted as this failure whatever the session does
};

// The policy a session to `mx_host` of `domain` is reported under, from what was applied:
// DANE (policy.source kDane) -> tlsa; the domain's MTA-STS policy (testing/enforce) -> sts with
// its lines and mx patterns; a failed MTA-STS check with no policy in use (`sts_failure`, an
// RFC 8460 sts-* label) -> sts with that failure preset; otherwise no-policy-found.
TlsRptConnInfo TlsRptInfoFor(absl::string_view domain, const StsPolicy* sts,
                             absl::string_view sts_failure, const TlsPolicy& applied,
                             absl::string_view mx_host);

// One session outcome as the engine records it.
struct TlsRptSession {
  TlsRptPolicy policy;
  bool success = false;
  TlsRptResult result = TlsRptResult::kValidationFailure;  // when !success
  std::string sending_ip;    // sending-mta-ip
  std::string receiving_mx;  // receiving-mx-hostname
  std::string receiving_ip;  // receiving-ip
  std::string reason_code;   // failure-reason-code (optional): the engine's own label
};

// One failure-details row's key (§4.4: result-type, sending-mta-ip, receiving-mx-hostname,
// receiving-ip, failure-reason-code).
struct TlsRptFailureKey {
  TlsRptResult result = TlsRptResult::kValidationFailure;
  std::string sending_ip, receiving_mx, receiving_ip, reason_code;
  auto Tie() const { return std::tie(result, sending_ip, receiving_mx, receiving_ip, reason_code); }
  bool operator<(const TlsRptFailureKey& o) const { return Tie() < o.Tie(); }
};

struct TlsRptPolicyCounts {
  uint64_t successes = 0;
  std::map<TlsRptFailureKey, uint64_t> failures;
  uint64_t failure_total() const;
};

// UTC day number (days since 1970-01-01) and its bounds.
int64_t TlsRptDay(absl::Time t);
absl::Time TlsRptDayStart(int64_t day);
std::string TlsRptDayString(int64_t day);  // "2026-12-02"

// Per (UTC day, policy domain, policy) counts. Ordered maps: reports and dumps are stable.
class TlsRptCounters {
 public:
  using PolicyMap = std::map<TlsRptPolicy, TlsRptPolicyCounts>;
  using DomainMap = std::map<std::string, PolicyMap>;

  void Add(const TlsRptSession& s, absl::Time at);
  // Adds (sign +1) or removes (sign -1, saturating at 0; empty entries disappear) `other`.
  void Merge(const TlsRptCounters& other, int sign = +1);
  // Only `domain` on `day` (empty when there is nothing).
  TlsRptCounters Extract(int64_t day, absl::string_view domain) const;
  bool empty() const { return days_.empty(); }
  const std::map<int64_t, DomainMap>& days() const { return days_; }

  // {"2026-12-02": {"d.example": [{"policy": {...§4.4 names...}, "successes": N,
  //  "failures": [{"result-type", "sending-mta-ip", "receiving-mx-hostname", "receiving-ip",
  //  "failure-reason-code", "count"}]}]}}
  std::string ToJson() const;
  static absl::StatusOr<TlsRptCounters> FromJson(absl::string_view json);

 private:
  std::map<int64_t, DomainMap> days_;
};

// The durable state as kept in the spool: a snapshot covering the deltas up to `seq`, then the
// journal's deltas in order ({"seq": N, "add": COUNTERS} or {"seq": N, "sub": COUNTERS}); deltas
// with seq <= the snapshot's are already in it. Malformed deltas are skipped and counted.
struct TlsRptState {
  uint64_t seq = 0;
  TlsRptCounters counters;
  size_t skipped = 0;
};
std::string TlsRptSnapshotJson(const TlsRptState& s);
std::string TlsRptDeltaJson(uint64_t seq, const TlsRptCounters& delta, int sign);
// `snapshot` may be empty (no file yet). Errors only for a snapshot that does not parse.
absl::StatusOr<TlsRptState> LoadTlsRptState(absl::string_view snapshot,
                                            const std::vector<std::string>& deltas);

// §3: of all TXT strings at _smtp._tls.<domain>, those starting with "v=TLSRPTv1" must be
// exactly one; its rua= list (comma-separated mailto: / https: URIs). nullopt: no valid record.
std::optional<std::vector<std::string>> TlsRptRuaFromTxtRecords(
    const std::vector<std::string>& records);

// §4.4 report fields that do not come from the counters.
struct TlsRptReportInfo {
  std::string organization_name;
  std::string contact_info;
  std::string report_id;
  absl::Time start, end;  // date-range
};
// The report of one policy domain: every policy of `counters` (Extract()ed for one day and
// domain) with its summary and failure-details. RFC 3339 UTC date-times.
std::string BuildTlsRptReport(const TlsRptReportInfo& info, const TlsRptCounters& counters);

// §5.1 file name: submitter!policy-domain!begin!end!unique-id.json.gz (begin/end: UNIX seconds).
std::string TlsRptFileName(absl::string_view submitter, absl::string_view policy_domain,
                           absl::Time begin, absl::Time end, absl::string_view unique_id);

}  // namespace mxb
