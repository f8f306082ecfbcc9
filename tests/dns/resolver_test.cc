// Resolver against a real unbound on 127.0.0.1 (local-data zones, an unsigned zone with a wrong
// trust anchor for SERVFAIL, a signed auth-zone for DNSSEC), driven by a poll() loop, plus
// fault-injection UDP servers for timeouts and the AD bit.
#include "dns/resolver.h"

#include <arpa/inet.h>

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "dns/dns_wire.h"
#include "gtest/gtest.h"
#include "tests/dns/dns_test_util.h"

namespace mxb {
namespace {

using testing::AuthZone;
using testing::kBogusAnchor;
using testing::kBogusZone;

using testing::PollLoop;
using testing::UnboundServer;

// Every name here is under a TLD unbound serves itself: nothing leaves 127.0.0.1.
constexpr char kLocalData[] = R"(
  local-zone: "test." static
  local-data: "test. 3600 IN SOA ns.test. host.test. 1 3600 600 86400 120"
  local-data: "multi.test. 300 IN MX 10 mx10a.multi.test."
  local-data: "multi.test. 300 IN MX 10 mx10b.multi.test."
  local-data: "multi.test. 300 IN MX 10 mx10c.multi.test."
  local-data: "multi.test. 300 IN MX 30 mx30.multi.test."
  local-data: "multi.test. 300 IN MX 20 mx20.multi.test."
  local-data: "mx10a.multi.test. 300 IN A 127.0.0.11"
  local-data: "mx10b.multi.test. 300 IN A 127.0.0.12"
  local-data: "mx10c.multi.test. 300 IN A 127.0.0.13"
  local-data: "mx20.multi.test. 300 IN A 127.0.0.20"
  local-data: "mx20.multi.test. 300 IN AAAA ::1"
  local-data: "mx30.multi.test. 300 IN A 127.0.0.30"
  local-data: '_mta-sts.multi.test. 300 IN TXT "v=STSv1; " "id=20261123"'
  local-data: "loop1.test. 300 IN MX 10 a.loop.test."
  local-data: "a.loop.test. 300 IN CNAME b.loop.test."
  local-data: "b.loop.test. 300 IN CNAME a.loop.test."
  local-data: "dloop.test. 300 IN CNAME dloop2.test."
  local-data: "dloop2.test. 300 IN CNAME dloop.test."
  local-data: "longchain.test. 300 IN MX 10 c1.chain.test."
  local-data: "c1.chain.test. 300 IN CNAME c2.chain.test."
  local-data: "c2.chain.test. 300 IN CNAME c3.chain.test."
  local-data: "c3.chain.test. 300 IN CNAME c4.chain.test."
  local-data: "c4.chain.test. 300 IN CNAME c5.chain.test."
  local-data: "c5.chain.test. 300 IN CNAME c6.chain.test."
  local-data: "c6.chain.test. 300 IN CNAME c7.chain.test."
  local-data: "c7.chain.test. 300 IN CNAME c8.chain.test."
  local-data: "c8.chain.test. 300 IN CNAME c9.chain.test."
  local-data: "c9.chain.test. 300 IN CNAME c10.chain.test."
  local-data: "c10.chain.test. 300 IN CNAME c11.chain.test."
  local-data: "c11.chain.test. 300 IN CNAME c12.chain.test."
  local-data: "c12.chain.test. 300 IN CNAME c13.chain.test."
  local-data: "c13.chain.test. 300 IN CNAME c14.chain.test."
  local-data: "c14.chain.test. 300 IN CNAME c15.chain.test."
  local-data: "c15.chain.test. 300 IN CNAME c16.chain.test."
  local-data: "c16.chain.test. 300 IN CNAME c17.chain.test."
  local-data: "c17.chain.test. 300 IN CNAME c18.chain.test."
  local-data: "c18.chain.test. 300 IN CNAME c19.chain.test."
  local-data: "c19.chain.test. 300 IN CNAME c20.chain.test."
  local-data: "c20.chain.test. 300 IN A 127.0.0.41"
  local-data: "implicit.test. 300 IN A 127.0.0.40"
  local-data: "implicit.test. 300 IN AAAA ::1"
  local-data: "nullmx.test. 300 IN MX 0 ."
  local-data: "noaddr.test. 300 IN MX 10 ghost.noaddr.test."
  local-data: "noaddr.test. 300 IN MX 20 ghost2.noaddr.test."
  local-data: "partial.test. 300 IN MX 10 ghost.partial.test."
  local-data: "partial.test. 300 IN MX 20 mx.partial.test."
  local-data: "mx.partial.test. 300 IN A 127.0.0.50"
  local-data: "cname.test. 300 IN MX 10 alias.cname.test."
  local-data: "alias.cname.test. 300 IN CNAME real.cname.test."
  local-data: "real.cname.test. 300 IN A 127.0.0.60"
  local-data: "v6only.test. 300 IN MX 10 mx.v6only.test."
  local-data: "mx.v6only.test. 300 IN AAAA ::1"
  local-data: "xn--bcher-kva.test. 300 IN MX 10 mx.xn--bcher-kva.test."
  local-data: "mx.xn--bcher-kva.test. 300 IN A 127.0.0.70"
  local-data: "literal.test. 300 IN MX 10 [127.0.0.1]."
  local-data: "literal.test. 300 IN MX 20 127.0.0.2."
  local-data: "mixlit.test. 300 IN MX 10 127.0.0.1."
  local-data: "mixlit.test. 300 IN MX 20 mx.mixlit.test."
  local-data: "mx.mixlit.test. 300 IN A 127.0.0.80"
  local-data: "ttl.test. 60 IN MX 10 mx.ttl.test."
  local-data: "mx.ttl.test. 600 IN A 127.0.0.90"
  local-data: "shortttl.test. 5 IN MX 10 mx.ttl.test."
  local-data: "_25._tcp.mx.multi.test. 300 IN TLSA 3 1 1 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
  local-data: "many.test. 300 IN MX 10 m1.many.test."
  local-data: "many.test. 300 IN MX 20 m2.many.test."
  local-data: "many.test. 300 IN MX 30 m3.many.test."
  local-data: "many.test. 300 IN MX 40 m4.many.test."
  local-data: "m1.many.test. 300 IN A 127.0.1.1"
  local-data: "m2.many.test. 300 IN A 127.0.1.2"
  local-data: "m3.many.test. 300 IN A 127.0.1.3"
  local-data: "m4.many.test. 300 IN A 127.0.1.4"
)";

constexpr char kSignedZone[] = R"($TTL 300
signed. IN SOA ns.signed. host.signed. 1 3600 600 86400 60
signed. IN NS ns.signed.
ns.signed. IN A 127.0.0.53
signed. IN MX 10 mx.signed.
mx.signed. IN A 127.0.0.54
_25._tcp.mx.signed. IN TLSA 3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
)";


