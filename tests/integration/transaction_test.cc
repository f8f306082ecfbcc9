// Transactions and bounces end to end (issue 5): the real mxburst against the real
// mxburst-sink on loopback, with the sink's fault switches playing the misbehaving receiver.
//   - 452 "too many recipients" continues in new transactions on the same connection;
//   - 552 after the data and 554 to DATA bounce the accepted recipients, with a DSN;
//   - 421 in the middle of a transaction closes the connection and defers the message;
//   - [queue] dsn = "spool": the engine delivers its own DSNs, and never a DSN of a DSN.
#include <signal.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "queue/envelope.h"
#include "queue/spool.h"
#include "tests/integration/fixture.h"

namespace mxb {
namespace {

using testing::Bin;
using testing::FreePort;
using testing::ListDir;
using testing::ReadFileOrDie;
using testing::ReadJsonLines;
using testing::RunCommand;
using testing::SpoolWorld;
using testing::StatusCounts;

constexpr char kSinkIp[] = "127.0.0.5";

// What the sink wrote for one message: its envelope (.env) and content (.eml).
struct Received {
  std::string mail_from;
  std::vector<std::string> rcpts;
  std::string peer;  // client IP:PORT — one value for all messages of one connection
  std::string message;
};

class TransactionTest : public SpoolWorld {
 protected:
  TransactionTest() : SpoolWorld("transaction") {}

