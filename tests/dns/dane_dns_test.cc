// What DANE (RFC 7672 §2.2) needs from the resolver, against a real validating unbound: the AD
// bit on MX, A/AAAA and TLSA answers of a signed zone; authenticated denial of TLSA (signed
// NXDOMAIN / NODATA carry AD) told apart from a failed lookup (bogus -> SERVFAIL -> kTempFail);
// no AD below an insecure delegation.
#include <string>

#include "absl/strings/str_cat.h"
#include "dns/resolver.h"
#include "gtest/gtest.h"
#include "tests/dns/dane_zone.h"
#include "tests/dns/dns_test_util.h"

namespace mxb {
namespace {

using testing::PollLoop;

const std::string kDigest(32, '\x5a');

class DaneDnsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    testing::DaneZoneSpec spec;
    spec.zone = "dane.";
    const std::string tlsa = testing::TlsaRdata(3, 1, 1, kDigest);
    spec.records = absl::StrCat(
        "dane. IN MX 10 mx.dane.\n"
        "mx.dane. IN A 127.0.0.61\n",
        "_25._tcp.mx.dane. IN TLSA ", tlsa, "\n",
        "_26._tcp.mx.dane. IN TLSA ", testing::TlsaRdata(2, 0, 1, kDigest), "\n",
        "nodata.dane. IN MX 10 mx-nodata.dane.\n"
        "mx-nodata.dane. IN A 127.0.0.62\n"
        "_25._tcp.mx-nodata.dane. IN TXT \"not a TLSA\"\n"
        "notlsa.dane. IN MX 10 mx-notlsa.dane.\n"
        "mx-notlsa.dane. IN A 127.0.0.63\n"
        "bogus.dane. IN MX 10 mx-bogus.dane.\n"
        "mx-bogus.dane. IN A 127.0.0.64\n",
        "_25._tcp.mx-bogus.dane. IN TLSA ", tlsa, "\n",
        "badaddr.dane. IN MX 10 mx-badaddr.dane.\n"
        "mx-badaddr.dane. IN A 127.0.0.65\n",
        "tochild.dane. IN MX 10 mx.plain.dane.\n");
    spec.insecure_child = "plain.dane.";
    spec.insecure_records = absl::StrCat("plain.dane. IN MX 10 mx.plain.dane.\n"
                                         "mx.plain.dane. IN A 127.0.0.66\n"
                                         "_25._tcp.mx.plain.dane. IN TLSA ",
                                         tlsa, "\n");
    spec.bogus_owners = {"_25._tcp.mx-bogus.dane.", "mx-badaddr.dane."};
    auto s = testing::StartDaneUnbound(spec);
    if (s.ok()) {
      dns_ = s->release();
    } else {
      error_ = new std::string(s.status().ToString());
    }
  }
  static void TearDownTestSuite() {
    delete dns_;
    dns_ = nullptr;
  }
  void SetUp() override {
    if (dns_ == nullptr) GTEST_SKIP() << *error_;
    Resolver::Options o;
    o.servers = {dns_->address()};
    o.ipv6 = false;
    auto r = Resolver::Create(o, loop_.Watcher());
    ASSERT_TRUE(r.ok()) << r.status();
    r_ = *std::move(r);
  }
  MxResult Mx(const std::string& domain) {
    MxResult m;
    bool done = false;
    r_->ResolveMx(domain, [&](const MxResult& x) {
      m = x;
      done = true;
    });
    EXPECT_TRUE(loop_.RunUntil(*r_, [&] { return done; }));
    return m;
  }
  TlsaResult Tlsa(const std::string& host, uint16_t port = 25) {
    TlsaResult t;
    bool done = false;
    r_->ResolveTlsa(host, port, [&](const TlsaResult& x) {
      t = x;
      done = true;
    });
    EXPECT_TRUE(loop_.RunUntil(*r_, [&] { return done; }));
    return t;
  }

  static testing::DaneUnbound* dns_;
  static std::string* error_;
  PollLoop loop_;
  std::unique_ptr<Resolver> r_;
};
testing::DaneUnbound* DaneDnsTest::dns_ = nullptr;
std::string* DaneDnsTest::error_ = nullptr;