std::string Ip(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&ss)->sin_addr, buf, sizeof(buf));
  } else {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_addr, buf, sizeof(buf));
  }
  return buf;
}

class ResolverTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { StartServer(/*with_signed_zone=*/false); }
  static void StartServer(bool with_signed_zone) {
    // The zone files live next to unbound's config; write them into a dir of our own first.
    char tmpl[] = "/tmp/mxb-dns-zones-XXXXXX";
    zone_dir_ = new std::string(mkdtemp(tmpl) ? tmpl : "/tmp");
    std::string bogus_file = *zone_dir_ + "/bogus.zone";
    FILE* f = std::fopen(bogus_file.c_str(), "w");
    if (f != nullptr) {
      std::fputs(kBogusZone, f);
      std::fclose(f);
    }
    std::string server_conf = absl::StrCat(kLocalData, kBogusAnchor);
    std::string extra = AuthZone("bogus.", bogus_file);
    absl::StatusOr<testing::SignedZone> signed_zone =
        with_signed_zone ? testing::MakeSignedZone(*zone_dir_, "signed.", kSignedZone)
                         : absl::StatusOr<testing::SignedZone>(
                               absl::FailedPreconditionError("not signed in this suite"));
    have_signed_zone_ = false;
    if (signed_zone.ok()) {
      server_conf += absl::StrCat("  trust-anchor-file: \"", signed_zone->anchor_file, "\"\n");
      extra += AuthZone("signed.", signed_zone->zone_file);
      have_signed_zone_ = true;
    } else {
      signed_zone_error_ = new std::string(signed_zone.status().ToString());
    }
    absl::StatusOr<std::unique_ptr<UnboundServer>> s = UnboundServer::Start(server_conf, extra);
    if (s.ok()) {
      unbound_ = s->release();
    } else {
      start_error_ = new std::string(s.status().ToString());
    }
  }
  static void TearDownTestSuite() {
    delete unbound_;
    unbound_ = nullptr;
    if (zone_dir_ != nullptr) std::filesystem::remove_all(*zone_dir_);
    delete zone_dir_;
    zone_dir_ = nullptr;
  }

  void SetUp() override {
    if (unbound_ == nullptr) GTEST_SKIP() << "unbound: " << (start_error_ ? *start_error_ : "");
  }

  Resolver::Options Opts() const {
    Resolver::Options o;
    o.servers = {unbound_->address()};
    o.query_timeout = absl::Seconds(2);
    return o;
  }

  std::unique_ptr<Resolver> Make(const Resolver::Options& o) {
    absl::StatusOr<std::unique_ptr<Resolver>> r = Resolver::Create(o, loop_.Watcher());
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *std::move(r) : nullptr;
  }

  MxResult Mx(Resolver& r, absl::string_view domain) {
    MxResult out;
    bool done = false;
    r.ResolveMx(domain, [&](const MxResult& m) {
      out = m;
      done = true;
    });
    EXPECT_TRUE(loop_.RunUntil(r, [&] { return done; })) << "no answer for " << domain;
    return out;
  }

  static std::vector<std::string> Names(const MxResult& m) {
    std::vector<std::string> v;
    for (const MxHost& h : m.hosts) v.push_back(h.name);
    return v;
  }

  PollLoop loop_;
  static UnboundServer* unbound_;
  static std::string* start_error_;
  static std::string* zone_dir_;
  static std::string* signed_zone_error_;
  static bool have_signed_zone_;
};
UnboundServer* ResolverTest::unbound_ = nullptr;
std::string* ResolverTest::start_error_ = nullptr;
std::string* ResolverTest::zone_dir_ = nullptr;
std::string* ResolverTest::signed_zone_error_ = nullptr;
bool ResolverTest::have_signed_zone_ = false;

