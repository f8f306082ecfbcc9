// Delivery routed by DNS (RFC 5321 §5.1): the real engine asks a real unbound on 127.0.0.1 for
// MX records and delivers to mxburst-sink listening on several loopback addresses. Each case is
// asserted on the engine's log (which MX, which address, which outcome).
#include <map>
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
using testing::UnboundServer;
using testing::WriteFileOrDie;

constexpr char kZones[] = R"(
  local-zone: "dnstest." static
  local-data: "dnstest. 3600 IN SOA ns.dnstest. host.dnstest. 1 3600 600 86400 60"
  local-data: "multi.dnstest. 300 IN MX 10 mx1.multi.dnstest."
  local-data: "multi.dnstest. 300 IN MX 20 mx2.multi.dnstest."
  local-data: "mx1.multi.dnstest. 300 IN A 127.0.0.2"
  local-data: "mx2.multi.dnstest. 300 IN A 127.0.0.3"
  local-data: "down.dnstest. 300 IN MX 10 mx1.down.dnstest."
  local-data: "down.dnstest. 300 IN MX 20 mx2.down.dnstest."
  local-data: "mx1.down.dnstest. 300 IN A 127.0.0.4"
  local-data: "mx2.down.dnstest. 300 IN A 127.0.0.3"
  local-data: "implicit.dnstest. 300 IN A 127.0.0.2"
  local-data: "nullmx.dnstest. 300 IN MX 0 ."
  local-data: "noaddr.dnstest. 300 IN MX 10 ghost.noaddr.dnstest."
  local-data: "cname.dnstest. 300 IN MX 10 alias.cname.dnstest."
  local-data: "alias.cname.dnstest. 300 IN CNAME real.cname.dnstest."
  local-data: "real.cname.dnstest. 300 IN A 127.0.0.3"
  local-data: "v6only.dnstest. 300 IN MX 10 mx.v6only.dnstest."
  local-data: "mx.v6only.dnstest. 300 IN AAAA ::1"
  local-data: "xn--bcher-kva.dnstest. 300 IN MX 10 mx1.multi.dnstest."
  local-data: "localmx.dnstest. 300 IN MX 10 mx.localmx.dnstest."
  local-data: "mx.localmx.dnstest. 300 IN A 127.0.0.2"
)";

class DnsDeliveryTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    shared_dir_ = new std::string(MakeTempDir("dnsdelivery"));
    WriteFileOrDie(*shared_dir_ + "/bogus.zone", testing::kBogusZone);
    absl::StatusOr<std::unique_ptr<UnboundServer>> u = UnboundServer::Start(
        absl::StrCat(kZones, testing::kBogusAnchor),
        testing::AuthZone("bogus.", *shared_dir_ + "/bogus.zone"));
    if (!u.ok()) {
      unbound_error_ = new std::string(u.status().ToString());
      return;
    }
    unbound_ = u->release();
    port_ = FreePort("127.0.0.1");
    sink_ = new SinkProcess(*shared_dir_, {"--listen",
                                           absl::StrCat("127.0.0.2:", port_, ",127.0.0.3:", port_,
                                                        ",[::1]:", port_),
                                           "--out-dir", *shared_dir_ + "/received"});
  }
  static void TearDownTestSuite() {
    if (sink_ != nullptr) sink_->Stop();
    delete sink_;
    delete unbound_;
    sink_ = nullptr;
    unbound_ = nullptr;
  }

  void SetUp() override {
    if (unbound_ == nullptr) GTEST_SKIP() << "unbound could not start: " << *unbound_error_;
    ASSERT_TRUE(sink_->ready()) << sink_->error_text();
    dir_ = MakeTempDir("dnscase");
    spool_ = dir_ + "/spool";
    log_ = dir_ + "/acct.jsonl";
    ASSERT_TRUE(Spool::Open(spool_).ok());
  }

  void InjectTo(const std::string& rcpt, int n = 1) {
    for (int i = 0; i < n; ++i) {
      std::string msg = absl::StrCat("x-sender: <bounce@esp.example>\nx-receiver: <", rcpt,
                                     ">\nFrom: a@esp.example\nTo: ", rcpt,
                                     "\nMessage-ID: <", i, ".", rcpt, ">\nSubject: dns\n\n",
                                     "hello\n");
      ASSERT_TRUE(InjectFile(spool_, absl::StrCat("m", i, ".eml"), msg, false).ok());
    }
  }

  // The address the sink received message `i` to `rcpt` on ("127.0.0.3", "::1"), "" if never.
  static std::string ReceivedOn(const std::string& rcpt, int i = 0) {
    std::string dir = *shared_dir_ + "/received";
    std::string id = absl::StrCat("Message-ID: <", i, ".", rcpt, ">");
    for (const std::string& name : ListDir(dir)) {
      if (!absl::EndsWith(name, ".eml")) continue;
      if (!absl::StrContains(ReadFileOrDie(dir + "/" + name), id)) continue;
      std::string env = ReadFileOrDie(dir + "/" + name.substr(0, name.size() - 4) + ".env");
      size_t at = env.find("local: ");
      if (at == std::string::npos) return "?";
      std::string local = env.substr(at + 7, env.find('\n', at) - at - 7);
      if (absl::StartsWith(local, "[")) return local.substr(1, local.find(']') - 1);
      return local.substr(0, local.rfind(':'));
    }
    return "";
  }

  // Every MX of the test zone is on 127.0.0.0/8: allowed unless `allow_private_mx` is false.
  std::vector<nlohmann::json> Deliver(bool allow_private_mx = true) {
    std::vector<std::string> argv = {"--spool", spool_, "--drain", "--log",
                                     log_, "--quiet", "--workers", "1", "--helo",
                                     "dns.mxburst.example", "--dns", unbound_->address(),
                                     "--smtp-port", std::to_string(port_), "--connect-timeout",
                                     "5"};
    if (allow_private_mx) argv.push_back("--allow-private-mx");
    int rc = RunEngine(argv, dir_ + "/engine.out", absl::Minutes(2));
    EXPECT_EQ(rc, 0) << ReadFileOrDie(dir_ + "/engine.out.err");
    return ReadJsonLines(log_);
  }

  static std::string* shared_dir_;
  static std::string* unbound_error_;
  static UnboundServer* unbound_;
  static SinkProcess* sink_;
  static int port_;
  std::string dir_, spool_, log_;
};

