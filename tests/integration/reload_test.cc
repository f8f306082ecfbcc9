// SIGHUP (issue 14, engine/reload.cc) against the real mxburst and mxburst-sink on 127.0.0.1:
// the installed logrotate snippet (dist/mxburst.logrotate, run by the real logrotate) renames the
// accounting log mid-run and signals the engine, and not one record is lost or doubled across
// the two files; a config that does not load on SIGHUP keeps the engine running on the old
// rules with one line saying why; a good one changes the shaping rules of the running engine.
#include <signal.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "fixture.h"
#include "gtest/gtest.h"

namespace mxb::testing {
namespace {

class ReloadTest : public SpoolWorld {
 protected:
  ReloadTest() : SpoolWorld("reload") {}

  void StartEngine(std::vector<std::string> extra = {}) {
    config_ = dir_ + "/mxburst.toml";
    // shutdown = 1: the message that waits an hour for its rate slot (below) holds SIGTERM
    // for that long, not for the default 15 s; [timeouts] are not reloaded.
    if (access(config_.c_str(), F_OK) != 0) {
      WriteFileOrDie(config_, "[limits]\nmax_connections = 4\n[timeouts]\nshutdown = 1\n");
    }
    std::vector<std::string> args = {"--config", config_, "--spool", spool_, "--log", log_,
                                     "--workers", "2", "--route",
                                     absl::StrCat("*=127.0.0.1:", port_), "--helo",
                                     "test.mxburst.example", "--quiet"};
    args.insert(args.end(), extra.begin(), extra.end());
    engine_ = testing::StartEngine(args, dir_ + "/engine.out", dir_ + "/engine.err");
    ASSERT_TRUE(engine_->started());
  }

  void TearDown() override {
    if (engine_) {
      engine_->Signal(SIGTERM);
      EXPECT_EQ(engine_->Wait(absl::Seconds(60)), 0) << Stderr();
    }
  }

  std::string Stderr() { return ReadFileOrDie(dir_ + "/engine.err"); }

  void Inject(int count, const std::string& domains, const std::string& prefix) {
    ASSERT_EQ(RunCommand({Bin("tools/mxburst-inject"), "--spool", spool_, "--count",
                          absl::StrCat(count), "--domain-list", domains, "--rcpt-local-prefix",
                          prefix},
                         dir_ + "/inject.log"),
              0);
  }

  // Records in the accounting log and every rotated generation of it.
  std::vector<nlohmann::json> AllRecords() {
    std::vector<nlohmann::json> all;
    for (const std::string& f : ListDir(dir_)) {
      if (!absl::StartsWith(f, "accounting.jsonl")) continue;
      for (nlohmann::json& r : ReadJsonLines(dir_ + "/" + f)) all.push_back(std::move(r));
    }
    return all;
  }

  std::vector<nlohmann::json> WaitForRecords(size_t n) {
    std::vector<nlohmann::json> all;
    for (int i = 0; i < 1200; ++i) {
      all = AllRecords();
      if (all.size() >= n) break;
      absl::SleepFor(absl::Milliseconds(50));
    }
    return all;
  }

  bool WaitForStderr(const std::string& needle) {
    for (int i = 0; i < 200; ++i) {
      if (absl::StrContains(Stderr(), needle)) return true;
      absl::SleepFor(absl::Milliseconds(50));
    }
    return false;
  }