TEST_F(ResolverTest, MxSortedByPreferenceWithAddresses) {
  auto r = Make(Opts());
  MxResult m = Mx(*r, "multi.test");
  ASSERT_EQ(m.status, DnsStatus::kOk) << m.error;
  EXPECT_EQ(m.domain, "multi.test");
  EXPECT_FALSE(m.implicit_mx);
  EXPECT_FALSE(m.dnssec);  // local-data is not signed
  ASSERT_EQ(m.hosts.size(), 5u);
  std::vector<std::string> names = Names(m);
  std::set<std::string> first3(names.begin(), names.begin() + 3);
  EXPECT_EQ(first3, (std::set<std::string>{"mx10a.multi.test", "mx10b.multi.test",
                                           "mx10c.multi.test"}));
  EXPECT_EQ(m.hosts[3].name, "mx20.multi.test");
  EXPECT_EQ(m.hosts[3].preference, 20);
  EXPECT_EQ(m.hosts[4].name, "mx30.multi.test");
  // IPv4 first unless prefer_ipv6.
  ASSERT_EQ(m.hosts[3].addresses.size(), 2u);
  EXPECT_EQ(Ip(m.hosts[3].addresses[0]), "127.0.0.20");
  EXPECT_EQ(Ip(m.hosts[3].addresses[1]), "::1");
  for (const MxHost& h : m.hosts) EXPECT_EQ(h.address_status, DnsStatus::kOk) << h.name;
}

TEST_F(ResolverTest, PreferIpv6AndIpv4Only) {
  Resolver::Options o = Opts();
  o.prefer_ipv6 = true;
  auto r = Make(o);
  MxResult m = Mx(*r, "multi.test");
  ASSERT_EQ(m.status, DnsStatus::kOk);
  EXPECT_EQ(Ip(m.hosts[3].addresses[0]), "::1");
  o.prefer_ipv6 = false;
  o.ipv6 = false;
  auto r4 = Make(o);
  m = Mx(*r4, "multi.test");
  ASSERT_EQ(m.status, DnsStatus::kOk);
  ASSERT_EQ(m.hosts[3].addresses.size(), 1u);
  EXPECT_EQ(r4->stats().queries_sent, 6u);  // MX + 5 A
}

TEST_F(ResolverTest, EqualPreferencesAreShuffledOnEveryCall) {
  auto r = Make(Opts());
  ASSERT_EQ(Mx(*r, "multi.test").status, DnsStatus::kOk);
  std::set<std::string> firsts;
  for (int i = 0; i < 200; ++i) {
    bool called = false;
    r->ResolveMx("multi.test", [&](const MxResult& m) {
      called = true;
      ASSERT_EQ(m.hosts.size(), 5u);
      firsts.insert(m.hosts[0].name);
      for (size_t k = 1; k < m.hosts.size(); ++k) {
        EXPECT_LE(m.hosts[k - 1].preference, m.hosts[k].preference);
      }
      EXPECT_EQ(m.hosts[4].name, "mx30.multi.test");
    });
    EXPECT_TRUE(called) << "a cache hit answers synchronously";
  }
  EXPECT_EQ(firsts.size(), 3u);  // (2/3)^200 chance of a false failure per missing host
}

TEST_F(ResolverTest, CacheHitIsSynchronousAndSendsNothing) {
  auto r = Make(Opts());
  ASSERT_EQ(Mx(*r, "multi.test").status, DnsStatus::kOk);
  Resolver::Stats before = r->stats();
  EXPECT_EQ(before.queries_sent, 11u);  // MX + 5 x (A, AAAA)
  EXPECT_EQ(before.in_flight, 0u);
  bool called = false;
  r->ResolveMx("MULTI.test.", [&](const MxResult& m) {
    called = true;
    EXPECT_EQ(m.status, DnsStatus::kOk);
  });
  EXPECT_TRUE(called);
  EXPECT_EQ(r->stats().queries_sent, before.queries_sent);
  EXPECT_EQ(r->stats().cache_hits, before.cache_hits + 1);
  EXPECT_EQ(r->NextTimeout(), absl::InfiniteDuration());
}

TEST_F(ResolverTest, TenThousandCallersOneQuerySet) {
  auto r = Make(Opts());
  int answered = 0;
  for (int i = 0; i < 10000; ++i) {
    r->ResolveMx("multi.test", [&](const MxResult& m) {
      EXPECT_EQ(m.status, DnsStatus::kOk);
      ++answered;
    });
  }
  EXPECT_EQ(answered, 0);
  EXPECT_EQ(r->stats().queries_sent, 1u);
  EXPECT_EQ(r->stats().deduplicated, 9999u);
  ASSERT_TRUE(loop_.RunUntil(*r, [&] { return answered == 10000; }));
  EXPECT_EQ(r->stats().queries_sent, 11u);
  EXPECT_EQ(r->stats().in_flight, 0u);
  EXPECT_GE(r->stats().peak_in_flight, 1u);
}

