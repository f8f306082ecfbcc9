// DANE end to end (issue 12, RFC 7672): the real engine asks a real validating unbound for MX,
// A and TLSA records of a DNSSEC-signed zone (tests/dns/dane_zone.h) and delivers to
// mxburst-sink; no --ca-file anywhere. Two sink listeners on one port:
//   127.0.0.2  leaf "good" (names every mx-*.dane host), chain good + CA
//   127.0.0.3  leaf "wrong" (names wrong.example only), same CA
//   127.0.0.4  a MITM proxy in front of 127.0.0.2 that strips STARTTLS
// Each case is asserted on the engine's accounting log and on what the sink received.
#include <signal.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "queue/spool.h"
#include "tests/dns/dane_zone.h"
#include "tests/integration/fixture.h"
#include "tests/integration/mitm_proxy.h"
#include "tests/integration/sts_policy_server.h"
#include "tls/dane.h"
#include "tls/tls_session.h"

namespace mxb {
namespace {

using testing::CountSpool;
using testing::FreePort;
using testing::ListDir;
using testing::MakeTempDir;
using testing::ReadFileOrDie;
using testing::ReadJsonLines;
using testing::RunEngine;
using testing::SinkProcess;
using testing::WaitFor;
using testing::WriteFileOrDie;

GeneratedCert MakeOrDie(const CertOptions& o) {
  absl::StatusOr<GeneratedCert> c = GenerateSelfSignedCert(o);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : GeneratedCert{};
}

std::string Der(const GeneratedCert& c) {
  std::vector<std::string> d = PemCertificatesToDer(c.cert_pem);
  return d.empty() ? std::string() : d[0];
}

class DaneDeliveryTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    TlsGlobalInit();
    shared_ = new std::string(MakeTempDir("dane"));
    CertOptions ca;
    ca.common_name = "dane integration CA";
    ca.dns_names = {"ca.invalid"};
    const GeneratedCert ca_cert = MakeOrDie(ca);
    CertOptions good;
    good.common_name = "mx-ee.dane";
    good.dns_names = {"mx-ee.dane",  "mx-ta.dane",    "mx-bad1.dane",  "mx-bad2.dane",
                      "mx-pkix.dane", "mx.plain.dane", "mx-bogus.dane", "mx-strip.dane",
                      "mx-pkixstrip.dane", "mx-alt.dane", "smtps-mx.dane",
                      "smtps-mxbad.dane", "smtps-mxnone.dane"};
    good.is_ca = false;
    good.issuer = &ca_cert;
    const GeneratedCert good_cert = MakeOrDie(good);
    CertOptions wrong = good;
    wrong.common_name = "wrong.example";
    wrong.dns_names = {"wrong.example"};
    const GeneratedCert wrong_cert = MakeOrDie(wrong);
    WriteFileOrDie(*shared_ + "/good.pem", good_cert.cert_pem + ca_cert.cert_pem);
    WriteFileOrDie(*shared_ + "/good.key", good_cert.key_pem);
    WriteFileOrDie(*shared_ + "/wrong.pem", wrong_cert.cert_pem + ca_cert.cert_pem);
    WriteFileOrDie(*shared_ + "/wrong.key", wrong_cert.key_pem);

