// Interoperability with a real receiver: mxburst against Debian's Postfix 3.7 smtpd (OpenSSL 3,
// TLS 1.3), one private instance for the whole suite (PostfixServer). Every test fails on any
// TLS or handshake problem Postfix logs, and checks in Postfix's own log that each message was
// accepted (its queue id) and how each handshake went ("Reusing old session").
//
// Static routes NAME@127.0.0.25:PORT keep the MX names, and so their TLS policy:
//   starttls-mx.postfix.test  STARTTLS required, certificate verified against the test CA
//   smtps-mx.postfix.test     implicit TLS on the smtps port (RFC 8314), verified
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/fixture.h"
#include "tests/integration/postfix_fixture.h"

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

constexpr char kStartTlsMx[] = "starttls-mx.postfix.test";
constexpr char kSmtpsMx[] = "smtps-mx.postfix.test";
constexpr int kMaxConnections = 4;

class PostfixInteropTest : public SpoolWorld {
 protected:
  PostfixInteropTest() : SpoolWorld("postfix-interop") {}

  static void SetUpTestSuite() {
    skip_ = new std::string(PostfixServer::Unavailable());
    if (!skip_->empty()) return;
    PostfixServer::Options o;
    o.names = {kStartTlsMx, kSmtpsMx};
    server_ = new PostfixServer(MakeTempDir("postfix"), o);
    start_ = new absl::Status(server_->Start());
  }
  static void TearDownTestSuite() {
    delete server_;  // stops Postfix
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
    check_log_ = true;
  }

  // Whatever the test asserted: Postfix saw no TLS or handshake trouble during it.
  void TearDown() override {
    if (!check_log_) return;
    for (const std::string& line : server_->ProblemLines(log_from_)) {
      ADD_FAILURE() << "Postfix logged: " << line;
    }
  }

  void Inject(int count) {
    const std::string out = dir_ + "/inject.out";
    ASSERT_EQ(RunCommand({Bin("tools/mxburst-inject"), "--spool", spool_, "--count",
                          std::to_string(count), "--domain-list", "interop.example", "--size",
                          "3000", "--seed", "7", "--no-fsync"},
                         out),
              0)
        << ReadFileOrDie(out + ".err");
  }