std::string* DnsDeliveryTest::shared_dir_ = nullptr;
std::string* DnsDeliveryTest::unbound_error_ = nullptr;
UnboundServer* DnsDeliveryTest::unbound_ = nullptr;
SinkProcess* DnsDeliveryTest::sink_ = nullptr;
int DnsDeliveryTest::port_ = 0;

TEST_F(DnsDeliveryTest, LowestPreferenceMxFirst) {
  InjectTo("a@multi.dnstest", 3);
  std::vector<nlohmann::json> log = Deliver();
  ASSERT_EQ(log.size(), 3u);
  for (const nlohmann::json& r : log) {
    EXPECT_EQ(r["status"], "delivered") << r.dump();
    EXPECT_EQ(r["mx"], "mx1.multi.dnstest");
    EXPECT_EQ(r["ip"], "127.0.0.2");
  }
  for (int i = 0; i < 3; ++i) EXPECT_EQ(ReceivedOn("a@multi.dnstest", i), "127.0.0.2");
}

TEST_F(DnsDeliveryTest, FirstMxDownDeliversViaTheSecond) {
  InjectTo("a@down.dnstest", 2);
  std::vector<nlohmann::json> log = Deliver();
  ASSERT_EQ(log.size(), 2u);
  for (const nlohmann::json& r : log) {
    EXPECT_EQ(r["status"], "delivered") << r.dump();
    EXPECT_EQ(r["mx"], "mx2.down.dnstest");
    EXPECT_EQ(r["ip"], "127.0.0.3");
  }
  for (int i = 0; i < 2; ++i) EXPECT_EQ(ReceivedOn("a@down.dnstest", i), "127.0.0.3");
}

TEST_F(DnsDeliveryTest, ImplicitMxUsesTheDomainsAddress) {
  InjectTo("a@implicit.dnstest");
  std::vector<nlohmann::json> log = Deliver();
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0]["status"], "delivered") << log[0].dump();
  EXPECT_EQ(log[0]["mx"], "implicit.dnstest");
  EXPECT_EQ(log[0]["ip"], "127.0.0.2");
  EXPECT_EQ(ReceivedOn("a@implicit.dnstest"), "127.0.0.2");
}

