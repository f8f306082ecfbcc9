// TLS policy end to end (DESIGN.md "TLS policy"): the real engine against the real sink, with
// MX names that carry the starttls-/smtps- signals. Static routes NAME@127.0.0.1 keep the MX
// name (it decides the policy and is checked against the certificate) while pinning the address.
//
//   d1.example -> starttls-mx.d1.example   strict STARTTLS, PKIX + name
//   d2.example -> smtps-mx.d2.example      implicit TLS on the smtps port first, then strict STARTTLS
//   d3.example -> mx.d3.example            opportunistic
#include <signal.h>

#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "queue/spool.h"
#include "tests/integration/fixture.h"
#include "tests/integration/mitm_proxy.h"
#include "tls/tls_session.h"

namespace mxb {
namespace {

using testing::Bin;
using testing::CountSpool;
using testing::FaultServer;
using testing::FreePort;
using testing::ReadFileOrDie;
using testing::ReadJsonLines;
using testing::RunCommand;
using testing::SinkProcess;
using testing::WriteFileOrDie;

constexpr char kNames[] = "starttls-mx.d1.example,smtps-mx.d2.example,mx.d3.example";

class TlsPolicyTest : public testing::SpoolWorld {
 public:
  TlsPolicyTest() : SpoolWorld("tlspolicy", "acct.jsonl") {}

  void SetUp() override {
    SpoolWorld::SetUp();
    if (HasFatalFailure()) return;
    ca_ = dir_ + "/ca.pem";
    smtp_port_ = FreePort("127.0.0.1");
    smtps_port_ = FreePort("127.0.0.1");
  }

  std::string SmtpListen(const std::string& opts = "") const {
    return absl::StrCat("127.0.0.1:", smtp_port_, opts);
  }
  std::string SmtpsListen() const { return absl::StrCat("127.0.0.1:", smtps_port_, "/implicit-tls"); }

  // Starts the sink (hides SpoolWorld::StartSink); `cert_args` default: a generated cert for kNames, written to ca_.
  void StartSink(std::vector<std::string> listen, std::vector<std::string> cert_args = {}) {
    std::vector<std::string> args;
    for (const std::string& l : listen) {
      args.push_back("--listen");
      args.push_back(l);
    }
    if (cert_args.empty()) cert_args = {"--cert-names", kNames, "--write-cert", ca_};
    args.insert(args.end(), cert_args.begin(), cert_args.end());
    sink_ = std::make_unique<SinkProcess>(dir_, args);
    ASSERT_TRUE(sink_->ready()) << sink_->error_text();
  }

  void Inject(const std::string& domain, int count) {
    ASSERT_EQ(RunCommand({Bin("tools/mxburst-inject"), "--spool", spool_, "--count",
                          std::to_string(count), "--domain-list", domain, "--no-fsync",
                          "--size", "3000"},
                         dir_ + "/inject.out"),
              0);
  }

  int RunEngine(std::vector<std::string> extra = {}, bool with_ca = true) {
    std::vector<std::string> argv = {
        "--spool", spool_, "--drain", "--log", log_, "--quiet",
        "--workers", "1", "--helo", "test.mxburst.example",
        "--smtp-port", std::to_string(engine_smtp_port_ ? engine_smtp_port_ : smtp_port_),
        "--smtps-port", std::to_string(smtps_port_),
        "--route", "d1.example=starttls-mx.d1.example@127.0.0.1",
        "--route", "d2.example=smtps-mx.d2.example@127.0.0.1",
        "--route", "d3.example=mx.d3.example@127.0.0.1"};
    if (with_ca) {
      argv.push_back("--ca-file");
      argv.push_back(ca_);
    }
    argv.insert(argv.end(), extra.begin(), extra.end());
    return testing::RunEngine(argv, dir_ + "/engine.out", absl::Minutes(3));
  }

  // Log records per domain.
  std::map<std::string, std::vector<nlohmann::json>> ByDomain() {
    std::map<std::string, std::vector<nlohmann::json>> out;
    for (nlohmann::json& r : ReadJsonLines(log_)) out[r["domain"]].push_back(r);
    return out;
  }

