// MTA-STS enforcement (RFC 8461 §4, §5), issue 13 tests 1, 2, 3, 6: the real engine, a real
// unbound with _mta-sts TXT records, the Python https policy server and mxburst-sink on loopback
// (127.0.0.2: STARTTLS with a certificate from the test CA; 127.0.0.3: no STARTTLS offered, the
// stripped-STARTTLS case). Asserted on the accounting log and on what the sink received.
#include <signal.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "queue/spool.h"
#include "tests/dns/dns_test_util.h"
#include "tests/integration/fixture.h"
#include "tests/integration/sts_policy_server.h"
#include "tls/mta_sts.h"

namespace mxb {
namespace {

using testing::Bin;
using testing::EngineArgv;
using testing::FreePort;
using testing::ReadFileOrDie;
using testing::ReadJsonLines;
using testing::RunCommand;
using testing::RunEngine;
using testing::SinkProcess;
using testing::UnboundServer;
using testing::WaitFor;
using testing::WriteFileOrDie;

constexpr char kZones[] = R"(
  local-zone: "stsdeliv." static
  local-data: "stsdeliv. 3600 IN SOA ns.stsdeliv. host.stsdeliv. 1 3600 600 86400 60"
  local-data: "enforce.stsdeliv. 60 IN MX 10 mx1.enforce.stsdeliv."
  local-data: "mx1.enforce.stsdeliv. 60 IN A 127.0.0.2"
  local-data: '_mta-sts.enforce.stsdeliv. 60 IN TXT "v=STSv1; id=e1;"'
  local-data: "mta-sts.enforce.stsdeliv. 60 IN A 127.0.0.1"
  local-data: "other.stsdeliv. 60 IN MX 10 mx.shared.stsdeliv."
  local-data: '_mta-sts.other.stsdeliv. 60 IN TXT "v=STSv1; id=o1;"'
  local-data: "mta-sts.other.stsdeliv. 60 IN A 127.0.0.1"
  local-data: "nopolicy.stsdeliv. 60 IN MX 10 mx.shared.stsdeliv."
  local-data: "fetchfail.stsdeliv. 60 IN MX 10 mx.shared.stsdeliv."
  local-data: '_mta-sts.fetchfail.stsdeliv. 60 IN TXT "v=STSv1; id=f1;"'
  local-data: "mta-sts.fetchfail.stsdeliv. 60 IN A 127.0.0.9"
  local-data: "mx.shared.stsdeliv. 60 IN A 127.0.0.2"
  local-data: "stripenf.stsdeliv. 60 IN MX 10 mx.plain.stsdeliv."
  local-data: '_mta-sts.stripenf.stsdeliv. 60 IN TXT "v=STSv1; id=s1;"'
  local-data: "mta-sts.stripenf.stsdeliv. 60 IN A 127.0.0.1"
  local-data: "striptest.stsdeliv. 60 IN MX 10 mx.plain.stsdeliv."
  local-data: '_mta-sts.striptest.stsdeliv. 60 IN TXT "v=STSv1; id=t1;"'
  local-data: "mta-sts.striptest.stsdeliv. 60 IN A 127.0.0.1"
  local-data: "mx.plain.stsdeliv. 60 IN A 127.0.0.3"
  local-data: "rtls.stsdeliv. 60 IN MX 10 mx.rtls.stsdeliv."
  local-data: '_mta-sts.rtls.stsdeliv. 60 IN TXT "v=STSv1; id=r1;"'
  local-data: "mta-sts.rtls.stsdeliv. 60 IN A 127.0.0.1"
  local-data: "mx.rtls.stsdeliv. 60 IN A 127.0.0.4"
  local-data: "rtlsnone.stsdeliv. 60 IN MX 10 mx.rtls.stsdeliv."
)";

class StsDeliveryTest : public testing::SpoolWorld {
 protected:
  StsDeliveryTest() : SpoolWorld("stsdeliv", "acct.jsonl") {}