TEST_F(DnsDeliveryTest, NullMxBouncesAtOnceWithADsn) {
  InjectTo("a@nullmx.dnstest");
  std::vector<nlohmann::json> log = Deliver();
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0]["status"], "bounced") << log[0].dump();
  EXPECT_EQ(ReceivedOn("a@nullmx.dnstest"), "") << "never sent";
  EXPECT_EQ(log[0]["code"], 556);
  EXPECT_EQ(log[0]["enhanced"], "5.1.10");
  EXPECT_EQ(CountSpool(spool_, "deferred"), 0u);
  std::vector<std::string> dsns = ListDir(spool_ + "/bounces");
  ASSERT_EQ(dsns.size(), 1u);
  std::string dsn = ReadFileOrDie(spool_ + "/bounces/" + dsns[0]);
  EXPECT_TRUE(absl::StrContains(dsn, "x-receiver: <bounce@esp.example>")) << dsn;
  EXPECT_TRUE(absl::StrContains(dsn, "Status: 5.1.10")) << dsn;
}

// Issue 10 item 10: a recipient domain whose MX resolves to our own loopback must not make the
// engine connect there (here the sink on 127.0.0.2 would have taken it): bounced like Postfix's
// "loops back to myself", with the reason, and never sent.
TEST_F(DnsDeliveryTest, LoopbackMxIsRefusedUnlessAllowed) {
  InjectTo("a@localmx.dnstest");
  std::vector<nlohmann::json> log = Deliver(/*allow_private_mx=*/false);
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0]["status"], "bounced") << log[0].dump();
  EXPECT_EQ(log[0]["code"], 550);
  EXPECT_EQ(log[0]["enhanced"], "5.4.6");
  const std::string text = log[0].value("text", "");
  EXPECT_TRUE(absl::StrContains(text, "loops back to myself")) << text;
  EXPECT_TRUE(absl::StrContains(text, "mx.localmx.dnstest has the loopback address 127.0.0.2"))
      << text;
  EXPECT_EQ(ReceivedOn("a@localmx.dnstest"), "") << "never sent";
}

TEST_F(DnsDeliveryTest, NxDomainBounces) {
  InjectTo("a@nx.dnstest");
  std::vector<nlohmann::json> log = Deliver();
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0]["status"], "bounced") << log[0].dump();
  EXPECT_EQ(log[0]["enhanced"], "5.1.2");
}

TEST_F(DnsDeliveryTest, MxHostWithoutAddressIsNotDelivered) {
  InjectTo("a@noaddr.dnstest");
  std::vector<nlohmann::json> log = Deliver();
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0]["status"], "bounced") << log[0].dump();
  EXPECT_EQ(log[0]["enhanced"], "5.1.2");
}

TEST_F(DnsDeliveryTest, MxTargetThatIsACnameIsFollowed) {
  InjectTo("a@cname.dnstest");
  std::vector<nlohmann::json> log = Deliver();
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0]["status"], "delivered") << log[0].dump();
  EXPECT_EQ(log[0]["mx"], "alias.cname.dnstest");
  EXPECT_EQ(log[0]["ip"], "127.0.0.3");
  EXPECT_EQ(ReceivedOn("a@cname.dnstest"), "127.0.0.3");
}

TEST_F(DnsDeliveryTest, AaaaOnlyMxDeliversOverIpv6) {
  InjectTo("a@v6only.dnstest");
  std::vector<nlohmann::json> log = Deliver();
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0]["status"], "delivered") << log[0].dump();
  EXPECT_EQ(log[0]["ip"], "::1");
  EXPECT_EQ(ReceivedOn("a@v6only.dnstest"), "::1");
}

TEST_F(DnsDeliveryTest, IdnDomainIsLookedUpAsALabel) {
  InjectTo("a@b\xC3\xBC" "cher.dnstest");  // bücher.dnstest -> xn--bcher-kva.dnstest
  std::vector<nlohmann::json> log = Deliver();
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0]["status"], "delivered") << log[0].dump();
  EXPECT_EQ(log[0]["mx"], "mx1.multi.dnstest");
}

TEST_F(DnsDeliveryTest, ServfailDefersNeverBounces) {
  InjectTo("a@bogus", 2);
  std::vector<nlohmann::json> log = Deliver();
  ASSERT_EQ(log.size(), 2u);
  for (const nlohmann::json& r : log) {
    EXPECT_EQ(r["status"], "deferred") << r.dump();
    EXPECT_EQ(r["enhanced"], "4.4.3");
  }
  EXPECT_EQ(CountSpool(spool_, "deferred"), 2u);
  EXPECT_EQ(CountSpool(spool_, "bounces"), 0u);
}

}  // namespace
}  // namespace mxb