TEST_F(ResolverTest, MaxInFlightQueuesTheRest) {
  Resolver::Options o = Opts();
  o.max_in_flight = 2;
  auto r = Make(o);
  int answered = 0;
  for (int i = 0; i < 20; ++i) {
    r->ResolveMx(absl::StrCat("n", i, ".nosuch.test"), [&](const MxResult& m) {
      EXPECT_EQ(m.status, DnsStatus::kNxDomain);
      ++answered;
    });
  }
  EXPECT_EQ(r->stats().in_flight, 2u);
  EXPECT_EQ(r->stats().queued, 18u);
  ASSERT_TRUE(loop_.RunUntil(*r, [&] { return answered == 20; }));
  EXPECT_EQ(r->stats().peak_in_flight, 2u);
  EXPECT_EQ(r->stats().queued, 0u);
  EXPECT_EQ(r->stats().queries_sent, 20u);
}

TEST_F(ResolverTest, SharedMxHostsAreLookedUpOnce) {
  auto r = Make(Opts());
  // ttl.test and shortttl.test share mx.ttl.test: its A/AAAA come from the RRset cache.
  ASSERT_EQ(Mx(*r, "ttl.test").status, DnsStatus::kOk);
  uint64_t sent = r->stats().queries_sent;
  ASSERT_EQ(Mx(*r, "shortttl.test").status, DnsStatus::kOk);
  EXPECT_EQ(r->stats().queries_sent, sent + 1);
}

TEST_F(ResolverTest, CallbackMayCallResolveMxAgain) {
  auto r = Make(Opts());
  int outer = 0, inner = 0, nested_other = 0;
  r->ResolveMx("multi.test", [&](const MxResult& m) {
    ++outer;
    EXPECT_EQ(m.status, DnsStatus::kOk);
    r->ResolveMx("multi.test", [&](const MxResult& m2) {  // a cache hit, synchronous
      ++inner;
      EXPECT_EQ(m2.status, DnsStatus::kOk);
      r->ResolveMx("implicit.test", [&](const MxResult&) { ++nested_other; });
    });
    EXPECT_EQ(inner, 1);
  });
  ASSERT_TRUE(loop_.RunUntil(*r, [&] { return nested_other == 1; }));
  EXPECT_EQ(outer, 1);
}

TEST_F(ResolverTest, ImplicitMx) {
  auto r = Make(Opts());
  MxResult m = Mx(*r, "implicit.test");
  ASSERT_EQ(m.status, DnsStatus::kOk) << m.error;
  EXPECT_TRUE(m.implicit_mx);
  ASSERT_EQ(m.hosts.size(), 1u);
  EXPECT_EQ(m.hosts[0].name, "implicit.test");
  EXPECT_EQ(m.hosts[0].preference, 0);
  EXPECT_EQ(m.hosts[0].addresses.size(), 2u);
}

TEST_F(ResolverTest, NullMxAtOnce) {
  auto r = Make(Opts());
  MxResult m = Mx(*r, "nullmx.test");
  EXPECT_EQ(m.status, DnsStatus::kNullMx) << m.error;
  EXPECT_TRUE(m.hosts.empty());
  EXPECT_EQ(r->stats().queries_sent, 1u);  // no address lookups
}

TEST_F(ResolverTest, NxDomainIsCachedNegatively) {
  auto r = Make(Opts());
  MxResult m = Mx(*r, "nosuch.test");
  EXPECT_EQ(m.status, DnsStatus::kNxDomain) << m.error;
  EXPECT_NE(m.error.find("NXDOMAIN"), std::string::npos) << m.error;
  EXPECT_EQ(Mx(*r, "nosuch.test").status, DnsStatus::kNxDomain);
  EXPECT_EQ(r->stats().queries_sent, 1u);
}

TEST_F(ResolverTest, NoAddressForAnyMxHostIsNoData) {
  auto r = Make(Opts());
  MxResult m = Mx(*r, "noaddr.test");
  EXPECT_EQ(m.status, DnsStatus::kNoData) << m.error;
  ASSERT_EQ(m.hosts.size(), 2u);
  for (const MxHost& h : m.hosts) {
    EXPECT_EQ(h.address_status, DnsStatus::kNoData);
    EXPECT_TRUE(h.addresses.empty());
  }
}

TEST_F(ResolverTest, HostWithoutAddressIsKeptButUnusable) {
  auto r = Make(Opts());
  MxResult m = Mx(*r, "partial.test");
  ASSERT_EQ(m.status, DnsStatus::kOk) << m.error;
  ASSERT_EQ(m.hosts.size(), 2u);
  EXPECT_EQ(m.hosts[0].name, "ghost.partial.test");
  EXPECT_EQ(m.hosts[0].address_status, DnsStatus::kNoData);
  EXPECT_TRUE(m.hosts[0].addresses.empty());
  EXPECT_EQ(m.hosts[1].address_status, DnsStatus::kOk);
}