    port_ = FreePort("127.0.0.2");
    smtps_port_ = FreePort("127.0.0.2");
    const std::string p = absl::StrCat("_", port_, "._tcp.");
    const std::string p_smtps = absl::StrCat("_", smtps_port_, "._tcp.");
    const std::string ee = testing::TlsaRdata(
        3, 1, 1, TlsaAssociationData(Der(good_cert), kTlsaSelectorSpki, kTlsaMatchSha256));
    std::string bad_digest = TlsaAssociationData(Der(wrong_cert), kTlsaSelectorSpki,
                                                 kTlsaMatchSha256);
    const std::string mismatch = testing::TlsaRdata(3, 1, 1, bad_digest);
    const std::string ta = testing::TlsaRdata(
        2, 0, 1, TlsaAssociationData(Der(ca_cert), kTlsaSelectorCert, kTlsaMatchSha256));
    const std::string pkix_ee = testing::TlsaRdata(
        1, 1, 1, TlsaAssociationData(Der(good_cert), kTlsaSelectorSpki, kTlsaMatchSha256));
    testing::DaneZoneSpec spec;
    spec.zone = "dane.";
    spec.records = absl::StrCat(
        // 1: DANE-EE match
        "ee.dane. IN MX 10 mx-ee.dane.\n"
        "mx-ee.dane. IN A 127.0.0.2\n",
        p, "mx-ee.dane. IN TLSA ", ee, "\n",
        // 2: every MX mismatches; 2b: the first mismatches, the second matches
        "bad.dane. IN MX 10 mx-bad1.dane.\n"
        "bad.dane. IN MX 20 mx-bad2.dane.\n"
        "next.dane. IN MX 10 mx-bad1.dane.\n"
        "next.dane. IN MX 20 mx-ee.dane.\n"
        "mx-bad1.dane. IN A 127.0.0.2\n"
        "mx-bad2.dane. IN A 127.0.0.2\n",
        p, "mx-bad1.dane. IN TLSA ", mismatch, "\n", p, "mx-bad2.dane. IN TLSA ", mismatch, "\n",
        // 3: DANE-TA with the sink's CA, right and wrong leaf names
        "ta.dane. IN MX 10 mx-ta.dane.\n"
        "mx-ta.dane. IN A 127.0.0.2\n",
        p, "mx-ta.dane. IN TLSA ", ta, "\n",
        "tawrong.dane. IN MX 10 mx-tawrong.dane.\n"
        "mx-tawrong.dane. IN A 127.0.0.3\n",
        p, "mx-tawrong.dane. IN TLSA ", ta, "\n",
        // 4b: bogus TLSA
        "bogus.dane. IN MX 10 mx-bogus.dane.\n"
        "mx-bogus.dane. IN A 127.0.0.2\n",
        p, "mx-bogus.dane. IN TLSA ", ee, "\n",
        // 5: DANE host behind a STARTTLS-stripping MITM
        "strip.dane. IN MX 10 mx-strip.dane.\n"
        "mx-strip.dane. IN A 127.0.0.4\n",
        p, "mx-strip.dane. IN TLSA ", ee, "\n",
        // 6: PKIX-EE only, direct and stripped
        "pkix.dane. IN MX 10 mx-pkix.dane.\n"
        "mx-pkix.dane. IN A 127.0.0.2\n",
        p, "mx-pkix.dane. IN TLSA ", pkix_ee, "\n",
        "pkixstrip.dane. IN MX 10 mx-pkixstrip.dane.\n"
        "mx-pkixstrip.dane. IN A 127.0.0.4\n",
        p, "mx-pkixstrip.dane. IN TLSA ", pkix_ee, "\n",
        // 7: one MX host (127.0.0.2), a DANE name for it and the insecure name below
        "shared.dane. IN MX 10 mx-alt.dane.\n"
        "mx-alt.dane. IN A 127.0.0.2\n",
        p, "mx-alt.dane. IN TLSA ", ee, "\n",
        // DANE beats MTA-STS (RFC 8461 §2): enforce policies whose mx: lists another host, for
        // a DANE MX and for an MX without TLSA (authenticated denial)
        "stsdane.dane. IN MX 10 mx-ee.dane.\n"
        "_mta-sts.stsdane.dane. IN TXT \"v=STSv1; id=d1;\"\n"
        "mta-sts.stsdane.dane. IN A 127.0.0.1\n"
        "stsnodane.dane. IN MX 10 mx-nodane.dane.\n"
        "mx-nodane.dane. IN A 127.0.0.2\n"
        "_mta-sts.stsnodane.dane. IN TXT \"v=STSv1; id=n1;\"\n"
        "mta-sts.stsnodane.dane. IN A 127.0.0.1\n",
        // smtps- hosts: the implicit-TLS port has TLSA records of its own (RFC 6698 §3)
        "smtps.dane. IN MX 10 smtps-mx.dane.\n"
        "smtps-mx.dane. IN A 127.0.0.2\n",
        p, "smtps-mx.dane. IN TLSA ", ee, "\n", p_smtps, "smtps-mx.dane. IN TLSA ", ee, "\n",
        "smtpsbad.dane. IN MX 10 smtps-mxbad.dane.\n"
        "smtps-mxbad.dane. IN A 127.0.0.2\n",
        p, "smtps-mxbad.dane. IN TLSA ", ee, "\n", p_smtps, "smtps-mxbad.dane. IN TLSA ",
        mismatch, "\n",
        "smtpsnone.dane. IN MX 10 smtps-mxnone.dane.\n"
        "smtps-mxnone.dane. IN A 127.0.0.2\n",
        p, "smtps-mxnone.dane. IN TLSA ", ee, "\n",
        // RFC 7672 §2.2.3: MX hosts that are secure CNAMEs. TLSA at the expanded name (and a
        // wrong one at the alias, which must not be used); TLSA only at the alias (fallback).
        "cname.dane. IN MX 10 mx-alias.dane.\n"
        "mx-alias.dane. IN CNAME mx-target.dane.\n"
        "mx-target.dane. IN A 127.0.0.2\n",
        p, "mx-target.dane. IN TLSA ", ee, "\n", p, "mx-alias.dane. IN TLSA ", mismatch, "\n",
        "cnamefb.dane. IN MX 10 mx-alias2.dane.\n"
        "mx-alias2.dane. IN CNAME mx-target2.dane.\n"
        "mx-target2.dane. IN A 127.0.0.2\n",
        p, "mx-alias2.dane. IN TLSA ", ee, "\n");
    // 4: the same TLSA (even a wrong one) in an insecure child zone: ignored, opportunistic
    spec.insecure_child = "plain.dane.";
    spec.insecure_records = absl::StrCat("plain.dane. IN MX 10 mx.plain.dane.\n"
                                         "shared.plain.dane. IN MX 10 mx.plain.dane.\n"
                                         "mx.plain.dane. IN A 127.0.0.2\n",
                                         p, "mx.plain.dane. IN TLSA ", mismatch, "\n");
    spec.bogus_owners = {absl::StrCat(p, "mx-bogus.dane.")};
    auto dns = testing::StartDaneUnbound(spec);
    if (!dns.ok()) {
      error_ = new std::string(dns.status().ToString());
      return;
    }
    dns_ = dns->release();
    sink_ = new SinkProcess(
        *shared_,
        {"--listen",
         absl::StrCat("127.0.0.2:", port_, "/requiretls/cert=", *shared_,
                      "/good.pem/key=", *shared_, "/good.key"),
         "--listen",
         absl::StrCat("127.0.0.3:", port_, "/cert=", *shared_, "/wrong.pem/key=", *shared_,
                      "/wrong.key"),
         "--listen",
         absl::StrCat("127.0.0.2:", smtps_port_, "/implicit-tls/cert=", *shared_,
                      "/good.pem/key=", *shared_, "/good.key"),
         "--out-dir", *shared_ + "/received"});
    sts_ = StsPolicyServer::Start(MakeTempDir("danests"),
                                  {"mta-sts.stsdane.dane", "mta-sts.stsnodane.dane"})
               .release();
    for (const char* host : {"mta-sts.stsdane.dane", "mta-sts.stsnodane.dane"}) {
      sts_->SetPolicy(host, "version: STSv1\nmode: enforce\nmx: mx.elsewhere.example\n"
                            "max_age: 86400\n");
    }
    testing::MitmOptions mo;
    mo.listen_ip = "127.0.0.4";
    mo.listen_port = static_cast<uint16_t>(port_);
    mo.upstream_ip = "127.0.0.2";
    mo.upstream_port = static_cast<uint16_t>(port_);
    mo.mode = testing::MitmMode::kStripStartTls;
    auto mitm = testing::MitmProxy::Start(mo);
    if (mitm.ok()) {
      mitm_ = mitm->release();
    } else {
      error_ = new std::string(mitm.status().ToString());
    }
  }
  static void TearDownTestSuite() {
    if (sink_ != nullptr) sink_->Stop();
    delete sink_;
    delete mitm_;
    delete sts_;
    delete dns_;
    sink_ = nullptr;
    mitm_ = nullptr;
    dns_ = nullptr;
  }

