// TLS-RPT (RFC 8460) pure pieces: result mapping, counters and their durable JSON, the §3 TXT
// record, the §4.4 report and the §5.1 file name.
#include "tls/tlsrpt.h"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tls/dane.h"

namespace mxb {
namespace {

using Json = nlohmann::json;

TEST(TlsRptResult, EngineFailureLabelsMapToRfcResultTypes) {
  struct Case {
    const char* reason;
    std::optional<TlsRptResult> want;
  };
  const Case cases[] = {
      {"starttls-not-offered", TlsRptResult::kStartTlsNotSupported},
      {"starttls-failed: 454 4.7.0 TLS not available", TlsRptResult::kStartTlsNotSupported},
      {"certificate-host-mismatch: certificate names [a] do not match \"b\"",
       TlsRptResult::kCertificateHostMismatch},
      {"certificate-expired: certificate at depth 0 is outside its validity period",
       TlsRptResult::kCertificateExpired},
      {"validation-failure: certificate at depth 0: X509_V_ERR 20 (unable to get local issuer "
       "certificate)",
       TlsRptResult::kCertificateNotTrusted},
      {"validation-failure: bad signature", TlsRptResult::kValidationFailure},
      {"handshake-failed: timed out", TlsRptResult::kValidationFailure},
      {"validation-failure: tlsa-mismatch: no record matched", TlsRptResult::kTlsaInvalid},
      {"tlsa-lookup-failed: SERVFAIL", TlsRptResult::kDnssecInvalid},
      // §4.3.2.1: "None of the records in the RRset were found to be valid" (RFC 7672 §2.2).
      {"tlsa-unusable", TlsRptResult::kTlsaInvalid},
      {"sts-policy-fetch-error: HTTP status 302", TlsRptResult::kStsPolicyFetchError},
      {"sts-webpki-invalid: SSL certificate problem", TlsRptResult::kStsWebpkiInvalid},
      {"sts-policy-invalid: line 2: mode", TlsRptResult::kStsPolicyInvalid},
      // Not TLS negotiation failures: TLS-RPT does not count them.
      {"connect to mx [127.0.0.1]:25: Connection refused", std::nullopt},
      {"greeting: 421 4.3.2 busy", std::nullopt},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(TlsRptResultForFailure(c.reason), c.want) << c.reason;
  }
  for (const char* name : {"starttls-not-supported", "dane-required", "sts-webpki-invalid"}) {
    ASSERT_TRUE(TlsRptResultFromString(name).has_value()) << name;
    EXPECT_STREQ(ToString(*TlsRptResultFromString(name)), name);
  }
}

TlsRptSession Session(const std::string& domain, bool ok, TlsRptResult r = {}) {
  TlsRptSession s;
  s.policy.type = TlsRptPolicyType::kSts;
  s.policy.domain = domain;
  s.policy.strings = {"version: STSv1", "mode: enforce", "mx: mx.d.example", "max_age: 86400"};
  s.policy.mx_host = {"mx.d.example"};
  s.success = ok;
  s.result = r;
  s.sending_ip = "192.0.2.1";
  s.receiving_mx = "mx.d.example";
  s.receiving_ip = "192.0.2.25";
  return s;
}

const absl::Time kDay1 = absl::FromUnixSeconds(1796169600);  // 2026-12-02T00:00:00Z
const absl::Time kNoon = kDay1 + absl::Hours(12);

TEST(TlsRptCounters, CountPerDayDomainPolicyAndRoundTripJson) {
  TlsRptCounters c;
  c.Add(Session("d.example", true), kNoon);
  c.Add(Session("d.example", true), kNoon);
  c.Add(Session("d.example", false, TlsRptResult::kStartTlsNotSupported), kNoon);
  c.Add(Session("d.example", false, TlsRptResult::kStartTlsNotSupported), kNoon);
  c.Add(Session("d.example", false, TlsRptResult::kCertificateExpired), kNoon);
  c.Add(Session("d.example", true), kNoon + absl::Hours(13));  // the next UTC day
  c.Add(Session("e.example", true), kNoon);
  EXPECT_EQ(TlsRptDayString(TlsRptDay(kNoon)), "2026-12-02");
  ASSERT_EQ(c.days().size(), 2u);
  const TlsRptCounters one = c.Extract(TlsRptDay(kNoon), "d.example");
  ASSERT_EQ(one.days().size(), 1u);
  const auto& policies = one.days().begin()->second.at("d.example");
  ASSERT_EQ(policies.size(), 1u);
  EXPECT_EQ(policies.begin()->second.successes, 2u);
  EXPECT_EQ(policies.begin()->second.failure_total(), 3u);
  EXPECT_EQ(policies.begin()->second.failures.size(), 2u);

  absl::StatusOr<TlsRptCounters> back = TlsRptCounters::FromJson(c.ToJson());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->ToJson(), c.ToJson());

