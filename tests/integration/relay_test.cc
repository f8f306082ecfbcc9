// Smarthost relay (issue 16): RFC 8314 implicit TLS + RFC 4954 AUTH against a real submission
// server — Debian's Postfix smtpd on 127.0.0.27 with smtpd_tls_wrappermode=yes and Cyrus SASL
// (sasldb), started once for the suite. mxburst routes every domain through [relay.smart].
//   - AUTH PLAIN and AUTH LOGIN over verified implicit TLS deliver (Postfix takes mail only from
//     authenticated clients on that listener);
//   - a wrong password: everything deferred, one operator line on stderr, one AUTH attempt for
//     all destinations of the relay, no bounce, and the password nowhere in our output;
//   - a relay whose certificate we do not trust: deferred, and no AUTH was ever sent.
#include <sys/stat.h>

#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/fixture.h"
#include "tests/integration/postfix_fixture.h"
#include "tls/tls_session.h"

namespace mxb {
namespace {

using testing::Bin;
using testing::CountContaining;
using testing::MakeTempDir;
using testing::PostfixServer;
using testing::ReadFileOrDie;
using testing::ReadJsonLines;
using testing::RunCommand;
using testing::SpoolWorld;
using testing::StatusCounts;
using testing::WriteFileOrDie;

constexpr char kRelayName[] = "relay.postfix.test";
constexpr char kUser[] = "relayuser";
constexpr char kPassword[] = "Tr0ub4dor&3-relay";

class RelayTest : public SpoolWorld {
 protected:
  RelayTest() : SpoolWorld("relay") {}

  static void SetUpTestSuite() {
    skip_ = new std::string(PostfixServer::Unavailable(/*sasl=*/true));
    if (!skip_->empty()) return;
    PostfixServer::Options o;
    o.ip = "127.0.0.27";
    o.names = {kRelayName};
    o.tls_loglevel = 1;
    o.sasl_user = kUser;
    o.sasl_password = kPassword;
    server_ = new PostfixServer(MakeTempDir("postfix-relay"), o);
    start_ = new absl::Status(server_->Start());
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    delete start_;
    start_ = nullptr;
    delete skip_;
    skip_ = nullptr;
  }

  void SetUp() override {
    if (!skip_->empty()) GTEST_SKIP() << *skip_;
    ASSERT_TRUE(start_->ok()) << *start_;
    SpoolWorld::SetUp();
    log_from_ = server_->LogSize();
  }

  void Inject(int count) {
    for (int i = 0; i < count; ++i) {
      // Two recipient domains: two destinations share the one relay.
      const std::string rcpt = absl::StrCat("user", i, "@d", i % 2, ".example");
      const std::string file = absl::StrCat("x-sender: <s@esp.example>\nx-receiver: <", rcpt,
                                            ">\nFrom: <s@esp.example>\nSubject: relay ", i,
                                            "\n\nbody ", i, "\n");
      ASSERT_TRUE(InjectFile(spool_, absl::StrCat("m", i, ".eml"), file, false).ok());
    }
  }

  // mxburst --config with [relay.smart], every domain routed through it.
  int RunEngine(const std::string& auth, const std::string& password,
                const std::string& ca_file) {
    const std::string pw = dir_ + "/relay.password";
    WriteFileOrDie(pw, password + "\n");
    EXPECT_EQ(chmod(pw.c_str(), 0600), 0);
    const std::string config = dir_ + "/mxburst.toml";
    WriteFileOrDie(config, absl::StrCat("[relay.smart]\nhost = \"", kRelayName, "@",
                                        server_->ip(), "\"\nport = ",
                                        server_->submissions_port(),
                                        "\ntls = \"implicit\"\nauth = \"", auth,
                                        "\"\nusername = \"", kUser, "\"\npassword_file = \"", pw,
                                        "\"\n"));
    return RunCommand({Bin("engine/mxburst"), "--allow-root", "--config", config, "--spool",
                       spool_, "--route", "*=relay:smart", "--ca-file", ca_file, "--drain",
                       "--log", log_, "--workers", "1", "--helo", "client.mxburst.test"},
                      dir_ + "/engine.out", absl::Minutes(2));
  }
  std::string EngineErr() { return ReadFileOrDie(dir_ + "/engine.out.err"); }

  // Our own outputs must never contain the password (engine stderr/stdout, accounting log).
  void ExpectNoSecretIn(const std::string& password) {
    for (const std::string& f : {dir_ + "/engine.out", dir_ + "/engine.out.err", log_}) {
      EXPECT_FALSE(absl::StrContains(ReadFileOrDie(f), password)) << f;
    }
  }