TEST_F(ResolverTest, MxTargetThatIsACnameIsFollowed) {
  auto r = Make(Opts());
  MxResult m = Mx(*r, "cname.test");
  ASSERT_EQ(m.status, DnsStatus::kOk) << m.error;
  ASSERT_EQ(m.hosts.size(), 1u);
  EXPECT_EQ(m.hosts[0].name, "alias.cname.test");  // the MX name is kept (TLS policy key)
  ASSERT_EQ(m.hosts[0].addresses.size(), 1u);
  EXPECT_EQ(Ip(m.hosts[0].addresses[0]), "127.0.0.60");
}

// Issue 10 item 9: a CNAME loop is a temporary DNS failure (defer), never "no MX and no
// A/AAAA records" (a bounce), and the text names the loop.
TEST_F(ResolverTest, CnameLoopIsTempFailWithTheLoopNamed) {
  auto r = Make(Opts());
  MxResult m = Mx(*r, "loop1.test");  // MX target a.loop.test -> b.loop.test -> a.loop.test
  EXPECT_EQ(m.status, DnsStatus::kTempFail) << m.error;
  EXPECT_NE(m.error.find("CNAME loop"), std::string::npos) << m.error;
  EXPECT_NE(m.error.find("a.loop.test"), std::string::npos) << m.error;
  EXPECT_EQ(r->stats().in_flight, 0u);
  // The domain itself is a loop: the MX query (and the implicit-MX fallback) must not bounce.
  m = Mx(*r, "dloop.test");
  EXPECT_EQ(m.status, DnsStatus::kTempFail) << m.error;
  EXPECT_NE(m.error.find("CNAME loop"), std::string::npos) << m.error;
  EXPECT_EQ(r->stats().in_flight, 0u);
}

TEST_F(ResolverTest, CnameChainTooLongIsTempFail) {
  auto r = Make(Opts());
  MxResult m = Mx(*r, "longchain.test");  // c1 -> ... -> c20 (19 CNAMEs)
  EXPECT_EQ(m.status, DnsStatus::kTempFail) << m.error;
  EXPECT_NE(m.error.find("CNAME chain longer than"), std::string::npos) << m.error;
  EXPECT_EQ(r->stats().in_flight, 0u);
}

TEST_F(ResolverTest, AaaaOnlyHost) {
  auto r = Make(Opts());
  MxResult m = Mx(*r, "v6only.test");
  ASSERT_EQ(m.status, DnsStatus::kOk) << m.error;
  ASSERT_EQ(m.hosts[0].addresses.size(), 1u);
  EXPECT_EQ(m.hosts[0].addresses[0].ss_family, AF_INET6);
  Resolver::Options o = Opts();
  o.ipv6 = false;
  auto r4 = Make(o);
  EXPECT_EQ(Mx(*r4, "v6only.test").status, DnsStatus::kNoData);
}

TEST_F(ResolverTest, IdnDomainIsLookedUpAsALabel) {
  auto r = Make(Opts());
  MxResult m = Mx(*r, "B\xC3\xBC" "cher.test");  // Bücher.test
  ASSERT_EQ(m.status, DnsStatus::kOk) << m.error;
  EXPECT_EQ(m.domain, "xn--bcher-kva.test");
  EXPECT_EQ(m.hosts[0].name, "mx.xn--bcher-kva.test");
  uint64_t sent = r->stats().queries_sent;
  EXPECT_EQ(Mx(*r, "xn--bcher-kva.test").status, DnsStatus::kOk);  // same cache entry
  EXPECT_EQ(r->stats().queries_sent, sent);
}

TEST_F(ResolverTest, BadNamesAnswerSynchronously) {
  auto r = Make(Opts());
  for (const char* bad : {"", "a..b", "[127.0.0.1]", "127.0.0.1", "bad name.test",
                          "\xff\xfe.test"}) {
    bool called = false;
    r->ResolveMx(bad, [&](const MxResult& m) {
      called = true;
      EXPECT_EQ(m.status, DnsStatus::kBadName) << bad;
    });
    EXPECT_TRUE(called) << bad;
  }
  EXPECT_EQ(r->stats().queries_sent, 0u);
}

TEST_F(ResolverTest, AddressLiteralMxTargetsAreSkipped) {
  auto r = Make(Opts());
  MxResult m = Mx(*r, "literal.test");
  EXPECT_EQ(m.status, DnsStatus::kNoData) << m.error;
  EXPECT_TRUE(m.hosts.empty());
  m = Mx(*r, "mixlit.test");
  ASSERT_EQ(m.status, DnsStatus::kOk) << m.error;
  ASSERT_EQ(m.hosts.size(), 1u);
  EXPECT_EQ(m.hosts[0].name, "mx.mixlit.test");
  EXPECT_NE(m.error.find("127.0.0.1"), std::string::npos) << m.error;
}

