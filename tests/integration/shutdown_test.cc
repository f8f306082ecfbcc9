// SIGTERM end to end: the real mxburst against mxburst-sink or a fault listener on 127.0.0.1.
// What waits — jobs queued for a rate slot, connections not greeted yet — is deferred or closed
// at once; only a transaction under way gets `[timeouts] shutdown` before it is aborted. Nothing
// is lost: every message is in deferred/ with a "shutting down"/"shutdown" record.
#include <signal.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/fixture.h"

namespace mxb {
namespace {

using testing::EngineArgv;
using testing::FaultServer;
using testing::FreePort;
using testing::InjectTo;
using testing::ReadFileOrDie;
using testing::ReadJsonLines;
using testing::SpoolWorld;
using testing::Subprocess;
using testing::WaitFor;
using testing::WriteFileOrDie;

class ShutdownTest : public SpoolWorld {
 protected:
  ShutdownTest() : SpoolWorld("shutdown") {}

  // mxburst with `toml` as its config, every domain routed to 127.0.0.1:port_.
  std::unique_ptr<Subprocess> Start(const std::string& toml) {
    const std::string config = dir_ + "/mxburst.toml";
    WriteFileOrDie(config, toml);
    err_ = dir_ + "/engine.err";
    auto engine = std::make_unique<Subprocess>(
        EngineArgv({"--config", config, "--spool", spool_, "--log", log_, "--workers", "2",
                    "--route", absl::StrCat("*=127.0.0.1:", port_), "--helo",
                    "test.mxburst.example"}),
        dir_ + "/engine.out", err_);
    EXPECT_TRUE(engine->started());
    return engine;
  }

  // SIGTERM; the seconds until it exited with 0.
  double Stop(Subprocess* engine) {
    const absl::Time t0 = absl::Now();
    engine->Signal(SIGTERM);
    EXPECT_EQ(engine->Wait(absl::Seconds(60)), 0) << ReadFileOrDie(err_);
    return absl::ToDoubleSeconds(absl::Now() - t0);
  }

  // Records by status; every deferred one must say why: the shutdown.
  std::map<std::string, int> Records() {
    std::map<std::string, int> out;
    for (const nlohmann::json& r : ReadJsonLines(log_)) {
      ++out[r["status"].get<std::string>()];
      if (r["status"] == "deferred") {
        const std::string text = r["text"].get<std::string>();
        EXPECT_TRUE(absl::StrContains(text, "shut") || r["class"] == "rate-limit") << r.dump();
      }
    }
    return out;
  }

  std::string err_;
};

// Jobs waiting for a rate slot (2/minute, burst 1: the first message goes, the others wait
// ~30 s each) used to hold SIGTERM for the whole [timeouts] shutdown (15 s by default): the
// workers were told to stop only once nothing was in flight. Now they are deferred at once.
TEST_F(ShutdownTest, JobsWaitingForARateSlotAreDeferredAtOnce) {
  StartSink("127.0.0.1");
  InjectTo(spool_, "r@slow.example", 5, "slow");
  auto engine = Start(
      "[dns]\nallow_private_mx = true\n"
      "[[shaping]]\ndomain = \"slow.example\"\nmax_message_rate = \"2/minute\"\n"
      "rate_burst = 1\n");
  ASSERT_TRUE(WaitFor([&] { return Records()["delivered"] == 1; })) << ReadFileOrDie(err_);
  ASSERT_TRUE(WaitFor([&] { return Count("incoming") == 0; }));
  absl::SleepFor(absl::Milliseconds(300));
  ASSERT_LT(ReadJsonLines(log_).size(), 5u) << "no message left waiting for its rate slot";
  const double secs = Stop(engine.get());
  EXPECT_LT(secs, 3.0) << ReadFileOrDie(err_);
  std::map<std::string, int> records = Records();
  EXPECT_EQ(records["delivered"], 1);
  EXPECT_EQ(records["deferred"], 4);
  EXPECT_EQ(Count("active") + Count("incoming"), 0u);
  EXPECT_EQ(Count("deferred"), 4u);
  int shut = 0;
  for (const nlohmann::json& r : ReadJsonLines(log_)) {
    if (absl::StrContains(r["text"].get<std::string>(), "shutting down")) ++shut;
  }
  EXPECT_GE(shut, 1);  // the ones still queued (the cap may have deferred some at once)
  EXPECT_FALSE(absl::StrContains(ReadFileOrDie(err_), "aborting")) << ReadFileOrDie(err_);
}

// A transaction whose peer never answers the final "." (RFC 5321 §4.5.3.2: 10 minutes) is
// what [timeouts] shutdown bounds: aborted after 1 s, deferred "shutdown", committed, exit 0.
TEST_F(ShutdownTest, ATransactionThePeerStallsIsAbortedAtTheBound) {
  port_ = FreePort("127.0.0.1");
  FaultServer stall(port_, FaultServer::Mode::kStallAfterData);
  ASSERT_TRUE(stall.ok());
  InjectTo(spool_, "r@stall.example", 2, "stall");
  auto engine = Start("[dns]\nallow_private_mx = true\n[timeouts]\nshutdown = 1\n");
  ASSERT_TRUE(WaitFor([&] { return stall.stalled() > 0; })) << ReadFileOrDie(err_);
  const double secs = Stop(engine.get());
  EXPECT_GE(secs, 0.9);  // the bound was waited for
  EXPECT_LT(secs, 10.0) << ReadFileOrDie(err_);
  EXPECT_TRUE(absl::StrContains(ReadFileOrDie(err_), "shutdown: ")) << ReadFileOrDie(err_);
  std::map<std::string, int> records = Records();
  EXPECT_EQ(records["deferred"], 2);
  EXPECT_EQ(records.size(), 1u);
  EXPECT_EQ(Count("active") + Count("incoming"), 0u);
  EXPECT_EQ(Count("deferred"), 2u);
}

}  // namespace
}  // namespace mxb