  // Taking a report's counts away leaves what arrived since, and nothing empty behind.
  TlsRptCounters later = c;
  later.Add(Session("d.example", true), kNoon + absl::Minutes(1));
  later.Merge(one, -1);
  const auto& left = later.days().at(TlsRptDay(kNoon)).at("d.example");
  EXPECT_EQ(left.begin()->second.successes, 1u);
  EXPECT_TRUE(left.begin()->second.failures.empty());
  later.Merge(later.Extract(TlsRptDay(kNoon), "d.example"), -1);
  EXPECT_EQ(later.days().at(TlsRptDay(kNoon)).count("d.example"), 0u);
}

TEST(TlsRptCounters, BadJsonIsAnErrorNamingWhat) {
  EXPECT_FALSE(TlsRptCounters::FromJson("[]").ok());
  EXPECT_FALSE(TlsRptCounters::FromJson("{\"not-a-day\":{}}").ok());
  absl::StatusOr<TlsRptCounters> bad = TlsRptCounters::FromJson(
      R"({"2026-12-02":{"d.example":[{"policy":{"policy-type":"sts","policy-domain":"d"},)"
      R"("successes":1,"failures":[{"result-type":"no-such-type","count":1}]}]}})");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("d.example"), std::string::npos) << bad.status();
}

TEST(TlsRptState, SnapshotThenNewerDeltasOnly) {
  TlsRptCounters a, b;
  a.Add(Session("d.example", true), kNoon);
  b.Add(Session("d.example", false, TlsRptResult::kValidationFailure), kNoon);
  TlsRptState snap;
  snap.seq = 2;
  snap.counters = a;
  std::vector<std::string> deltas = {
      TlsRptDeltaJson(1, a, +1),  // already in the snapshot
      TlsRptDeltaJson(2, a, +1),  // already in the snapshot
      TlsRptDeltaJson(3, b, +1),  "{torn",
      TlsRptDeltaJson(4, a, -1),  // a report took a's count
  };
  absl::StatusOr<TlsRptState> s = LoadTlsRptState(TlsRptSnapshotJson(snap), deltas);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->seq, 4u);
  EXPECT_EQ(s->skipped, 1u);
  const auto& p = s->counters.days().at(TlsRptDay(kNoon)).at("d.example").begin()->second;
  EXPECT_EQ(p.successes, 0u);
  EXPECT_EQ(p.failure_total(), 1u);
  absl::StatusOr<TlsRptState> none = LoadTlsRptState("", {});
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->counters.empty());
  EXPECT_FALSE(LoadTlsRptState("{\"seq\":\"x\"}", {}).ok());
}

TEST(TlsRptTxt, Section3Records) {
  struct Case {
    std::vector<std::string> records;
    std::optional<std::vector<std::string>> want;
  };
  const Case cases[] = {
      {{"v=TLSRPTv1; rua=mailto:tlsrpt@d.example"},
       std::vector<std::string>{"mailto:tlsrpt@d.example"}},
      {{"v=TLSRPTv1;rua=mailto:a@d.example,https://r.d.example/v1"},
       std::vector<std::string>{"mailto:a@d.example", "https://r.d.example/v1"}},
      {{"v=spf1 -all", "v=TLSRPTv1; rua=https://r.d.example/x; ext=1"},
       std::vector<std::string>{"https://r.d.example/x"}},
      // §3: more than one TLSRPT record -> no policy.
      {{"v=TLSRPTv1; rua=mailto:a@d.example", "v=TLSRPTv1; rua=mailto:b@d.example"},
       std::nullopt},
      {{"v=TLSRPTv2; rua=mailto:a@d.example"}, std::nullopt},
      {{"v=TLSRPTv1; rua=ftp://x"}, std::nullopt},
      {{}, std::nullopt},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(TlsRptRuaFromTxtRecords(c.records), c.want)
        << (c.records.empty() ? "" : c.records.back());
  }
}

