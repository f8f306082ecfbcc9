// End-to-end delivery against the real mxburst-sink on loopback: the engine binary, the inject
// tool and the sink run as separate processes, exactly as a user runs them.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "engine/smtp_data.h"
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
using testing::MessageIdOf;
using testing::ReadFileOrDie;
using testing::ReadJsonLines;
using testing::RunCommand;
using testing::SpoolWorld;

// One test's world (a spool, a sink on 127.0.0.1) and helpers to run the engine.
class DeliveryTest : public SpoolWorld {
 protected:
  DeliveryTest() : SpoolWorld("delivery") {}

  int RunEngine(std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {Bin("engine/mxburst"), "--allow-root", "--spool", spool_, "--route",
                                     absl::StrCat("*=127.0.0.1:", port_), "--drain", "--log",
                                     log_, "--quiet", "--workers", "2", "--helo",
                                     "test.mxburst.example"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return RunCommand(argv, dir_ + "/engine.out", absl::Minutes(5));
  }

  void Inject(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {Bin("tools/mxburst-inject"), "--spool", spool_};
    argv.insert(argv.end(), args.begin(), args.end());
    ASSERT_EQ(RunCommand(argv, dir_ + "/inject.out"), 0) << ReadFileOrDie(dir_ + "/inject.out.err");
  }

  // Message-ID -> body (envelope removed) of everything now in incoming/.
  std::map<std::string, std::string> SnapshotIncoming() {
    std::map<std::string, std::string> out;
    for (const std::string& name : ListDir(spool_ + "/incoming")) {
      std::string file = ReadFileOrDie(spool_ + "/incoming/" + name);
      absl::StatusOr<Envelope> env = ParseEnvelope(file);
      EXPECT_TRUE(env.ok()) << name;
      if (!env.ok()) continue;
      std::string body = file.substr(env->body_offset);
      out[MessageIdOf(body)] = body;
    }
    return out;
  }

  // Message-ID -> received bytes, for every message the sink wrote.
  std::map<std::string, std::string> Received() {
    std::map<std::string, std::string> out;
    for (const std::string& name : ListDir(received_)) {
      if (!absl::EndsWith(name, ".eml")) continue;
      std::string msg = ReadFileOrDie(received_ + "/" + name);
      out[MessageIdOf(msg)] = msg;
    }
    return out;
  }
};

TEST_F(DeliveryTest, ThousandMixedMessagesOverStartTlsAreByteExact) {
  StartSink("127.0.0.1");
  Inject({"--count", "1000", "--size-range", "1000-200000", "--domains", "20",
          "--eight-bit-every", "4", "--dot-lines", "--seed", "42", "--no-fsync"});
  std::map<std::string, std::string> injected = SnapshotIncoming();
  ASSERT_EQ(injected.size(), 1000u);

  ASSERT_EQ(RunEngine(), 0) << ReadFileOrDie(dir_ + "/engine.out.err");
  nlohmann::json stats = StopSink();
  EXPECT_EQ(stats["messages"], 1000);
  EXPECT_EQ(stats.value("bare_lf_in_data", 0), 0);
  EXPECT_EQ(stats["tls_connections"], stats["connections"]);

  std::map<std::string, std::string> received = Received();
  ASSERT_EQ(received.size(), 1000u);
  size_t identical = 0;
  for (const auto& [id, body] : injected) {
    auto it = received.find(id);
    ASSERT_NE(it, received.end()) << "not received: " << id;
    if (it->second == NormalizeLineEndings(body)) ++identical;
    else ADD_FAILURE() << "body differs for " << id;
  }
  EXPECT_EQ(identical, 1000u);
  for (const std::string& name : ListDir(received_)) {
    if (!absl::EndsWith(name, ".env")) continue;
    EXPECT_TRUE(absl::StrContains(ReadFileOrDie(received_ + "/" + name), "tls: TLSv1.3")) << name;
  }

  EXPECT_EQ(Count("incoming"), 0u);
  EXPECT_EQ(Count("active"), 0u);
  EXPECT_EQ(Count("deferred"), 0u);
  std::vector<nlohmann::json> log = ReadJsonLines(log_);
  ASSERT_EQ(log.size(), 1000u);
  for (const nlohmann::json& r : log) {
    EXPECT_EQ(r["status"], "delivered") << r.dump();
    EXPECT_EQ(r["code"], 250);
    EXPECT_EQ(r["tls"], "TLSv1.3");
    EXPECT_FALSE(r["cipher"].get<std::string>().empty());
  }
}

// Issue 10 item 12: a refused MX shows in the policy cache as a failure with its reason (it was
// listed with recent_failures 0), and the recipients read "no answer" (4.4.1), not a TLS code.
TEST_F(DeliveryTest, RefusedMxIsCountedInThePolicyCache) {
  Inject({"--count", "2", "--domains", "1"});
  const int closed = FreePort("127.0.0.1");  // nobody listens: connect() is refused
  ASSERT_EQ(RunCommand({Bin("engine/mxburst"), "--allow-root", "--spool", spool_, "--route",
                        absl::StrCat("*=mx.refused.example@127.0.0.1:", closed), "--drain",
                        "--log", log_, "--quiet", "--workers", "1", "--retry", "3600/3600/7200"},
                       dir_ + "/engine.out", absl::Minutes(2)),
            0)
      << ReadFileOrDie(dir_ + "/engine.out.err");
  for (const nlohmann::json& r : ReadJsonLines(log_)) {
    EXPECT_EQ(r["status"], "deferred") << r.dump();
    EXPECT_EQ(r["enhanced"], "4.4.1") << r.dump();
    EXPECT_NE(r["text"].get<std::string>().find("Connection refused"), std::string::npos)
        << r.dump();
  }
  std::vector<nlohmann::json> cache = ReadJsonLines(spool_ + "/log/policy-w0.jsonl");
  ASSERT_EQ(cache.size(), 1u);
  EXPECT_EQ(cache[0]["mx"], "mx.refused.example");
  EXPECT_GE(cache[0]["recent_failures"].get<int>(), 1) << cache[0].dump();
  EXPECT_NE(cache[0]["last_error"].get<std::string>().find("Connection refused"),
            std::string::npos)
      << cache[0].dump();
}

TEST_F(DeliveryTest, TempfailedRecipientsStayInSpoolAsDeferred) {
  StartSink("127.0.0.1", {"--tempfail-rcpt", "defer-"});
  Inject({"--count", "50", "--domains", "5", "--seed", "1", "--no-fsync"});
  Inject({"--count", "10", "--domains", "5", "--seed", "2", "--rcpt-local-prefix", "defer-",
          "--no-fsync"});
  // Five messages with one recipient that is accepted and one that is tempfailed.
  for (int i = 0; i < 5; ++i) {
    std::string id = absl::StrCat("<mixed-", i, "@test.example>");
    std::string msg = absl::StrCat(
        "x-sender: <bounce@esp.example>\nx-receiver: <ok", i, "@d1.example>\nx-receiver: <defer-",
        i, "@d1.example>\nx-job: mixed\nFrom: a@esp.example\nTo: x@d1.example\nMessage-ID: ", id,
        "\nSubject: mixed\n\nhello\n");
    ASSERT_TRUE(InjectFile(spool_, absl::StrCat("mixed-", i, ".eml"), msg, false).ok());
  }

  ASSERT_EQ(RunEngine(), 0) << ReadFileOrDie(dir_ + "/engine.out.err");
  nlohmann::json stats = StopSink();
  EXPECT_EQ(stats["messages"], 55);

  EXPECT_EQ(Count("incoming"), 0u);
  EXPECT_EQ(Count("active"), 0u);
  std::vector<std::string> deferred = ListDir(spool_ + "/deferred");
  ASSERT_EQ(deferred.size(), 15u);
  int rewritten = 0;
  for (const std::string& name : deferred) {
    absl::StatusOr<Envelope> env = ParseEnvelope(ReadFileOrDie(spool_ + "/deferred/" + name));
    ASSERT_TRUE(env.ok()) << name;
    ASSERT_EQ(env->recipients.size(), 1u) << name;
    EXPECT_TRUE(absl::StartsWith(env->recipients[0], "defer-")) << env->recipients[0];
    if (absl::StartsWith(name, "mixed-")) {
      // Rewritten with only the pending recipient, and the whole message: the engine holds no
      // copy of the file while delivering and reads it back from active/ (issue 17).
      const std::string file = ReadFileOrDie(spool_ + "/deferred/" + name);
      EXPECT_TRUE(absl::EndsWith(file, "Subject: mixed\n\nhello\n")) << file;
      ++rewritten;
    }
  }
  EXPECT_EQ(rewritten, 5);

  std::vector<nlohmann::json> log = ReadJsonLines(log_);
  int delivered = 0, deferred_records = 0;
  for (const nlohmann::json& r : log) {
    std::string rcpt = r["rcpt"];
    if (absl::StartsWith(rcpt, "defer-")) {
      EXPECT_EQ(r["status"], "deferred") << r.dump();
      EXPECT_EQ(r["code"], 451);
      EXPECT_EQ(r["enhanced"], "4.7.1");
      ++deferred_records;
    } else {
      EXPECT_EQ(r["status"], "delivered") << r.dump();
      ++delivered;
    }
  }
  EXPECT_EQ(delivered, 55);
  EXPECT_EQ(deferred_records, 15);
}

// Every end-of-data look-alike from the SMTP smuggling research (CVE-2023-51764 class) inside a
// body: the sink must receive exactly one message per file, with the normalised body, and never
// a bare CR or LF.
TEST_F(DeliveryTest, SmugglingSequencesAreNormalisedNotPassedThrough) {
  StartSink("127.0.0.1");
  const std::vector<std::string> variants = {
      "\n.\n", "\r.\r", "\n.\r\n", "\r\n.\r", "\r\n.\n", "\r.\r\n", "\n.\r", ".\r\n", "\r\n.\r\n"};
  std::map<std::string, std::string> injected;
  for (size_t i = 0; i < variants.size(); ++i) {
    std::string id = absl::StrCat("<smuggle-", i, "@test.example>");
    std::string body = absl::StrCat(
        "From: a@esp.example\r\nTo: b@d1.example\r\nMessage-ID: ", id, "\r\nSubject: s\r\n\r\n",
        "before", variants[i], "MAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@d1.example>",
        "\r\nDATA\r\nsmuggled\r\n.\r\nafter\r\n");
    injected[id] = body;
    ASSERT_TRUE(InjectFile(spool_, absl::StrCat("smuggle-", i, ".eml"),
                           absl::StrCat("x-sender: <b@esp.example>\nx-receiver: <r", i,
                                        "@d1.example>\n", body),
                           false)
                    .ok());
  }
  ASSERT_EQ(RunEngine(), 0) << ReadFileOrDie(dir_ + "/engine.out.err");
  nlohmann::json stats = StopSink();
  EXPECT_EQ(stats["messages"], variants.size());
  EXPECT_EQ(stats["recipients"], variants.size());
  EXPECT_EQ(stats.value("bare_lf_in_data", 0), 0);
  std::map<std::string, std::string> received = Received();
  ASSERT_EQ(received.size(), variants.size());
  for (const auto& [id, body] : injected) {
    ASSERT_TRUE(received.count(id)) << id;
    EXPECT_EQ(received[id], NormalizeLineEndings(body)) << id;
  }
}

TEST_F(DeliveryTest, MalformedFileIsQuarantinedAndTheRestDelivered) {
  StartSink("127.0.0.1");
  Inject({"--count", "5", "--no-fsync"});
  ASSERT_TRUE(InjectFile(spool_, "broken.eml", "x-sender: <a@b.example>\nSubject: no rcpt\n\nx\n",
                         false)
                  .ok());
  ASSERT_EQ(RunEngine(), 0) << ReadFileOrDie(dir_ + "/engine.out.err");
  nlohmann::json stats = StopSink();
  EXPECT_EQ(stats["messages"], 5);
  std::set<std::string> bad;
  for (const std::string& n : ListDir(spool_ + "/bad")) bad.insert(n);
  EXPECT_TRUE(bad.count("broken.eml"));
  ASSERT_TRUE(bad.count("broken.eml.why"));
  EXPECT_FALSE(ReadFileOrDie(spool_ + "/bad/broken.eml.why").empty());
  EXPECT_EQ(Count("incoming"), 0u);
  EXPECT_EQ(Count("active"), 0u);
  bool quarantine_logged = false;
  for (const nlohmann::json& r : ReadJsonLines(log_)) {
    if (r["status"] == "quarantined") quarantine_logged = r["msgid"] == "broken.eml";
  }
  EXPECT_TRUE(quarantine_logged);
}

TEST_F(DeliveryTest, NothingListeningDefersEverything) {
  port_ = FreePort("127.0.0.1");  // no sink: connection refused
  Inject({"--count", "20", "--domains", "3", "--no-fsync"});
  ASSERT_EQ(RunEngine(), 0) << ReadFileOrDie(dir_ + "/engine.out.err");
  EXPECT_EQ(Count("incoming"), 0u);
  EXPECT_EQ(Count("active"), 0u);
  EXPECT_EQ(Count("deferred"), 20u);
  std::vector<nlohmann::json> log = ReadJsonLines(log_);
  ASSERT_EQ(log.size(), 20u);
  for (const nlohmann::json& r : log) {
    EXPECT_EQ(r["status"], "deferred");
    EXPECT_TRUE(absl::StrContains(r["text"].get<std::string>(), "refused")) << r.dump();
  }
}

}  // namespace
}  // namespace mxb

