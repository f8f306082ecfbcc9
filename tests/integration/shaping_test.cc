// Traffic shaping end to end: the real mxburst with a TOML config against real mxburst-sink
// processes on 127.0.0.x — source IP pools (the sink sees the bound address), a connection
// budget shared by every domain behind one MX suffix, the message rate, back-off after 421 and
// after repeated 4xx, and fairness (a slow destination does not hold up the others).
#include <sys/stat.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
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
using testing::SinkProcess;
using testing::SpoolWorld;
using testing::WriteFileOrDie;

// A sink on `ip` with its own directory; `Stop()` returns its stats.
struct Sink {
  std::string ip;
  int port = 0;
  std::string dir;
  std::unique_ptr<SinkProcess> proc;
  std::string hop() const { return absl::StrCat(ip, ":", port); }
};

class ShapingTest : public SpoolWorld {
 protected:
  ShapingTest() : SpoolWorld("shaping") {}

  // One sink per address, each in its own directory (hides SpoolWorld::StartSink).
  std::unique_ptr<Sink> StartSink(const std::string& ip, std::vector<std::string> extra = {}) {
    auto s = std::make_unique<Sink>();
    s->ip = ip;
    s->port = FreePort(ip);
    s->dir = absl::StrCat(dir_, "/sink-", ip, "-", s->port);
    mkdir(s->dir.c_str(), 0755);
    std::vector<std::string> args = {"--listen", s->hop(), "--out-dir", s->dir + "/received"};
    args.insert(args.end(), extra.begin(), extra.end());
    s->proc = std::make_unique<SinkProcess>(s->dir, args);
    EXPECT_TRUE(s->proc->ready()) << s->proc->error_text();
    return s;
  }

  // One message per call: `rcpt` at its domain, with an x-job and a Message-ID naming it.
  void Put(const std::string& rcpt, const std::string& job, const std::string& sender = "bounce@esp.example") {
    const std::string id = absl::StrCat("<", job, "-", ++seq_, "@test.example>");
    std::string msg = absl::StrCat("x-sender: <", sender, ">\nx-receiver: <", rcpt, ">\nx-job: ",
                                   job, "\nFrom: a@esp.example\nTo: ", rcpt, "\nMessage-ID: ", id,
                                   "\nSubject: shaping\n\nhello\n");
    ASSERT_TRUE(InjectFile(spool_, absl::StrCat("m", seq_, ".eml"), msg, false).ok());
  }

  // Runs mxburst --drain with `toml` as its config and the given static routes.
  int RunEngine(const std::string& toml, const std::vector<std::string>& routes,
                std::vector<std::string> extra = {}) {
    WriteFileOrDie(dir_ + "/mxburst.toml", toml);
    std::vector<std::string> argv = {Bin("engine/mxburst"), "--allow-root", "--config", dir_ + "/mxburst.toml",
                                     "--spool", spool_, "--drain", "--log", log_, "--workers",
                                     "2", "--helo", "test.mxburst.example"};
    for (const std::string& r : routes) {
      argv.push_back("--route");
      argv.push_back(r);
    }
    argv.insert(argv.end(), extra.begin(), extra.end());
    return RunCommand(argv, dir_ + "/engine.out", absl::Minutes(2));
  }

  std::string EngineErr() { return ReadFileOrDie(dir_ + "/engine.out.err"); }

  // Message-ID -> "peer:" address of every message a sink stored.
  static std::map<std::string, std::string> PeersOf(const Sink& s) {
    std::map<std::string, std::string> out;
    const std::string dir = s.dir + "/received";
    for (const std::string& name : ListDir(dir)) {
      if (!absl::EndsWith(name, ".env")) continue;
      std::string base = name.substr(0, name.size() - 4);
      std::string id = MessageIdOf(ReadFileOrDie(dir + "/" + base + ".eml"));
      for (absl::string_view line : absl::StrSplit(ReadFileOrDie(dir + "/" + name), '\n')) {
        if (absl::ConsumePrefix(&line, "peer: ")) {
          out[id] = std::string(line.substr(0, line.rfind(':')));
        }
      }
    }
    return out;
  }

  static absl::Time TimeOf(const nlohmann::json& r) {
    absl::Time t;
    std::string err;
    EXPECT_TRUE(absl::ParseTime("%Y-%m-%dT%H:%M:%E3SZ", r["time"].get<std::string>(), &t, &err))
        << err;
    return t;
  }

  int seq_ = 0;
};

