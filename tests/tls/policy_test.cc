#include "tls/policy.h"
#include "tls/hop_policy.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/time/time.h"

namespace mxb {
namespace {

TEST(PolicyToString, EveryEnum) {
  EXPECT_STREQ(ToString(PolicySource::kOpportunistic), "opportunistic");
  EXPECT_STREQ(ToString(PolicySource::kPrefix), "prefix");
  EXPECT_STREQ(ToString(PolicySource::kConfig), "config");
  EXPECT_STREQ(ToString(PolicySource::kDane), "dane");
  EXPECT_STREQ(ToString(PolicySource::kMtaSts), "mta-sts");
  EXPECT_STREQ(ToString(TlsRequirement::kDisabled), "disabled");
  EXPECT_STREQ(ToString(TlsRequirement::kOpportunistic), "opportunistic");
  EXPECT_STREQ(ToString(TlsRequirement::kRequired), "required");
  EXPECT_STREQ(ToString(PrefixSignals::kEnforce), "enforce");
  EXPECT_STREQ(ToString(PrefixSignals::kLogOnly), "log-only");
  EXPECT_STREQ(ToString(PrefixSignals::kOff), "off");
  EXPECT_STREQ(ToString(TlsFailure::kNone), "none");
  EXPECT_STREQ(ToString(TlsFailure::kStartTlsNotOffered), "starttls-not-offered");
  EXPECT_STREQ(ToString(TlsFailure::kStartTlsRefused), "starttls-failed");
  EXPECT_STREQ(ToString(TlsFailure::kHandshakeFailed), "handshake-failed");
  EXPECT_STREQ(ToString(TlsFailure::kCertificateExpired), "certificate-expired");
  EXPECT_STREQ(ToString(TlsFailure::kCertificateHostMismatch), "certificate-host-mismatch");
  EXPECT_STREQ(ToString(TlsFailure::kValidationFailure), "validation-failure");
}

TEST(PolicyPrefix, FirstLabelOnlyCaseInsensitive) {
  struct Case {
    const char* host;
    bool starttls;
    bool smtps;
  };
  const Case cases[] = {
      {"starttls-mx.example.net", true, false},
      {"STARTTLS-MX.EXAMPLE.NET", true, false},
      {"StartTls-mx1.example.net.", true, false},
      {"smtps-mx.example.net", false, true},
      {"SMTPS-mx.example.net", false, true},
      {"smtps-x", false, true},                      // single label
      {"smtps.example.net", false, false},           // no dash: no signal
      {"smtpsmx.example.net", false, false},
      {"starttls.example.net", false, false},
      {"mx.starttls-example.net", false, false},     // not the first label
      {"mx.smtps-relay.example.net", false, false},
      {"mx-starttls-1.example.net", false, false},   // not at the start of the label
      {"xstarttls-mx.example.net", false, false},
      {".starttls-mx.example.net", false, false},    // empty first label
      {"", false, false},
      {"starttls", false, false},
      {"mx1.example.net", false, false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.host);
    EXPECT_EQ(HasStartTlsPrefix(c.host), c.starttls);
    EXPECT_EQ(HasSmtpsPrefix(c.host), c.smtps);
  }
}

DomainTlsConfig Rule(TlsRequirement r, bool verify) {
  DomainTlsConfig d;
  d.has_rule = true;
  d.requirement = r;
  d.verify = verify;
  return d;
}

GlobalTlsConfig Global(PrefixSignals p) {
  GlobalTlsConfig g;
  g.prefix_signals = p;
  return g;
}

struct PolicyCase {
  const char* host;
  PrefixSignals signals;
  DomainTlsConfig domain;
  TlsRequirement requirement;
  bool verify;
  bool implicit_tls_first;
  PolicySource source;
  bool log_only;
  const char* name;
};

TEST(DerivePolicy, Table) {
  using R = TlsRequirement;
  using S = PolicySource;
  const DomainTlsConfig none;
  const DomainTlsConfig req_verify = Rule(R::kRequired, true);
  const DomainTlsConfig req_noverify = Rule(R::kRequired, false);
  const DomainTlsConfig opp = Rule(R::kOpportunistic, false);
  const DomainTlsConfig opp_verify = Rule(R::kOpportunistic, true);  // verify dropped
  const DomainTlsConfig disabled = Rule(R::kDisabled, false);
  constexpr PrefixSignals kE = PrefixSignals::kEnforce;
  constexpr PrefixSignals kL = PrefixSignals::kLogOnly;
  constexpr PrefixSignals kO = PrefixSignals::kOff;
  const PolicyCase cases[] = {
      // enforce: prefixes win over every domain rule.
      {"starttls-mx.d.test", kE, none, R::kRequired, true, false, S::kPrefix, false,
       "starttls-prefix"},
      {"STARTTLS-MX.D.TEST", kE, none, R::kRequired, true, false, S::kPrefix, false,
       "starttls-prefix"},
      {"starttls-mx.d.test", kE, disabled, R::kRequired, true, false, S::kPrefix, false,
       "starttls-prefix"},
      {"starttls-mx.d.test", kE, req_noverify, R::kRequired, true, false, S::kPrefix, false,
       "starttls-prefix"},
      {"starttls-mx.d.test", kE, opp, R::kRequired, true, false, S::kPrefix, false,
       "starttls-prefix"},
      {"smtps-mx.d.test", kE, none, R::kRequired, true, true, S::kPrefix, false, "smtps-prefix"},
      {"Smtps-Mx.d.test", kE, none, R::kRequired, true, true, S::kPrefix, false, "smtps-prefix"},
      {"smtps-mx.d.test", kE, disabled, R::kRequired, true, true, S::kPrefix, false,
       "smtps-prefix"},
      {"smtps-mx.d.test", kE, req_verify, R::kRequired, true, true, S::kPrefix, false,
       "smtps-prefix"},
      // log-only: same derivation, requirement stays opportunistic; a `required` rule wins.
      {"starttls-mx.d.test", kL, none, R::kOpportunistic, true, false, S::kPrefix, true,
       "starttls-prefix(log-only)"},
      {"smtps-mx.d.test", kL, none, R::kOpportunistic, true, true, S::kPrefix, true,
       "smtps-prefix(log-only)"},
      {"starttls-mx.d.test", kL, disabled, R::kOpportunistic, true, false, S::kPrefix, true,
       "starttls-prefix(log-only)"},
      {"starttls-mx.d.test", kL, opp, R::kOpportunistic, true, false, S::kPrefix, true,
       "starttls-prefix(log-only)"},
      {"starttls-mx.d.test", kL, req_verify, R::kRequired, true, false, S::kConfig, false,
       "config-required"},
      {"smtps-mx.d.test", kL, req_noverify, R::kRequired, false, false, S::kConfig, false,
       "config-required"},
      // off: prefixes are ordinary names.
      {"starttls-mx.d.test", kO, none, R::kOpportunistic, false, false, S::kOpportunistic, false,
       "opportunistic"},
      {"smtps-mx.d.test", kO, none, R::kOpportunistic, false, false, S::kOpportunistic, false,
       "opportunistic"},
      {"smtps-mx.d.test", kO, req_verify, R::kRequired, true, false, S::kConfig, false,
       "config-required"},
      {"starttls-mx.d.test", kO, disabled, R::kDisabled, false, false, S::kConfig, false,
       "config-disabled"},
      // No prefix: the domain rule, else opportunistic — in every mode.
      {"mx.d.test", kE, none, R::kOpportunistic, false, false, S::kOpportunistic, false,
       "opportunistic"},
      {"mx.d.test", kL, none, R::kOpportunistic, false, false, S::kOpportunistic, false,
       "opportunistic"},
      {"mx.d.test", kO, none, R::kOpportunistic, false, false, S::kOpportunistic, false,
       "opportunistic"},
      {"mx.d.test", kE, req_verify, R::kRequired, true, false, S::kConfig, false,
       "config-required"},
      {"mx.d.test", kE, req_noverify, R::kRequired, false, false, S::kConfig, false,
       "config-required"},
      {"mx.d.test", kL, opp, R::kOpportunistic, false, false, S::kConfig, false,
       "config-opportunistic"},
      {"mx.d.test", kE, opp_verify, R::kOpportunistic, false, false, S::kConfig, false,
       "config-opportunistic"},
      {"mx.d.test", kO, disabled, R::kDisabled, false, false, S::kConfig, false,
       "config-disabled"},
      // Look-alikes carry no signal.
      {"mx.starttls-d.test", kE, none, R::kOpportunistic, false, false, S::kOpportunistic, false,
       "opportunistic"},
      {"smtps.d.test", kE, none, R::kOpportunistic, false, false, S::kOpportunistic, false,
       "opportunistic"},
      {"smtps.d.test", kE, disabled, R::kDisabled, false, false, S::kConfig, false,
       "config-disabled"},
      {"mx-smtps-1.d.test", kE, none, R::kOpportunistic, false, false, S::kOpportunistic, false,
       "opportunistic"},
  };
  for (const PolicyCase& c : cases) {
    SCOPED_TRACE(::testing::Message() << c.host << " signals=" << ToString(c.signals)
                                      << " rule=" << c.domain.has_rule << "/"
                                      << ToString(c.domain.requirement) << "/" << c.domain.verify);
    const TlsPolicy p = DerivePolicy(c.host, c.domain, Global(c.signals));
    EXPECT_EQ(ToString(p.requirement), std::string(ToString(c.requirement)));
    EXPECT_EQ(p.verify, c.verify);
    EXPECT_EQ(p.implicit_tls_first, c.implicit_tls_first);
    EXPECT_EQ(ToString(p.source), std::string(ToString(c.source)));
    EXPECT_EQ(p.log_only, c.log_only);
    EXPECT_EQ(p.name, c.name);
  }
}

TEST(PolicyCache, GetCreatesOnceWithLowerCasedKey) {
  PolicyCache cache(4);
  const absl::Time t0 = absl::FromUnixSeconds(1700000000);
  bool created = false;
  PolicyEntry& e = cache.Get("MX.Example.NET", t0, &created);
  EXPECT_TRUE(created);
  EXPECT_EQ(e.mx_host, "mx.example.net");
  EXPECT_EQ(e.last_used, t0);
  e.policy = DerivePolicy("mx.example.net", DomainTlsConfig(), GlobalTlsConfig());
  e.connections = 3;

  PolicyEntry& again = cache.Get("mx.example.net", t0 + absl::Seconds(5), &created);
  EXPECT_FALSE(created);
  EXPECT_EQ(&again, &e);
  EXPECT_EQ(again.connections, 3u);
  EXPECT_EQ(again.last_used, t0 + absl::Seconds(5));
  EXPECT_EQ(cache.Find("mX.eXample.net"), &e);
  EXPECT_EQ(cache.Find("other.example.net"), nullptr);
  EXPECT_EQ(cache.size(), 1u);
  cache.Get("mx.example.net", t0);  // created may be null
  EXPECT_EQ(cache.size(), 1u);
}

TEST(PolicyCache, EvictsLeastRecentlyUsed) {
  PolicyCache cache(3);
  const absl::Time t = absl::FromUnixSeconds(1700000000);
  cache.Get("a.test", t).connections = 1;
  cache.Get("b.test", t).connections = 2;
  cache.Get("c.test", t).connections = 3;
  // Touch a: b is now the least recently used.
  cache.Get("A.test", t);
  // Find() does not refresh.
  ASSERT_NE(cache.Find("b.test"), nullptr);
  bool created = false;
  cache.Get("d.test", t, &created);
  EXPECT_TRUE(created);
  EXPECT_EQ(cache.size(), 3u);
  EXPECT_EQ(cache.Find("b.test"), nullptr);
  ASSERT_NE(cache.Find("a.test"), nullptr);
  EXPECT_EQ(cache.Find("a.test")->connections, 1u);
  ASSERT_NE(cache.Find("c.test"), nullptr);
  ASSERT_NE(cache.Find("d.test"), nullptr);
  // Next victim: c.
  cache.Get("e.test", t);
  EXPECT_EQ(cache.Find("c.test"), nullptr);
  EXPECT_EQ(cache.size(), 3u);
  // A re-created entry starts empty.
  PolicyEntry& b = cache.Get("b.test", t, &created);
  EXPECT_TRUE(created);
  EXPECT_EQ(b.connections, 0u);
}

TEST(PolicyCache, ZeroCapacityHoldsOne) {
  PolicyCache cache(0);
  const absl::Time t = absl::FromUnixSeconds(1700000000);
  cache.Get("a.test", t);
  cache.Get("b.test", t);
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_NE(cache.Find("b.test"), nullptr);
}

TEST(PolicyCache, MoveKeepsEntriesReachable) {
  const absl::Time t = absl::FromUnixSeconds(1700000000);
  PolicyCache cache(10);
  cache.Get("a.test", t).connections = 7;
  cache = PolicyCache(2);  // the worker resizes its cache this way
  EXPECT_EQ(cache.size(), 0u);
  cache.Get("x.test", t).connections = 9;
  PolicyCache moved(std::move(cache));
  ASSERT_NE(moved.Find("x.test"), nullptr);
  EXPECT_EQ(moved.Find("x.test")->connections, 9u);
  moved.Get("y.test", t);
  moved.Get("z.test", t);  // evicts x through the moved iterators
  EXPECT_EQ(moved.Find("x.test"), nullptr);
  EXPECT_EQ(moved.size(), 2u);
}

TEST(PolicyCache, DumpJsonOneObjectPerLineMostRecentFirst) {
  const absl::Time t = absl::FromUnixSeconds(1700000000);
  PolicyCache cache(10);
  EXPECT_EQ(cache.DumpJson(t), "");
  PolicyEntry& a = cache.Get("smtps-mx.example.net", t);
  a.policy = DerivePolicy(a.mx_host, DomainTlsConfig(), GlobalTlsConfig());
  a.implicit_tls_failed_until = t + absl::Minutes(30);
  a.ehlo_keywords = "PIPELINING \"8BITMIME\"\\ SIZE";  // network text: must be escaped
  a.recent_failures = 2;
  a.last_failure = TlsFailure::kCertificateExpired;
  a.connections = 5;
  a.resumed = 4;
  PolicyEntry& b = cache.Get("mx.example.org", t + absl::Seconds(1));
  b.policy = DerivePolicy(b.mx_host, DomainTlsConfig(), GlobalTlsConfig());

  const std::string dump = cache.DumpJson(t + absl::Seconds(60));
  std::vector<std::string> lines = absl::StrSplit(dump, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u) << dump;
  EXPECT_EQ(dump.back(), '\n');
  EXPECT_EQ(lines[0],
            "{\"mx\":\"mx.example.org\",\"policy\":\"opportunistic\",\"source\":\"opportunistic\","
            "\"requirement\":\"opportunistic\",\"verify\":false,\"implicit_tls_first\":false,"
            "\"log_only\":false,\"implicit_tls_failed\":false,\"implicit_tls_retry_in_s\":0,"
            "\"has_session\":false,\"ehlo\":\"\",\"recent_failures\":0,\"last_failure\":\"none\",\"last_error\":\"\","
            "\"last_used\":\"2023-11-14T22:13:21.000Z\",\"connections\":0,\"resumed\":0}");
  EXPECT_EQ(lines[1],
            "{\"mx\":\"smtps-mx.example.net\",\"policy\":\"smtps-prefix\",\"source\":\"prefix\","
            "\"requirement\":\"required\",\"verify\":true,\"implicit_tls_first\":true,"
            "\"log_only\":false,\"implicit_tls_failed\":true,\"implicit_tls_retry_in_s\":1740,"
            "\"has_session\":false,\"ehlo\":\"PIPELINING \\\"8BITMIME\\\"\\\\ SIZE\","
            "\"recent_failures\":2,\"last_failure\":\"certificate-expired\",\"last_error\":\"\","
            "\"last_used\":\"2023-11-14T22:13:20.000Z\",\"connections\":5,\"resumed\":4}");
}

TEST(PolicyCache, DumpJsonSurvivesInvalidUtf8) {
  const absl::Time t = absl::FromUnixSeconds(1700000000);
  PolicyCache cache(2);
  cache.Get("mx.test", t).ehlo_keywords = std::string("X\xff\xfeY");
  const std::string dump = cache.DumpJson(t);
  EXPECT_NE(dump.find("\"ehlo\":\"X"), std::string::npos) << dump;
  EXPECT_EQ(dump.back(), '\n');
}

// tls/hop_policy.h: the one call the engine asks for a hop's policy.
TEST(HopPolicy, DomainRuleThenDefaultRuleThenPrefix) {
  TlsPolicyRules rules;
  DomainTlsConfig bank;
  bank.has_rule = true;
  bank.requirement = TlsRequirement::kRequired;
  bank.verify = true;
  rules.domains["bank.example"] = bank;
  HopQuery q;
  q.recipient_domain = "bank.example";
  q.mx_host = "mx.bank.example";
  TlsPolicy p = DecideHopPolicy(q, rules);
  EXPECT_EQ(p.name, "config-required");
  EXPECT_TRUE(p.verify);

  q.recipient_domain = "other.example";
  EXPECT_EQ(DecideHopPolicy(q, rules).name, "opportunistic");
  // --tls required|disabled: the default rule for every domain without its own.
  rules.default_rule.has_rule = true;
  rules.default_rule.requirement = TlsRequirement::kDisabled;
  EXPECT_EQ(DecideHopPolicy(q, rules).name, "config-disabled");
  // A prefix signal beats the default rule (strongest wins), as DerivePolicy says.
  q.mx_host = "starttls-mx.other.example";
  EXPECT_EQ(DecideHopPolicy(q, rules).name, "starttls-prefix");
  // A validated MX alone does not change the policy (DANE needs TLSA: hop_policy_dane_test).
  q.dns.mx_dnssec = true;
  EXPECT_EQ(DecideHopPolicy(q, rules).name, "starttls-prefix");
}

TEST(HopPolicy, DecidedOnFirstSightOfTheMxThenCached) {
  TlsPolicyRules rules;
  DomainTlsConfig strict;
  strict.has_rule = true;
  strict.requirement = TlsRequirement::kRequired;
  rules.domains["a.example"] = strict;
  PolicyCache cache(10);
  const absl::Time t = absl::FromUnixSeconds(1700000000);
  HopQuery q;
  q.recipient_domain = "a.example";
  q.mx_host = "MX.Shared.Example";
  PolicyEntry& e = HopPolicyFor(&cache, q, rules, t);
  EXPECT_EQ(e.policy.name, "config-required");
  EXPECT_EQ(e.mx_host, "mx.shared.example");
  ++e.connections;
  // Another domain behind the same MX host gets the cached entry (keyed by MX name).
  q.recipient_domain = "b.example";
  PolicyEntry& again = HopPolicyFor(&cache, q, rules, t + absl::Seconds(1));
  EXPECT_EQ(&again, &e);
  EXPECT_EQ(again.policy.name, "config-required");
  EXPECT_EQ(again.connections, 1u);
  EXPECT_EQ(cache.size(), 1u);
}

}  // namespace
}  // namespace mxb
