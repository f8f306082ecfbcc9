// tls/banner_pin: the greeting parser, the scope rule, the policy a pin imposes, and the
// spool-backed store (persistence, max-age=0, expiry, the write rate limit).
#include "tls/banner_pin.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/time/clock.h"
#include "tls/dane.h"

namespace mxb {
namespace {

TEST(BannerPinParse, Cases) {
  struct Case {
    const char* greeting;  // SmtpReply::text (lines joined with \n)
    bool ok;
    const char* pattern;
    int64_t max_age;
    bool sub;
  };
  const Case cases[] = {
      {"mx1.example.com ESMTP strict-tls=*.example.com; max-age=86400", true, "*.example.com",
       86400, false},
      {"mx1.example.com ESMTP strict-tls=*.example.com; max-age=86400; includeSubDomains", true,
       "*.example.com", 86400, true},
      // Names are case-insensitive (HSTS §6.1), the pattern is folded, a trailing dot dropped.
      {"mx ESMTP Strict-TLS=MX1.Example.COM.;MAX-AGE=60;INCLUDESUBDOMAINS", true,
       "mx1.example.com", 60, true},
      // White space after a value ends the list: the greeting's own words follow.
      {"mx ESMTP strict-tls=mx.example.com; max-age=600 ready for mail", true, "mx.example.com",
       600, false},
      {"mx ESMTP strict-tls=mx.example.com ; max-age = 600", false, "", 0, false},  // "max-age" "="?
      {"mx ESMTP strict-tls=mx.example.com; max-age=\"600\"", true, "mx.example.com", 600, false},
      {"mx ESMTP strict-tls=mx.example.com; max-age=0", true, "mx.example.com", 0, false},
      {"mx ESMTP strict-tls=mx.example.com; max-age=99999999999", true, "mx.example.com",
       kBannerPinMaxAgeCap, false},  // capped like MTA-STS
      {"mx ESMTP strict-tls=mx.example.com; max-age=60; future-thing=1", true, "mx.example.com",
       60, false},  // unknown directives are ignored
      // A multi-line greeting: the pin may be on any line.
      {"mx.example.com ESMTP\nstrict-tls=mx.example.com; max-age=5", true, "mx.example.com", 5,
       false},
      {"mx ESMTP strict-tls=mx.example.com", false, "", 0, false},           // no max-age
      {"mx ESMTP strict-tls=mx.example.com; max-age=-1", false, "", 0, false},
      {"mx ESMTP strict-tls=mx.example.com; max-age=1h", false, "", 0, false},
      {"mx ESMTP strict-tls=mx.example.com; max-age=", false, "", 0, false},
      {"mx ESMTP strict-tls=mx.example.com; max-age=5; max-age=6", false, "", 0, false},
      {"mx ESMTP strict-tls=mx.example.com; max-age=5; includeSubDomains=yes", false, "", 0,
       false},
      {"mx ESMTP strict-tls=com; max-age=5", false, "", 0, false},       // one label
      {"mx ESMTP strict-tls=*.com; max-age=5", false, "", 0, false},     // a whole TLD
      {"mx ESMTP strict-tls=*; max-age=5", false, "", 0, false},
      {"mx ESMTP strict-tls=a.*.example.com; max-age=5", false, "", 0, false},
      {"mx ESMTP strict-tls=; max-age=5", false, "", 0, false},
      {"mx ESMTP strict-tls=mx_1.example.com; max-age=5", false, "", 0, false},
  };
  for (const Case& c : cases) {
    absl::StatusOr<BannerPinAnnouncement> a = ParseBannerPin(c.greeting);
    ASSERT_EQ(a.ok(), c.ok) << c.greeting << ": " << a.status();
    if (!c.ok) {
      EXPECT_TRUE(absl::IsInvalidArgument(a.status())) << c.greeting;
      continue;
    }
    EXPECT_EQ(a->pattern, c.pattern) << c.greeting;
    EXPECT_EQ(a->max_age_s, c.max_age) << c.greeting;
    EXPECT_EQ(a->include_subdomains, c.sub) << c.greeting;
  }
}

TEST(BannerPinParse, NoPinIsNotFound) {
  for (const char* g : {"mx.example.com ESMTP Postfix", "", "mx ESMTP xstrict-tls=a.b; max-age=5",
                        "strict-tls is what we want"}) {
    EXPECT_TRUE(absl::IsNotFound(ParseBannerPin(g).status())) << g;
  }
}

TEST(BannerPinScope, AHostPinsOnlyItselfAndItsParentDomain) {
  struct Case {
    const char* pattern;
    bool sub;
    const char* host;
    bool ok;
  };
  const Case cases[] = {
      {"mx1.example.com", false, "mx1.example.com", true},
      {"mx1.example.com", false, "MX1.EXAMPLE.COM.", true},
      {"*.example.com", false, "mx1.example.com", true},
      {"example.com", true, "mx1.example.com", true},
      {"example.com", false, "mx1.example.com", false},      // does not cover the host
      {"mx2.example.com", false, "mx1.example.com", false},  // another host
      {"*.example.net", false, "mx1.example.com", false},
      {"*.b.example.com", true, "mx.a.b.example.com", false},  // grandparent: too wide
      {"*.a.b.example.com", false, "mx.a.b.example.com", true},
      {"*.co.uk", true, "mx.attacker.co.uk", false},  // the parent's parent
      {"*.com", true, "mx.example.com", false},       // not a pattern at all
  };
  for (const Case& c : cases) {
    BannerPinAnnouncement a{c.pattern, 60, c.sub};
    EXPECT_EQ(CheckBannerPinScope(a, c.host).ok(), c.ok) << c.pattern << " from " << c.host;
  }
}

TEST(BannerPinCovers, PatternAndIncludeSubDomains) {
  BannerPinAnnouncement star{"*.example.com", 60, false};
  EXPECT_TRUE(BannerPinCovers(star, "mx2.example.com"));
  EXPECT_FALSE(BannerPinCovers(star, "a.mx2.example.com"));
  EXPECT_FALSE(BannerPinCovers(star, "example.com"));
  star.include_subdomains = true;
  EXPECT_TRUE(BannerPinCovers(star, "a.mx2.example.com"));
  EXPECT_FALSE(BannerPinCovers(star, "mx.notexample.com"));
  BannerPinAnnouncement host{"mx.example.com", 60, true};
  EXPECT_TRUE(BannerPinCovers(host, "mx.example.com"));
  EXPECT_TRUE(BannerPinCovers(host, "in.mx.example.com"));
  EXPECT_FALSE(BannerPinCovers(host, "mx2.example.com"));
}

TEST(BannerPinPolicy, RequiredAndVerifiedLikeTheStartTlsPrefix) {
  TlsPolicy opp;
  opp.name = "opportunistic";
  TlsPolicy p = ApplyBannerPin(opp);
  EXPECT_EQ(p.requirement, TlsRequirement::kRequired);
  EXPECT_TRUE(p.verify);
  EXPECT_FALSE(p.log_only);
  EXPECT_EQ(p.source, PolicySource::kBannerPin);
  EXPECT_EQ(p.name, "banner-pin");
  EXPECT_STREQ(ToString(PolicySource::kBannerPin), "banner-pin");

  TlsPolicy testing = opp;  // MTA-STS testing: verified but log-only -> the pin enforces
  testing.verify = testing.log_only = true;
  testing.source = PolicySource::kMtaSts;
  EXPECT_EQ(ApplyBannerPin(testing).source, PolicySource::kBannerPin);

  TlsPolicy prefix = opp;  // already as strict: stays, its name in the log
  prefix.requirement = TlsRequirement::kRequired;
  prefix.verify = true;
  prefix.source = PolicySource::kPrefix;
  prefix.name = "starttls-prefix";
  EXPECT_EQ(ApplyBannerPin(prefix).name, "starttls-prefix");

  TlsPolicy dane = opp;  // DANE-authenticated: DANE wins
  dane.requirement = TlsRequirement::kRequired;
  dane.source = PolicySource::kDane;
  dane.name = "dane";
  dane.dane = std::make_shared<DaneAuthority>();
  EXPECT_EQ(ApplyBannerPin(dane).name, "dane");

  TlsPolicy unusable = dane;  // TLSA records, none usable: encrypted but unauthenticated
  unusable.dane = nullptr;
  unusable.name = "dane-unusable";
  EXPECT_EQ(ApplyBannerPin(unusable).name, "banner-pin");

  TlsPolicy smtps = opp;  // smtps-: implicit TLS first stays
  smtps.implicit_tls_first = true;
  EXPECT_TRUE(ApplyBannerPin(smtps).implicit_tls_first);
}

class BannerPinStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mxb_pins_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = std::string(tmpl) + "/policy";
  }
  void TearDown() override { std::filesystem::remove_all(std::filesystem::path(dir_).parent_path()); }
  std::string dir_;
};

