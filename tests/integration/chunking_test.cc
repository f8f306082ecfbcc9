// CHUNKING / BDAT (RFC 3030) end to end: the real mxburst against mxburst-sink --chunking on
// loopback, over STARTTLS (CHUNKING is learned from the EHLO inside TLS).
//   - messages with leading-dot lines, long lines and mixed line ends arrive byte-exact by BDAT
//     (no dot-stuffing on the wire, the sink records "transfer: bdat");
//   - 452 "too many recipients" continues in new BDAT transactions;
//   - --no-chunking sends DATA to the same server;
//   - a server that advertises CHUNKING but answers BDAT with 502 gets nothing delivered: the
//     recipients bounce by the reply's code, with a DSN, and no message is stored.
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/smtp_data.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "queue/spool.h"
#include "tests/integration/fixture.h"

namespace mxb {
namespace {

using testing::Bin;
using testing::ListDir;
using testing::ReadFileOrDie;
using testing::ReadJsonLines;
using testing::RunCommand;
using testing::SpoolWorld;
using testing::StatusCounts;

constexpr char kSinkIp[] = "127.0.0.6";

class ChunkingTest : public SpoolWorld {
 protected:
  ChunkingTest() : SpoolWorld("chunking") {}

  int RunEngine(std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {Bin("engine/mxburst"), "--allow-root", "--spool", spool_,
                                     "--route", absl::StrCat("*=", kSinkIp, ":", port_),
                                     "--drain", "--log", log_, "--workers", "1", "--helo",
                                     "mta.test.example", "--tls", "opportunistic"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return RunCommand(argv, dir_ + "/engine.out", absl::Minutes(2));
  }
  std::string EngineErr() { return ReadFileOrDie(dir_ + "/engine.out.err"); }

  // Message `i`: lines that need dot-stuffing under DATA, a line longer than 998 octets, LF
  // and CRLF mixed, 8-bit text.
  static std::string Body(int i) {
    return absl::StrCat("From: <s@esp.example>\nTo: <r@d1.example>\nMessage-ID: <m", i,
                        "@test.example>\nSubject: bdat ", i, "\n\n.leading dot\r\n..two\n.\n",
                        std::string(1500 + i, 'x'), "\nGr\xc3\xbc\xc3\x9f" "e\r\nend ", i, "\n");
  }
  void Inject(int i, const std::vector<std::string>& rcpts) {
    std::string file = "x-sender: <s@esp.example>\n";
    for (const std::string& r : rcpts) absl::StrAppend(&file, "x-receiver: <", r, ">\n");
    file += Body(i);
    ASSERT_TRUE(InjectFile(spool_, absl::StrCat("m", i, ".eml"), file, false).ok());
  }

  // .eml contents of the received messages by their Message-ID number, and how many of them
  // the sink's .env says came by BDAT.
  std::map<int, std::string> Received(int* by_bdat) {
    std::map<int, std::string> out;
    *by_bdat = 0;
    for (const std::string& name : ListDir(received_)) {
      if (!absl::EndsWith(name, ".env")) continue;
      if (absl::StrContains(ReadFileOrDie(received_ + "/" + name), "\ntransfer: bdat\n")) {
        ++*by_bdat;
      }
      const std::string eml =
          ReadFileOrDie(received_ + "/" + name.substr(0, name.size() - 4) + ".eml");
      const size_t at = eml.find("Message-ID: <m");
      if (at == std::string::npos) continue;
      out[std::atoi(eml.c_str() + at + 14)] = eml;
    }
    return out;
  }
};

TEST_F(ChunkingTest, BdatDeliversByteExactOverStartTls) {
  StartSink(kSinkIp, {"--chunking", "--max-rcpts", "2"});
  constexpr int kMessages = 20;
  for (int i = 0; i < kMessages; ++i) {
    Inject(i, i == 0 ? std::vector<std::string>{"a@d1.example", "b@d1.example", "c@d1.example"}
                     : std::vector<std::string>{"a@d1.example"});
  }
  ASSERT_EQ(RunEngine(), 0) << EngineErr();
  nlohmann::json stats = StopSink();
  // Message 0 goes in two transactions (452 after two recipients): kMessages + 1 in all.
  EXPECT_EQ(stats["messages"], kMessages + 1);
  EXPECT_EQ(stats["bdat_messages"], kMessages + 1);
  EXPECT_EQ(stats["tls_connections"], stats["connections"]);
  EXPECT_EQ(stats["protocol_errors"], 0);
  int by_bdat = 0;
  std::map<int, std::string> got = Received(&by_bdat);
  EXPECT_EQ(by_bdat, kMessages + 1);
  ASSERT_EQ(got.size(), static_cast<size_t>(kMessages));
  for (const auto& [i, eml] : got) EXPECT_EQ(eml, NormalizeLineEndings(Body(i))) << i;
  std::map<std::string, int> counts = StatusCounts(ReadJsonLines(log_));
  EXPECT_EQ(counts["delivered"], kMessages + 2);
  EXPECT_EQ(counts["deferred"] + counts["bounced"], 0);
  EXPECT_EQ(Count("deferred") + Count("active"), 0u);
}

TEST_F(ChunkingTest, NoChunkingSendsData) {
  StartSink(kSinkIp, {"--chunking"});
  Inject(1, {"a@d1.example"});
  ASSERT_EQ(RunEngine({"--no-chunking"}), 0) << EngineErr();
  nlohmann::json stats = StopSink();
  EXPECT_EQ(stats["messages"], 1);
  EXPECT_EQ(stats["bdat_messages"], 0);
  int by_bdat = 0;
  std::map<int, std::string> got = Received(&by_bdat);
  EXPECT_EQ(by_bdat, 0);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[1], NormalizeLineEndings(Body(1)));
}

// RFC 3030 §2: a rejected BDAT fails the transaction; 502 is permanent, so the recipient
// bounces (with a DSN). Never "delivered", and the sink stored nothing although the chunk's
// octets, read as commands by that server, were a whole message.
TEST_F(ChunkingTest, ServerThatAdvertisesButRejectsBdatGetsNothingDelivered) {
  StartSink(kSinkIp, {"--chunking-broken"});
  Inject(2, {"a@d1.example"});
  ASSERT_EQ(RunEngine(), 0) << EngineErr();
  nlohmann::json stats = StopSink();
  EXPECT_EQ(stats["messages"], 0);
  std::vector<nlohmann::json> log = ReadJsonLines(log_);
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0]["status"], "bounced") << log[0].dump();
  EXPECT_EQ(log[0]["code"], 502) << log[0].dump();
  EXPECT_EQ(Count("bounces"), 1u);
}

}  // namespace
}  // namespace mxb
