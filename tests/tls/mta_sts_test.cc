// tls/mta_sts: RFC 8461 §3.1 TXT, §3.2 policy file, §4.1 MX patterns, §5.1 cache decisions and
// the spool-backed store.
#include "tls/mta_sts.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace mxb {
namespace {

TEST(StsMxPattern, Rfc8461Section41) {
  struct Case {
    const char* pattern;
    const char* mx;
    bool match;
  };
  const Case cases[] = {
      {"mx1.example.com", "mx1.example.com", true},
      {"mx1.example.com", "MX1.Example.COM.", true},  // case, trailing dot of the MX answer
      {"mx1.example.com", "mx2.example.com", false},
      {"*.example.com", "mx1.example.com", true},
      {"*.example.com", "a.b.example.com", false},  // the wildcard is exactly one label
      {"*.example.com", "example.com", false},
      {"*.example.com", ".example.com", false},
      {"*.example.com", "mx1.example.net", false},
      {"*.example.com", "mx1.notexample.com", false},
      {"example.com", "mx.example.com", false},  // no implicit subdomains
  };
  for (const Case& c : cases) {
    EXPECT_EQ(StsMxPatternMatches(c.pattern, c.mx), c.match) << c.pattern << " vs " << c.mx;
  }
}

TEST(StsPolicyParse, ValidPolicies) {
  struct Case {
    const char* body;
    StsMode mode;
    int64_t max_age;
    std::vector<std::string> mx;
  };
  const Case cases[] = {
      // The example of RFC 8461 §3.2 (CRLF).
      {"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\n"
       "mx: backupmx.example.com\r\nmax_age: 604800\r\n",
       StsMode::kEnforce, 604800, {"mail.example.com", "*.example.net", "backupmx.example.com"}},
      // LF only, no final terminator, extra whitespace after ':' and at the end.
      {"version: STSv1\nmode: testing\nmx:   MX.Example.ORG  \nmax_age:86400",
       StsMode::kTesting, 86400, {"mx.example.org"}},
      // mode none needs no mx.
      {"version: STSv1\nmode: none\nmax_age: 0\n", StsMode::kNone, 0, {}},
      // max_age above the cap is capped (§3.2: up to 31557600).
      {"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 9999999999\n", StsMode::kEnforce,
       kStsMaxAgeCap, {"a.example"}},
      // Unknown fields ignored; first of a repeated non-mx field counts; fields in any order.
      {"mode: enforce\nfoo_bar: whatever\nmax_age: 100\nversion: STSv1\nmode: none\n"
       "max_age: 5\nmx: a.example\n",
       StsMode::kEnforce, 100, {"a.example"}},
  };
  for (const Case& c : cases) {
    absl::StatusOr<StsPolicy> p = ParseStsPolicy(c.body);
    ASSERT_TRUE(p.ok()) << p.status() << " for " << c.body;
    EXPECT_EQ(p->mode, c.mode) << c.body;
    EXPECT_EQ(p->max_age_s, c.max_age) << c.body;
    EXPECT_EQ(p->mx, c.mx) << c.body;
  }
}

TEST(StsPolicyParse, MalformedIsNoPolicy) {
  const char* cases[] = {
      "",                                                          // empty body
      "<html><body>hello</body></html>",                           // an HTML error page
      "version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n",  // wrong version
      "mode: enforce\nmx: a.example\nmax_age: 1\n",                // no version
      "version: STSv1\nmx: a.example\nmax_age: 1\n",               // no mode
      "version: STSv1\nmode: enforce\nmx: a.example\n",            // no max_age
      "version: STSv1\nmode: Enforce\nmx: a.example\nmax_age: 1\n",  // modes are case-sensitive
      "version: STSv1\nmode: enforce\nmax_age: 1\n",               // enforce without mx
      "version: STSv1\nmode: testing\nmax_age: 1\n",               // testing without mx
      "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n",
      "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 12345678901\n",  // 11 digits
      "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1d\n",
      "version: STSv1\nmode: enforce\nmx: *.*.example\nmax_age: 1\n",  // wildcard not leftmost only
      "version: STSv1\nmode: enforce\nmx: mx.exa_mple\nmax_age: 1\n",
      "version: STSv1\nmode: enforce\nmx: \nmax_age: 1\n",
      "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\ngarbage line\n",
  };
  for (const char* body : cases) {
    EXPECT_FALSE(ParseStsPolicy(body).ok()) << body;
  }
}

TEST(StsPolicyParse, PolicyStringLinesForTlsRpt) {
  absl::StatusOr<StsPolicy> p =
      ParseStsPolicy("version: STSv1\r\nmode: enforce\r\nx-ext: 1\r\nmx: a.example\r\nmax_age: 60\r\n");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->lines, (std::vector<std::string>{"version: STSv1", "mode: enforce", "mx: a.example",
                                                "max_age: 60"}));
}