TEST_F(BannerPinStoreTest, LearnMatchPersistAndRemoveWithMaxAgeZero) {
  const absl::Time now = absl::Now();
  {
    auto store = BannerPinStore::Open(dir_);
    ASSERT_TRUE(store.ok()) << store.status();
    EXPECT_TRUE((*store)->empty());
    EXPECT_FALSE((*store)->Match("mx2.example.com", now));
    const uint64_t g0 = (*store)->generation();
    auto r = (*store)->Learn("mx1.example.com", {"*.example.com", 3600, false}, now);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(*r, BannerPinStore::Learned::kAdded);
    EXPECT_GT((*store)->generation(), g0);
    std::optional<BannerPin> pin = (*store)->Match("MX2.example.com.", now);
    ASSERT_TRUE(pin);
    EXPECT_EQ(pin->learned_from, "mx1.example.com");
    EXPECT_EQ(pin->expires, now + absl::Seconds(3600));
    EXPECT_FALSE((*store)->Match("mx2.example.net", now));
    EXPECT_FALSE((*store)->Match("mx2.example.com", now + absl::Seconds(3600))) << "expired";
    // Out of scope: refused, nothing stored.
    EXPECT_FALSE((*store)->Learn("mx1.example.com", {"*.example.net", 3600, false}, now).ok());
    EXPECT_FALSE((*store)->Match("a.example.net", now));
  }
  {  // a restart keeps it
    auto store = BannerPinStore::Open(dir_);
    ASSERT_TRUE(store.ok());
    std::optional<BannerPin> pin = (*store)->Match("mx2.example.com", now);
    ASSERT_TRUE(pin);
    EXPECT_EQ(pin->rule.pattern, "*.example.com");
    EXPECT_EQ(absl::ToUnixSeconds(pin->expires), absl::ToUnixSeconds(now + absl::Seconds(3600)));
    ASSERT_EQ((*store)->List(now).size(), 1u);
    // max-age=0 on a verified connection removes it, durably.
    auto r = (*store)->Learn("mx2.example.com", {"*.example.com", 0, false}, now);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(*r, BannerPinStore::Learned::kRemoved);
    EXPECT_TRUE((*store)->empty());
  }
  auto store = BannerPinStore::Open(dir_);
  ASSERT_TRUE(store.ok());
  EXPECT_TRUE((*store)->empty());
  auto listed = BannerPinStore::ReadFile(dir_);
  ASSERT_TRUE(listed.ok());
  EXPECT_TRUE(listed->empty());
}