  void ExpectDeliveredThroughRelay(int n, const std::string& mechanism) {
    std::vector<nlohmann::json> log = ReadJsonLines(log_);
    ASSERT_EQ(log.size(), static_cast<size_t>(n));
    for (const nlohmann::json& r : log) {
      EXPECT_EQ(r["status"], "delivered") << r.dump();
      EXPECT_EQ(r["policy"], "relay-smart") << r.dump();
      EXPECT_EQ(r["port"], server_->submissions_port()) << r.dump();
      EXPECT_EQ(r["tls"], "TLSv1.3") << r.dump();
    }
    ASSERT_TRUE(server_->WaitForLines(log_from_, "status=sent", n, absl::Seconds(20)));
    const std::vector<std::string> lines = server_->LinesSince(log_from_);
    EXPECT_GE(CountContaining(lines, absl::StrCat("sasl_method=", mechanism, ", sasl_username=",
                                                  kUser)),
              1u);
    EXPECT_EQ(CountContaining(lines, "postfix/submissions/smtpd["),
              CountContaining(lines, "smtpd["));
    EXPECT_EQ(Count("deferred") + Count("active") + Count("incoming"), 0u);
  }

  static std::string* skip_;
  static PostfixServer* server_;
  static absl::Status* start_;
  size_t log_from_ = 0;
};
std::string* RelayTest::skip_ = nullptr;
PostfixServer* RelayTest::server_ = nullptr;
absl::Status* RelayTest::start_ = nullptr;

TEST_F(RelayTest, DeliversThroughImplicitTlsWithAuthPlain) {
  Inject(6);
  ASSERT_EQ(RunEngine("plain", kPassword, server_->ca_file()), 0) << EngineErr();
  ExpectDeliveredThroughRelay(6, "PLAIN");
  ExpectNoSecretIn(kPassword);
}

TEST_F(RelayTest, DeliversThroughImplicitTlsWithAuthLogin) {
  Inject(2);
  ASSERT_EQ(RunEngine("login", kPassword, server_->ca_file()), 0) << EngineErr();
  ExpectDeliveredThroughRelay(2, "LOGIN");
}

// RFC 4954 §6 535: an operator error. Nothing bounces; everything for the relay is deferred;
// one stderr line names the relay and the keys to check; the second destination does not try
// AUTH again (the relay's gate is closed), so Postfix saw exactly one failed AUTH.
TEST_F(RelayTest, WrongPasswordDefersEverythingWithOneOperatorLine) {
  Inject(6);
  const std::string wrong = "not-the-password";
  ASSERT_EQ(RunEngine("plain", wrong, server_->ca_file()), 0) << EngineErr();
  std::map<std::string, int> counts = StatusCounts(ReadJsonLines(log_));
  EXPECT_EQ(counts["deferred"], 6);
  EXPECT_EQ(counts["bounced"] + counts["delivered"], 0);
  EXPECT_EQ(Count("bounces"), 0u);
  EXPECT_EQ(Count("deferred"), 6u);
  const std::string err = EngineErr();
  EXPECT_EQ(CountContaining(absl::StrSplit(err, '\n'), "relay smart: authentication as relayuser "
                                                        "failed"),
            1u)
      << err;
  EXPECT_TRUE(absl::StrContains(err, "relay.smart.password_file")) << err;
  ASSERT_TRUE(server_->WaitForLines(log_from_, "authentication failed", 1, absl::Seconds(10)));
  ASSERT_TRUE(server_->WaitForLines(log_from_, "disconnect from", 1, absl::Seconds(10)));
  EXPECT_EQ(CountContaining(server_->LinesSince(log_from_), "authentication failed"), 1u);
  ExpectNoSecretIn(wrong);
}

// RFC 8314 §3 / §5.1: the relay's certificate is verified (PKIX + name) before anything is
// said; a certificate from a CA we do not trust defers the mail, and no AUTH reaches Postfix.
TEST_F(RelayTest, UntrustedCertificateDefersAndNoAuthIsSent) {
  absl::StatusOr<GeneratedCert> other = GenerateSelfSignedCert("some other CA", {"ca.invalid"});
  ASSERT_TRUE(other.ok()) << other.status();
  const std::string other_ca = dir_ + "/other-ca.pem";
  WriteFileOrDie(other_ca, other->cert_pem);
  Inject(2);
  ASSERT_EQ(RunEngine("plain", kPassword, other_ca), 0) << EngineErr();
  std::vector<nlohmann::json> log = ReadJsonLines(log_);
  ASSERT_EQ(log.size(), 2u);
  for (const nlohmann::json& r : log) {
    EXPECT_EQ(r["status"], "deferred") << r.dump();
    EXPECT_TRUE(absl::StrContains(r["text"].get<std::string>(), "validation-failure"))
        << r.dump();
  }
  ASSERT_TRUE(server_->WaitForLines(log_from_, "disconnect from", 1, absl::Seconds(10)));
  const std::vector<std::string> lines = server_->LinesSince(log_from_);
  EXPECT_EQ(CountContaining(lines, "sasl_"), 0u);
  EXPECT_EQ(CountContaining(lines, " auth="), 0u);
  EXPECT_EQ(Count("bounces"), 0u);
}

}  // namespace
}  // namespace mxb
