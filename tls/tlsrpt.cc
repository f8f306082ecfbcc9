// TLS-RPT result types, counters, TXT parser and §4.4 report (tls/tlsrpt.h).
#include "tls/tlsrpt.h"

#include "tls/dane.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace mxb {
namespace {

using Json = nlohmann::json;

constexpr std::array<std::pair<TlsRptResult, const char*>, 11> kResults = {{
    {TlsRptResult::kStartTlsNotSupported, "starttls-not-supported"},
    {TlsRptResult::kCertificateHostMismatch, "certificate-host-mismatch"},
    {TlsRptResult::kCertificateExpired, "certificate-expired"},
    {TlsRptResult::kCertificateNotTrusted, "certificate-not-trusted"},
    {TlsRptResult::kValidationFailure, "validation-failure"},
    {TlsRptResult::kTlsaInvalid, "tlsa-invalid"},
    {TlsRptResult::kDnssecInvalid, "dnssec-invalid"},
    {TlsRptResult::kDaneRequired, "dane-required"},
    {TlsRptResult::kStsPolicyFetchError, "sts-policy-fetch-error"},
    {TlsRptResult::kStsPolicyInvalid, "sts-policy-invalid"},
    {TlsRptResult::kStsWebpkiInvalid, "sts-webpki-invalid"},
}};

std::optional<TlsRptPolicyType> PolicyTypeFromString(absl::string_view s) {
  for (TlsRptPolicyType t :
       {TlsRptPolicyType::kSts, TlsRptPolicyType::kTlsa, TlsRptPolicyType::kNoPolicyFound}) {
    if (s == ToString(t)) return t;
  }
  return std::nullopt;
}

// RFC 3339 / §4.4 "date-time" in UTC.
std::string Rfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

// §4.4 "policy" object. policy-string and mx-host are optional: left out when empty
// (no-policy-found has neither). mx-host is a list (RFC 8460 erratum 6241).
Json PolicyJson(const TlsRptPolicy& p) {
  Json j = {{"policy-type", ToString(p.type)}, {"policy-domain", p.domain}};
  if (!p.strings.empty()) j["policy-string"] = p.strings;
  if (!p.mx_host.empty()) j["mx-host"] = p.mx_host;
  return j;
}

std::optional<TlsRptPolicy> PolicyFromJson(const Json& j) {
  if (!j.is_object() || !j.contains("policy-type") || !j["policy-type"].is_string() ||
      !j.contains("policy-domain") || !j["policy-domain"].is_string()) {
    return std::nullopt;
  }
  std::optional<TlsRptPolicyType> t = PolicyTypeFromString(j["policy-type"].get<std::string>());
  if (!t) return std::nullopt;
  TlsRptPolicy p;
  p.type = *t;
  p.domain = j["policy-domain"].get<std::string>();
  for (const char* key : {"policy-string", "mx-host"}) {
    if (!j.contains(key)) continue;
    if (!j[key].is_array()) return std::nullopt;
    for (const Json& s : j[key]) {
      if (!s.is_string()) return std::nullopt;
      (key[0] == 'p' ? p.strings : p.mx_host).push_back(s.get<std::string>());
    }
  }
  return p;
}

// One failure-details entry (§4.4); receiving-ip and failure-reason-code are optional.
Json FailureJson(const TlsRptFailureKey& k, uint64_t n, const char* count_key) {
  Json j = {{"result-type", ToString(k.result)},
            {"sending-mta-ip", k.sending_ip},
            {"receiving-mx-hostname", k.receiving_mx},
            {count_key, n}};
  if (!k.receiving_ip.empty()) j["receiving-ip"] = k.receiving_ip;
  if (!k.reason_code.empty()) j["failure-reason-code"] = k.reason_code;
  return j;
}

std::string Str(const Json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace

const char* ToString(TlsRptResult r) {
  for (const auto& [v, s] : kResults) {
    if (v == r) return s;
  }
  return "validation-failure";
}

std::optional<TlsRptResult> TlsRptResultFromString(absl::string_view s) {
  for (const auto& [v, name] : kResults) {
    if (s == name) return v;
  }
  return std::nullopt;
}

const char* ToString(TlsRptPolicyType t) {
  switch (t) {
    case TlsRptPolicyType::kSts:
      return "sts";
    case TlsRptPolicyType::kTlsa:
      return "tlsa";
    case TlsRptPolicyType::kNoPolicyFound:
      return "no-policy-found";
  }
  return "no-policy-found";
}

std::optional<TlsRptResult> TlsRptResultForFailure(absl::string_view reason) {
  const std::string r = absl::AsciiStrToLower(reason);
  // The RFC's own names first (MTA-STS check failures carry them verbatim).
  for (const auto& [v, name] : kResults) {
    if (absl::StartsWith(r, name)) {
      if (v != TlsRptResult::kValidationFailure) return v;
      break;
    }
  }
  // DANE (RFC 7672) reasons may follow a generic label ("validation-failure: tlsa-mismatch: ").
  if (absl::StrContains(r, "tlsa-mismatch")) return TlsRptResult::kTlsaInvalid;
  if (absl::StrContains(r, "tlsa-lookup-failed")) return TlsRptResult::kDnssecInvalid;
  // RFC 8460 §4.3.2.1: tlsa-invalid is "a validation error in the TLSA record associated with a
  // DANE policy. None of the records in the RRset were found to be valid" — exactly an RRset
  // with no usable record (RFC 7672 §2.2). dane-required means no validated TLSA records were
  // present at all, which is not this case (we found some).
  if (absl::StrContains(r, "tlsa-unusable")) return TlsRptResult::kTlsaInvalid;
  if (absl::StartsWith(r, "starttls-not-offered") || absl::StartsWith(r, "starttls-failed")) {
    return TlsRptResult::kStartTlsNotSupported;
  }
  if (absl::StartsWith(r, "validation-failure")) {
    // §4.3.2.1 certificate-not-trusted: the chain does not end at a trusted root.
    for (const char* untrusted : {"issuer", "self signed", "self-signed", "no signer",
                                  "not trusted", "untrusted"}) {
      if (absl::StrContains(r, untrusted)) return TlsRptResult::kCertificateNotTrusted;
    }
    return TlsRptResult::kValidationFailure;
  }
  if (absl::StartsWith(r, "handshake-failed")) return TlsRptResult::kValidationFailure;
  return std::nullopt;
}

TlsRptConnInfo TlsRptInfoFor(absl::string_view domain, const StsPolicy* sts,
                             absl::string_view sts_failure, const TlsPolicy& applied,
                             absl::string_view mx_host) {
  TlsRptConnInfo info;
  info.policy.domain = absl::AsciiStrToLower(domain);
  if (applied.source == PolicySource::kDane) {
    // §4.4 policy-string for "tlsa": the TLSA records, in presentation form.
    info.policy.type = TlsRptPolicyType::kTlsa;
    info.policy.mx_host = {std::string(mx_host)};
    if (applied.dane != nullptr) {
      for (const DaneRecord& r : applied.dane->usable) {
        info.policy.strings.push_back(absl::StrCat(r.Params(), " ", absl::BytesToHexString(r.data)));
      }
    }
  } else if (sts != nullptr && sts->mode != StsMode::kNone) {
    info.policy.type = TlsRptPolicyType::kSts;
    info.policy.strings = sts->lines;
    info.policy.mx_host = sts->mx;
  } else if (std::optional<TlsRptResult> r = TlsRptResultForFailure(sts_failure);
             r && absl::StartsWith(sts_failure, "sts-")) {
    info.policy.type = TlsRptPolicyType::kSts;
    info.preset = r;
  }
  return info;
}

uint64_t TlsRptPolicyCounts::failure_total() const {
  uint64_t n = 0;
  for (const auto& [k, c] : failures) n += c;
  return n;
}

int64_t TlsRptDay(absl::Time t) {
  const int64_t s = absl::ToUnixSeconds(t);
  return s / 86400 - (s % 86400 < 0 ? 1 : 0);
}
absl::Time TlsRptDayStart(int64_t day) { return absl::FromUnixSeconds(day * 86400); }
std::string TlsRptDayString(int64_t day) {
  return absl::FormatTime("%Y-%m-%d", TlsRptDayStart(day), absl::UTCTimeZone());
}

void TlsRptCounters::Add(const TlsRptSession& s, absl::Time at) {
  TlsRptPolicyCounts& c = days_[TlsRptDay(at)][s.policy.domain][s.policy];
  if (s.success) {
    ++c.successes;
    return;
  }
  ++c.failures[TlsRptFailureKey{s.result, s.sending_ip, s.receiving_mx, s.receiving_ip,
                                s.reason_code}];
}

void TlsRptCounters::Merge(const TlsRptCounters& other, int sign) {
  auto apply = [sign](uint64_t& into, uint64_t n) {
    into = sign > 0 ? into + n : (into > n ? into - n : 0);
  };
  for (const auto& [day, domains] : other.days_) {
    for (const auto& [domain, policies] : domains) {
      for (const auto& [policy, counts] : policies) {
        if (sign < 0) {
          auto d = days_.find(day);
          if (d == days_.end()) continue;
          auto dm = d->second.find(domain);
          if (dm == d->second.end()) continue;
          auto p = dm->second.find(policy);
          if (p == dm->second.end()) continue;
          apply(p->second.successes, counts.successes);
          for (const auto& [k, n] : counts.failures) {
            auto f = p->second.failures.find(k);
            if (f == p->second.failures.end()) continue;
            apply(f->second, n);
            if (f->second == 0) p->second.failures.erase(f);
          }
          if (p->second.successes == 0 && p->second.failures.empty()) dm->second.erase(p);
          if (dm->second.empty()) d->second.erase(dm);
          if (d->second.empty()) days_.erase(d);
          continue;
        }
        TlsRptPolicyCounts& into = days_[day][domain][policy];
        apply(into.successes, counts.successes);
        for (const auto& [k, n] : counts.failures) apply(into.failures[k], n);
      }
    }
  }
}

TlsRptCounters TlsRptCounters::Extract(int64_t day, absl::string_view domain) const {
  TlsRptCounters out;
  auto d = days_.find(day);
  if (d == days_.end()) return out;
  auto dm = d->second.find(std::string(domain));
  if (dm == d->second.end()) return out;
  out.days_[day][dm->first] = dm->second;
  return out;
}

std::string TlsRptCounters::ToJson() const {
  Json days = Json::object();
  for (const auto& [day, domains] : days_) {
    Json dj = Json::object();
    for (const auto& [domain, policies] : domains) {
      Json list = Json::array();
      for (const auto& [policy, counts] : policies) {
        Json failures = Json::array();
        for (const auto& [k, n] : counts.failures) failures.push_back(FailureJson(k, n, "count"));
        list.push_back({{"policy", PolicyJson(policy)},
                        {"successes", counts.successes},
                        {"failures", std::move(failures)}});
      }
      dj[domain] = std::move(list);
    }
    days[TlsRptDayString(day)] = std::move(dj);
  }
  return days.dump();
}

absl::StatusOr<TlsRptCounters> TlsRptCounters::FromJson(absl::string_view json) {
  const Json days = Json::parse(json.begin(), json.end(), nullptr, false);
  if (!days.is_object()) return absl::InvalidArgumentError("TLS-RPT counters: not a JSON object");
  TlsRptCounters out;
  for (const auto& [day_text, domains] : days.items()) {
    absl::Time t;
    std::string err;
    if (!absl::ParseTime("%Y-%m-%d", day_text, absl::UTCTimeZone(), &t, &err) ||
        !domains.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat("TLS-RPT counters: bad day ", day_text));
    }
    const int64_t day = TlsRptDay(t);
    for (const auto& [domain, list] : domains.items()) {
      if (!list.is_array()) return absl::InvalidArgumentError("TLS-RPT counters: bad domain entry");
      for (const Json& e : list) {
        std::optional<TlsRptPolicy> policy =
            e.is_object() && e.contains("policy") ? PolicyFromJson(e["policy"]) : std::nullopt;
        if (!policy || !e.contains("successes") || !e["successes"].is_number_unsigned() ||
            !e.contains("failures") || !e["failures"].is_array()) {
          return absl::InvalidArgumentError(
              absl::StrCat("TLS-RPT counters: bad policy entry for ", domain));
        }
        TlsRptPolicyCounts& c = out.days_[day][domain][*policy];
        c.successes += e["successes"].get<uint64_t>();
        for (const Json& f : e["failures"]) {
          std::optional<TlsRptResult> r = TlsRptResultFromString(Str(f, "result-type"));
          if (!r || !f.contains("count") || !f["count"].is_number_unsigned()) {
            return absl::InvalidArgumentError(
                absl::StrCat("TLS-RPT counters: bad failure entry for ", domain));
          }
          c.failures[TlsRptFailureKey{*r, Str(f, "sending-mta-ip"),
                                      Str(f, "receiving-mx-hostname"), Str(f, "receiving-ip"),
                                      Str(f, "failure-reason-code")}] += f["count"].get<uint64_t>();
        }
      }
    }
  }
  return out;
}

std::string TlsRptSnapshotJson(const TlsRptState& s) {
  return absl::StrCat("{\"seq\":", s.seq, ",\"counters\":", s.counters.ToJson(), "}");
}

std::string TlsRptDeltaJson(uint64_t seq, const TlsRptCounters& delta, int sign) {
  return absl::StrCat("{\"seq\":", seq, ",\"", sign > 0 ? "add" : "sub", "\":", delta.ToJson(),
                      "}");
}

absl::StatusOr<TlsRptState> LoadTlsRptState(absl::string_view snapshot,
                                            const std::vector<std::string>& deltas) {
  TlsRptState state;
  if (!snapshot.empty()) {
    const Json j = Json::parse(snapshot.begin(), snapshot.end(), nullptr, false);
    if (!j.is_object() || !j.contains("seq") || !j["seq"].is_number_unsigned() ||
        !j.contains("counters")) {
      return absl::InvalidArgumentError("TLS-RPT snapshot: not {\"seq\": N, \"counters\": {...}}");
    }
    absl::StatusOr<TlsRptCounters> c = TlsRptCounters::FromJson(j["counters"].dump());
    if (!c.ok()) return c.status();
    state.seq = j["seq"].get<uint64_t>();
    state.counters = *std::move(c);
  }
  const uint64_t covered = state.seq;
  for (const std::string& d : deltas) {
    const Json j = Json::parse(d, nullptr, false);
    if (!j.is_object() || !j.contains("seq") || !j["seq"].is_number_unsigned()) {
      ++state.skipped;
      continue;
    }
    const uint64_t seq = j["seq"].get<uint64_t>();
    const bool add = j.contains("add");
    if (!add && !j.contains("sub")) {
      ++state.skipped;
      continue;
    }
    if (seq <= covered) continue;  // already in the snapshot
    absl::StatusOr<TlsRptCounters> c = TlsRptCounters::FromJson(j[add ? "add" : "sub"].dump());
    if (!c.ok()) {
      ++state.skipped;
      continue;
    }
    state.counters.Merge(*c, add ? +1 : -1);
    state.seq = std::max(state.seq, seq);
  }
  return state;
}

std::optional<std::vector<std::string>> TlsRptRuaFromTxtRecords(
    const std::vector<std::string>& records) {
  std::optional<std::vector<std::string>> found;
  int matching = 0;
  for (const std::string& rec : records) {
    // §3: "v=TLSRPTv1" must be the first field; other records are not ours.
    absl::string_view r = absl::StripLeadingAsciiWhitespace(rec);
    if (!absl::StartsWith(r, "v=TLSRPTv1")) continue;
    ++matching;
    std::vector<std::string> rua;
    bool first = true, version_ok = false;
    for (absl::string_view field : absl::StrSplit(r, ';')) {
      field = absl::StripAsciiWhitespace(field);
      if (first) {
        version_ok = field == "v=TLSRPTv1";
        first = false;
        continue;
      }
      if (!absl::ConsumePrefix(&field, "rua=")) continue;  // extensions are ignored
      for (absl::string_view uri : absl::StrSplit(field, ',')) {
        uri = absl::StripAsciiWhitespace(uri);
        if (absl::StartsWithIgnoreCase(uri, "mailto:") ||
            absl::StartsWithIgnoreCase(uri, "https:")) {
          rua.emplace_back(uri);
        }
      }
    }
    if (version_ok && !rua.empty()) found = std::move(rua);
  }
  // §3: if the number of records starting with v=TLSRPTv1 is not one, there is no policy.
  if (matching != 1) return std::nullopt;
  return found;
}

std::string BuildTlsRptReport(const TlsRptReportInfo& info, const TlsRptCounters& counters) {
  Json policies = Json::array();
  for (const auto& [day, domains] : counters.days()) {
    for (const auto& [domain, list] : domains) {
      for (const auto& [policy, counts] : list) {
        Json entry = {{"policy", PolicyJson(policy)},
                      {"summary",
                       {{"total-successful-session-count", counts.successes},
                        {"total-failure-session-count", counts.failure_total()}}}};
        Json details = Json::array();
        for (const auto& [k, n] : counts.failures) {
          details.push_back(FailureJson(k, n, "failed-session-count"));
        }
        entry["failure-details"] = std::move(details);
        policies.push_back(std::move(entry));
      }
    }
  }
  Json report = {{"organization-name", info.organization_name},
                 {"date-range",
                  {{"start-datetime", Rfc3339(info.start)}, {"end-datetime", Rfc3339(info.end)}}},
                 {"contact-info", info.contact_info},
                 {"report-id", info.report_id},
                 {"policies", std::move(policies)}};
  return report.dump();
}

std::string TlsRptFileName(absl::string_view submitter, absl::string_view policy_domain,
                           absl::Time begin, absl::Time end, absl::string_view unique_id) {
  return absl::StrCat(submitter, "!", policy_domain, "!", absl::ToUnixSeconds(begin), "!",
                      absl::ToUnixSeconds(end), unique_id.empty() ? "" : "!", unique_id,
                      ".json.gz");
}

}  // namespace mxb
