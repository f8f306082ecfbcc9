// MTA-STS discovery and fetch (RFC 8461 §3, §5.1) against real servers on loopback: a real unbound
// answers _mta-sts TXT and mta-sts.<domain> A records, and a Python http.server + ssl (the test
// CA's certificate) serves the policies. Each domain exercises one rule of §3.3.
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "engine/sts_fetcher.h"
#include "gtest/gtest.h"
#include "tests/dns/dns_test_util.h"
#include "tests/integration/fixture.h"
#include "tests/integration/sts_policy_server.h"
#include "tls/tls_session.h"

namespace mxb {
namespace {

using testing::MakeTempDir;
using testing::UnboundServer;

constexpr char kZones[] = R"(
  local-zone: "ststest." static
  local-data: "ststest. 3600 IN SOA ns.ststest. host.ststest. 1 3600 600 86400 60"
  local-data: '_mta-sts.good.ststest. 60 IN TXT "v=STSv1; id=goodid1;"'
  local-data: "mta-sts.good.ststest. 60 IN A 127.0.0.1"
  local-data: '_mta-sts.redirect.ststest. 60 IN TXT "v=STSv1; id=r1;"'
  local-data: "mta-sts.redirect.ststest. 60 IN A 127.0.0.1"
  local-data: '_mta-sts.ctype.ststest. 60 IN TXT "v=STSv1; id=c1;"'
  local-data: "mta-sts.ctype.ststest. 60 IN A 127.0.0.1"
  local-data: '_mta-sts.big.ststest. 60 IN TXT "v=STSv1; id=b1;"'
  local-data: "mta-sts.big.ststest. 60 IN A 127.0.0.1"
  local-data: '_mta-sts.invalid.ststest. 60 IN TXT "v=STSv1; id=i1;"'
  local-data: "mta-sts.invalid.ststest. 60 IN A 127.0.0.1"
  local-data: '_mta-sts.badcert.ststest. 60 IN TXT "v=STSv1; id=x1;"'
  local-data: "mta-sts.badcert.ststest. 60 IN A 127.0.0.1"
  local-data: '_mta-sts.down.ststest. 60 IN TXT "v=STSv1; id=d2;"'
  local-data: "mta-sts.down.ststest. 60 IN A 127.0.0.9"
  local-data: '_mta-sts.refresh.ststest. 60 IN TXT "v=STSv1; id=rf1;"'
  local-data: "mta-sts.refresh.ststest. 60 IN A 127.0.0.1"
  local-data: "plain.ststest. 60 IN A 127.0.0.1"
)";

class StsFetchTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(MakeTempDir("stsfetch"));
    absl::StatusOr<std::unique_ptr<UnboundServer>> u = UnboundServer::Start(kZones, "");
    ASSERT_TRUE(u.ok()) << u.status();
    dns_ = u->release();
    // The certificate covers every policy host but mta-sts.badcert.ststest.
    server_ = StsPolicyServer::Start(
                  *dir_, {"mta-sts.good.ststest", "mta-sts.redirect.ststest",
                          "mta-sts.ctype.ststest", "mta-sts.big.ststest",
                          "mta-sts.invalid.ststest", "mta-sts.down.ststest",
                          "mta-sts.refresh.ststest"})
                  .release();
    ASSERT_NE(server_, nullptr);
    ASSERT_TRUE(server_->ready()) << server_->error();
    server_->SetPolicy("mta-sts.good.ststest",
                       "version: STSv1\r\nmode: enforce\r\nmx: *.good.ststest\r\nmax_age: 86400\r\n");
    server_->SetRedirect("mta-sts.redirect.ststest", "https://mta-sts.good.ststest/.well-known/mta-sts.txt");
    server_->SetPolicy("mta-sts.ctype.ststest", "version: STSv1\nmode: enforce\nmx: a.ctype.ststest\nmax_age: 60\n",
                       "text/html");
    server_->SetPolicy("mta-sts.big.ststest",
                       absl::StrCat("version: STSv1\nmode: enforce\nmx: a.big.ststest\nmax_age: 60\n",
                                    "x: ", std::string(70000, 'a'), "\n"));
    server_->SetPolicy("mta-sts.invalid.ststest", "version: STSv1\nmode: enforce\nmax_age: 60\n");
    server_->SetPolicy("mta-sts.badcert.ststest", "version: STSv1\nmode: enforce\nmx: a.badcert.ststest\nmax_age: 60\n");
  }
  static void TearDownTestSuite() {
    delete server_;
    delete dns_;
  }

  std::unique_ptr<StsFetcher> MakeFetcher(const std::string& tag) {
    StsFetcher::Options o;
    o.dns_servers = {dns_->address()};
    o.ca_file = server_->ca_file();
    o.https_port = server_->port();
    o.connect_timeout = absl::Seconds(2);
    o.total_timeout = absl::Seconds(5);
    absl::StatusOr<std::unique_ptr<StsFetcher>> f =
        StsFetcher::Create(o, absl::StrCat(*dir_, "/", tag, "/policy/mta-sts"));
    EXPECT_TRUE(f.ok()) << f.status();
    return f.ok() ? *std::move(f) : nullptr;
  }

  // Asks until the first check is done (the fetcher works in the background).
  static StsLookup Settle(StsFetcher* f, const std::string& domain) {
    StsLookup l;
    for (int i = 0; i < 400; ++i) {
      l = f->Lookup(domain, absl::Now());
      if (l.state != StsLookup::State::kPending) return l;
      absl::SleepFor(absl::Milliseconds(25));
    }
    return l;
  }

  static std::string* dir_;
  static UnboundServer* dns_;
  static StsPolicyServer* server_;
};
std::string* StsFetchTest::dir_ = nullptr;
UnboundServer* StsFetchTest::dns_ = nullptr;
StsPolicyServer* StsFetchTest::server_ = nullptr;