TEST_F(ShapingTest, SourcePoolPerJobIsTheAddressTheSinkSees) {
  auto sink = StartSink("127.0.0.1");
  for (int i = 0; i < 12; ++i) {
    Put(absl::StrCat("r", i, "@d1.example"), "jobA");
    Put(absl::StrCat("r", i, "@d1.example"), "jobB");
    Put(absl::StrCat("r", i, "@d2.example"), "jobC", "bounce@vip.example");
  }
  ASSERT_EQ(RunEngine(R"(
[source_pools.a]
addresses = ["127.0.0.5"]
[source_pools.b]
addresses = ["127.0.0.6"]
[source_pools.vip]
addresses = ["127.0.0.7"]

[[source_select]]
job = "jobA"
pool = "a"
[[source_select]]
job = "jobB"
pool = "b"
[[source_select]]
sender_domain = "vip.example"
pool = "vip"
)",
                      {absl::StrCat("*=", sink->hop())}),
            0)
      << EngineErr();
  nlohmann::json stats = sink->proc->Stop();
  EXPECT_EQ(stats["messages"], 36);
  std::map<std::string, std::string> peers = PeersOf(*sink);
  ASSERT_EQ(peers.size(), 36u);
  std::map<std::string, int> by_source;
  for (const auto& [id, peer] : peers) {
    // Same destination domain, different jobs: never the same connection or address.
    const std::string want = absl::StartsWith(id, "<jobA-")   ? "127.0.0.5"
                             : absl::StartsWith(id, "<jobB-") ? "127.0.0.6"
                                                              : "127.0.0.7";
    EXPECT_EQ(peer, want) << id;
    ++by_source[peer];
  }
  EXPECT_EQ(by_source.size(), 3u);
}

TEST_F(ShapingTest, MxSuffixConnectionBudgetIsSharedByItsDomains) {
  // Slow replies keep connections open long enough to overlap.
  auto sink = StartSink("127.0.0.1", {"--reply-delay-ms", "20"});
  std::vector<std::string> routes;
  for (int d = 0; d < 4; ++d) {
    routes.push_back(absl::StrCat("d", d, ".example=mx", d, ".pool.shared.example@", sink->hop()));
    for (int i = 0; i < 15; ++i) Put(absl::StrCat("r", i, "@d", d, ".example"), "j");
  }
  ASSERT_EQ(RunEngine(R"(
[[shaping]]
mx_suffix = "*.shared.example"
max_connections = 2
max_messages_per_connection = 5
)",
                      routes),
            0)
      << EngineErr();
  nlohmann::json stats = sink->proc->Stop();
  EXPECT_EQ(stats["messages"], 60);
  ASSERT_TRUE(stats.contains("peak_connections")) << stats.dump();
  EXPECT_LE(stats["peak_connections"].get<int>(), 2) << stats.dump();
  EXPECT_GE(stats["peak_connections"].get<int>(), 1) << stats.dump();
  // max_messages_per_connection = 5: at least 60 / 5 connections.
  EXPECT_GE(stats["connections"].get<int>(), 12) << stats.dump();
  for (const nlohmann::json& r : ReadJsonLines(log_)) EXPECT_EQ(r["status"], "delivered") << r;
}

TEST_F(ShapingTest, MessageRateIsALowerBoundOnTheTime) {
  auto sink = StartSink("127.0.0.1");
  constexpr int kMessages = 150, kRate = 100, kBurst = 10;
  std::vector<std::string> routes;
  for (int i = 0; i < kMessages; ++i) Put(absl::StrCat("r", i, "@d", i % 3, ".example"), "j");
  for (int d = 0; d < 3; ++d) {
    routes.push_back(absl::StrCat("d", d, ".example=mx.rate.example@", sink->hop()));
  }
  // The three domains (on both workers) share one rate through their MX rule.
  absl::Time start = absl::Now();
  ASSERT_EQ(RunEngine(absl::StrCat("[[shaping]]\nmx_suffix = \"rate.example\"\n",
                                   "max_message_rate = \"", kRate, "/second\"\nrate_burst = ",
                                   kBurst, "\n"),
                      routes),
            0)
      << EngineErr();
  absl::Duration took = absl::Now() - start;
  nlohmann::json stats = sink->proc->Stop();
  EXPECT_EQ(stats["messages"], kMessages);
  // A rate-limited destination opens its connections one at a time: a backlog must not open
  // max_connections (16) sessions per domain that would each carry a message or two.
  EXPECT_LE(stats["connections"].get<int>(), 12) << stats.dump();
  // GCRA: after the burst, one message per 1/R s; so N messages need at least (N - burst) / R.
  EXPECT_GE(took, absl::Seconds(1.0 * (kMessages - kBurst) / kRate)) << took;
  // And the rate is reached, not just respected: waits end on their own ring timeout, not on
  // the 100 ms housekeeping tick (that would cap every rate at 10/s: 14 s here). Loose bound.
  EXPECT_LT(took, absl::Seconds(5 * (kMessages - kBurst) / kRate)) << took;
  std::vector<nlohmann::json> log = ReadJsonLines(log_);
  ASSERT_EQ(log.size(), static_cast<size_t>(kMessages));
  for (const nlohmann::json& r : log) EXPECT_EQ(r["status"], "delivered") << r;
}

