// Local back-pressure (issue 17 item 6, engine/connect_gate.h): when this host runs short of a
// resource a connect needs, the recipients wait — they are never deferred, and the destination
// is never marked dead for it. The shortage is real: the engine runs under RLIMIT_NOFILE 48
// (soft = hard, via util-linux prlimit, so it cannot raise it) with io_uring direct descriptors
// off (MXB_URING_DISABLE=direct), so once ~30 sessions are open socket() says EMFILE. The sink
// delays each reply so sessions overlap; 200 domains with one message each want 200 at once.
// Before the fix every EMFILE was a failed hop: the domain went dead and its message deferred.
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/fixture.h"

namespace mxb {
namespace {

using testing::Bin;
using testing::ReadFileOrDie;
using testing::ReadJsonLines;
using testing::RunCommand;

constexpr int kDomains = 200;

class LocalBackpressureTest : public testing::SpoolWorld {
 protected:
  LocalBackpressureTest() : SpoolWorld("backpressure") {}
};

TEST_F(LocalBackpressureTest, DescriptorShortageWaitsAndDefersNobody) {
  StartSink("127.0.0.2", {"--reply-delay-ms", "50"});
  ASSERT_EQ(RunCommand({Bin("tools/mxburst-inject"), "--spool", spool_, "--count",
                        std::to_string(kDomains), "--size", "1000", "--domains",
                        std::to_string(kDomains), "--no-fsync"},
                       dir_ + "/inject.out"),
            0);
  setenv("MXB_URING_DISABLE", "direct", 1);
  const int rc = RunCommand(
      {"/usr/bin/prlimit", "--nofile=48:48", Bin("engine/mxburst"), "--allow-root", "--spool", spool_,
       "--drain", "--log", log_, "--workers", "1", "--tls", "disabled", "--helo",
       "backpressure.mxburst.example", "--max-messages-per-connection", "1",
       // 200 sessions to one MX host at once: above the MX pool's cap (engine/mx_pool.h)
       "--max-connections-per-mx", "1000", "--route",
       absl::StrCat("*=127.0.0.2:", port_)},
      dir_ + "/engine.out", absl::Minutes(2));
  unsetenv("MXB_URING_DISABLE");
  const std::string out = ReadFileOrDie(dir_ + "/engine.out");
  const std::string err = ReadFileOrDie(dir_ + "/engine.out.err");
  ASSERT_EQ(rc, 0) << err;
  nlohmann::json stats = StopSink();

  // The shortage happened (otherwise this test proves nothing) ...
  EXPECT_TRUE(absl::StrContains(out, "for a local shortage")) << out;
  EXPECT_TRUE(absl::StrContains(err, "local resource shortage")) << err;
  // ... and cost nobody a deferral: every message went through once descriptors freed up.
  int delivered = 0, other = 0;
  for (const nlohmann::json& j : ReadJsonLines(log_)) {
    (j.value("status", "") == "delivered" ? delivered : other) += 1;
  }
  EXPECT_EQ(delivered, kDomains) << out;
  EXPECT_EQ(other, 0) << out;
  EXPECT_EQ(Count("deferred"), 0u);
  EXPECT_EQ(stats.value("messages", 0), kDomains) << stats.dump();
}

}  // namespace
}  // namespace mxb