  // mxburst on one worker (one destination shares one policy cache, one ticket store).
  int RunEngine(const std::string& mx, std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {
        Bin("engine/mxburst"), "--allow-root", "--spool", spool_, "--route",
        absl::StrCat("*=", mx, "@", server_->ip(), ":", server_->smtp_port()),
        "--smtp-port", std::to_string(server_->smtp_port()),
        "--smtps-port", std::to_string(server_->smtps_port()),
        "--ca-file", server_->ca_file(), "--drain", "--log", log_, "--quiet",
        "--workers", "1", "--max-connections", std::to_string(kMaxConnections),
        "--helo", "client.mxburst.test"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return RunCommand(argv, dir_ + "/engine.out", absl::Minutes(2));
  }

  // The accounting log must show `n` deliveries over TLS 1.3 with `policy` to `port`, each
  // accepted by Postfix (its "queued as" id discarded with status=sent in Postfix's log).
  // Returns how many of them resumed a TLS session.
  int ExpectDelivered(size_t n, const std::string& policy, int port) {
    std::vector<nlohmann::json> log = ReadJsonLines(log_);
    EXPECT_EQ(log.size(), n);
    EXPECT_TRUE(server_->WaitForLines(log_from_, "status=sent", n, absl::Seconds(20)));
    std::set<std::string> sent;
    for (const std::string& line : server_->LinesSince(log_from_)) {
      if (!absl::StrContains(line, "status=sent")) continue;
      const size_t colon = line.find(": to=<");
      const size_t start = line.rfind(' ', colon);
      if (colon != std::string::npos && start != std::string::npos) {
        sent.insert(line.substr(start + 1, colon - start - 1));
      }
    }
    int resumed = 0;
    for (const nlohmann::json& r : log) {
      EXPECT_EQ(r["status"], "delivered") << r.dump();
      EXPECT_EQ(r["code"], 250) << r.dump();
      EXPECT_EQ(r["tls"], "TLSv1.3") << r.dump();
      EXPECT_EQ(r["policy"], policy) << r.dump();
      EXPECT_EQ(r["port"], port) << r.dump();
      const std::string text = r.value("text", "");
      const size_t q = text.find("queued as ");
      EXPECT_NE(q, std::string::npos) << r.dump();
      if (q != std::string::npos) {
        EXPECT_TRUE(sent.count(text.substr(q + 10))) << "not discarded by Postfix: " << r.dump();
      }
      if (r.value("tls_resumed", false)) ++resumed;
    }
    EXPECT_EQ(Count("incoming"), 0u);
    EXPECT_EQ(Count("deferred"), 0u);
    return resumed;
  }

  static std::string* skip_;
  static PostfixServer* server_;
  static absl::Status* start_;
  size_t log_from_ = 0;
  bool check_log_ = false;
};
std::string* PostfixInteropTest::skip_ = nullptr;
PostfixServer* PostfixInteropTest::server_ = nullptr;
absl::Status* PostfixInteropTest::start_ = nullptr;

TEST_F(PostfixInteropTest, StartTlsDeliveryIsVerifiedAndAccepted) {
  Inject(20);
  ASSERT_EQ(RunEngine(kStartTlsMx), 0) << ReadFileOrDie(dir_ + "/engine.out.err");
  ExpectDelivered(20, "starttls-prefix", server_->smtp_port());
  ASSERT_TRUE(server_->WaitForLines(log_from_, "disconnect from", 1, absl::Seconds(10)));
  const std::vector<std::string> lines = server_->LinesSince(log_from_);
  const size_t connects = CountContaining(lines, ": connect from ");
  EXPECT_GE(connects, 1u);
  EXPECT_LE(connects, static_cast<size_t>(kMaxConnections));
  // Every connection upgraded with STARTTLS (RFC 3207) and completed its handshake.
  EXPECT_EQ(CountContaining(lines, "TLS connection established from"), connects);
  EXPECT_EQ(CountContaining(lines, " starttls=1 "), connects);
  EXPECT_EQ(CountContaining(lines, "postfix/smtps/"), 0u);
  // Postfix offers CHUNKING by default: every message went by BDAT (RFC 3030), none by DATA
  // (smtpd's "disconnect" line counts the commands: "... bdat=N quit=1 commands=...").
  const size_t disconnects = CountContaining(lines, "disconnect from");
  EXPECT_GE(disconnects, 1u);
  EXPECT_EQ(CountContaining(lines, " bdat="), disconnects);
  EXPECT_EQ(CountContaining(lines, " data="), 0u);
}

// One message per connection over implicit TLS: the greeting comes inside TLS, and later
// connections resume with the ticket the first ones got.
TEST_F(PostfixInteropTest, ImplicitTlsOnTheSmtpsPortResumes) {
  constexpr int kMessages = 40;
  Inject(kMessages);
  ASSERT_EQ(RunEngine(kSmtpsMx, {"--max-messages-per-connection", "1"}), 0)
      << ReadFileOrDie(dir_ + "/engine.out.err");
  const int resumed = ExpectDelivered(kMessages, "smtps-prefix", server_->smtps_port());
  ASSERT_TRUE(server_->WaitForLines(log_from_, "disconnect from", kMessages, absl::Seconds(10)));
  const std::vector<std::string> lines = server_->LinesSince(log_from_);
  EXPECT_EQ(CountContaining(lines, "postfix/smtps/smtpd["), CountContaining(lines, "smtpd["))
      << "a connection went to the STARTTLS port";
  EXPECT_EQ(CountContaining(lines, ": connect from "), static_cast<size_t>(kMessages));
  EXPECT_EQ(CountContaining(lines, "TLS connection established from"),
            static_cast<size_t>(kMessages));
  EXPECT_EQ(CountContaining(lines, " starttls="), 0u);
  EXPECT_EQ(CountContaining(lines, "Reusing old session"), static_cast<size_t>(resumed));
  EXPECT_GE(resumed, kMessages - kMaxConnections);
}

// Issue 10 item 13: Postfix resumes a TLS 1.3 session without issuing a new ticket; the engine
// used to store wolfSSL's session of such a resumed connection, whose binder Postfix rejected
// ("binder does not verify"), and quietly opened another connection. Every connection here
// must resume (but the first few, which start before any ticket exists) and none may fail.
TEST_F(PostfixInteropTest, ResumptionAcrossThreeHundredConnections) {
  constexpr int kMessages = 300;
  Inject(kMessages);
  ASSERT_EQ(RunEngine(kStartTlsMx, {"--max-messages-per-connection", "1"}), 0)
      << ReadFileOrDie(dir_ + "/engine.out.err");
  const int resumed = ExpectDelivered(kMessages, "starttls-prefix", server_->smtp_port());
  ASSERT_TRUE(server_->WaitForLines(log_from_, "disconnect from", kMessages, absl::Seconds(20)));
  const std::vector<std::string> lines = server_->LinesSince(log_from_);
  EXPECT_EQ(CountContaining(lines, "binder does not verify"), 0u);
  // No replacement connections: one per message.
  EXPECT_EQ(CountContaining(lines, ": connect from "), static_cast<size_t>(kMessages));
  EXPECT_EQ(CountContaining(lines, "TLS connection established from"),
            static_cast<size_t>(kMessages));
  EXPECT_EQ(CountContaining(lines, "Reusing old session"), static_cast<size_t>(resumed));
  EXPECT_GE(resumed, kMessages - kMaxConnections);
}

}  // namespace
}  // namespace mxb