  std::string config_;
  std::unique_ptr<Subprocess> engine_;
};

// logrotate with the shipped snippet: the log is renamed while the engine writes it and
// messages are still in flight; postrotate sends SIGHUP. Every recipient has exactly one record,
// in one of the two files; the new file gets the records after the reopen.
TEST_F(ReloadTest, LogrotateMidRunLosesNoRecord) {
  if (access("/usr/sbin/logrotate", X_OK) != 0) {
    GTEST_SKIP() << "logrotate is not installed (tools/setup.sh installs it)";
  }
  // A slow receiver keeps messages in flight while the rename happens.
  StartSink("127.0.0.1", {"--reply-delay-ms", "5"});
  StartEngine();
  Inject(300, "a.example,b.example,c.example", "first");
  std::vector<nlohmann::json> seen = WaitForRecords(20);
  ASSERT_GE(seen.size(), 20u) << Stderr();

  std::string conf = ReadFileOrDie(std::string(MXB_SOURCE_DIR) + "/dist/mxburst.logrotate");
  conf = absl::StrReplaceAll(
      conf, {{"/var/log/mxburst/*.jsonl", log_},
             {"mxburst mxburst", "root root"},
             {"systemctl kill --kill-who=main --signal=HUP mxburst.service",
              absl::StrCat("kill -HUP ", engine_->pid())}});
  ASSERT_TRUE(absl::StrContains(conf, "kill -HUP")) << conf;
  WriteFileOrDie(dir_ + "/logrotate.conf", conf);
  ASSERT_EQ(RunCommand({"/usr/sbin/logrotate", "--force", "--state", dir_ + "/logrotate.state",
                        dir_ + "/logrotate.conf"},
                       dir_ + "/logrotate.log"),
            0)
      << ReadFileOrDie(dir_ + "/logrotate.log.err");
  Inject(100, "a.example,b.example", "second");

  std::vector<nlohmann::json> all = WaitForRecords(400);
  ASSERT_EQ(all.size(), 400u) << Stderr();
  std::set<std::string> rcpts;
  for (const nlohmann::json& r : all) {
    EXPECT_EQ(r["status"], "delivered") << r.dump();
    rcpts.insert(r["rcpt"].get<std::string>());
  }
  EXPECT_EQ(rcpts.size(), 400u) << "a recipient was logged twice";
  std::vector<std::string> files;
  for (const std::string& f : ListDir(dir_)) {
    if (absl::StartsWith(f, "accounting.jsonl")) files.push_back(f);
  }
  EXPECT_EQ(files.size(), 2u) << absl::StrJoin(files, " ");
  // The engine writes to the new file after the SIGHUP (the "second" batch came after it).
  std::vector<nlohmann::json> now = ReadJsonLines(log_);
  EXPECT_GE(now.size(), 100u);
  EXPECT_TRUE(WaitForStderr("accounting log " + log_ + " reopened")) << Stderr();
  EXPECT_EQ(Count("deferred"), 0u);
}

// A config that does not load: the engine says why in one line and goes on with the old rules;
// then a good one: its new [[shaping]] rule holds the running engine to 1 message per hour for
// one domain (and the deferrals it causes are classed rate-limit).
TEST_F(ReloadTest, BadConfigKeepsRunningGoodConfigChangesShaping) {
  StartSink("127.0.0.1");
  StartEngine();
  Inject(5, "a.example", "before");
  ASSERT_EQ(WaitForRecords(5).size(), 5u) << Stderr();

  WriteFileOrDie(config_, "[limits]\nmax_conections = 4\n");
  engine_->Signal(SIGHUP);
  ASSERT_TRUE(WaitForStderr("keeping the running configuration")) << Stderr();
  size_t lines = 0;
  for (absl::string_view l : absl::StrSplit(Stderr(), '\n')) {
    if (absl::StrContains(l, "SIGHUP") && !absl::StrContains(l, "reopened")) {
      ++lines;
      EXPECT_TRUE(absl::StrContains(l, "limits.max_conections: unknown key")) << l;
    }
  }
  EXPECT_EQ(lines, 1u) << Stderr();
  Inject(5, "a.example", "after-bad");
  ASSERT_EQ(WaitForRecords(10).size(), 10u) << Stderr();

  WriteFileOrDie(config_,
                 "[limits]\nmax_connections = 4\n[timeouts]\nshutdown = 1\n[[shaping]]\ndomain = \"slow.example\"\n"
                 "max_message_rate = \"1/hour\"\n");
  engine_->Signal(SIGHUP);
  ASSERT_TRUE(WaitForStderr("1 shaping rule(s) loaded")) << Stderr();
  absl::SleepFor(absl::Milliseconds(300));  // the workers adopt it on their next tick
  // One message per hour with a burst of 1: the first goes; of the next three, one waits in
  // memory for its slot (the rate-queue cap: what the rate sends before the first retry, at
  // least rate_burst) and two are deferred at once. The first is sent before the others come:
  // while a job still waits for its connection it fills the cap itself, and whether it does
  // depends on timing (with the MX pool it often finds another domain's parked connection on
  // the same MX host and leaves the queue at once, otherwise it waits for a new connect).
  Inject(1, "slow.example", "slow");
  ASSERT_EQ(WaitForRecords(11).size(), 11u) << Stderr();
  Inject(3, "slow.example", "later");
  std::vector<nlohmann::json> all = WaitForRecords(13);
  auto slow_records = [&all] {
    std::string out;
    for (const nlohmann::json& r : all) {
      if (r["domain"] == "slow.example") out += r.dump() + "\n";
    }
    return out;
  };
  ASSERT_EQ(all.size(), 13u) << slow_records() << Stderr();
  absl::SleepFor(absl::Milliseconds(500));
  all = AllRecords();
  std::map<std::string, int> slow;
  for (const nlohmann::json& r : all) {
    if (r["domain"] != "slow.example") continue;
    ++slow[r["status"].get<std::string>()];
    if (r["status"] == "deferred") {
      EXPECT_EQ(r["class"], "rate-limit") << r.dump();
    }
  }
  EXPECT_EQ(slow["delivered"], 1) << Stderr();
  EXPECT_EQ(slow["deferred"], 2) << Stderr();
  EXPECT_EQ(all.size(), 13u) << slow_records();
}

}  // namespace
}  // namespace mxb::testing