  void SetUp() override {
    if (error_ != nullptr) GTEST_SKIP() << *error_;
    ASSERT_TRUE(sink_->ready()) << sink_->error_text();
    dir_ = MakeTempDir("danecase");
    spool_ = dir_ + "/spool";
    log_ = dir_ + "/acct.jsonl";
    ASSERT_TRUE(Spool::Open(spool_).ok());
  }

  void InjectTo(const std::string& rcpt, int n = 1, const std::string& extra_env = "",
                const std::string& extra_headers = "") {
    for (int i = 0; i < n; ++i) {
      std::string msg = absl::StrCat("x-sender: <bounce@esp.example>\nx-receiver: <", rcpt,
                                     ">\n", extra_env, "From: a@esp.example\nTo: ", rcpt,
                                     "\nMessage-ID: <", i, ".", rcpt, ">\n", extra_headers,
                                     "Subject: dane\n\nhello\n");
      ASSERT_TRUE(InjectFile(spool_, absl::StrCat("m", i, ".", rcpt, ".eml"), msg, false).ok());
    }
  }

  // The sink's envelope file (.env) of message `i` to `rcpt`, "" if it never arrived.
  static std::string ReceivedEnv(const std::string& rcpt, int i = 0) {
    const std::string dir = *shared_ + "/received";
    const std::string id = absl::StrCat("Message-ID: <", i, ".", rcpt, ">");
    for (const std::string& name : ListDir(dir)) {
      if (!absl::EndsWith(name, ".eml")) continue;
      if (!absl::StrContains(ReadFileOrDie(dir + "/" + name), id)) continue;
      return ReadFileOrDie(dir + "/" + name.substr(0, name.size() - 4) + ".env");
    }
    return "";
  }
  static std::string EnvField(const std::string& env, const std::string& key) {
    size_t at = env.find(key + ": ");
    if (at == std::string::npos) return "";
    at += key.size() + 2;
    return env.substr(at, env.find('\n', at) - at);
  }