// A rate-limited destination keeps only what its rate sends before the first retry in memory;
// the rest of its backlog goes back to the spool at once instead of holding in-flight slots.
TEST_F(ShapingTest, RateLimitedBacklogIsDeferredNotHeld) {
  auto sink = StartSink("127.0.0.1");
  for (int i = 0; i < 30; ++i) Put(absl::StrCat("r", i, "@slowrate.example"), "j");
  for (int i = 0; i < 10; ++i) Put(absl::StrCat("r", i, "@ok.example"), "j");
  ASSERT_EQ(RunEngine(R"(
[queue]
retry_delays = [1]
[[shaping]]
domain = "slowrate.example"
max_message_rate = "5/second"
)",
                      {absl::StrCat("*=", sink->hop())}),
            0)
      << EngineErr();
  sink->proc->Stop();
  int delivered = 0, deferred = 0, ok = 0;
  for (const nlohmann::json& r : ReadJsonLines(log_)) {
    if (r["domain"] == "ok.example") {
      EXPECT_EQ(r["status"], "delivered") << r;
      ++ok;
    } else if (r["status"] == "delivered") {
      ++delivered;
    } else {
      EXPECT_EQ(r["status"], "deferred") << r;
      EXPECT_TRUE(absl::StrContains(r["text"].get<std::string>(),
                                    "5 messages for slowrate.example already wait"))
          << r;
      ++deferred;
    }
  }
  EXPECT_EQ(ok, 10);
  EXPECT_EQ(delivered + deferred, 30);
  // 5/s x 1 s until the first retry = 5 kept (one more may already be on a connection).
  EXPECT_LE(delivered, 7);
  EXPECT_GE(deferred, 23);
}

TEST_F(ShapingTest, BackoffAfter421PausesTheDestinationOthersGoOn) {
  auto sink = StartSink("127.0.0.1", {"--shutdown-rcpt", "busy-"});
  for (int i = 0; i < 10; ++i) {
    Put(absl::StrCat("busy-", i, "@slow.example"), "j");
    Put(absl::StrCat("r", i, "@ok.example"), "j");
  }
  ASSERT_EQ(RunEngine(R"(
[[shaping]]
domain = "slow.example"
max_connections = 1
backoff_base = 30
backoff_max = 600
)",
                      {absl::StrCat("*=", sink->hop())}),
            0)
      << EngineErr();
  nlohmann::json stats = sink->proc->Stop();
  EXPECT_EQ(stats["messages"], 10);
  int got_421 = 0, paused = 0, delivered_ok = 0;
  for (const nlohmann::json& r : ReadJsonLines(log_)) {
    const std::string text = r["text"];
    if (r["domain"] == "ok.example") {
      EXPECT_EQ(r["status"], "delivered") << r;
      ++delivered_ok;
      continue;
    }
    EXPECT_EQ(r["status"], "deferred") << r;
    if (r["code"] == 421) ++got_421;
    if (absl::StrContains(text, "domain slow.example paused 30s after 421")) {
      EXPECT_TRUE(absl::StrContains(text, "resumes in")) << text;
      ++paused;
    }
  }
  EXPECT_EQ(delivered_ok, 10);
  // One connection at a time: the first 421 pauses the domain, the rest are not even tried.
  EXPECT_EQ(got_421, 1);
  EXPECT_EQ(paused, 9);
  // The rule's state is dumped next to the policy cache: still paused, back-off level 1.
  std::vector<nlohmann::json> dump = ReadJsonLines(spool_ + "/log/shaping.jsonl");
  ASSERT_EQ(dump.size(), 1u);
  EXPECT_EQ(dump[0]["rule"], "domain slow.example");
  EXPECT_EQ(dump[0]["backoff_level"], 1);
  EXPECT_GT(dump[0]["paused_for_ms"].get<int>(), 20000) << dump[0];
  EXPECT_EQ(dump[0]["connections"], 0);
  // `mxburstctl shaping` shows the same throttle state.
  ASSERT_EQ(RunCommand({Bin("tools/mxburstctl"), "shaping", "--spool", spool_},
                       dir_ + "/ctl.out"),
            0);
  std::vector<nlohmann::json> shown = ReadJsonLines(dir_ + "/ctl.out");
  ASSERT_EQ(shown.size(), 1u);
  EXPECT_EQ(shown[0]["rule"], "domain slow.example");
  EXPECT_EQ(shown[0]["backoff_level"], 1);
}