TEST_F(StsFetchTest, ValidPolicyIsFetchedVerifiedAndStored) {
  auto f = MakeFetcher("valid");
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->Lookup("good.ststest", absl::Now()).state, StsLookup::State::kPending);
  StsLookup l = Settle(f.get(), "good.ststest");
  ASSERT_EQ(l.state, StsLookup::State::kPolicy) << l.failure;
  EXPECT_EQ(l.policy->mode, StsMode::kEnforce);
  EXPECT_EQ(l.policy->id, "goodid1");
  EXPECT_TRUE(l.policy->MatchesMx("mx1.good.ststest"));
  // Persisted in the spool: a new store over the same directory has it.
  absl::StatusOr<StsPolicy> onfile =
      StsPolicyStore::ReadFile(f->store().dir(), "good.ststest");
  ASSERT_TRUE(onfile.ok()) << onfile.status();
  EXPECT_EQ(onfile->id, "goodid1");
}

TEST_F(StsFetchTest, NoTxtRecordIsNoPolicy) {
  auto f = MakeFetcher("notxt");
  StsLookup l = Settle(f.get(), "plain.ststest");
  EXPECT_EQ(l.state, StsLookup::State::kNoPolicy);
  EXPECT_EQ(l.failure, "");
  EXPECT_EQ(f->stats().fetches, 0u);
}

TEST_F(StsFetchTest, FetchRulesOfSection33) {
  struct Case {
    const char* domain;
    const char* failure_prefix;
  };
  const Case cases[] = {
      {"redirect.ststest", "sts-policy-fetch-error: HTTP status 302"},
      {"ctype.ststest", "sts-policy-fetch-error: Content-Type"},
      {"big.ststest", "sts-policy-fetch-error: policy larger than 65536"},
      {"invalid.ststest", "sts-policy-invalid: "},
      {"badcert.ststest", "sts-webpki-invalid: "},
      {"down.ststest", "sts-policy-fetch-error: "},
  };
  auto f = MakeFetcher("rules");
  for (const Case& c : cases) f->Lookup(c.domain, absl::Now());  // all checks run at once
  for (const Case& c : cases) {
    StsLookup l = Settle(f.get(), c.domain);
    EXPECT_EQ(l.state, StsLookup::State::kNoPolicy) << c.domain;
    EXPECT_TRUE(absl::StartsWith(l.failure, c.failure_prefix)) << c.domain << ": " << l.failure;
    EXPECT_FALSE(StsPolicyStore::ReadFile(f->store().dir(), c.domain).ok()) << c.domain;
  }
}

// §5.1: the policy server is unreachable, a cached unexpired policy exists -> it is used.
TEST_F(StsFetchTest, CachedPolicyUsedWhenServerDown) {
  const std::string store_dir = absl::StrCat(*dir_, "/cached/policy/mta-sts");
  {
    auto store = StsPolicyStore::Open(store_dir);
    ASSERT_TRUE(store.ok());
    absl::StatusOr<StsPolicy> p =
        ParseStsPolicy("version: STSv1\nmode: enforce\nmx: mx.down.ststest\nmax_age: 86400\n");
    ASSERT_TRUE(p.ok());
    p->id = "d1";  // the TXT now says d2: a refetch is due, and fails
    p->fetched = absl::Now() - absl::Hours(1);
    ASSERT_TRUE((*store)->Put("down.ststest", *p).ok());
  }
  StsFetcher::Options o;
  o.dns_servers = {dns_->address()};
  o.ca_file = server_->ca_file();
  o.https_port = server_->port();
  o.connect_timeout = absl::Seconds(2);
  absl::StatusOr<std::unique_ptr<StsFetcher>> g = StsFetcher::Create(o, store_dir);
  ASSERT_TRUE(g.ok());
  StsLookup l = (*g)->Lookup("down.ststest", absl::Now());
  ASSERT_EQ(l.state, StsLookup::State::kPolicy);  // at once, from the cache
  for (int i = 0; i < 400 && (*g)->stats().fetches == 0; ++i) absl::SleepFor(absl::Milliseconds(25));
  ASSERT_EQ((*g)->stats().fetch_failures, 1u);
  l = (*g)->Lookup("down.ststest", absl::Now());
  ASSERT_EQ(l.state, StsLookup::State::kPolicy);
  EXPECT_EQ(l.policy->id, "d1");
  EXPECT_TRUE(absl::StartsWith(l.failure, "sts-policy-fetch-error")) << l.failure;
}