TEST_F(ResolverTest, MaxMxHostsKeepsTheBestPreferences) {
  Resolver::Options o = Opts();
  o.max_mx_hosts = 2;
  auto r = Make(o);
  MxResult m = Mx(*r, "many.test");
  ASSERT_EQ(m.status, DnsStatus::kOk);
  EXPECT_EQ(Names(m), (std::vector<std::string>{"m1.many.test", "m2.many.test"}));
  EXPECT_EQ(r->stats().queries_sent, 1u + 2 * 2);  // no lookups for capped hosts
}

TEST_F(ResolverTest, ServFailIsTempFailNeverABounce) {
  Resolver::Options o = Opts();
  absl::Time now = absl::FromUnixSeconds(1000000);
  o.clock = [&now] { return now; };
  o.tempfail_ttl = absl::Seconds(30);
  auto r = Make(o);
  MxResult m = Mx(*r, "bogus");
  EXPECT_EQ(m.status, DnsStatus::kTempFail) << m.error;
  // Issue 10 item 12: it says SERVFAIL, not "Could not contact DNS servers".
  EXPECT_NE(m.error.find("SERVFAIL"), std::string::npos) << m.error;
  EXPECT_EQ(m.error.find("Could not contact"), std::string::npos) << m.error;
  uint64_t sent = r->stats().queries_sent;
  EXPECT_EQ(Mx(*r, "bogus").status, DnsStatus::kTempFail);  // cached briefly: no stampede
  EXPECT_EQ(r->stats().queries_sent, sent);
  now += absl::Seconds(31);
  EXPECT_EQ(Mx(*r, "bogus").status, DnsStatus::kTempFail);
  EXPECT_GT(r->stats().queries_sent, sent);
}

TEST_F(ResolverTest, TtlIsHonouredAndClampedToTheFloor) {
  Resolver::Options o = Opts();
  absl::Time now = absl::FromUnixSeconds(1000000);
  o.clock = [&now] { return now; };
  o.ttl_floor = absl::Seconds(30);
  auto r = Make(o);
  ASSERT_EQ(Mx(*r, "ttl.test").status, DnsStatus::kOk);       // MX TTL 60
  ASSERT_EQ(Mx(*r, "shortttl.test").status, DnsStatus::kOk);  // MX TTL 5 -> floor 30
  uint64_t sent = r->stats().queries_sent;
  now += absl::Seconds(20);
  Mx(*r, "ttl.test");
  Mx(*r, "shortttl.test");
  EXPECT_EQ(r->stats().queries_sent, sent);
  now += absl::Seconds(15);  // 35 s: shortttl expired (floor), ttl.test not
  Mx(*r, "ttl.test");
  EXPECT_EQ(r->stats().queries_sent, sent);
  Mx(*r, "shortttl.test");
  EXPECT_EQ(r->stats().queries_sent, sent + 1);  // MX only: mx.ttl.test's A is still cached
  now += absl::Seconds(30);  // 65 s
  Mx(*r, "ttl.test");
  EXPECT_EQ(r->stats().queries_sent, sent + 2);
}

TEST_F(ResolverTest, NegativeAnswerExpires) {
  Resolver::Options o = Opts();
  absl::Time now = absl::FromUnixSeconds(1000000);
  o.clock = [&now] { return now; };
  o.negative_ttl = absl::Minutes(5);
  auto r = Make(o);
  EXPECT_EQ(Mx(*r, "nosuch.test").status, DnsStatus::kNxDomain);
  now += absl::Seconds(100);
  EXPECT_EQ(Mx(*r, "nosuch.test").status, DnsStatus::kNxDomain);
  EXPECT_EQ(r->stats().queries_sent, 1u);
  now += absl::Seconds(30);  // SOA: min(TTL 3600, MINIMUM 120) = 120 s
  EXPECT_EQ(Mx(*r, "nosuch.test").status, DnsStatus::kNxDomain);
  EXPECT_EQ(r->stats().queries_sent, 2u);
}

TEST_F(ResolverTest, TlsaAndTxt) {
  auto r = Make(Opts());
  TlsaResult t;
  bool done = false;
  r->ResolveTlsa("mx.multi.test", 25, [&](const TlsaResult& x) {
    t = x;
    done = true;
  });
  ASSERT_TRUE(loop_.RunUntil(*r, [&] { return done; }));
  ASSERT_EQ(t.status, DnsStatus::kOk) << t.error;
  ASSERT_EQ(t.records.size(), 1u);
  EXPECT_EQ(t.records[0].usage, 3);
  EXPECT_EQ(t.records[0].selector, 1);
  EXPECT_EQ(t.records[0].matching_type, 1);
  ASSERT_EQ(t.records[0].data.size(), 32u);
  EXPECT_EQ(static_cast<uint8_t>(t.records[0].data[1]), 0x11);
  EXPECT_FALSE(t.dnssec);

  done = false;
  r->ResolveTlsa("mx10a.multi.test", 25, [&](const TlsaResult& x) {
    t = x;
    done = true;
  });
  ASSERT_TRUE(loop_.RunUntil(*r, [&] { return done; }));
  EXPECT_EQ(t.status, DnsStatus::kNxDomain);

  TxtResult txt;
  done = false;
  r->ResolveTxt("_mta-sts.multi.test", [&](const TxtResult& x) {
    txt = x;
    done = true;
  });
  ASSERT_TRUE(loop_.RunUntil(*r, [&] { return done; }));
  ASSERT_EQ(txt.status, DnsStatus::kOk) << txt.error;
  EXPECT_EQ(txt.records, std::vector<std::string>{"v=STSv1; id=20261123"});
}