TEST_F(ShapingTest, BackoffAfterConsecutiveTempFailures) {
  auto sink = StartSink("127.0.0.1", {"--tempfail-rcpt", "defer-"});
  for (int i = 0; i < 10; ++i) Put(absl::StrCat("defer-", i, "@grey.example"), "j");
  for (int i = 0; i < 5; ++i) Put(absl::StrCat("r", i, "@ok.example"), "j");
  ASSERT_EQ(RunEngine(R"(
[backoff]
after_4xx = 3
base = 20
max = 60
[[shaping]]
domain = "grey.example"
max_connections = 1
max_messages_per_connection = 100
)",
                      {absl::StrCat("*=", sink->hop())}),
            0)
      << EngineErr();
  nlohmann::json stats = sink->proc->Stop();
  EXPECT_EQ(stats["messages"], 5);
  EXPECT_EQ(stats["tempfailed_rcpts"], 3) << stats.dump();
  int tempfailed = 0, paused = 0;
  for (const nlohmann::json& r : ReadJsonLines(log_)) {
    if (r["domain"] != "grey.example") continue;
    EXPECT_EQ(r["status"], "deferred") << r;
    if (r["code"] == 451) ++tempfailed;
    if (absl::StrContains(r["text"].get<std::string>(), "paused 20s after 3 consecutive 4xx")) {
      ++paused;
    }
  }
  EXPECT_EQ(tempfailed, 3);
  EXPECT_EQ(paused, 7);
}

TEST_F(ShapingTest, SlowDestinationDoesNotDelayTheOthers) {
  // slow.example: its own sink address, every reply 150 ms late, one connection at a time.
  auto slow = StartSink("127.0.0.3", {"--reply-delay-ms", "150"});
  auto fast = StartSink("127.0.0.4");
  constexpr int kSlow = 6, kFastDomains = 10, kFastEach = 10;
  std::vector<std::string> routes = {absl::StrCat("slow.example=", slow->hop())};
  for (int i = 0; i < kSlow; ++i) Put(absl::StrCat("r", i, "@slow.example"), "j");
  for (int d = 0; d < kFastDomains; ++d) {
    routes.push_back(absl::StrCat("f", d, ".example=", fast->hop()));
    for (int i = 0; i < kFastEach; ++i) Put(absl::StrCat("r", i, "@f", d, ".example"), "j");
  }
  ASSERT_EQ(RunEngine("[[shaping]]\ndomain = \"slow.example\"\nmax_connections = 1\n", routes), 0)
      << EngineErr();
  EXPECT_EQ(slow->proc->Stop()["messages"], kSlow);
  EXPECT_EQ(fast->proc->Stop()["messages"], kFastDomains * kFastEach);
  absl::Time fast_done = absl::InfinitePast();
  std::vector<absl::Time> slow_times;
  for (const nlohmann::json& r : ReadJsonLines(log_)) {
    EXPECT_EQ(r["status"], "delivered") << r;
    if (r["domain"] == "slow.example") slow_times.push_back(TimeOf(r));
    else fast_done = std::max(fast_done, TimeOf(r));
  }
  ASSERT_EQ(slow_times.size(), static_cast<size_t>(kSlow));
  std::sort(slow_times.begin(), slow_times.end());
  // Every fast domain is finished while the slow one still has most of its messages to go: each
  // slow message needs several 150 ms replies on the single connection.
  EXPECT_LT(fast_done, slow_times[kSlow / 2]) << "fast done at " << fast_done << ", slow "
                                               << slow_times.front() << " .. " << slow_times.back();
  EXPECT_GT(slow_times.back() - fast_done, absl::Milliseconds(500));
}

}  // namespace
}  // namespace mxb