  void SetUp() override {
    SpoolWorld::SetUp();
    if (HasFatalFailure()) return;
    absl::StatusOr<std::unique_ptr<UnboundServer>> u = UnboundServer::Start(kZones, "");
    ASSERT_TRUE(u.ok()) << u.status();
    dns_ = *std::move(u);
    server_ = StsPolicyServer::Start(dir_, {"mta-sts.enforce.stsdeliv", "mta-sts.other.stsdeliv",
                                            "mta-sts.stripenf.stsdeliv",
                                            "mta-sts.striptest.stsdeliv",
                                            "mta-sts.rtls.stsdeliv"});
    ASSERT_TRUE(server_->ready()) << server_->error();
    server_->SetPolicy("mta-sts.enforce.stsdeliv",
                       "version: STSv1\nmode: enforce\nmx: *.enforce.stsdeliv\nmax_age: 86400\n");
    server_->SetPolicy("mta-sts.other.stsdeliv",
                       "version: STSv1\nmode: enforce\nmx: mx.elsewhere.stsdeliv\nmax_age: 86400\n");
    server_->SetPolicy("mta-sts.stripenf.stsdeliv",
                       "version: STSv1\nmode: enforce\nmx: mx.plain.stsdeliv\nmax_age: 86400\n");
    server_->SetPolicy("mta-sts.striptest.stsdeliv",
                       "version: STSv1\nmode: testing\nmx: mx.plain.stsdeliv\nmax_age: 86400\n");
    server_->SetPolicy("mta-sts.rtls.stsdeliv",
                       "version: STSv1\nmode: enforce\nmx: mx.rtls.stsdeliv\nmax_age: 86400\n");
    absl::StatusOr<GeneratedCert> cert = server_->IssueLeaf(
        {"mx1.enforce.stsdeliv", "mx.shared.stsdeliv", "mx.plain.stsdeliv", "mx.rtls.stsdeliv"});
    ASSERT_TRUE(cert.ok()) << cert.status();
    WriteFileOrDie(dir_ + "/mx.pem", cert->cert_pem);
    WriteFileOrDie(dir_ + "/mx.key", cert->key_pem);
    port_ = FreePort("127.0.0.2");
    sink_ = std::make_unique<SinkProcess>(
        dir_, std::vector<std::string>{
                  "--listen", absl::StrCat("127.0.0.2:", port_, ",127.0.0.3:", port_,
                                        "/no-starttls,127.0.0.4:", port_, "/requiretls"),
                  "--cert", dir_ + "/mx.pem", "--key", dir_ + "/mx.key", "--out-dir",
                  dir_ + "/received"});
    ASSERT_TRUE(sink_->ready()) << sink_->error_text();
    WriteFileOrDie(dir_ + "/mxburst.toml",
                   absl::StrCat("[mta_sts]\nhttps_port = ", server_->port(), "\nwait = 30\n"));
  }
  void TearDown() override {
    if (sink_) sink_->Stop();
  }

  void InjectTo(const std::string& rcpt, int n = 1, const std::string& envelope_extra = "") {
    testing::InjectTo(spool_, rcpt, n, "sts", envelope_extra);
  }

  // The engine's flags in this world, resolving through `dns` (add --drain for one run).
  std::vector<std::string> EngineFlags(const UnboundServer* dns) const {
    return {"--config", dir_ + "/mxburst.toml", "--spool", spool_, "--log", log_, "--quiet",
            "--workers", "1", "--helo", "sts.mxburst.example", "--dns", dns->address(),
            "--allow-private-mx", "--smtp-port", std::to_string(port_), "--ca-file",
            server_->ca_file(), "--connect-timeout", "5"};
  }

  std::vector<nlohmann::json> Deliver(const UnboundServer* dns = nullptr) {
    if (dns == nullptr) dns = dns_.get();
    std::vector<std::string> args = EngineFlags(dns);
    args.push_back("--drain");
    int rc = RunEngine(args, dir_ + "/engine.out", absl::Minutes(2));
    EXPECT_EQ(rc, 0) << ReadFileOrDie(dir_ + "/engine.out.err");
    return ReadJsonLines(log_);
  }