  std::vector<nlohmann::json> Deliver(std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {
        "--allow-private-mx", "--spool", spool_, "--drain", "--log", log_, "--quiet",
        "--workers", "1", "--helo", "dane.mxburst.example", "--dns", dns_->address(),
        "--smtp-port", std::to_string(port_), "--connect-timeout", "5"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    int rc = RunEngine(argv, dir_ + "/engine.out", absl::Minutes(2));
    EXPECT_EQ(rc, 0) << ReadFileOrDie(dir_ + "/engine.out.err");
    return ReadJsonLines(log_);
  }

  static std::string* shared_;
  static std::string* error_;
  static testing::DaneUnbound* dns_;
  static SinkProcess* sink_;
  static testing::MitmProxy* mitm_;
  static StsPolicyServer* sts_;
  static int port_;
  static int smtps_port_;
  std::string dir_, spool_, log_;
};

std::string* DaneDeliveryTest::shared_ = nullptr;
std::string* DaneDeliveryTest::error_ = nullptr;
testing::DaneUnbound* DaneDeliveryTest::dns_ = nullptr;
SinkProcess* DaneDeliveryTest::sink_ = nullptr;
testing::MitmProxy* DaneDeliveryTest::mitm_ = nullptr;
StsPolicyServer* DaneDeliveryTest::sts_ = nullptr;
int DaneDeliveryTest::port_ = 0;
int DaneDeliveryTest::smtps_port_ = 0;

// Issue 12 test 1.
TEST_F(DaneDeliveryTest, DaneEeMatchDeliversWithoutAnyCaFile) {
  InjectTo("a@ee.dane", 2);
  std::vector<nlohmann::json> log = Deliver();
  ASSERT_EQ(log.size(), 2u);
  for (const nlohmann::json& r : log) {
    EXPECT_EQ(r["status"], "delivered") << r.dump();
    EXPECT_EQ(r["policy_source"], "dane") << r.dump();
    EXPECT_EQ(r["policy"], "dane");
    EXPECT_EQ(r["dane"], "3 1 1");
    EXPECT_EQ(r["dnssec"], true);
    EXPECT_NE(r["tls"], "none");
  }
  EXPECT_TRUE(absl::StartsWith(EnvField(ReceivedEnv("a@ee.dane"), "tls"), "TLSv1"));
}

// Issue 12 test 2.
TEST_F(DaneDeliveryTest, DaneEeMismatchDefersAfterEveryMx) {
  InjectTo("a@bad.dane");
  std::vector<nlohmann::json> log = Deliver();
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0]["status"], "deferred") << log[0].dump();
  EXPECT_TRUE(absl::StrContains(log[0]["text"].get<std::string>(), "tlsa-mismatch"))
      << log[0].dump();
  EXPECT_EQ(log[0]["policy_source"], "dane");
  EXPECT_EQ(ReceivedEnv("a@bad.dane"), "") << "never delivered";
  EXPECT_EQ(CountSpool(spool_, "deferred"), 1u);
}