// Signing costs a key generation per process: only this suite pays it.
class ResolverDnssecTest : public ResolverTest {
 protected:
  static void SetUpTestSuite() { StartServer(/*with_signed_zone=*/true); }
};

TEST_F(ResolverDnssecTest, SignedZoneIsValidated) {
  if (!have_signed_zone_) GTEST_SKIP() << *signed_zone_error_;
  auto r = Make(Opts());
  MxResult m = Mx(*r, "signed");
  ASSERT_EQ(m.status, DnsStatus::kOk) << m.error;
  EXPECT_TRUE(m.dnssec);
  ASSERT_EQ(m.hosts.size(), 1u);
  EXPECT_TRUE(m.hosts[0].dnssec);
  TlsaResult t;
  bool done = false;
  r->ResolveTlsa("mx.signed", 25, [&](const TlsaResult& x) {
    t = x;
    done = true;
  });
  ASSERT_TRUE(loop_.RunUntil(*r, [&] { return done; }));
  ASSERT_EQ(t.status, DnsStatus::kOk) << t.error;
  EXPECT_TRUE(t.dnssec);
  ASSERT_EQ(t.records.size(), 1u);
  EXPECT_EQ(t.records[0].data.size(), 32u);
  // Authenticated denial: a signed NODATA still carries AD.
  done = false;
  r->ResolveTlsa("ns.signed", 25, [&](const TlsaResult& x) {
    t = x;
    done = true;
  });
  ASSERT_TRUE(loop_.RunUntil(*r, [&] { return done; }));
  EXPECT_EQ(t.status, DnsStatus::kNxDomain);
  EXPECT_TRUE(t.dnssec);
}

// --- fault injection: no unbound needed ---------------------------------------------------------

TEST(ResolverFaultTest, SilentServerTimesOutAsTempFail) {
  absl::StatusOr<std::unique_ptr<testing::UdpBlackhole>> hole = testing::UdpBlackhole::Start();
  ASSERT_TRUE(hole.ok()) << hole.status();
  PollLoop loop;
  Resolver::Options o;
  o.servers = {(*hole)->address()};
  o.query_timeout = absl::Milliseconds(150);
  o.tries = 2;
  absl::StatusOr<std::unique_ptr<Resolver>> r = Resolver::Create(o, loop.Watcher());
  ASSERT_TRUE(r.ok()) << r.status();
  MxResult m;
  bool done = false;
  (*r)->ResolveMx("slow.test", [&](const MxResult& x) {
    m = x;
    done = true;
  });
  EXPECT_GT(loop.watched(), 0u);
  EXPECT_LT((*r)->NextTimeout(), absl::Seconds(1));
  ASSERT_TRUE(loop.RunUntil(**r, [&] { return done; }, absl::Seconds(5)));
  EXPECT_EQ(m.status, DnsStatus::kTempFail);
  EXPECT_NE(m.error.find("imeout"), std::string::npos) << m.error;
  EXPECT_EQ((*r)->stats().in_flight, 0u);
}

// Answers every query with one record of the asked type (MX -> "10 mx.<qname>", A ->
// 127.0.0.9), the AD bit set as told; "garbage.*" gets a truncated answer.
std::vector<uint8_t> ScriptedAnswer(const std::vector<uint8_t>& q, bool ad) {
  if (q.size() < 12 + 5) return {};
  size_t p = 12;
  std::string qname;
  while (p < q.size() && q[p] != 0) {
    size_t n = q[p];
    if (!qname.empty()) qname += '.';
    qname.append(reinterpret_cast<const char*>(&q[p + 1]), n);
    p += 1 + n;
  }
  size_t qend = p + 5;  // root + type + class
  if (qend > q.size()) return {};
  uint16_t qtype = static_cast<uint16_t>((q[p + 1] << 8) | q[p + 2]);
  std::vector<uint8_t> a(q.begin(), q.begin() + qend);
  a[2] = 0x81;                           // QR, RD
  a[3] = static_cast<uint8_t>(0x80 | (ad ? 0x20 : 0));  // RA, AD
  a[6] = 0; a[7] = 1;                    // ANCOUNT 1
  a[8] = a[9] = a[10] = a[11] = 0;       // no authority, no additional (drops the OPT)
  if (qname.rfind("garbage.", 0) == 0) {
    a.push_back(0xC0);  // a compression pointer and nothing more
    return a;
  }
  auto put16 = [&a](uint16_t v) { a.push_back(v >> 8); a.push_back(v & 0xFF); };
  a.push_back(0xC0); a.push_back(12);  // owner: the question's name
  put16(qtype);
  put16(1);
  put16(0); put16(300);  // TTL
  if (qtype == dns_wire::kTypeMx) {
    put16(2 + 3 + 2);    // pref + "\2mx" + pointer
    put16(10);
    a.push_back(2); a.push_back('m'); a.push_back('x');
    a.push_back(0xC0); a.push_back(12);
  } else if (qtype == dns_wire::kTypeA) {
    put16(4);
    for (uint8_t b : {127, 0, 0, 9}) a.push_back(b);
  } else {
    a[7] = 0;  // NODATA
    a.resize(qend);
  }
  return a;
}