  // mxburst --drain with a static route of every domain to the sink; returns the exit code.
  int RunEngine(std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {Bin("engine/mxburst"), "--allow-root", "--spool", spool_, "--route",
                                     absl::StrCat("*=", kSinkIp, ":", port_), "--drain", "--log",
                                     log_, "--workers", "1", "--helo", "mta.test.example",
                                     "--tls", "disabled"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return RunCommand(argv, dir_ + "/engine.out", absl::Minutes(2));
  }
  std::string EngineErr() { return ReadFileOrDie(dir_ + "/engine.out.err"); }

  void InjectMessage(const std::string& name, const std::string& sender,
                     const std::vector<std::string>& rcpts) {
    std::string file = absl::StrCat("x-sender: <", sender, ">\n");
    for (const std::string& r : rcpts) absl::StrAppend(&file, "x-receiver: <", r, ">\n");
    absl::StrAppend(&file, "From: <", sender.empty() ? "daemon@esp.example" : sender,
                    ">\nTo: list@d1.example\nMessage-ID: <", name,
                    "@test.example>\nSubject: issue 5\n\nbody of ", name, "\n");
    ASSERT_TRUE(InjectFile(spool_, name + ".eml", file, false).ok());
  }

  std::vector<Received> ReceivedMessages() {
    std::vector<Received> out;
    for (const std::string& name : ListDir(received_)) {
      if (!absl::EndsWith(name, ".env")) continue;
      Received r;
      for (absl::string_view line :
           absl::StrSplit(ReadFileOrDie(received_ + "/" + name), '\n', absl::SkipEmpty())) {
        if (absl::ConsumePrefix(&line, "mail-from: ")) r.mail_from = std::string(line);
        else if (line == "mail-from:") r.mail_from.clear();
        else if (absl::ConsumePrefix(&line, "rcpt-to: ")) r.rcpts.emplace_back(line);
        else if (absl::ConsumePrefix(&line, "peer: ")) r.peer = std::string(line);
      }
      r.message = ReadFileOrDie(received_ + "/" + name.substr(0, name.size() - 4) + ".eml");
      out.push_back(std::move(r));
    }
    return out;
  }
};

std::vector<std::string> Recipients(const std::string& local, int n, const std::string& domain) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back(absl::StrCat(local, i, "@", domain));
  return out;
}

// RFC 5321 §3.3 / §4.5.3.1.10: the sink takes 3 recipients per transaction and says 452 to the
// rest. One message to 10 recipients: 4 transactions (3+3+3+1) on one connection, all delivered.
TEST_F(TransactionTest, TooManyRecipientsContinuesInNewTransactionsOnOneConnection) {
  StartSink(kSinkIp, {"--max-rcpts", "3"});
  const std::vector<std::string> rcpts = Recipients("user", 10, "d1.example");
  InjectMessage("ten", "sender@esp.example", rcpts);
  ASSERT_EQ(RunEngine(), 0) << EngineErr();
  nlohmann::json stats = StopSink();
  EXPECT_EQ(stats["connections"], 1);
  EXPECT_EQ(stats["messages"], 4);
  EXPECT_EQ(stats["recipients"], 10);

  std::vector<Received> got = ReceivedMessages();
  ASSERT_EQ(got.size(), 4u);
  std::multiset<size_t> sizes;
  std::set<std::string> all_rcpts, peers;
  for (const Received& r : got) {
    sizes.insert(r.rcpts.size());
    all_rcpts.insert(r.rcpts.begin(), r.rcpts.end());
    peers.insert(r.peer);
    EXPECT_EQ(r.mail_from, "sender@esp.example");
    EXPECT_TRUE(absl::StrContains(r.message, "Message-ID: <ten@test.example>")) << r.message;
  }
  EXPECT_EQ(sizes, (std::multiset<size_t>{1, 3, 3, 3}));
  EXPECT_EQ(all_rcpts, std::set<std::string>(rcpts.begin(), rcpts.end()));
  EXPECT_EQ(peers.size(), 1u) << "all four transactions on one connection";

  std::vector<nlohmann::json> log = ReadJsonLines(log_);
  EXPECT_EQ(log.size(), 10u);
  std::map<std::string, int> counts = StatusCounts(log);
  EXPECT_EQ(counts["delivered"], 10);
  EXPECT_EQ(counts["deferred"], 0);
  EXPECT_EQ(Count("deferred"), 0u);
  EXPECT_EQ(Count("active"), 0u);
  EXPECT_EQ(Count("bounces"), 0u);
}

// The final reply after the data is 552: every accepted recipient bounces with the server's
// enhanced code, and one RFC 3464 DSN goes to the sender in spool/bounces/.
TEST_F(TransactionTest, Final552AfterDataBouncesAllRecipientsWithDsn) {
  StartSink(kSinkIp, {"--reject-data-from", "big-sender"});
  InjectMessage("m552", "big-sender@esp.example", Recipients("r", 3, "d1.example"));
  ASSERT_EQ(RunEngine(), 0) << EngineErr();
  nlohmann::json stats = StopSink();
  EXPECT_EQ(stats["messages"], 0);

  std::vector<nlohmann::json> log = ReadJsonLines(log_);
  ASSERT_EQ(log.size(), 3u);
  for (const nlohmann::json& r : log) {
    EXPECT_EQ(r["status"], "bounced") << r.dump();
    EXPECT_EQ(r["code"], 552);
    EXPECT_EQ(r["enhanced"], "5.3.4");
  }
  EXPECT_EQ(Count("deferred"), 0u);
  EXPECT_EQ(Count("active"), 0u);
  std::vector<std::string> dsns = ListDir(spool_ + "/bounces");
  ASSERT_EQ(dsns.size(), 1u);
  const std::string dsn = ReadFileOrDie(spool_ + "/bounces/" + dsns[0]);
  absl::StatusOr<Envelope> env = ParseEnvelope(dsn);
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->sender, "");  // null reverse-path: a DSN cannot bounce back
  ASSERT_EQ(env->recipients.size(), 1u);
  EXPECT_EQ(env->recipients[0], "big-sender@esp.example");
  EXPECT_TRUE(absl::StrContains(dsn, "report-type=delivery-status")) << dsn;
  EXPECT_TRUE(absl::StrContains(dsn, "Content-Type: message/delivery-status")) << dsn;
  EXPECT_TRUE(absl::StrContains(dsn, "Content-Type: text/rfc822-headers")) << dsn;
  EXPECT_TRUE(absl::StrContains(dsn, "Message-ID: <m552@test.example>")) << dsn;
  EXPECT_FALSE(absl::StrContains(dsn, "body of m552")) << "a DSN carries headers only";
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(absl::StrContains(dsn, absl::StrCat("Final-Recipient: rfc822; r", i,
                                                    "@d1.example\r\nAction: failed\r\n"
                                                    "Status: 5.3.4\r\n")))
        << dsn;
  }
  EXPECT_TRUE(absl::StrContains(dsn, "Diagnostic-Code: smtp; 552 ")) << dsn;
}