TEST_F(DaneDeliveryTest, DaneEeMismatchTriesTheNextMx) {
  InjectTo("a@next.dane");
  std::vector<nlohmann::json> log = Deliver();
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0]["status"], "delivered") << log[0].dump();
  EXPECT_EQ(log[0]["mx"], "mx-ee.dane");
  EXPECT_EQ(log[0]["dane"], "3 1 1");
}

// Issue 12 test 3.
TEST_F(DaneDeliveryTest, DaneTaWithTheSinksCa) {
  InjectTo("a@ta.dane");
  InjectTo("a@tawrong.dane");
  std::vector<nlohmann::json> log = Deliver();
  ASSERT_EQ(log.size(), 2u);
  std::map<std::string, nlohmann::json> by;
  for (const nlohmann::json& r : log) by[r["domain"]] = r;
  EXPECT_EQ(by["ta.dane"]["status"], "delivered") << by["ta.dane"].dump();
  EXPECT_EQ(by["ta.dane"]["dane"], "2 0 1");
  EXPECT_EQ(by["tawrong.dane"]["status"], "deferred") << by["tawrong.dane"].dump();
  EXPECT_TRUE(absl::StrContains(by["tawrong.dane"]["text"].get<std::string>(), "tlsa-mismatch"));
  EXPECT_EQ(ReceivedEnv("a@tawrong.dane"), "");
}

// Issue 12 test 4.
TEST_F(DaneDeliveryTest, InsecureTlsaIsOpportunisticBogusTlsaDefers) {
  InjectTo("a@plain.dane");
  InjectTo("a@bogus.dane");
  std::vector<nlohmann::json> log = Deliver();
  ASSERT_EQ(log.size(), 2u);
  std::map<std::string, nlohmann::json> by;
  for (const nlohmann::json& r : log) by[r["domain"]] = r;
  EXPECT_EQ(by["plain.dane"]["status"], "delivered") << by["plain.dane"].dump();
  EXPECT_EQ(by["plain.dane"]["policy_source"], "opportunistic");
  EXPECT_EQ(by["plain.dane"]["dnssec"], false);
  EXPECT_EQ(by["bogus.dane"]["status"], "deferred") << by["bogus.dane"].dump();
  EXPECT_TRUE(
      absl::StrContains(by["bogus.dane"]["text"].get<std::string>(), "tlsa-lookup-failed"))
      << by["bogus.dane"].dump();
  EXPECT_EQ(ReceivedEnv("a@bogus.dane"), "") << "never delivered";
  EXPECT_TRUE(ListDir(spool_ + "/bounces").empty()) << "never bounced";
}

// Issue 12 test 5.
TEST_F(DaneDeliveryTest, StrippedStartTlsToDaneHostDefers) {
  InjectTo("a@strip.dane");
  std::vector<nlohmann::json> log = Deliver();
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0]["status"], "deferred") << log[0].dump();
  EXPECT_EQ(log[0]["policy_source"], "dane");
  EXPECT_EQ(ReceivedEnv("a@strip.dane"), "");
}

// Issue 12 test 6.
TEST_F(DaneDeliveryTest, OnlyPkixEeRecordsMeanMandatoryUnauthenticatedTls) {
  InjectTo("a@pkix.dane");
  InjectTo("a@pkixstrip.dane");
  std::vector<nlohmann::json> log = Deliver();
  ASSERT_EQ(log.size(), 2u);
  std::map<std::string, nlohmann::json> by;
  for (const nlohmann::json& r : log) by[r["domain"]] = r;
  EXPECT_EQ(by["pkix.dane"]["status"], "delivered") << by["pkix.dane"].dump();
  EXPECT_EQ(by["pkix.dane"]["policy"], "dane-unusable");
  EXPECT_EQ(by["pkix.dane"]["dane"], "tlsa-unusable");
  EXPECT_NE(by["pkix.dane"]["tls"], "none");
  EXPECT_TRUE(absl::StartsWith(EnvField(ReceivedEnv("a@pkix.dane"), "tls"), "TLSv1"));
  EXPECT_EQ(by["pkixstrip.dane"]["status"], "deferred") << by["pkixstrip.dane"].dump();
  EXPECT_EQ(ReceivedEnv("a@pkixstrip.dane"), "");
}