TEST(ResolverFaultTest, AdBitFromTheAnswerIsRecorded) {
  for (bool ad : {true, false}) {
    absl::StatusOr<std::unique_ptr<testing::ScriptedResponder>> srv =
        testing::ScriptedResponder::Start(
            [ad](const std::vector<uint8_t>& q) { return ScriptedAnswer(q, ad); });
    ASSERT_TRUE(srv.ok()) << srv.status();
    PollLoop loop;
    loop.AddReader((*srv)->fd(), [s = srv->get()] { s->OnReadable(); });
    Resolver::Options o;
    o.servers = {(*srv)->address()};
    o.query_timeout = absl::Milliseconds(500);
    absl::StatusOr<std::unique_ptr<Resolver>> r = Resolver::Create(o, loop.Watcher());
    ASSERT_TRUE(r.ok());
    MxResult m;
    bool done = false;
    (*r)->ResolveMx("fault.test", [&](const MxResult& x) {
      m = x;
      done = true;
    });
    ASSERT_TRUE(loop.RunUntil(**r, [&] { return done; }, absl::Seconds(5)));
    ASSERT_EQ(m.status, DnsStatus::kOk) << m.error;
    EXPECT_EQ(m.dnssec, ad);
    ASSERT_EQ(m.hosts.size(), 1u);
    EXPECT_EQ(m.hosts[0].name, "mx.fault.test");
    EXPECT_EQ(m.hosts[0].dnssec, ad);
    EXPECT_EQ(Ip(m.hosts[0].addresses.at(0)), "127.0.0.9");

    done = false;
    (*r)->ResolveMx("garbage.test", [&](const MxResult& x) {
      m = x;
      done = true;
    });
    ASSERT_TRUE(loop.RunUntil(**r, [&] { return done; }, absl::Seconds(5)));
    EXPECT_EQ(m.status, DnsStatus::kTempFail) << m.error;
  }
}

// A server that answers REFUSED: the text says so, and the next configured server is still
// asked (c-ares' failover), whatever the order.
TEST(ResolverFaultTest, RefusedIsNamedAndTheNextServerIsTried) {
  auto refuse = [](const std::vector<uint8_t>& q) {
    std::vector<uint8_t> a = ScriptedAnswer(q, false);
    if (a.size() < 12) return a;
    a[3] = 0x80 | dns_wire::kRcodeRefused;
    a[6] = a[7] = 0;
    return a;
  };
  absl::StatusOr<std::unique_ptr<testing::ScriptedResponder>> bad =
      testing::ScriptedResponder::Start(refuse);
  absl::StatusOr<std::unique_ptr<testing::ScriptedResponder>> good =
      testing::ScriptedResponder::Start(
          [](const std::vector<uint8_t>& q) { return ScriptedAnswer(q, false); });
  ASSERT_TRUE(bad.ok() && good.ok());
  for (int order = 0; order < 3; ++order) {
    SCOPED_TRACE(order);
    PollLoop loop;
    loop.AddReader((*bad)->fd(), [s = bad->get()] { s->OnReadable(); });
    loop.AddReader((*good)->fd(), [s = good->get()] { s->OnReadable(); });
    Resolver::Options o;
    if (order == 0) o.servers = {(*bad)->address()};
    if (order == 1) o.servers = {(*bad)->address(), (*good)->address()};
    if (order == 2) o.servers = {(*good)->address(), (*bad)->address()};
    o.query_timeout = absl::Milliseconds(500);
    absl::StatusOr<std::unique_ptr<Resolver>> r = Resolver::Create(o, loop.Watcher());
    ASSERT_TRUE(r.ok());
    for (const char* domain : {"one.test", "two.test", "three.test"}) {
      MxResult m;
      bool done = false;
      (*r)->ResolveMx(domain, [&](const MxResult& x) {
        m = x;
        done = true;
      });
      ASSERT_TRUE(loop.RunUntil(**r, [&] { return done; }, absl::Seconds(5)));
      if (order == 0) {
        EXPECT_EQ(m.status, DnsStatus::kTempFail);
        EXPECT_NE(m.error.find("REFUSED by " + (*bad)->address()), std::string::npos) << m.error;
      } else {
        EXPECT_EQ(m.status, DnsStatus::kOk) << m.error;
      }
    }
  }
}

TEST(ResolverFaultTest, CreateRejectsBadServers) {
  Resolver::Options o;
  o.servers = {"not an address"};
  EXPECT_FALSE(Resolver::Create(o, [](int, bool, bool) {}).ok());
  o.servers = {"127.0.0.1:5353"};
  EXPECT_FALSE(Resolver::Create(o, nullptr).ok());
}

}  // namespace
}  // namespace mxb