namespace mxb {
namespace {

TEST_F(DeliveryTest, DrippingServerCannotHoldTheConnectionPastTheReplyDeadline) {
  port_ = FreePort("127.0.0.1");
  // The greeting arrives one byte every 50 ms: progress byte by byte must not extend the
  // deadline, which counts from the command (here: the connect) to the complete reply.
  testing::FaultServer drip(port_, testing::FaultServer::Mode::kDrip);
  ASSERT_TRUE(drip.ok());
  Inject({"--count", "3", "--no-fsync"});
  // Greeting timeout 5 min (RFC 5321 §4.5.3.2) scaled by 0.005 = 1.5 s.
  absl::Time start = absl::Now();
  ASSERT_EQ(RunEngine({"--timeout-scale", "0.005"}), 0) << ReadFileOrDie(dir_ + "/engine.out.err");
  // Generous bound: the point is "finite", the drip alone would last 60 s per connection.
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
  EXPECT_EQ(Count("deferred"), 3u);
  std::vector<nlohmann::json> log = ReadJsonLines(log_);
  ASSERT_EQ(log.size(), 3u);
  for (const nlohmann::json& r : log) {
    EXPECT_EQ(r["status"], "deferred");
    EXPECT_TRUE(absl::StrContains(r["text"].get<std::string>(), "timeout")) << r.dump();
  }
}

}  // namespace
}  // namespace mxb