// 554 to the DATA command itself, with recipients accepted: bounced with 5.7.1, DSN written.
// A recipient the server refused at RCPT keeps its own 550 in the same DSN.
TEST_F(TransactionTest, Data554BouncesAcceptedRecipientsWithDsn) {
  StartSink(kSinkIp, {"--refuse-data-from", "policy-sender", "--reject-rcpt", "unknown"});
  InjectMessage("m554", "policy-sender@esp.example",
                {"a@d1.example", "unknown@d1.example", "b@d1.example"});
  ASSERT_EQ(RunEngine(), 0) << EngineErr();
  nlohmann::json stats = StopSink();
  EXPECT_EQ(stats["messages"], 0);

  std::map<std::string, nlohmann::json> by_rcpt;
  for (const nlohmann::json& r : ReadJsonLines(log_)) by_rcpt[r["rcpt"]] = r;
  ASSERT_EQ(by_rcpt.size(), 3u);
  for (const char* rcpt : {"a@d1.example", "b@d1.example"}) {
    EXPECT_EQ(by_rcpt[rcpt]["status"], "bounced") << rcpt;
    EXPECT_EQ(by_rcpt[rcpt]["code"], 554) << rcpt;
    EXPECT_EQ(by_rcpt[rcpt]["enhanced"], "5.7.1") << rcpt;
  }
  EXPECT_EQ(by_rcpt["unknown@d1.example"]["code"], 550);
  EXPECT_EQ(by_rcpt["unknown@d1.example"]["enhanced"], "5.1.1");
  std::vector<std::string> dsns = ListDir(spool_ + "/bounces");
  ASSERT_EQ(dsns.size(), 1u);
  const std::string dsn = ReadFileOrDie(spool_ + "/bounces/" + dsns[0]);
  EXPECT_TRUE(absl::StrContains(dsn, "Final-Recipient: rfc822; a@d1.example\r\nAction: failed\r\n"
                                     "Status: 5.7.1\r\n"))
      << dsn;
  EXPECT_TRUE(absl::StrContains(dsn, "Final-Recipient: rfc822; unknown@d1.example\r\nAction: "
                                     "failed\r\nStatus: 5.1.1\r\n"))
      << dsn;
  EXPECT_EQ(Count("deferred"), 0u);
}

// A message from the null sender that bounces gets no DSN (RFC 5321 §4.5.5).
TEST_F(TransactionTest, NullSenderBounceGetsNoDsn) {
  StartSink(kSinkIp, {"--reject-rcpt", "unknown"});
  InjectMessage("null", "", {"unknown1@d1.example", "unknown2@d1.example"});
  ASSERT_EQ(RunEngine(), 0) << EngineErr();
  StopSink();
  std::map<std::string, int> counts = StatusCounts(ReadJsonLines(log_));
  EXPECT_EQ(counts["bounced"], 2);
  EXPECT_EQ(Count("bounces"), 0u);
  EXPECT_EQ(Count("incoming"), 0u);
  EXPECT_EQ(Count("active"), 0u);
}

// RFC 5321 §3.8: 421 in the middle of the pipelined RCPTs. The connection closes, nothing is
// delivered, every recipient of the message is deferred with the 421 and stays in deferred/.
TEST_F(TransactionTest, Reply421MidTransactionDefersTheMessage) {
  StartSink(kSinkIp, {"--shutdown-rcpt", "shutdown"});
  InjectMessage("m421", "sender@esp.example",
                {"a@d1.example", "shutdown@d1.example", "c@d1.example"});
  ASSERT_EQ(RunEngine(), 0) << EngineErr();
  nlohmann::json stats = StopSink();
  EXPECT_EQ(stats["messages"], 0);
  std::vector<nlohmann::json> log = ReadJsonLines(log_);
  ASSERT_EQ(log.size(), 3u);
  for (const nlohmann::json& r : log) {
    EXPECT_EQ(r["status"], "deferred") << r.dump();
    EXPECT_EQ(r["code"], 421) << r.dump();
    EXPECT_EQ(r["enhanced"], "4.3.2") << r.dump();
  }
  std::vector<std::string> deferred = ListDir(spool_ + "/deferred");
  ASSERT_EQ(deferred.size(), 1u);
  absl::StatusOr<Envelope> env = ParseEnvelope(ReadFileOrDie(spool_ + "/deferred/" + deferred[0]));
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->recipients.size(), 3u);
  EXPECT_EQ(Count("bounces"), 0u);
}