TEST(StsTxt, Rfc8461Section31) {
  struct Case {
    const char* txt;
    const char* id;  // nullptr: invalid
  };
  const Case cases[] = {
      {"v=STSv1; id=20160831085700Z;", "20160831085700Z"},
      {"v=STSv1;id=abc", "abc"},
      {"v=STSv1; id=abc; ext=whatever;", "abc"},
      {"v=STSv1 ;  id=abc  ;", "abc"},
      {"v=STSv1; ext=1; id=abc", "abc"},
      {"v=STSv1;", nullptr},                            // no id
      {"v=STSv1; id=;", nullptr},
      {"v=STSv1; id=has-dash;", nullptr},              // id is ALPHA / DIGIT only
      {"v=STSv1; id=123456789012345678901234567890123;", nullptr},  // 33 characters
      {"id=abc; v=STSv1;", nullptr},                    // version must come first
      {"v=STSv2; id=abc;", nullptr},
      {"v=STSv1; ; id=abc", nullptr},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::string> id = ParseStsTxt(c.txt);
    if (c.id == nullptr) {
      EXPECT_FALSE(id.ok()) << c.txt;
    } else {
      ASSERT_TRUE(id.ok()) << c.txt << ": " << id.status();
      EXPECT_EQ(*id, c.id);
    }
  }
}

TEST(StsTxt, RecordSetRules) {
  using V = std::vector<std::string>;
  EXPECT_EQ(StsIdFromTxtRecords(V{"v=spf1 -all", "v=STSv1; id=a1;"}), "a1");  // others discarded
  EXPECT_EQ(StsIdFromTxtRecords(V{"v=STSv1; id=a1;", "v=STSv1; id=b2;"}), std::nullopt);
  EXPECT_EQ(StsIdFromTxtRecords(V{"v=STSv1; id=bad-id;"}), std::nullopt);
  EXPECT_EQ(StsIdFromTxtRecords(V{}), std::nullopt);
}

TEST(StsCache, DecideAction) {
  const absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  StsPolicy fresh;
  fresh.id = "a1";
  fresh.max_age_s = 7 * 86400;
  fresh.fetched = now - absl::Hours(1);
  StsPolicy old = fresh;
  old.fetched = now - absl::Hours(30);
  StsPolicy expired = fresh;
  expired.fetched = now - absl::Hours(8 * 24);
  struct Case {
    const StsPolicy* cached;
    std::optional<std::string> txt;
    StsCacheAction want;
  };
  const Case cases[] = {
      {nullptr, std::nullopt, StsCacheAction::kNoPolicy},
      {nullptr, "a1", StsCacheAction::kFetch},
      {&fresh, "a1", StsCacheAction::kUseCached},
      {&fresh, "b2", StsCacheAction::kFetch},         // id changed -> refetch
      {&fresh, std::nullopt, StsCacheAction::kUseCached},  // TXT gone: keep the cached policy
      {&old, "a1", StsCacheAction::kUseCachedRefresh},
      {&expired, "a1", StsCacheAction::kFetch},
      {&expired, std::nullopt, StsCacheAction::kNoPolicy},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(DecideStsAction(c.cached, c.txt, now), c.want)
        << ToString(c.want) << " got " << ToString(DecideStsAction(c.cached, c.txt, now));
  }
}

TEST(StsDomain, Validation) {
  EXPECT_TRUE(IsValidStsDomain("example.com"));
  EXPECT_TRUE(IsValidStsDomain("Example.COM."));
  EXPECT_FALSE(IsValidStsDomain("../etc/passwd"));
  EXPECT_FALSE(IsValidStsDomain("a/b.example"));
  EXPECT_FALSE(IsValidStsDomain(".example"));
  EXPECT_FALSE(IsValidStsDomain(""));
}

std::string TempDir(const char* name) {
  std::string d = ::testing::TempDir() + "/sts_" + std::to_string(getpid()) + "_" + name;
  std::filesystem::remove_all(d);
  return d + "/policy/mta-sts";
}

TEST(StsPolicyStore, SurvivesReopen) {
  const std::string dir = TempDir("reopen");
  absl::StatusOr<StsPolicy> p =
      ParseStsPolicy("version: STSv1\nmode: enforce\nmx: *.mx.example\nmax_age: 86400\n");
  ASSERT_TRUE(p.ok());
  p->id = "id1";
  p->fetched = absl::FromUnixSeconds(1'800'000'000);
  {
    auto store = StsPolicyStore::Open(dir);
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE((*store)->Put("Dest.Example", *p).ok());
    EXPECT_FALSE((*store)->Put("../x", *p).ok());
  }
  std::vector<std::string> skipped;
  std::ofstream(dir + "/corrupt.example") << "{not json";
  auto store = StsPolicyStore::Open(dir, &skipped);
  ASSERT_TRUE(store.ok());
  EXPECT_EQ(skipped, std::vector<std::string>{"corrupt.example"});
  std::shared_ptr<const StsPolicy> got = (*store)->Get("dest.example");
  ASSERT_NE(got, nullptr);
  EXPECT_EQ(got->id, "id1");
  EXPECT_EQ(got->mode, StsMode::kEnforce);
  EXPECT_EQ(got->mx, std::vector<std::string>{"*.mx.example"});
  EXPECT_EQ(got->fetched, p->fetched);
  EXPECT_EQ(got->lines, p->lines);
  EXPECT_TRUE(got->MatchesMx("a.mx.example"));
  EXPECT_EQ((*store)->Get("other.example"), nullptr);
  absl::StatusOr<StsPolicy> direct = StsPolicyStore::ReadFile(dir, "dest.example");
  ASSERT_TRUE(direct.ok());
  EXPECT_EQ(direct->id, "id1");
}

}  // namespace
}  // namespace mxb