TEST_F(BannerPinStoreTest, ARefreshIsWrittenOnlyWhenTheExpiryMovedATenthOfMaxAge) {
  const absl::Time t0 = absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now()));
  auto store = BannerPinStore::Open(dir_);
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->Learn("mx.example.com", {"mx.example.com", 1000, false}, t0).ok());
  auto on_disk = [&] {
    auto pins = BannerPinStore::ReadFile(dir_);
    EXPECT_TRUE(pins.ok() && pins->size() == 1u);
    return pins.ok() && !pins->empty() ? (*pins)[0].expires : absl::InfinitePast();
  };
  EXPECT_EQ(on_disk(), t0 + absl::Seconds(1000));
  const uint64_t g = (*store)->generation();
  auto r = (*store)->Learn("mx.example.com", {"mx.example.com", 1000, false}, t0 + absl::Seconds(50));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, BannerPinStore::Learned::kRefreshed);
  EXPECT_EQ(on_disk(), t0 + absl::Seconds(1000)) << "50 s < a tenth of max-age: not rewritten";
  EXPECT_EQ((*store)->Match("mx.example.com", t0)->expires, t0 + absl::Seconds(1050));
  EXPECT_EQ((*store)->generation(), g) << "the same coverage";
  ASSERT_TRUE((*store)->Learn("mx.example.com", {"mx.example.com", 1000, false},
                              t0 + absl::Seconds(150)).ok());
  EXPECT_EQ(on_disk(), t0 + absl::Seconds(1150));
  // includeSubDomains added: a new coverage, written at once.
  ASSERT_TRUE((*store)->Learn("mx.example.com", {"mx.example.com", 1000, true},
                              t0 + absl::Seconds(151)).ok());
  EXPECT_GT((*store)->generation(), g);
  EXPECT_TRUE((*store)->Match("a.mx.example.com", t0 + absl::Seconds(151)));
}

TEST_F(BannerPinStoreTest, ACorruptFileIsIgnoredWithAWarning) {
  std::filesystem::create_directories(dir_);
  std::ofstream(dir_ + "/" + BannerPinStore::kFileName) << "{not json";
  std::string warning;
  auto store = BannerPinStore::Open(dir_, &warning);
  ASSERT_TRUE(store.ok());
  EXPECT_TRUE((*store)->empty());
  EXPECT_NE(warning.find("banner-pins.json: ignored"), std::string::npos) << warning;
  // Bad entries are refused whole, not half-loaded.
  EXPECT_FALSE(BannerPinStore::FromJson(R"({"pins":[{"pattern":"*.com","max_age":5,"expires":9}]})").ok());
  EXPECT_FALSE(BannerPinStore::FromJson(R"({"pins":[{"pattern":"mx.example.com"}]})").ok());
}

}  // namespace
}  // namespace mxb
