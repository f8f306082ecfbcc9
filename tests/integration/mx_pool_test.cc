// MX pool (issue 17 item 1, engine/mx_pool.h): every domain routed to one MX host shares that
// host's connections. 200 recipient domains on 2 sink addresses, real mxburst and mxburst-sink
// on loopback; the sink's own counters say how many connections it accepted. Before the MX pool
// each domain had its own connections (>= 200 here, one per domain at least).
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
using testing::MakeTempDir;
using testing::ReadFileOrDie;
using testing::ReadJsonLines;
using testing::RunCommand;
using testing::SinkProcess;

constexpr int kDomains = 200;
constexpr int kMessages = 2000;
constexpr int kWorkers = 2;
constexpr int kMxHosts = 2;
constexpr int kDefaultPerMx = 16;  // [limits] max_connections_per_mx default

class MxPoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("mxpool");
    spool_ = dir_ + "/spool";
    log_ = dir_ + "/accounting.jsonl";
  }

  void StartSink(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"--listen", "127.0.0.2:0,127.0.0.3:0", "--threads", "1"};
    args.insert(args.end(), extra.begin(), extra.end());
    sink_ = std::make_unique<SinkProcess>(dir_, args);
    ASSERT_TRUE(sink_->ready()) << sink_->error_text();
    hostports_ = sink_->HostPorts();
    ASSERT_EQ(hostports_.size(), static_cast<size_t>(kMxHosts));
  }

  // d1..d200.example round-robin over the two sink addresses (static routes: the next hop is
  // the MX host). --idle-timeout 30: no connection closes for being idle during the run, so
  // the count is what the pool needed, not what idling cost.
  int RunEngine(const std::vector<std::string>& extra = {}) {
    if (RunCommand({Bin("tools/mxburst-inject"), "--spool", spool_, "--count",
                    std::to_string(kMessages), "--size", "1000", "--domains",
                    std::to_string(kDomains), "--no-fsync"},
                   dir_ + "/inject.out") != 0) {
      return -1;
    }
    std::vector<std::string> argv = {
        Bin("engine/mxburst"), "--allow-root", "--spool", spool_, "--drain", "--log", log_,
        "--quiet", "--workers", std::to_string(kWorkers), "--helo", "pool.mxburst.example",
        "--max-connections", "2", "--idle-timeout", "30"};
    for (int i = 1; i <= kDomains; ++i) {
      argv.push_back("--route");
      argv.push_back(absl::StrCat("d", i, ".example=", hostports_[(i - 1) % hostports_.size()]));
    }
    argv.insert(argv.end(), extra.begin(), extra.end());
    return RunCommand(argv, dir_ + "/engine.out", absl::Minutes(3));
  }

  std::map<std::string, int> Statuses(const std::string& domain_filter = "") {
    std::map<std::string, int> n;
    for (const nlohmann::json& j : ReadJsonLines(log_)) {
      const std::string d = j.value("domain", "");
      if (domain_filter.empty() || d == domain_filter) ++n[j.value("status", "")];
    }
    return n;
  }

  std::string dir_, spool_, log_;
  std::vector<std::string> hostports_;
  std::unique_ptr<SinkProcess> sink_;
};

// At most workers x MX hosts x max_connections_per_mx connections for 200 domains, every
// message delivered. The old per-domain pools opened one or two per domain (>= 200).
TEST_F(MxPoolTest, TwoHundredDomainsOnTwoMxHostsShareABoundedSetOfConnections) {
  StartSink();
  ASSERT_EQ(RunEngine(), 0) << ReadFileOrDie(dir_ + "/engine.out.err");
  nlohmann::json stats = sink_->Stop();
  EXPECT_EQ(Statuses()["delivered"], kMessages) << ReadFileOrDie(dir_ + "/engine.out");
  EXPECT_EQ(stats.value("messages", 0), kMessages) << stats.dump();
  EXPECT_LE(stats.value("connections", 1 << 30), kWorkers * kMxHosts * kDefaultPerMx)
      << stats.dump();
  EXPECT_EQ(stats.value("tls_connections", 0), stats.value("connections", -1)) << stats.dump();
}

// --max-connections-per-mx bounds the shared pool, and one domain whose recipients the MX
// tempfails (451 4.7.1 at RCPT) shares the connections without holding up any other domain:
// its mail is deferred, everyone else's is delivered over the same few sessions.
TEST_F(MxPoolTest, OneDomainsTempfailsDoNotHoldUpTheOthersOnTheSameMx) {
  StartSink({"--tempfail-rcpt", "@d7.example"});
  ASSERT_EQ(RunEngine({"--max-connections-per-mx", "1"}), 0)
      << ReadFileOrDie(dir_ + "/engine.out.err");
  nlohmann::json stats = sink_->Stop();
  const std::map<std::string, int> all = Statuses();
  const std::map<std::string, int> d7 = Statuses("d7.example");
  ASSERT_GT(d7.count("deferred"), 0u) << "the fault must have hit";
  const int d7_msgs = d7.at("deferred");
  EXPECT_EQ(d7.count("delivered"), 0u);
  EXPECT_EQ(all.count("delivered") ? all.at("delivered") : 0, kMessages - d7_msgs);
  EXPECT_EQ(stats.value("messages", 0), kMessages - d7_msgs) << stats.dump();
  EXPECT_LE(stats.value("connections", 1 << 30), kWorkers * kMxHosts * 1) << stats.dump();
}

}  // namespace
}  // namespace mxb