  // CheckFallback and CheckInjection (free functions) use the world's paths and sink too.
  using SpoolWorld::dir_;
  using SpoolWorld::sink_;
  using SpoolWorld::spool_;
  std::string ca_;
  int smtp_port_ = 0, smtps_port_ = 0;
  int engine_smtp_port_ = 0;  // a MITM proxy's port when one sits in the path

  // A man in the middle between the engine's port-25 connections and the sink.
  std::unique_ptr<testing::MitmProxy> StartMitm(testing::MitmMode mode) {
    testing::MitmOptions o;
    o.upstream_port = static_cast<uint16_t>(smtp_port_);
    o.mode = mode;
    absl::StatusOr<std::unique_ptr<testing::MitmProxy>> p = testing::MitmProxy::Start(o);
    EXPECT_TRUE(p.ok()) << p.status();
    if (!p.ok()) return nullptr;
    engine_smtp_port_ = (*p)->port();
    return *std::move(p);
  }
};

TEST_F(TlsPolicyTest, PrefixedHostsDeliverOverVerifiedTlsOnTheirPorts) {
  StartSink({SmtpListen(), SmtpsListen()});
  Inject("d1.example", 3);
  Inject("d2.example", 3);
  Inject("d3.example", 3);
  ASSERT_EQ(RunEngine(), 0) << ReadFileOrDie(dir_ + "/engine.out.err");
  nlohmann::json stats = sink_->Stop();
  EXPECT_EQ(stats["messages"], 9);
  auto by = ByDomain();
  for (const nlohmann::json& r : by["d1.example"]) {
    EXPECT_EQ(r["status"], "delivered") << r.dump();
    EXPECT_EQ(r["policy_source"], "prefix");
    EXPECT_EQ(r["policy"], "starttls-prefix");
    EXPECT_EQ(r["port"], smtp_port_);
    EXPECT_EQ(r["tls"], "TLSv1.3");
  }
  for (const nlohmann::json& r : by["d2.example"]) {
    EXPECT_EQ(r["status"], "delivered") << r.dump();
    EXPECT_EQ(r["policy"], "smtps-prefix");
    EXPECT_EQ(r["port"], smtps_port_) << "implicit TLS port first";
    EXPECT_EQ(r["tls"], "TLSv1.3");
  }
  for (const nlohmann::json& r : by["d3.example"]) {
    EXPECT_EQ(r["status"], "delivered") << r.dump();
    EXPECT_EQ(r["policy_source"], "opportunistic");
  }
  EXPECT_EQ(by["d1.example"].size() + by["d2.example"].size() + by["d3.example"].size(), 9u);
}

// No STARTTLS offered (a server configured so, or a downgrade in the path): strict hosts get
// nothing, never a plaintext retry; the opportunistic host delivers in plaintext.
TEST_F(TlsPolicyTest, StartTlsNotOfferedDefersStrictHostsNeverPlaintext) {
  StartSink({SmtpListen("/no-starttls")});  // nothing on the smtps port: refused
  Inject("d1.example", 2);
  Inject("d2.example", 2);
  Inject("d3.example", 2);
  ASSERT_EQ(RunEngine(), 0) << ReadFileOrDie(dir_ + "/engine.out.err");
  nlohmann::json stats = sink_->Stop();
  EXPECT_EQ(stats["messages"], 2) << "only the opportunistic domain";
  auto by = ByDomain();
  for (const char* d : {"d1.example", "d2.example"}) {
    ASSERT_EQ(by[d].size(), 2u) << d;
    for (const nlohmann::json& r : by[d]) {
      EXPECT_EQ(r["status"], "deferred") << r.dump();
      EXPECT_TRUE(absl::StrContains(r["text"].get<std::string>(), "starttls-not-offered"))
          << r.dump();
    }
  }
  for (const nlohmann::json& r : by["d3.example"]) {
    EXPECT_EQ(r["status"], "delivered");
    EXPECT_EQ(r["tls"], "none");
  }
  EXPECT_EQ(CountSpool(spool_, "deferred"), 4u);
}

TEST_F(TlsPolicyTest, LogOnlyDeliversInPlaintextAndLogsTheViolation) {
  StartSink({SmtpListen("/no-starttls")});
  Inject("d1.example", 2);
  ASSERT_EQ(RunEngine({"--prefix-signals", "log-only"}), 0);
  sink_->Stop();
  auto by = ByDomain();
  ASSERT_EQ(by["d1.example"].size(), 2u);
  for (const nlohmann::json& r : by["d1.example"]) {
    EXPECT_EQ(r["status"], "delivered") << r.dump();
    EXPECT_EQ(r["tls"], "none");
    EXPECT_EQ(r.value("policy_violation", ""), "starttls-not-offered") << r.dump();
  }
}

TEST_F(TlsPolicyTest, PrefixSignalsOffIgnoresPrefixes) {
  StartSink({SmtpListen("/no-starttls")});
  Inject("d1.example", 2);
  ASSERT_EQ(RunEngine({"--prefix-signals", "off"}), 0);
  sink_->Stop();
  auto by = ByDomain();  // a named map: ranging over a temporary's member dangles
  ASSERT_EQ(by["d1.example"].size(), 2u);
  for (const nlohmann::json& r : by["d1.example"]) {
    EXPECT_EQ(r["status"], "delivered") << r.dump();
    EXPECT_EQ(r["policy_source"], "opportunistic");
    EXPECT_FALSE(r.contains("policy_violation"));
  }
}

TEST_F(TlsPolicyTest, UntrustedCertificateDefersStrictHostOnly) {
  StartSink({SmtpListen()});
  Inject("d1.example", 2);
  Inject("d3.example", 2);
  ASSERT_EQ(RunEngine({}, /*with_ca=*/false), 0);  // system store: does not know our CA
  sink_->Stop();
  auto by = ByDomain();
  for (const nlohmann::json& r : by["d1.example"]) {
    EXPECT_EQ(r["status"], "deferred") << r.dump();
    // Issue 10 item 12: the record reads right — a certificate failure is X.7.5 (not 4.4.1 "no
    // answer"), and its label is said once (it was "handshake-failed: validation-failure:
    // validation-failure: ...").
    const std::string text = r["text"].get<std::string>();
    EXPECT_TRUE(absl::StartsWith(text, "validation-failure: ")) << r.dump();
    EXPECT_EQ(text.find("validation-failure", 1), std::string::npos) << r.dump();
    EXPECT_FALSE(absl::StrContains(text, "handshake-failed")) << r.dump();
    EXPECT_EQ(r["enhanced"], "4.7.5") << r.dump();
  }
  for (const nlohmann::json& r : by["d3.example"]) EXPECT_EQ(r["status"], "delivered");
}

TEST_F(TlsPolicyTest, CertificateForAnotherNameDefersStrictHost) {
  StartSink({SmtpListen()}, {"--cert-names", "other.example", "--write-cert", ca_});
  Inject("d1.example", 2);
  ASSERT_EQ(RunEngine(), 0);
  sink_->Stop();
  auto by = ByDomain();  // a named map: ranging over a temporary's member dangles
  ASSERT_EQ(by["d1.example"].size(), 2u);
  for (const nlohmann::json& r : by["d1.example"]) {
    EXPECT_EQ(r["status"], "deferred") << r.dump();
    EXPECT_TRUE(absl::StrContains(r["text"].get<std::string>(), "certificate-host-mismatch"))
        << r.dump();
  }
}

TEST_F(TlsPolicyTest, ExpiredCertificateDefersStrictHost) {
  // A valid CA that issued a server certificate which expired yesterday.
  CertOptions ca_opts;
  ca_opts.common_name = "Test Root CA";
  ca_opts.dns_names = {"ca.test.example"};
  absl::StatusOr<GeneratedCert> ca = GenerateSelfSignedCert(ca_opts);
  ASSERT_TRUE(ca.ok()) << ca.status();
  CertOptions opts;
  opts.common_name = "starttls-mx.d1.example";
  opts.dns_names = {"starttls-mx.d1.example", "mx.d3.example"};
  opts.not_before = absl::Now() - absl::Hours(24 * 30);
  opts.not_after = absl::Now() - absl::Hours(24);
  opts.is_ca = false;
  opts.issuer = &*ca;
  absl::StatusOr<GeneratedCert> cert = GenerateSelfSignedCert(opts);
  ASSERT_TRUE(cert.ok()) << cert.status();
  WriteFileOrDie(ca_, ca->cert_pem);
  WriteFileOrDie(dir_ + "/cert.pem", cert->cert_pem);
  WriteFileOrDie(dir_ + "/key.pem", cert->key_pem);
  StartSink({SmtpListen()}, {"--cert", dir_ + "/cert.pem", "--key", dir_ + "/key.pem"});
  Inject("d1.example", 2);
  Inject("d3.example", 1);
  ASSERT_EQ(RunEngine(), 0);
  sink_->Stop();
  auto by = ByDomain();
  for (const nlohmann::json& r : by["d1.example"]) {
    EXPECT_EQ(r["status"], "deferred") << r.dump();
    EXPECT_TRUE(absl::StrContains(r["text"].get<std::string>(), "certificate-expired"))
        << r.dump();
  }
  for (const nlohmann::json& r : by["d3.example"]) EXPECT_EQ(r["status"], "delivered");
}

// Port 26 resets or black-holes: delivery goes over 25 with STARTTLS and a valid certificate,
// and the policy cache keeps later connections off 26 (one attempt, not one per connection).
void CheckFallback(TlsPolicyTest* t, FaultServer::Mode mode, std::vector<std::string> extra) {
  FaultServer port26(t->smtps_port_, mode);
  ASSERT_TRUE(port26.ok());
  t->StartSink({t->SmtpListen()});
  t->Inject("d2.example", 4);
  extra.insert(extra.end(), {"--max-messages-per-connection", "1", "--max-connections", "1"});
  ASSERT_EQ(t->RunEngine(extra), 0) << ReadFileOrDie(t->dir_ + "/engine.out.err");
  nlohmann::json stats = t->sink_->Stop();
  EXPECT_EQ(stats["messages"], 4);
  auto by = t->ByDomain();
  ASSERT_EQ(by["d2.example"].size(), 4u);
  for (const nlohmann::json& r : by["d2.example"]) {
    EXPECT_EQ(r["status"], "delivered") << r.dump();
    EXPECT_EQ(r["port"], t->smtp_port_);
    EXPECT_EQ(r["tls"], "TLSv1.3") << "never plaintext";
  }
  EXPECT_EQ(port26.accepts(), 1) << "the negative entry keeps later connections off port 26";

  // `mxburstctl policy` shows the cache entry with its port-26 negative state.
  ASSERT_EQ(RunCommand({Bin("tools/mxburstctl"), "policy", "--spool", t->spool_},
                       t->dir_ + "/ctl.out"),
            0);
  bool seen = false;
  for (const nlohmann::json& e : ReadJsonLines(t->dir_ + "/ctl.out")) {
    if (e["mx"] != "smtps-mx.d2.example") continue;
    seen = true;
    EXPECT_EQ(e["implicit_tls_failed"], true) << e.dump();
    EXPECT_EQ(e["policy"], "smtps-prefix");
    EXPECT_EQ(e["connections"], 5) << "one on port 26, four on 25";
    EXPECT_TRUE(absl::StrContains(e["ehlo"].get<std::string>(), "PIPELINING")) << e.dump();
  }
  EXPECT_TRUE(seen);
}

TEST_F(TlsPolicyTest, SmtpsPortResetFallsBackToStartTlsAndIsRemembered) {
  CheckFallback(this, FaultServer::Mode::kReset, {});
}

TEST_F(TlsPolicyTest, SmtpsPortBlackHoleFallsBackToStartTlsAndIsRemembered) {
  // TLS handshake deadline (the greeting's 5 min scaled by 0.004 = 1.2 s).
  CheckFallback(this, FaultServer::Mode::kSilent, {"--timeout-scale", "0.004"});
}

TEST_F(TlsPolicyTest, SessionsToTheSameMxAreResumed) {
  StartSink({SmtpListen()});
  Inject("d1.example", 4);
  ASSERT_EQ(RunEngine({"--max-messages-per-connection", "1", "--max-connections", "1"}), 0);
  sink_->Stop();
  auto by = ByDomain();
  ASSERT_EQ(by["d1.example"].size(), 4u);
  int resumed = 0;
  for (const nlohmann::json& r : by["d1.example"]) {
    EXPECT_EQ(r["status"], "delivered") << r.dump();
    if (r.value("tls_resumed", false)) ++resumed;
  }
  EXPECT_EQ(resumed, 3) << "every connection after the first resumes";
}

// Per-domain rule from the config file for an MX name without a prefix: tls = "required" turns
// the opportunistic host d3 strict.
TEST_F(TlsPolicyTest, DomainRuleFromConfigRequiresTls) {
  WriteFileOrDie(dir_ + "/mxburst.toml",
                 "[domain.\"d3.example\"]\ntls = \"required\"\nverify = true\n");
  StartSink({SmtpListen("/no-starttls")});
  Inject("d3.example", 2);
  ASSERT_EQ(RunEngine({"--config", dir_ + "/mxburst.toml"}), 0)
      << ReadFileOrDie(dir_ + "/engine.out.err");
  nlohmann::json stats = sink_->Stop();
  EXPECT_EQ(stats["messages"], 0);
  auto by = ByDomain();
  ASSERT_EQ(by["d3.example"].size(), 2u);
  for (const nlohmann::json& r : by["d3.example"]) {
    EXPECT_EQ(r["status"], "deferred") << r.dump();
    EXPECT_EQ(r["policy_source"], "config");
    EXPECT_TRUE(absl::StrContains(r["text"].get<std::string>(), "starttls-not-offered"));
  }
}

// wolfSSL does not date-check a trust anchor; a pinned self-signed certificate that expired must
// still fail (tls/ checks the validity window itself).
TEST_F(TlsPolicyTest, ExpiredSelfSignedPinnedCertificateDefersStrictHost) {
  CertOptions opts;
  opts.common_name = "starttls-mx.d1.example";
  opts.dns_names = {"starttls-mx.d1.example"};
  opts.not_before = absl::Now() - absl::Hours(24 * 30);
  opts.not_after = absl::Now() - absl::Hours(24);
  absl::StatusOr<GeneratedCert> cert = GenerateSelfSignedCert(opts);
  ASSERT_TRUE(cert.ok()) << cert.status();
  WriteFileOrDie(ca_, cert->cert_pem);
  WriteFileOrDie(dir_ + "/key.pem", cert->key_pem);
  StartSink({SmtpListen()}, {"--cert", ca_, "--key", dir_ + "/key.pem"});
  Inject("d1.example", 2);
  ASSERT_EQ(RunEngine(), 0);
  sink_->Stop();
  auto by = ByDomain();
  ASSERT_EQ(by["d1.example"].size(), 2u);
  for (const nlohmann::json& r : by["d1.example"]) {
    EXPECT_EQ(r["status"], "deferred") << r.dump();
    EXPECT_TRUE(absl::StrContains(r["text"].get<std::string>(), "certificate-expired"))
        << r.dump();
  }
}

TEST_F(TlsPolicyTest, LogOnlyDeliversOverBadCertificateAndLogsTheViolation) {
  StartSink({SmtpListen()}, {"--cert-names", "other.example", "--write-cert", ca_});
  Inject("d1.example", 2);
  ASSERT_EQ(RunEngine({"--prefix-signals", "log-only"}), 0);
  sink_->Stop();
  auto by = ByDomain();
  ASSERT_EQ(by["d1.example"].size(), 2u);
  for (const nlohmann::json& r : by["d1.example"]) {
    EXPECT_EQ(r["status"], "delivered") << r.dump();
    EXPECT_EQ(r["tls"], "TLSv1.3");
    EXPECT_EQ(r.value("policy_violation", ""), "certificate-host-mismatch") << r.dump();
  }
}

// Attack 1: STARTTLS stripped from EHLO by a man in the middle.
TEST_F(TlsPolicyTest, StrippedStartTlsDeliversNothingToStrictHosts) {
  StartSink({SmtpListen()});  // smtps port closed: smtps- falls back to 25, through the MITM
  auto mitm = StartMitm(testing::MitmMode::kStripStartTls);
  ASSERT_NE(mitm, nullptr);
  Inject("d1.example", 2);
  Inject("d2.example", 2);
  Inject("d3.example", 2);
  ASSERT_EQ(RunEngine(), 0);
  nlohmann::json stats = sink_->Stop();
  EXPECT_GT(mitm->starttls_stripped(), 0);
  EXPECT_EQ(stats["messages"], 2) << "only the opportunistic host";
  auto by = ByDomain();
  for (const char* d : {"d1.example", "d2.example"}) {
    ASSERT_EQ(by[d].size(), 2u);
    for (const nlohmann::json& r : by[d]) {
      EXPECT_EQ(r["status"], "deferred") << r.dump();
      EXPECT_TRUE(absl::StrContains(r["text"].get<std::string>(), "starttls-not-offered"));
    }
  }
  for (const nlohmann::json& r : by["d3.example"]) {
    EXPECT_EQ(r["status"], "delivered");
    EXPECT_EQ(r["tls"], "none");
  }
}

// Attack 2 (CVE-2021-38371 class): a forged plaintext reply right after "220 ready to start
// TLS". It must never be taken as an SMTP reply: either dropped (delivery over TLS) or the
// handshake fails (deferred).
void CheckInjection(TlsPolicyTest* t, testing::MitmMode mode) {
  t->StartSink({t->SmtpListen()});
  auto mitm = t->StartMitm(mode);
  ASSERT_NE(mitm, nullptr);
  t->Inject("d1.example", 2);
  t->Inject("d3.example", 2);
  ASSERT_EQ(t->RunEngine(), 0);
  nlohmann::json stats = t->sink_->Stop();
  EXPECT_GT(mitm->injections(), 0) << "the attack must have happened";
  int delivered = 0;
  for (const auto& [domain, records] : t->ByDomain()) {
    for (const nlohmann::json& r : records) {
      EXPECT_FALSE(absl::StrContains(r["text"].get<std::string>(), "injected")) << r.dump();
      if (r["status"] == "delivered") {
        ++delivered;
        EXPECT_EQ(r["tls"], "TLSv1.3") << r.dump();
      } else {
        EXPECT_EQ(r["status"], "deferred") << r.dump();
      }
    }
  }
  EXPECT_EQ(stats["messages"], delivered) << "a delivered record is a message the sink has";
}

TEST_F(TlsPolicyTest, InjectedReplyInTheSameSegmentIsNeverActedOn) {
  CheckInjection(this, testing::MitmMode::kInjectAfterStartTlsSameSegment);
}

TEST_F(TlsPolicyTest, InjectedReplyInASeparateSegmentIsNeverActedOn) {
  CheckInjection(this, testing::MitmMode::kInjectAfterStartTlsSeparateSegment);
}

// Attack 5: capabilities advertised before STARTTLS (SIZE 1000, CHUNKING) and gone after it must
// not be used: a 3 KB message would bounce on the fake SIZE limit.
TEST_F(TlsPolicyTest, PreTlsCapabilitiesAreForgottenAfterTheHandshake) {
  StartSink({SmtpListen()});
  auto mitm = StartMitm(testing::MitmMode::kFakePreTlsCapabilities);
  ASSERT_NE(mitm, nullptr);
  Inject("d1.example", 2);
  ASSERT_EQ(RunEngine(), 0);
  nlohmann::json stats = sink_->Stop();
  EXPECT_GT(mitm->capabilities_faked(), 0);
  EXPECT_EQ(stats["messages"], 2);
  auto by = ByDomain();
  ASSERT_EQ(by["d1.example"].size(), 2u);
  for (const nlohmann::json& r : by["d1.example"]) {
    EXPECT_EQ(r["status"], "delivered") << r.dump();
  }
}

}  // namespace
}  // namespace mxb