TEST_F(DaneDnsTest, SecureMxAddressAndTlsa) {
  MxResult m = Mx("dane");
  ASSERT_EQ(m.status, DnsStatus::kOk) << m.error;
  EXPECT_TRUE(m.dnssec);
  ASSERT_EQ(m.hosts.size(), 1u);
  EXPECT_EQ(m.hosts[0].name, "mx.dane");
  EXPECT_TRUE(m.hosts[0].dnssec);
  TlsaResult t = Tlsa("mx.dane");
  ASSERT_EQ(t.status, DnsStatus::kOk) << t.error;
  EXPECT_TRUE(t.dnssec);
  ASSERT_EQ(t.records.size(), 1u);
  EXPECT_EQ(t.records[0].usage, 3);
  EXPECT_EQ(t.records[0].selector, 1);
  EXPECT_EQ(t.records[0].matching_type, 1);
  EXPECT_EQ(t.records[0].data, kDigest);
  // The implicit-TLS port has its own TLSA RRset (RFC 7672 §2.2, _<port>._tcp).
  TlsaResult t26 = Tlsa("mx.dane", 26);
  ASSERT_EQ(t26.status, DnsStatus::kOk) << t26.error;
  EXPECT_EQ(t26.records[0].usage, 2);
}

TEST_F(DaneDnsTest, AuthenticatedDenialOfTlsa) {
  // NXDOMAIN for _25._tcp.<mx> in a signed zone: secure denial -> no DANE for that host.
  TlsaResult none = Tlsa("mx-notlsa.dane");
  EXPECT_EQ(none.status, DnsStatus::kNxDomain) << none.error;
  EXPECT_TRUE(none.dnssec);
  // NODATA (the name exists with other types): also a secure denial.
  TlsaResult nodata = Tlsa("mx-nodata.dane");
  EXPECT_EQ(nodata.status, DnsStatus::kNoData) << nodata.error;
  EXPECT_TRUE(nodata.dnssec);
}

TEST_F(DaneDnsTest, BogusTlsaIsTemporaryFailureNotDenial) {
  MxResult m = Mx("bogus.dane");
  ASSERT_EQ(m.status, DnsStatus::kOk) << m.error;
  EXPECT_TRUE(m.dnssec);
  EXPECT_TRUE(m.hosts[0].dnssec);
  // RFC 7672 §2.2: a TLSA lookup that fails on a secure MX must defer, never downgrade: the
  // resolver reports it as kTempFail (SERVFAIL from the validator), not as NXDOMAIN/NODATA.
  TlsaResult t = Tlsa("mx-bogus.dane");
  EXPECT_EQ(t.status, DnsStatus::kTempFail) << t.error;
  EXPECT_TRUE(t.records.empty());
}

TEST_F(DaneDnsTest, BogusAddressOfSecureMxDefers) {
  MxResult m = Mx("badaddr.dane");
  EXPECT_EQ(m.status, DnsStatus::kTempFail) << m.error;
}

TEST_F(DaneDnsTest, InsecureDelegationHasNoAd) {
  // The MX answer itself is below the insecure cut: no DANE for this domain (RFC 7672 §2.2.1).
  MxResult m = Mx("plain.dane");
  ASSERT_EQ(m.status, DnsStatus::kOk) << m.error;
  EXPECT_FALSE(m.dnssec);
  EXPECT_FALSE(m.hosts[0].dnssec);
  // The TLSA records exist but are not validated: unusable for DANE, not a failure.
  TlsaResult t = Tlsa("mx.plain.dane");
  ASSERT_EQ(t.status, DnsStatus::kOk) << t.error;
  EXPECT_FALSE(t.dnssec);
  EXPECT_EQ(t.records.size(), 1u);
}

TEST_F(DaneDnsTest, SecureMxPointingIntoInsecureZone) {
  // A signed MX whose host lives below an insecure delegation: the MX is secure, the host's
  // address is not, so DANE does not apply to that host (RFC 7672 §2.2.2).
  MxResult m = Mx("tochild.dane");
  ASSERT_EQ(m.status, DnsStatus::kOk) << m.error;
  EXPECT_TRUE(m.dnssec);
  ASSERT_EQ(m.hosts.size(), 1u);
  EXPECT_FALSE(m.hosts[0].dnssec);
}

}  // namespace
}  // namespace mxb