// RFC 8460 §4.4: every required field, with the counts of the counters.
TEST(TlsRptReport, Section44FieldsAndCounts) {
  TlsRptCounters c;
  for (int i = 0; i < 3; ++i) c.Add(Session("d.example", true), kNoon);
  c.Add(Session("d.example", false, TlsRptResult::kStartTlsNotSupported), kNoon);
  TlsRptSession none;
  none.policy.domain = "d.example";
  none.success = true;
  c.Add(none, kNoon);
  TlsRptReportInfo info{"ESP Example", "mailto:tlsrpt@esp.example", "r-1", kDay1,
                        kDay1 + absl::Hours(24) - absl::Seconds(1)};
  const Json r = Json::parse(BuildTlsRptReport(info, c.Extract(TlsRptDay(kNoon), "d.example")));
  EXPECT_EQ(r["organization-name"], "ESP Example");
  EXPECT_EQ(r["contact-info"], "mailto:tlsrpt@esp.example");
  EXPECT_EQ(r["report-id"], "r-1");
  EXPECT_EQ(r["date-range"]["start-datetime"], "2026-12-02T00:00:00Z");
  EXPECT_EQ(r["date-range"]["end-datetime"], "2026-12-02T23:59:59Z");
  ASSERT_EQ(r["policies"].size(), 2u);
  const Json* sts = nullptr;
  const Json* np = nullptr;
  for (const Json& p : r["policies"]) {
    (p["policy"]["policy-type"] == "sts" ? sts : np) = &p;
  }
  ASSERT_NE(sts, nullptr);
  ASSERT_NE(np, nullptr);
  EXPECT_EQ((*sts)["policy"]["policy-domain"], "d.example");
  EXPECT_EQ((*sts)["policy"]["policy-string"].size(), 4u);
  EXPECT_EQ((*sts)["policy"]["mx-host"][0], "mx.d.example");
  EXPECT_EQ((*sts)["summary"]["total-successful-session-count"], 3);
  EXPECT_EQ((*sts)["summary"]["total-failure-session-count"], 1);
  ASSERT_EQ((*sts)["failure-details"].size(), 1u);
  const Json& f = (*sts)["failure-details"][0];
  EXPECT_EQ(f["result-type"], "starttls-not-supported");
  EXPECT_EQ(f["sending-mta-ip"], "192.0.2.1");
  EXPECT_EQ(f["receiving-mx-hostname"], "mx.d.example");
  EXPECT_EQ(f["receiving-ip"], "192.0.2.25");
  EXPECT_EQ(f["failed-session-count"], 1);
  EXPECT_EQ((*np)["policy"]["policy-type"], "no-policy-found");
  EXPECT_FALSE((*np)["policy"].contains("policy-string"));
  EXPECT_EQ((*np)["summary"]["total-successful-session-count"], 1);
  EXPECT_TRUE((*np)["failure-details"].empty());
}

// Which policy a session is reported under: DANE wins (tlsa with its records), then the
// domain's MTA-STS policy, then a failed MTA-STS check (preset failure), else no-policy-found.
TEST(TlsRptInfo, PolicyTypeAndStringsFromWhatWasApplied) {
  StsPolicy sts;
  sts.mode = StsMode::kEnforce;
  sts.mx = {"*.d.example"};
  sts.lines = {"version: STSv1", "mode: enforce", "mx: *.d.example", "max_age: 60"};
  TlsPolicy opportunistic;
  TlsPolicy dane;
  dane.source = PolicySource::kDane;
  dane.dane = DaneAuthority::Make({DaneRecord{3, 1, 1, std::string(32, '\xab')}}, {"mx.d.example"});
  TlsRptConnInfo i = TlsRptInfoFor("D.example", &sts, "", dane, "mx.d.example");
  EXPECT_EQ(i.policy.type, TlsRptPolicyType::kTlsa);
  EXPECT_EQ(i.policy.domain, "d.example");
  EXPECT_EQ(i.policy.strings, std::vector<std::string>{absl::StrCat("3 1 1 ", absl::BytesToHexString(std::string(32, '\xab')))})
      << "the usable records, as in a zone file (hex: 'ab' x 32)";
  EXPECT_EQ(i.policy.mx_host, std::vector<std::string>{"mx.d.example"});
  i = TlsRptInfoFor("d.example", &sts, "", opportunistic, "mx.d.example");
  EXPECT_EQ(i.policy.type, TlsRptPolicyType::kSts);
  EXPECT_EQ(i.policy.strings, sts.lines);
  EXPECT_EQ(i.policy.mx_host, sts.mx);
  EXPECT_FALSE(i.preset.has_value());
  i = TlsRptInfoFor("d.example", nullptr, "sts-webpki-invalid: bad certificate", opportunistic,
                    "mx.d.example");
  EXPECT_EQ(i.policy.type, TlsRptPolicyType::kSts);
  EXPECT_EQ(i.preset, TlsRptResult::kStsWebpkiInvalid);
  i = TlsRptInfoFor("d.example", nullptr, "", opportunistic, "mx.d.example");
  EXPECT_EQ(i.policy.type, TlsRptPolicyType::kNoPolicyFound);
  EXPECT_FALSE(i.preset.has_value());
}

TEST(TlsRptReport, FileNameSection51) {
  EXPECT_EQ(TlsRptFileName("esp.example", "d.example", kDay1, kDay1 + absl::Hours(24), "r-1"),
            "esp.example!d.example!1796169600!1796256000!r-1.json.gz");
}

}  // namespace
}  // namespace mxb
