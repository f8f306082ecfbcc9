// Privileges (issue 10 item 14): root without a `user` is refused unless --allow-root; with
// --user the engine hands the spool to that user, runs as it with PR_SET_NO_NEW_PRIVS, and
// still delivers. Needs root (CI runs as root); skipped otherwise.
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "tests/integration/fixture.h"

namespace mxb {
namespace {

using testing::Bin;
using testing::ReadFileOrDie;
using testing::ReadJsonLines;
using testing::RunCommand;
using testing::SpoolWorld;
using testing::Subprocess;
using testing::WaitForFile;

class PrivilegesTest : public SpoolWorld {
 protected:
  PrivilegesTest() : SpoolWorld("privileges") {}

  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (the engine's behaviour as root)";
    const passwd* pw = getpwnam("nobody");
    if (pw == nullptr) GTEST_SKIP() << "no user 'nobody'";
    nobody_ = pw->pw_uid;
    SpoolWorld::SetUp();
    ASSERT_EQ(chmod(dir_.c_str(), 0755), 0);  // the user must reach the spool inside it
  }

  void Inject(int n) {
    ASSERT_EQ(RunCommand({Bin("tools/mxburst-inject"), "--spool", spool_, "--count",
                          std::to_string(n), "--domains", "2"},
                         dir_ + "/inject.out"),
              0);
  }

  std::vector<std::string> Engine(std::vector<std::string> extra) {
    std::vector<std::string> argv = {Bin("engine/mxburst"), "--spool", spool_, "--route",
                                     absl::StrCat("*=127.0.0.1:", port_), "--quiet",
                                     "--workers", "1", "--tls", "disabled"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return argv;
  }

  uid_t nobody_ = 0;
};

TEST_F(PrivilegesTest, RootWithoutUserIsRefusedWithOneLine) {
  const int rc = RunCommand(Engine({"--drain"}), dir_ + "/engine.out", absl::Seconds(30));
  EXPECT_EQ(rc, 2);
  const std::string err = ReadFileOrDie(dir_ + "/engine.out.err");
  EXPECT_TRUE(absl::StartsWith(err, "mxburst: refusing to run as root")) << err;
  EXPECT_TRUE(absl::StrContains(err, "--allow-root")) << err;
}

TEST_F(PrivilegesTest, DropsToTheUserOwnsTheSpoolAndDelivers) {
  StartSink("127.0.0.1");
  Inject(4);
  // While it runs: who is it?
  {
    Subprocess engine(Engine({"--user", "nobody"}), dir_ + "/run.out", dir_ + "/run.err");
    std::string pid;
    for (int i = 0; i < 300 && pid.empty(); ++i) {
      usleep(20 * 1000);
      if (!WaitForFile(spool_ + "/lock", absl::Milliseconds(1))) continue;
      std::string text(absl::StripAsciiWhitespace(ReadFileOrDie(spool_ + "/lock")));
      int64_t n = 0;
      if (absl::SimpleAtoi(text, &n) && n > 0) pid = text;
    }
    ASSERT_FALSE(pid.empty()) << ReadFileOrDie(dir_ + "/run.err");
    std::string status;
    for (int i = 0; i < 100; ++i) {  // the drop follows the lock within milliseconds
      status = ReadFileOrDie(absl::StrCat("/proc/", pid, "/status"));
      if (absl::StrContains(status, absl::StrCat("Uid:\t", nobody_, "\t"))) break;
      usleep(20 * 1000);
    }
    EXPECT_TRUE(absl::StrContains(status, absl::StrCat("Uid:\t", nobody_, "\t", nobody_, "\t",
                                                       nobody_, "\t", nobody_)))
        << status;
    EXPECT_TRUE(absl::StrContains(status, "NoNewPrivs:\t1")) << status;
    EXPECT_TRUE(absl::StrContains(status, "CapEff:\t0000000000000000")) << status;
    // Let it deliver before asking it to stop (and before its signal handler might not be set).
    const std::string acct = spool_ + "/log/accounting.jsonl";
    for (int i = 0; i < 1500; ++i) {
      int done = 0;
      for (const nlohmann::json& r : ReadJsonLines(acct)) done += r["status"] == "delivered";
      if (done >= 4) break;
      usleep(20 * 1000);
    }
    engine.Signal(SIGTERM);
    EXPECT_EQ(engine.Wait(absl::Seconds(60)), 0) << ReadFileOrDie(dir_ + "/run.err");
  }
  // What it left: everything delivered, the spool owned by the user, incoming/ writable by the
  // user's group with setgid for producers.
  StopSink();
  std::vector<nlohmann::json> log = ReadJsonLines(spool_ + "/log/accounting.jsonl");
  int delivered = 0;
  for (const nlohmann::json& r : log) delivered += r["status"] == "delivered";
  EXPECT_EQ(delivered, 4);
  struct stat st;
  for (const char* sub : {"", "/incoming", "/active", "/deferred", "/log", "/lock"}) {
    ASSERT_EQ(lstat((spool_ + sub).c_str(), &st), 0) << sub;
    EXPECT_EQ(st.st_uid, nobody_) << sub;
  }
  ASSERT_EQ(lstat((spool_ + "/incoming").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 02770u);
}

}  // namespace
}  // namespace mxb
