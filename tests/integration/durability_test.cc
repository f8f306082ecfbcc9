// Durability and flow under an unlucky operator (issue 10): non-regular files in incoming/, a
// full spool file system, a dead destination's backlog, shutdown with stalled peers. Each test
// runs the real mxburst against mxburst-sink or a fault listener on 127.0.0.0/8.
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
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

class DurabilityTest : public SpoolWorld {
 protected:
  DurabilityTest() : SpoolWorld("durability") {}

  std::vector<std::string> EngineArgs(std::vector<std::string> extra = {}) const {
    std::vector<std::string> argv = {Bin("engine/mxburst"), "--spool", spool_, "--route",
                                     absl::StrCat("*=127.0.0.1:", port_), "--log", log_,
                                     "--workers", "2", "--helo", "test.mxburst.example"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return argv;
  }

  void Inject(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {Bin("tools/mxburst-inject"), "--spool", spool_};
    argv.insert(argv.end(), args.begin(), args.end());
    ASSERT_EQ(RunCommand(argv, dir_ + "/inject.out"), 0) << ReadFileOrDie(dir_ + "/inject.out.err");
  }
};

// Issue 10 item 7: symbolic links (to a file outside the spool, to a device), a directory and a
// FIFO in incoming/ used to be skipped by the listing forever, with no bad/, no .why and no log
// record. Now each goes to bad/ with a reason, a log record and a stderr line; no link is
// followed (the outside file is neither sent nor moved) and the FIFO does not block the engine.
TEST_F(DurabilityTest, NonRegularFilesInIncomingAreQuarantinedNeverFollowed) {
  StartSink("127.0.0.1");
  Inject({"--count", "3", "--no-fsync"});
  const std::string outside = dir_ + "/outside.eml";
  const std::string message =
      "x-sender: <s@esp.example>\nx-receiver: <r@dest.example>\nSubject: t\n\nsecret\n";
  std::ofstream(outside) << message;
  const std::string in = spool_ + "/incoming/";
  ASSERT_EQ(symlink(outside.c_str(), (in + "link-outside.eml").c_str()), 0);
  ASSERT_EQ(symlink("/dev/zero", (in + "link-device.eml").c_str()), 0);
  ASSERT_EQ(mkdir((in + "dir.eml").c_str(), 0750), 0);
  ASSERT_EQ(mkfifo((in + "fifo.eml").c_str(), 0640), 0);

  std::vector<std::string> argv = EngineArgs({"--drain"});
  ASSERT_EQ(RunCommand(argv, dir_ + "/engine.out", absl::Minutes(2)), 0)
      << ReadFileOrDie(dir_ + "/engine.out.err");
  nlohmann::json stats = StopSink();
  EXPECT_EQ(stats["messages"], 3);  // the three real messages, not the linked one

  const std::vector<std::string> odd = {"link-outside.eml", "link-device.eml", "dir.eml",
                                        "fifo.eml"};
  std::set<std::string> bad;
  for (const std::string& n : ListDir(spool_ + "/bad")) bad.insert(n);
  for (const std::string& n : odd) {
    EXPECT_TRUE(bad.count(n)) << n;
    ASSERT_TRUE(bad.count(n + ".why")) << n;
    EXPECT_TRUE(absl::StrContains(ReadFileOrDie(spool_ + "/bad/" + n + ".why"),
                                  "not a regular file"))
        << n;
  }
  EXPECT_EQ(ReadFileOrDie(outside), message);
  EXPECT_EQ(Count("incoming"), 0u);
  EXPECT_EQ(Count("active"), 0u);
  std::set<std::string> logged;
  for (const nlohmann::json& r : ReadJsonLines(log_)) {
    if (r["status"] == "quarantined") logged.insert(r["msgid"].get<std::string>());
  }
  EXPECT_EQ(logged, std::set<std::string>(odd.begin(), odd.end()));
  const std::string err = ReadFileOrDie(dir_ + "/engine.out.err");
  EXPECT_TRUE(absl::StrContains(err, "quarantined: ")) << err;
  EXPECT_TRUE(absl::StrContains(err, "(symbolic link)")) << err;
}

// Issue 10 item 4: deferring a message whose recipients did not change (here: nothing listens,
// so the destination is dead and the rest is "not tried") used to rewrite and fsync the whole
// file per message, which made a dead destination's backlog fsync-bound for everybody. Now the
// file stays byte-identical (same inode) and only its retry mark moves; a retry pass counts on.
TEST_F(DurabilityTest, DeferralWithoutRecipientChangesKeepsTheFile) {
  port_ = testing::FreePort("127.0.0.1");  // nothing listens: connection refused
  Inject({"--count", "200", "--domains", "2", "--no-fsync"});
  std::map<std::string, std::string> before;
  std::map<std::string, ino_t> inodes;
  for (const std::string& n : ListDir(spool_ + "/incoming")) {
    before[n] = ReadFileOrDie(spool_ + "/incoming/" + n);
    struct stat st;
    ASSERT_EQ(stat((spool_ + "/incoming/" + n).c_str(), &st), 0);
    inodes[n] = st.st_ino;
  }
  ASSERT_EQ(RunCommand(EngineArgs({"--drain", "--quiet"}), dir_ + "/engine.out"), 0)
      << ReadFileOrDie(dir_ + "/engine.out.err");
  ASSERT_EQ(Count("deferred"), 200u);
  for (const auto& [n, bytes] : before) {
    const std::string path = spool_ + "/deferred/" + n;
    EXPECT_EQ(ReadFileOrDie(path), bytes) << n;
    struct stat st;
    ASSERT_EQ(stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_ino, inodes[n]) << n;
  }
  // A second pass (flushed by hand) is attempt 2 although the file still says nothing.
  ASSERT_EQ(RunCommand({Bin("tools/mxburstctl"), "flush", "--spool", spool_}, dir_ + "/ctl.out"), 0);
  ASSERT_EQ(RunCommand(EngineArgs({"--drain", "--quiet"}), dir_ + "/engine2.out"), 0)
      << ReadFileOrDie(dir_ + "/engine2.out.err");
  std::map<int, int> attempts;
  for (const nlohmann::json& r : ReadJsonLines(log_)) {
    EXPECT_EQ(r["status"], "deferred");
    ++attempts[r["attempt"].get<int>()];
  }
  EXPECT_EQ(attempts, (std::map<int, int>{{1, 200}, {2, 200}}));
  for (const auto& [n, bytes] : before) {
    EXPECT_EQ(ReadFileOrDie(spool_ + "/deferred/" + n), bytes) << n;
  }
}

}  // namespace
}  // namespace mxb