// Issue 12 test 7: one MX host (127.0.0.2) for a DANE domain and an opportunistic one.
TEST_F(DaneDeliveryTest, DaneAndOpportunisticDomainsNeverShareAConnection) {
  InjectTo("a@shared.dane", 3);
  InjectTo("a@shared.plain.dane", 3);
  std::vector<nlohmann::json> log = Deliver();
  ASSERT_EQ(log.size(), 6u);
  for (const nlohmann::json& r : log) {
    EXPECT_EQ(r["status"], "delivered") << r.dump();
    EXPECT_EQ(r["policy_source"], r["domain"] == "shared.dane" ? "dane" : "opportunistic")
        << r.dump();
  }
  // The sink's view: the client ports (one per connection) of the two domains are disjoint.
  std::set<std::string> dane_peers, opp_peers;
  for (int i = 0; i < 3; ++i) {
    dane_peers.insert(EnvField(ReceivedEnv("a@shared.dane", i), "peer"));
    opp_peers.insert(EnvField(ReceivedEnv("a@shared.plain.dane", i), "peer"));
  }
  for (const std::string& p : dane_peers) {
    EXPECT_FALSE(p.empty());
    EXPECT_EQ(opp_peers.count(p), 0u) << p << " carried both domains";
  }
}

// Issue 12 test 9: the second connection to a DANE host resumes its DANE ticket.
TEST_F(DaneDeliveryTest, SecondConnectionToDaneHostResumes) {
  InjectTo("a@ee.dane", 3);
  std::vector<nlohmann::json> log =
      Deliver({"--max-messages-per-connection", "1", "--max-connections", "1"});
  ASSERT_EQ(log.size(), 3u);
  int resumed = 0;
  for (const nlohmann::json& r : log) {
    EXPECT_EQ(r["status"], "delivered") << r.dump();
    EXPECT_EQ(r["policy_source"], "dane");
    if (r.value("tls_resumed", false)) ++resumed;
  }
  EXPECT_GE(resumed, 1) << "a later connection resumed the DANE session";
}

// Issue 12 test 8 (RFC 8689): REQUIRETLS to a DANE host that offers it goes out with the MAIL
// parameter; to an opportunistic host it is deferred, then bounced 5.7.30 with a DSN.
TEST_F(DaneDeliveryTest, RequireTlsOnlyOverAuthenticatedHops) {
  InjectTo("r@ee.dane", 1, "x-requiretls: yes\n");
  InjectTo("r@plain.dane", 1, "x-requiretls: yes\n");
  std::vector<nlohmann::json> log = Deliver({"--retry", "1/1/1"});
  ASSERT_EQ(log.size(), 2u);
  std::map<std::string, nlohmann::json> by;
  for (const nlohmann::json& r : log) by[r["domain"]] = r;
  EXPECT_EQ(by["ee.dane"]["status"], "delivered") << by["ee.dane"].dump();
  EXPECT_TRUE(absl::StrContains(EnvField(ReceivedEnv("r@ee.dane"), "mail-params"), "REQUIRETLS"))
      << ReceivedEnv("r@ee.dane");
  EXPECT_EQ(by["plain.dane"]["status"], "deferred") << by["plain.dane"].dump();
  EXPECT_EQ(by["plain.dane"]["enhanced"], "4.7.30");
  EXPECT_TRUE(absl::StrContains(by["plain.dane"]["text"].get<std::string>(), "REQUIRETLS"));
  EXPECT_EQ(ReceivedEnv("r@plain.dane"), "") << "never over an unauthenticated hop";
  // The engine's own retry schedule (1 s, max age 1 s) runs out on the next attempt: bounce
  // 5.7.30 + DSN. Not --drain (which never retries deferred/): run until the record appears.
  testing::Subprocess engine(
      testing::EngineArgv({"--allow-private-mx", "--spool", spool_, "--log", log_, "--quiet",
                           "--workers", "1", "--helo", "dane.mxburst.example", "--dns",
                           dns_->address(), "--smtp-port", std::to_string(port_),
                           "--connect-timeout", "5", "--retry", "1/1/1"}),
      dir_ + "/engine2.out", dir_ + "/engine2.err");
  ASSERT_TRUE(engine.started());
  nlohmann::json expired;
  WaitFor(
      [&] {
        for (const nlohmann::json& r : ReadJsonLines(log_)) {
          if (r["domain"] == "plain.dane" && r["status"] == "expired") expired = r;
        }
        return !expired.is_null();
      },
      absl::Seconds(30), absl::Milliseconds(100));
  engine.Signal(SIGTERM);
  EXPECT_EQ(engine.Wait(absl::Seconds(60)), 0) << ReadFileOrDie(dir_ + "/engine2.err");
  log = ReadJsonLines(log_);
  ASSERT_FALSE(expired.is_null()) << nlohmann::json(log).dump(1);
  EXPECT_EQ(expired["enhanced"], "5.7.30") << expired.dump();
  std::vector<std::string> dsns = ListDir(spool_ + "/bounces");
  ASSERT_EQ(dsns.size(), 1u);
  const std::string dsn = ReadFileOrDie(spool_ + "/bounces/" + dsns[0]);
  EXPECT_TRUE(absl::StrContains(dsn, "Status: 5.7.30")) << dsn;
  EXPECT_EQ(ReceivedEnv("r@plain.dane"), "");
}