// [queue] dsn = "spool": the DSN is a null-sender pickup file in incoming/, which the same
// engine run delivers to the original sender (whose domain routes to the sink). A DSN that
// itself bounces produces no further DSN.
TEST_F(TransactionTest, DsnIntoSpoolIsDeliveredAndNeverBouncesAgain) {
  StartSink(kSinkIp, {"--reject-rcpt", "unknown"});
  // owner@ gets a DSN about unknown1@; unknown-owner@'s DSN is refused (contains "unknown").
  InjectMessage("a", "owner@esp.example", {"unknown1@d1.example"});
  InjectMessage("b", "unknown-owner@esp.example", {"unknown2@d1.example"});
  const std::string config = dir_ + "/mxburst.toml";
  testing::WriteFileOrDie(config, "[queue]\ndsn = \"spool\"\n");
  ASSERT_EQ(RunEngine({"--config", config}), 0) << EngineErr();
  nlohmann::json stats = StopSink();

  std::vector<Received> got = ReceivedMessages();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].mail_from, "");
  EXPECT_EQ(got[0].rcpts, std::vector<std::string>{"owner@esp.example"});
  EXPECT_TRUE(absl::StrContains(got[0].message, "Final-Recipient: rfc822; unknown1@d1.example"))
      << got[0].message;
  EXPECT_TRUE(absl::StrContains(got[0].message, "Message-ID: <a@test.example>"));

  std::map<std::string, nlohmann::json> by_rcpt;
  std::vector<nlohmann::json> log = ReadJsonLines(log_);
  for (const nlohmann::json& r : log) by_rcpt[r["rcpt"]] = r;
  ASSERT_EQ(log.size(), 4u) << "two bounces, one DSN delivered, one DSN bounced — and no more";
  EXPECT_EQ(by_rcpt["unknown1@d1.example"]["status"], "bounced");
  EXPECT_EQ(by_rcpt["unknown2@d1.example"]["status"], "bounced");
  EXPECT_EQ(by_rcpt["owner@esp.example"]["status"], "delivered");
  EXPECT_EQ(by_rcpt["owner@esp.example"]["sender"], "");
  EXPECT_EQ(by_rcpt["unknown-owner@esp.example"]["status"], "bounced");
  EXPECT_EQ(by_rcpt["unknown-owner@esp.example"]["sender"], "");
  EXPECT_EQ(Count("bounces"), 0u);
  EXPECT_EQ(Count("incoming"), 0u);
  EXPECT_EQ(Count("active"), 0u);
  EXPECT_EQ(Count("deferred"), 0u);
  EXPECT_TRUE(absl::StrContains(ReadFileOrDie(dir_ + "/engine.out.err") +
                                    ReadFileOrDie(dir_ + "/engine.out"),
                                "2 DSNs"))
      << "summary: " << ReadFileOrDie(dir_ + "/engine.out.err");
}

// One stderr line names `key` and says what was expected.
bool HasErrorLine(const std::string& err, const std::string& key) {
  for (absl::string_view line : absl::StrSplit(err, '\n')) {
    if (absl::StrContains(line, key) && absl::StrContains(line, "expected") &&
        absl::StrContains(line, "bounces")) {
      return true;
    }
  }
  return false;
}

// A bad value names the key in one line, from the file and from the flag.
TEST_F(TransactionTest, BadDsnValueIsOneLineNamingTheKey) {
  port_ = FreePort(kSinkIp);
  const std::string config = dir_ + "/bad.toml";
  testing::WriteFileOrDie(config, "[queue]\ndsn = \"mailbox\"\n");
  EXPECT_NE(RunEngine({"--config", config}), 0);
  EXPECT_TRUE(HasErrorLine(EngineErr(), "queue.dsn")) << EngineErr();
  EXPECT_NE(RunEngine({"--dsn", "nowhere"}), 0);
  EXPECT_TRUE(HasErrorLine(EngineErr(), "--dsn")) << EngineErr();
}

}  // namespace
}  // namespace mxb