  static std::vector<nlohmann::json> For(const std::vector<nlohmann::json>& log,
                                         const std::string& domain) {
    std::vector<nlohmann::json> out;
    for (const nlohmann::json& r : log) {
      if (r.value("domain", "") == domain) out.push_back(r);
    }
    return out;
  }

  std::unique_ptr<UnboundServer> dns_;
  std::unique_ptr<StsPolicyServer> server_;
};

// Issue 13 test 1: enforce, the MX matches, valid certificate -> delivered over verified TLS.
TEST_F(StsDeliveryTest, EnforceMatchingMxDeliversVerified) {
  InjectTo("a@enforce.stsdeliv", 2);
  std::vector<nlohmann::json> log = For(Deliver(), "enforce.stsdeliv");
  ASSERT_EQ(log.size(), 2u);
  for (const nlohmann::json& r : log) {
    EXPECT_EQ(r["status"], "delivered") << r.dump();
    EXPECT_EQ(r["policy_source"], "mta-sts") << r.dump();
    EXPECT_EQ(r["policy"], "mta-sts-enforce id=e1") << r.dump();
    EXPECT_EQ(r.value("tls", ""), "TLSv1.3") << r.dump();  // verified: the policy is required + verify
  }
  absl::StatusOr<StsPolicy> cached =
      StsPolicyStore::ReadFile(spool_ + "/policy/mta-sts", "enforce.stsdeliv");
  ASSERT_TRUE(cached.ok()) << cached.status();
  EXPECT_EQ(cached->id, "e1");
  // mxburstctl sts DOMAIN shows it, with id and expiry.
  ASSERT_EQ(RunCommand({Bin("tools/mxburstctl"), "sts", "enforce.stsdeliv", "--spool", spool_},
                       dir_ + "/ctl.out"),
            0);
  nlohmann::json shown = nlohmann::json::parse(ReadFileOrDie(dir_ + "/ctl.out"));
  EXPECT_EQ(shown["id"], "e1");
  EXPECT_EQ(shown["mode"], "enforce");
  EXPECT_EQ(shown["expired"], false);
  EXPECT_FALSE(shown.value("expires_utc", "").empty());
}

// Issue 13 test 2 and 6: the policy lists another MX -> deferred, never sent to the shared MX;
// the domains sharing that MX (one without a policy, one whose policy fetch fails) deliver.
TEST_F(StsDeliveryTest, NonMatchingMxDefersAndOtherDomainsOnTheMxAreUnaffected) {
  InjectTo("a@other.stsdeliv", 2);
  InjectTo("b@nopolicy.stsdeliv", 2);
  InjectTo("c@fetchfail.stsdeliv", 2);
  std::vector<nlohmann::json> all = Deliver();
  std::vector<nlohmann::json> other = For(all, "other.stsdeliv");
  ASSERT_EQ(other.size(), 2u);
  for (const nlohmann::json& r : other) {
    EXPECT_EQ(r["status"], "deferred") << r.dump();
    EXPECT_TRUE(absl::StrContains(r.value("text", ""), "matches its MTA-STS policy")) << r.dump();
  }
  for (const char* d : {"nopolicy.stsdeliv", "fetchfail.stsdeliv"}) {
    std::vector<nlohmann::json> log = For(all, d);
    ASSERT_EQ(log.size(), 2u) << d;
    for (const nlohmann::json& r : log) {
      EXPECT_EQ(r["status"], "delivered") << r.dump();
      EXPECT_NE(r["policy_source"], "mta-sts") << r.dump();
    }
  }
  for (const std::string& name : testing::ListDir(dir_ + "/received")) {
    EXPECT_FALSE(absl::StrContains(ReadFileOrDie(dir_ + "/received/" + name), "a@other.stsdeliv"))
        << name;
  }
}

// Issue 13 test 3: STARTTLS not offered (stripped) -> enforce defers; testing delivers and
// records the failure as a policy violation.
TEST_F(StsDeliveryTest, StrippedStartTlsEnforceDefersTestingDeliversAndRecords) {
  InjectTo("a@stripenf.stsdeliv");
  InjectTo("b@striptest.stsdeliv");
  std::vector<nlohmann::json> all = Deliver();
  std::vector<nlohmann::json> enf = For(all, "stripenf.stsdeliv");
  ASSERT_EQ(enf.size(), 1u);
  EXPECT_EQ(enf[0]["status"], "deferred") << enf[0].dump();
  EXPECT_EQ(enf[0]["policy_source"], "mta-sts") << enf[0].dump();
  std::vector<nlohmann::json> test = For(all, "striptest.stsdeliv");
  ASSERT_EQ(test.size(), 1u);
  EXPECT_EQ(test[0]["status"], "delivered") << test[0].dump();
  EXPECT_EQ(test[0]["policy"], "mta-sts-testing id=t1") << test[0].dump();
  EXPECT_FALSE(test[0].value("policy_violation", "").empty()) << test[0].dump();
}

// RFC 8689 §4.2.1: an MX listed in the domain's MTA-STS policy (fetched over PKIX-verified
// HTTPS) is as good as a DNSSEC-validated MX lookup for a REQUIRETLS message; the same MX
// reached for a domain without a policy (unsigned local zone) is not, and the message defers.
TEST_F(StsDeliveryTest, RequireTlsToAnMxListedByMtaSts) {
  InjectTo("r@rtls.stsdeliv", 1, "x-requiretls: yes\n");
  InjectTo("r@rtlsnone.stsdeliv", 1, "x-requiretls: yes\n");
  std::vector<nlohmann::json> log = Deliver();
  std::vector<nlohmann::json> listed = For(log, "rtls.stsdeliv");
  ASSERT_EQ(listed.size(), 1u) << nlohmann::json(log).dump(1);
  EXPECT_EQ(listed[0]["status"], "delivered") << listed[0].dump();
  EXPECT_EQ(listed[0]["policy_source"], "mta-sts") << listed[0].dump();
  std::vector<nlohmann::json> unlisted = For(log, "rtlsnone.stsdeliv");
  ASSERT_EQ(unlisted.size(), 1u);
  EXPECT_EQ(unlisted[0]["status"], "deferred") << unlisted[0].dump();
  EXPECT_EQ(unlisted[0]["enhanced"], "4.7.30") << unlisted[0].dump();
  // What the sink saw: REQUIRETLS on MAIL FROM for the listed MX, nothing for the other.
  bool sent_requiretls = false, leaked = false;
  for (const std::string& name : testing::ListDir(dir_ + "/received")) {
    if (!absl::EndsWith(name, ".eml")) continue;
    const std::string eml = ReadFileOrDie(dir_ + "/received/" + name);
    const std::string env =
        ReadFileOrDie(dir_ + "/received/" + name.substr(0, name.size() - 4) + ".env");
    if (absl::StrContains(eml, "r@rtls.stsdeliv")) {
      sent_requiretls = absl::StrContains(env, "REQUIRETLS");
    }
    if (absl::StrContains(eml, "r@rtlsnone.stsdeliv")) leaked = true;
  }
  EXPECT_TRUE(sent_requiretls);
  EXPECT_FALSE(leaked);
}

// Issue 13 test 4: the policy server goes away -> the cached, unexpired policy is still enforced
// (RFC 8461 §5.1); the TXT id changes -> the policy is fetched again and the new one applies.
// Each engine run is a separate process: the cache lives in SPOOL/policy/mta-sts.
TEST_F(StsDeliveryTest, CachedPolicyEnforcedWhileServerDownAndNewTxtIdRefetches) {
  InjectTo("a@stripenf.stsdeliv");
  InjectTo("x@enforce.stsdeliv");
  std::vector<nlohmann::json> first = Deliver();
  ASSERT_EQ(For(first, "stripenf.stsdeliv").size(), 1u);
  EXPECT_EQ(For(first, "stripenf.stsdeliv")[0]["status"], "deferred");
  ASSERT_EQ(For(first, "enforce.stsdeliv").size(), 1u);
  EXPECT_EQ(For(first, "enforce.stsdeliv")[0]["status"], "delivered");
  const int fetched = server_->Requests("mta-sts.enforce.stsdeliv");
  EXPECT_EQ(fetched, 1);

  // The policy server has nothing any more: the cached policy still refuses the stripped MX.
  server_->Remove("mta-sts.stripenf.stsdeliv");
  server_->Remove("mta-sts.enforce.stsdeliv");
  WriteFileOrDie(log_, "");
  InjectTo("b@stripenf.stsdeliv");
  std::vector<nlohmann::json> second = Deliver();
  ASSERT_EQ(For(second, "stripenf.stsdeliv").size(), 1u) << ReadFileOrDie(log_);
  EXPECT_EQ(For(second, "stripenf.stsdeliv")[0]["status"], "deferred");
  EXPECT_EQ(For(second, "stripenf.stsdeliv")[0]["policy_source"], "mta-sts");

  // A new id in the TXT record: fetched again; the new policy lists another MX -> deferred.
  server_->SetPolicy("mta-sts.enforce.stsdeliv",
                     "version: STSv1\nmode: enforce\nmx: mx.elsewhere.stsdeliv\nmax_age: 86400\n");
  std::string zones = kZones;
  const std::string old_txt = "_mta-sts.enforce.stsdeliv. 60 IN TXT \"v=STSv1; id=e1;\"";
  ASSERT_NE(zones.find(old_txt), std::string::npos);
  zones.replace(zones.find(old_txt), old_txt.size(),
                "_mta-sts.enforce.stsdeliv. 60 IN TXT \"v=STSv1; id=e2;\"");
  absl::StatusOr<std::unique_ptr<UnboundServer>> dns2 = UnboundServer::Start(zones, "");
  ASSERT_TRUE(dns2.ok()) << dns2.status();
  // §5.1 allows the refresh to run while the cached policy is used: let an engine run until the
  // new policy is in the cache, then deliver with it.
  InjectTo("y@enforce.stsdeliv");
  {
    testing::Subprocess engine(EngineArgv(EngineFlags(dns2->get())), dir_ + "/engine3.out",
                               dir_ + "/engine3.err");
    absl::StatusOr<StsPolicy> cached;
    WaitFor(
        [&] {
          cached = StsPolicyStore::ReadFile(spool_ + "/policy/mta-sts", "enforce.stsdeliv");
          return cached.ok() && cached->id == "e2";
        },
        absl::Seconds(30));
    ASSERT_TRUE(cached.ok()) << cached.status();
    EXPECT_EQ(cached->id, "e2") << ReadFileOrDie(dir_ + "/engine3.err");
    engine.Signal(SIGTERM);
    EXPECT_EQ(engine.Wait(), 0) << ReadFileOrDie(dir_ + "/engine3.err");
  }
  EXPECT_EQ(server_->Requests("mta-sts.enforce.stsdeliv"), fetched + 1);
  WriteFileOrDie(log_, "");
  InjectTo("z@enforce.stsdeliv");
  std::vector<nlohmann::json> fourth = For(Deliver(dns2->get()), "enforce.stsdeliv");
  ASSERT_EQ(fourth.size(), 1u) << ReadFileOrDie(log_);
  EXPECT_EQ(fourth[0]["status"], "deferred") << fourth[0].dump();
  EXPECT_TRUE(absl::StrContains(fourth[0].value("text", ""), "matches its MTA-STS policy (id e2)"))
      << fourth[0].dump();
}

}  // namespace
}  // namespace mxb