// §5.1: the TXT id differs from the cached policy's -> the policy is fetched again.
TEST_F(StsFetchTest, ChangedTxtIdRefetches) {
  const std::string store_dir = absl::StrCat(*dir_, "/idchange/policy/mta-sts");
  {
    auto store = StsPolicyStore::Open(store_dir);
    ASSERT_TRUE(store.ok());
    absl::StatusOr<StsPolicy> p =
        ParseStsPolicy("version: STSv1\nmode: testing\nmx: old.good.ststest\nmax_age: 86400\n");
    ASSERT_TRUE(p.ok());
    p->id = "oldid";
    p->fetched = absl::Now() - absl::Minutes(10);
    ASSERT_TRUE((*store)->Put("good.ststest", *p).ok());
  }
  StsFetcher::Options o;
  o.dns_servers = {dns_->address()};
  o.ca_file = server_->ca_file();
  o.https_port = server_->port();
  absl::StatusOr<std::unique_ptr<StsFetcher>> g = StsFetcher::Create(o, store_dir);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ((*g)->Lookup("good.ststest", absl::Now()).policy->id, "oldid");
  for (int i = 0; i < 400 && (*g)->stats().fetched_ok == 0; ++i) absl::SleepFor(absl::Milliseconds(25));
  StsLookup l = (*g)->Lookup("good.ststest", absl::Now());
  ASSERT_EQ(l.state, StsLookup::State::kPolicy);
  EXPECT_EQ(l.policy->id, "goodid1");
  EXPECT_EQ(l.policy->mode, StsMode::kEnforce);
}

// §5.1 / §10.2: a cached policy in use is refreshed before it expires, by the fetcher thread
// and without another lookup (the TXT id is unchanged: only a refresh sees the new policy); a
// refresh that fails keeps the cached policy until its max_age runs out.
TEST_F(StsFetchTest, PolicyInUseIsRefreshedBeforeExpiryAndKeptWhenTheRefreshFails) {
  const std::string host = "mta-sts.refresh.ststest";
  server_->SetPolicy(host, "version: STSv1\nmode: enforce\nmx: a.refresh.ststest\nmax_age: 10\n");
  auto f = MakeFetcher("refresh");
  ASSERT_NE(f, nullptr);
  StsLookup first = Settle(f.get(), "refresh.ststest");
  ASSERT_EQ(first.state, StsLookup::State::kPolicy) << first.failure;
  ASSERT_TRUE(first.policy->MatchesMx("a.refresh.ststest"));
  server_->SetPolicy(host, "version: STSv1\nmode: enforce\nmx: b.refresh.ststest\nmax_age: 10\n");
  // Half the max_age (5 s) after the fetch the fetcher refreshes on its own.
  std::shared_ptr<const StsPolicy> refreshed;
  for (int i = 0; i < 800; ++i) {
    refreshed = f->store().Get("refresh.ststest");
    if (refreshed != nullptr && refreshed->MatchesMx("b.refresh.ststest")) break;
    absl::SleepFor(absl::Milliseconds(25));
  }
  ASSERT_TRUE(refreshed != nullptr && refreshed->MatchesMx("b.refresh.ststest"))
      << "no proactive refresh within 20 s";
  EXPECT_GE(f->stats().proactive_refreshes, 1u);
  EXPECT_LT(refreshed->fetched, first.policy->expires()) << "refreshed only after it had expired";
  StsLookup used = f->Lookup("refresh.ststest", absl::Now());  // what a worker now gets
  ASSERT_EQ(used.state, StsLookup::State::kPolicy);
  EXPECT_TRUE(used.policy->MatchesMx("b.refresh.ststest"));

  // The policy host answers 404 from now on: the next refresh fails, the cached policy stays.
  server_->Remove(host);
  const uint64_t failures = f->stats().fetch_failures;
  for (int i = 0; i < 800 && f->stats().fetch_failures == failures; ++i) {
    absl::SleepFor(absl::Milliseconds(25));
  }
  ASSERT_GT(f->stats().fetch_failures, failures) << "no refresh attempt within 20 s";
  const absl::Time now = absl::Now();
  StsLookup kept = f->Lookup("refresh.ststest", now);
  if (now < refreshed->expires()) {  // (a loaded machine may have taken longer than max_age)
    ASSERT_EQ(kept.state, StsLookup::State::kPolicy);
    EXPECT_TRUE(kept.policy->MatchesMx("b.refresh.ststest"));
    EXPECT_TRUE(absl::StartsWith(kept.failure, "sts-policy-fetch-error")) << kept.failure;
  }
  // Past its expiry it is gone: no stale policy is enforced forever.
  while (absl::Now() < refreshed->expires() + absl::Milliseconds(50)) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(f->Lookup("refresh.ststest", absl::Now()).state, StsLookup::State::kNoPolicy);
}

}  // namespace
}  // namespace mxb