// Issue 12 test 8, last part (RFC 8689 §5): "TLS-Required: No" delivers to a host whose DANE
// check fails, opportunistically, with the violation in the log; a message without it does not.
TEST_F(DaneDeliveryTest, TlsRequiredNoIgnoresDaneFailure) {
  InjectTo("n@bad.dane", 1, "", "TLS-Required: No\n");
  std::vector<nlohmann::json> log = Deliver();
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0]["status"], "delivered") << log[0].dump();
  EXPECT_EQ(log[0]["policy"], "dane+tls-required-no") << log[0].dump();
  EXPECT_EQ(log[0]["policy_violation"], "validation-failure") << log[0].dump();
  EXPECT_NE(ReceivedEnv("n@bad.dane"), "");
}

// Issue 12: "a start-up line says when no AD was ever seen from the configured resolvers". The
// validating unbound answers the signed zone with AD (no line) and the unsigned child without
// (the line, once), and the mail is delivered either way.
TEST_F(DaneDeliveryTest, ResolverWithoutAdIsReportedOnce) {
  InjectTo("a@ee.dane");
  std::vector<nlohmann::json> log = Deliver({"--dnssec-probe", "dane."});
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0]["status"], "delivered") << log[0].dump();
  EXPECT_FALSE(absl::StrContains(ReadFileOrDie(dir_ + "/engine.out.err"), "DANE is inert"))
      << ReadFileOrDie(dir_ + "/engine.out.err");

  InjectTo("b@ee.dane");
  log = Deliver({"--dnssec-probe", "plain.dane."});
  ASSERT_GE(log.size(), 2u);
  EXPECT_EQ(log.back()["status"], "delivered") << log.back().dump();
  const std::string err = ReadFileOrDie(dir_ + "/engine.out.err");
  EXPECT_TRUE(absl::StrContains(err, "answered without the AD bit for TXT plain.dane.")) << err;
  const size_t first = err.find("DANE is inert");
  ASSERT_NE(first, std::string::npos) << err;
  EXPECT_EQ(err.find("DANE is inert", first + 1), std::string::npos) << "reported twice: " << err;
}


// RFC 8461 §2: a sender that validates DANE applies DANE, not MTA-STS, to an MX host with a
// validated TLSA RRset. The enforce policy of stsdane.dane lists another MX, yet its DANE MX
// delivers (policy dane); the same policy on stsnodane.dane, whose MX has no TLSA, defers.
TEST_F(DaneDeliveryTest, DaneBeatsMtaStsForTheHostsItCovers) {
  ASSERT_TRUE(sts_->ready()) << sts_->error();
  WriteFileOrDie(dir_ + "/mxburst.toml",
                 absl::StrCat("[mta_sts]\nhttps_port = ", sts_->port(), "\nwait = 30\n"));
  InjectTo("s@stsdane.dane");
  InjectTo("s@stsnodane.dane");
  std::vector<nlohmann::json> log =
      Deliver({"--config", dir_ + "/mxburst.toml", "--ca-file", sts_->ca_file()});
  std::map<std::string, nlohmann::json> by;
  for (const nlohmann::json& r : log) by[r["domain"]] = r;
  ASSERT_EQ(by.size(), 2u) << nlohmann::json(log).dump(1);
  EXPECT_EQ(by["stsdane.dane"]["status"], "delivered") << by["stsdane.dane"].dump();
  EXPECT_EQ(by["stsdane.dane"]["policy_source"], "dane") << by["stsdane.dane"].dump();
  EXPECT_EQ(by["stsdane.dane"]["dane"], "3 1 1");
  EXPECT_EQ(by["stsnodane.dane"]["status"], "deferred") << by["stsnodane.dane"].dump();
  EXPECT_TRUE(absl::StrContains(by["stsnodane.dane"]["text"].get<std::string>(),
                                "matches its MTA-STS policy"))
      << by["stsnodane.dane"].dump();
  EXPECT_EQ(ReceivedEnv("s@stsnodane.dane"), "");
  // The policies were really fetched (the test would prove nothing otherwise).
  EXPECT_GE(sts_->Requests("mta-sts.stsdane.dane"), 1);
}


