// The timer wheel under real traffic: mxburst delivers over reused connections to mxburst-sink
// and /metrics shows how many deadline entries each worker's wheel holds. Every SMTP reply
// re-arms the connection's deadline (~5 per message); each re-arm used to add an entry that
// stayed for the 5-10 minutes of its timeout, so the wheel grew with the replies (millions at
// 10k msgs/s) instead of with the connections (engine/timer_wheel.h WheelDeadline).
#include <sys/stat.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "tests/integration/fixture.h"

namespace mxb {
namespace {

using testing::FreePort;
using testing::InjectTo;
using testing::ReadFileOrDie;
using testing::ReadJsonLines;
using testing::SpoolWorld;
using testing::WaitFor;
using testing::WriteFileOrDie;

// The value of the first sample line of /metrics that starts with `series` (-1: none).
double Sample(const std::string& metrics, const std::string& series) {
  for (absl::string_view line : absl::StrSplit(metrics, '\n')) {
    if (!absl::StartsWith(line, series + " ")) continue;
    double v = -1;
    if (absl::SimpleAtod(line.substr(series.size() + 1), &v)) return v;
  }
  return -1;
}

class TimerWheelDeliveryTest : public SpoolWorld {
 protected:
  TimerWheelDeliveryTest() : SpoolWorld("timer-wheel") {}
};

TEST_F(TimerWheelDeliveryTest, EntriesGrowWithConnectionsNotWithReplies) {
  StartSink("127.0.0.1");
  constexpr int kMessages = 400;
  InjectTo(spool_, "r@one.example", kMessages, "wheel");
  const int http_port = FreePort("127.0.0.1");
  const std::string token = dir_ + "/token";
  WriteFileOrDie(token, "wheel-test-token\n");
  chmod(token.c_str(), 0600);
  const std::string config = dir_ + "/mxburst.toml";
  WriteFileOrDie(config, absl::StrCat("[dns]\nallow_private_mx = true\n[limits]\n"
                                      "max_connections = 2\n[http]\nlisten = \"127.0.0.1:",
                                      http_port, "\"\ntoken_file = \"", token, "\"\n"));
  auto engine = testing::StartEngine(
      {"--config", config, "--spool", spool_, "--log", log_, "--workers", "1", "--route",
       absl::StrCat("*=127.0.0.1:", port_), "--helo", "test.mxburst.example", "--quiet"},
      dir_ + "/engine.out", dir_ + "/engine.err");
  ASSERT_TRUE(WaitFor([&] { return ReadJsonLines(log_).size() >= kMessages; }))
      << ReadFileOrDie(dir_ + "/engine.err");
  httplib::Client client("127.0.0.1", http_port);
  std::string metrics;
  // The gauges are updated on the worker's tick (100 ms).
  ASSERT_TRUE(WaitFor([&] {
    httplib::Result r = client.Get("/metrics");
    if (!r || r->status != 200) return false;
    metrics = r->body;
    return Sample(metrics, "mxburst_timer_wheel_entries{worker=\"0\"}") >= 0;
  })) << ReadFileOrDie(dir_ + "/engine.err");
  const double connections = Sample(metrics, "mxburst_connections_total");
  const double entries = Sample(metrics, "mxburst_timer_wheel_entries{worker=\"0\"}");
  const double peak = Sample(metrics, "mxburst_timer_wheel_entries_peak{worker=\"0\"}");
  ASSERT_GT(connections, 0);
  EXPECT_LT(connections, 20);  // reused: the test is about many replies per connection
  // The parked connections still have their idle deadline; ~5 replies per message used to
  // leave ~5 * kMessages entries behind for minutes.
  EXPECT_GE(entries, 1);
  EXPECT_LE(entries, 4 * connections) << metrics;
  EXPECT_LE(peak, 4 * connections) << metrics;
  engine->Signal(SIGTERM);
  EXPECT_EQ(engine->Wait(absl::Seconds(60)), 0) << ReadFileOrDie(dir_ + "/engine.err");
}

}  // namespace
}  // namespace mxb
