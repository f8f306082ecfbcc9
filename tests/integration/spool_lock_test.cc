// One engine per spool (issue 10 item 2): a second mxburst on the same spool exits at once with
// one line naming the PID of the first, mxburstctl keeps working alongside, and a kill -9 of the
// holder frees the spool for the next engine (the kernel drops the flock).
#include <signal.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "queue/spool_lock.h"
#include "tests/integration/fixture.h"

namespace mxb {
namespace {

using testing::Bin;
using testing::FreePort;
using testing::ReadFileOrDie;
using testing::RunCommand;
using testing::SpoolWorld;
using testing::Subprocess;
using testing::WaitForFile;

class SpoolLockTest : public SpoolWorld {
 protected:
  SpoolLockTest() : SpoolWorld("spoollock") {}

  std::vector<std::string> EngineArgv(bool drain) {
    // A route to a port nobody listens on: the engine has nothing to deliver anyway.
    std::vector<std::string> argv = {Bin("engine/mxburst"), "--allow-root", "--spool", spool_, "--route",
                                     absl::StrCat("*=127.0.0.1:", FreePort("127.0.0.1")),
                                     "--log", log_, "--quiet", "--workers", "1"};
    if (drain) argv.push_back("--drain");
    return argv;
  }

  // The PID the lock file names once the engine holds it ("" if it never did).
  std::string WaitForHolder() {
    const std::string lock = spool_ + "/lock";
    for (int i = 0; i < 200; ++i) {
      std::string pid(absl::StripAsciiWhitespace(
          WaitForFile(lock, absl::Milliseconds(10)) ? ReadFileOrDie(lock) : ""));
      int64_t n = 0;
      if (absl::SimpleAtoi(pid, &n) && n > 0) return pid;
      usleep(20 * 1000);
    }
    return "";
  }
};

TEST_F(SpoolLockTest, SecondEngineExitsNamingTheHolderCtlStillWorks) {
  Subprocess first(EngineArgv(false), dir_ + "/first.out", dir_ + "/first.err");
  ASSERT_TRUE(first.started());
  const std::string pid = WaitForHolder();
  ASSERT_FALSE(pid.empty()) << ReadFileOrDie(dir_ + "/first.err");

  const int rc = RunCommand(EngineArgv(true), dir_ + "/second.out", absl::Seconds(30));
  EXPECT_EQ(rc, 1);
  const std::string err = ReadFileOrDie(dir_ + "/second.out.err");
  EXPECT_TRUE(absl::StrContains(err, absl::StrCat("in use by mxburst PID ", pid))) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << "one line: " << err;

  // Readers never take the lock.
  EXPECT_EQ(RunCommand({Bin("tools/mxburstctl"), "queue", "--spool", spool_},
                       dir_ + "/ctl.out", absl::Seconds(30)),
            0)
      << ReadFileOrDie(dir_ + "/ctl.out.err");

  // kill -9 leaves no stale lock: the next engine starts and drains.
  first.Signal(SIGKILL);
  EXPECT_EQ(first.Wait(absl::Seconds(30)), 128 + SIGKILL);
  EXPECT_EQ(RunCommand(EngineArgv(true), dir_ + "/third.out", absl::Seconds(60)), 0)
      << ReadFileOrDie(dir_ + "/third.out.err");
}

TEST(SpoolLock, SecondAcquireInTheSameProcessFailsAndReleaseFrees) {
  const std::string dir = testing::MakeTempDir("spoollock-unit") + "/new/spool";
  absl::StatusOr<SpoolLock> a = SpoolLock::Acquire(dir);  // creates the missing directories
  ASSERT_TRUE(a.ok()) << a.status();
  absl::StatusOr<SpoolLock> b = SpoolLock::Acquire(dir);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(b.status().message(), absl::StrCat("PID ", getpid())))
      << b.status();
  { SpoolLock gone = *std::move(a); }
  EXPECT_TRUE(SpoolLock::Acquire(dir).ok());
}

}  // namespace
}  // namespace mxb