// Issue 12: "for the implicit-TLS attempt of smtps- hosts: _<smtps_port>._tcp.<mx>". A matching
// record there: implicit TLS on the smtps port, DANE-authenticated. A mismatching one fails
// authentication there and defers (tlsa-mismatch), as a certificate failure on the smtps port
// does under PKIX: only "no TLS spoken there" falls back to STARTTLS, never a failed check.
// None at all: the implicit attempt is skipped (nothing could authenticate it), STARTTLS + DANE.
TEST_F(DaneDeliveryTest, SmtpsHostsUseTheTlsaOfTheImplicitTlsPort) {
  InjectTo("i@smtps.dane");
  InjectTo("i@smtpsbad.dane");
  InjectTo("i@smtpsnone.dane");
  std::vector<nlohmann::json> log = Deliver({"--smtps-port", std::to_string(smtps_port_)});
  std::map<std::string, std::vector<nlohmann::json>> by;
  for (const nlohmann::json& r : log) by[r["domain"]].push_back(r);
  for (const char* d : {"smtps.dane", "smtpsnone.dane"}) {
    ASSERT_FALSE(by[d].empty()) << d << ": " << nlohmann::json(log).dump(1);
    EXPECT_EQ(by[d].back()["status"], "delivered") << by[d].back().dump();
    EXPECT_EQ(by[d].back()["policy_source"], "dane") << by[d].back().dump();
    EXPECT_EQ(by[d].back()["dane"], "3 1 1") << by[d].back().dump();
  }
  EXPECT_EQ(by["smtps.dane"].back()["port"], smtps_port_) << by["smtps.dane"].back().dump();
  ASSERT_FALSE(by["smtpsbad.dane"].empty());
  EXPECT_EQ(by["smtpsbad.dane"].back()["status"], "deferred") << by["smtpsbad.dane"].back().dump();
  EXPECT_EQ(by["smtpsbad.dane"].back()["dane"], "tlsa-mismatch") << by["smtpsbad.dane"].back().dump();
  EXPECT_EQ(by["smtpsbad.dane"].back()["port"], smtps_port_) << by["smtpsbad.dane"].back().dump();
  EXPECT_EQ(ReceivedEnv("i@smtpsbad.dane"), "");
  EXPECT_EQ(by["smtpsnone.dane"].back()["port"], port_) << by["smtpsnone.dane"].back().dump();
}


// RFC 7672 §2.2.3: when the MX host is a secure CNAME, the TLSA base name is the expanded name
// (cname.dane: the matching record there wins over a wrong one at the alias); with an
// authenticated denial there the original name is tried (cnamefb.dane).
TEST_F(DaneDeliveryTest, TlsaFollowsASecureCnameOfTheMxHost) {
  InjectTo("c@cname.dane");
  InjectTo("c@cnamefb.dane");
  std::vector<nlohmann::json> log = Deliver();
  std::map<std::string, nlohmann::json> by;
  for (const nlohmann::json& r : log) by[r["domain"]] = r;
  for (const char* d : {"cname.dane", "cnamefb.dane"}) {
    EXPECT_EQ(by[d]["status"], "delivered") << by[d].dump();
    EXPECT_EQ(by[d]["policy_source"], "dane") << by[d].dump();
    EXPECT_EQ(by[d]["dane"], "3 1 1") << by[d].dump();
  }
}

}  // namespace
}  // namespace mxb
