// The control plane end to end (issue 14): the real mxburst with --http against a real
// mxburst-sink on 127.0.0.1. /metrics parses with Prometheus' reference parser (Debian
// python3-prometheus-client) and its counts match the accounting log; suspend holds a domain's
// mail (the sink receives none of it) and resume delivers it; commands without the bearer token
// get 401; the status page renders in a real headless Chromium (skipped when not installed).
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "tests/integration/fixture.h"

namespace mxb {
namespace {

using testing::Bin;
using testing::FreePort;
using testing::ListDir;
using testing::ReadFileOrDie;
using testing::ReadJsonLines;
using testing::RunCommand;
using testing::SpoolWorld;
using testing::StatusCounts;
using testing::Subprocess;
using testing::WriteFileOrDie;

constexpr char kToken[] = "s3cret-token-for-tests";

class ControlTest : public SpoolWorld {
 protected:
  ControlTest() : SpoolWorld("control") {}

  // mxburst (no --drain: a live engine) with the control plane on a free port. `routes`: the
  // --route specs (default: every domain to the sink); `extra_toml` is appended to the config.
  void StartEngine(std::vector<std::string> routes = {}, const std::string& extra_toml = "") {
    http_port_ = FreePort("127.0.0.1");
    ASSERT_GT(http_port_, 0);
    const std::string token = dir_ + "/token";
    WriteFileOrDie(token, std::string(kToken) + "\n");
    chmod(token.c_str(), 0600);
    WriteFileOrDie(dir_ + "/mxburst.toml",
                   absl::StrCat("[http]\nlisten = \"127.0.0.1:", http_port_,
                                "\"\ntoken_file = \"", token, "\"\ntop_destinations = 2\n",
                                extra_toml));
    if (routes.empty()) routes.push_back(absl::StrCat("*=127.0.0.1:", port_));
    std::vector<std::string> args = {"--config", dir_ + "/mxburst.toml", "--spool", spool_,
                                     "--log", log_, "--workers", "2", "--helo",
                                     "test.mxburst.example", "--quiet"};
    for (const std::string& r : routes) {
      args.push_back("--route");
      args.push_back(r);
    }
    engine_ = testing::StartEngine(args, dir_ + "/engine.out", dir_ + "/engine.err");
    ASSERT_TRUE(engine_->started());
    client_ = std::make_unique<httplib::Client>("127.0.0.1", http_port_);
    for (int i = 0; i < 200; ++i) {
      if (client_->Get("/api/v1/status")) return;
      absl::SleepFor(absl::Milliseconds(50));
    }
    FAIL() << "the control endpoint did not come up: " << ReadFileOrDie(dir_ + "/engine.err");
  }

  void TearDown() override {
    if (engine_) {
      engine_->Signal(SIGTERM);
      EXPECT_EQ(engine_->Wait(absl::Seconds(60)), 0) << ReadFileOrDie(dir_ + "/engine.err");
    }
  }

  void Inject(int count, const std::string& domains, const std::string& prefix,
              const std::string& job = "") {
    std::vector<std::string> argv = {Bin("tools/mxburst-inject"), "--spool", spool_, "--count",
                                     absl::StrCat(count), "--domain-list", domains,
                                     "--rcpt-local-prefix", prefix};
    if (!job.empty()) {
      argv.push_back("--job");
      argv.push_back(job);
    }
    ASSERT_EQ(RunCommand(argv, dir_ + "/inject.log"), 0);
  }

  // mxburstctl against this engine (--url, --token-file); its stdout, *rc its exit code.
  std::string Ctl(std::vector<std::string> args, int* rc = nullptr, bool live = true) {
    std::vector<std::string> argv = {Bin("tools/mxburstctl")};
    argv.insert(argv.end(), args.begin(), args.end());
    if (live) {
      for (const std::string& a : {std::string("--url"), absl::StrCat("127.0.0.1:", http_port_),
                                   std::string("--token-file"), dir_ + "/token"}) {
        argv.push_back(a);
      }
    }
    const int code = RunCommand(argv, dir_ + "/ctl.out");
    if (rc != nullptr) *rc = code;
    return ReadFileOrDie(dir_ + "/ctl.out");
  }

  // Waits until the API shows `domain` with `queued` jobs.
  nlohmann::json WaitForQueued(const std::string& domain, int queued) {
    nlohmann::json d;
    for (int i = 0; i < 100; ++i) {
      d = Destination(domain);
      if (!d.is_null() && d["queued"] == queued) break;
      absl::SleepFor(absl::Milliseconds(50));
    }
    return d;
  }

  // Waits until the accounting log holds `n` records.
  std::vector<nlohmann::json> WaitForLog(size_t n) {
    std::vector<nlohmann::json> log;
    for (int i = 0; i < 600; ++i) {
      log = access(log_.c_str(), F_OK) == 0 ? ReadJsonLines(log_) : log;
      if (log.size() >= n) break;
      absl::SleepFor(absl::Milliseconds(50));
    }
    return log;
  }

  httplib::Result Command(const std::string& what, const std::string& form, bool token = true) {
    httplib::Headers h;
    if (token) h.emplace("Authorization", absl::StrCat("Bearer ", kToken));
    return client_->Post(absl::StrCat("/api/v1/", what).c_str(), h, form,
                         "application/x-www-form-urlencoded");
  }

  // Files the sink stored for recipients whose address contains `needle`.
  size_t Received(const std::string& needle) {
    size_t n = 0;
    for (const std::string& f : ListDir(received_)) {
      if (!absl::EndsWith(f, ".eml")) continue;
      if (absl::StrContains(ReadFileOrDie(received_ + "/" + f), needle)) ++n;
    }
    return n;
  }

  nlohmann::json Destination(const std::string& domain) {
    auto r = client_->Get("/api/v1/destinations");
    if (!r || r->status != 200) return {};
    const nlohmann::json all = nlohmann::json::parse(r->body);
    for (const auto& d : all["destinations"]) {
      if (d["domain"] == domain) return d;
    }
    return {};
  }

  int http_port_ = 0;
  std::unique_ptr<Subprocess> engine_;
  std::unique_ptr<httplib::Client> client_;
};

// Issue 17 item 6: a destination idle for [timeouts] destination_idle is forgotten (its memory
// follows the domains in use, not every domain ever seen), and mail for it later simply creates
// it again. Before, /api/v1/destinations listed every destination until the process ended.
TEST_F(ControlTest, IdleDestinationIsForgottenAndComesBack) {
  StartSink("127.0.0.1");
  StartEngine({}, "[timeouts]\ndestination_idle = 1\n");
  Inject(3, "back.example", "first");
  ASSERT_EQ(WaitForLog(3).size(), 3u);
  ASSERT_FALSE(Destination("back.example").is_null());
  bool gone = false;
  for (int i = 0; i < 300 && !gone; ++i) {  // idle 1 s + the idle connection's 2 s + a tick
    gone = Destination("back.example").is_null();
    if (!gone) absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_TRUE(gone) << client_->Get("/api/v1/destinations")->body;
  Inject(3, "back.example", "again");
  std::vector<nlohmann::json> log = WaitForLog(6);
  ASSERT_EQ(log.size(), 6u);
  EXPECT_EQ(StatusCounts(log)["delivered"], 6);
  EXPECT_FALSE(Destination("back.example").is_null());
}

// Counts on /metrics equal the accounting log's records per status; the whole page parses with
// prometheus_client's parser (names, types, labels, histogram shape).
TEST_F(ControlTest, MetricsParseAndMatchTheAccountingLog) {
  StartSink("127.0.0.1", {"--reject-rcpt", "user7@", "--tempfail-rcpt", "user5@"});
  StartEngine();
  Inject(60, "a.example,b.example,c.example", "user");
  std::vector<nlohmann::json> log = WaitForLog(60);
  ASSERT_EQ(log.size(), 60u);
  std::map<std::string, int> by_status = StatusCounts(log);
  ASSERT_GT(by_status["delivered"], 0);
  ASSERT_GT(by_status["bounced"], 0);
  ASSERT_GT(by_status["deferred"], 0);

  auto r = client_->Get("/metrics");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  WriteFileOrDie(dir_ + "/metrics.txt", r->body);
  const int rc = RunCommand({"/usr/bin/python3", std::string(MXB_SOURCE_DIR) +
                                            "/tests/integration/control_metrics.py",
                             dir_ + "/metrics.txt"},
                            dir_ + "/samples.jsonl");
  if (rc == 3) GTEST_SKIP() << "python3-prometheus-client is not installed (tools/setup.sh)";
  ASSERT_EQ(rc, 0) << ReadFileOrDie(dir_ + "/samples.jsonl");

  std::map<std::string, double> recipients;
  std::map<std::string, std::string> types;
  double claimed = -1, hist_count = -1, inf_bucket = -1, by_source_delivered = 0;
  size_t per_destination = 0;
  std::map<std::string, double> by_class;
  for (const nlohmann::json& s : ReadJsonLines(dir_ + "/samples.jsonl")) {
    const std::string name = s["name"];
    types[s["family"]] = s["type"];
    if (name == "mxburst_recipients_total") recipients[s["labels"]["outcome"]] = s["value"];
    if (name == "mxburst_messages_claimed_total") claimed = s["value"];
    if (name == "mxburst_queue_time_seconds_count") hist_count = s["value"];
    if (name == "mxburst_queue_time_seconds_bucket" && s["labels"]["le"] == "+Inf") {
      inf_bucket = s["value"];
    }
    if (name == "mxburst_recipients_by_tls_policy_total" &&
        s["labels"]["outcome"] == "delivered") {
      by_source_delivered += s["value"].get<double>();
    }
    if (name == "mxburst_destination_queued_messages") ++per_destination;
    if (name == "mxburst_recipients_by_class_total" && s["value"].get<double>() > 0) {
      by_class[absl::StrCat(s["labels"]["outcome"].get<std::string>(), " ",
                            s["labels"]["class"].get<std::string>())] = s["value"];
    }
  }
  // Every failure record names its class, and the metric counts them the same way.
  std::map<std::string, double> log_by_class;
  for (const nlohmann::json& rec : log) {
    if (rec["status"] == "delivered") {
      EXPECT_FALSE(rec.contains("class")) << rec.dump();
      continue;
    }
    ASSERT_TRUE(rec.contains("class")) << rec.dump();
    log_by_class[absl::StrCat(rec["status"].get<std::string>(), " ",
                              rec["class"].get<std::string>())] += 1;
  }
  EXPECT_EQ(by_class, log_by_class);
  EXPECT_GT(log_by_class.size(), 0u);
  EXPECT_EQ(recipients["delivered"], by_status["delivered"]);
  EXPECT_EQ(recipients["bounced"], by_status["bounced"]);
  EXPECT_EQ(recipients["deferred"], by_status["deferred"]);
  EXPECT_EQ(recipients["expired"], 0);
  EXPECT_EQ(by_source_delivered, by_status["delivered"]);
  EXPECT_EQ(claimed, 60);
  // Final outcomes only: delivered + bounced.
  EXPECT_EQ(hist_count, by_status["delivered"] + by_status["bounced"]);
  EXPECT_EQ(inf_bucket, hist_count);
  EXPECT_EQ(per_destination, 2u) << "top_destinations = 2 bounds the per-destination series";
  // The parser strips _total from counter family names.
  EXPECT_EQ(types["mxburst_recipients"], "counter");
  EXPECT_EQ(types["mxburst_queue_time_seconds"], "histogram");
  EXPECT_EQ(types["mxburst_connections_open"], "gauge");
}

// A suspended domain's mail stays queued (the sink gets none of it, the API says so, nothing is
// deferred into the retry schedule); other domains are not held up; resume delivers it.
TEST_F(ControlTest, SuspendHoldsADomainAndResumeDeliversIt) {
  StartSink("127.0.0.1");
  StartEngine();
  auto r = Command("suspend", "domain=held.example&duration=10m&reason=maintenance");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  // Commands reach the workers on their next 100 ms tick.
  absl::SleepFor(absl::Milliseconds(500));
  Inject(20, "held.example,free.example", "user");
  std::vector<nlohmann::json> log = WaitForLog(10);
  ASSERT_EQ(log.size(), 10u);
  for (const nlohmann::json& rec : log) {
    EXPECT_EQ(rec["domain"], "free.example");
    EXPECT_EQ(rec["status"], "delivered");
  }
  nlohmann::json d;
  for (int i = 0; i < 100; ++i) {
    d = Destination("held.example");
    if (!d.is_null() && d["queued"] == 10) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_FALSE(d.is_null()) << client_->Get("/api/v1/destinations")->body;
  EXPECT_EQ(d["state"], "suspended");
  EXPECT_EQ(d["queued"], 10);
  EXPECT_EQ(d["suspend_reason"], "maintenance");
  EXPECT_GT(d["oldest_age_seconds"].get<double>(), 0);
  EXPECT_EQ(Received("@held.example"), 0u);
  EXPECT_EQ(Received("@free.example"), 10u);
  EXPECT_EQ(Count("deferred"), 0u);

  r = Command("resume", "domain=held.example");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  log = WaitForLog(20);
  ASSERT_EQ(log.size(), 20u);
  EXPECT_EQ(StatusCounts(log)["delivered"], 20);
  EXPECT_EQ(Received("@held.example"), 10u);
  d = Destination("held.example");
  EXPECT_EQ(d["state"], "ready");
}

// Bounce: what waits for a (suspended) domain bounces at once, with log records and a DSN.
TEST_F(ControlTest, BounceFailsWhatIsQueuedForADomain) {
  StartSink("127.0.0.1");
  StartEngine();
  ASSERT_EQ(Command("suspend", "domain=gone.example&duration=1h")->status, 200);
  absl::SleepFor(absl::Milliseconds(500));
  Inject(5, "gone.example", "user");
  for (int i = 0; i < 100; ++i) {
    nlohmann::json d = Destination("gone.example");
    if (!d.is_null() && d["queued"] == 5) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  auto r = Command("bounce", "domain=gone.example&reason=campaign+cancelled");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  std::vector<nlohmann::json> log = WaitForLog(5);
  ASSERT_EQ(log.size(), 5u);
  for (const nlohmann::json& rec : log) {
    EXPECT_EQ(rec["status"], "bounced");
    EXPECT_TRUE(absl::StrContains(rec.dump(), "campaign cancelled")) << rec.dump();
  }
  EXPECT_EQ(Received("@gone.example"), 0u);
  for (int i = 0; i < 100 && Count("bounces") < 5; ++i) absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(Count("bounces"), 5u);
}

// Stopping the engine while a suspended domain holds mail: the jobs come back (deferred, the
// files in deferred/ for the next run), the engine exits instead of waiting out the suspension.
TEST_F(ControlTest, StopWhileSuspendedKeepsTheMailAndExits) {
  StartSink("127.0.0.1");
  StartEngine();
  ASSERT_EQ(Command("suspend", "domain=held.example&duration=1h")->status, 200);
  absl::SleepFor(absl::Milliseconds(500));
  Inject(3, "held.example", "user");
  nlohmann::json d;
  for (int i = 0; i < 100; ++i) {
    d = Destination("held.example");
    if (!d.is_null() && d["queued"] == 3) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_EQ(d["queued"], 3);
  engine_->Signal(SIGTERM);
  EXPECT_EQ(engine_->Wait(absl::Seconds(60)), 0) << ReadFileOrDie(dir_ + "/engine.err");
  engine_.reset();
  EXPECT_EQ(Count("deferred"), 3u);
  EXPECT_EQ(Received("@held.example"), 0u);
}

// Suspend by MX suffix (mxburstctl, live): every domain with an MX host under it is held, the
// others are not; resume delivers the held mail. The command is logged.
TEST_F(ControlTest, SuspendByMxSuffixHoldsEveryDomainUnderIt) {
  StartSink("127.0.0.1");
  StartEngine({absl::StrCat("a.example=mx1.held.example@127.0.0.1:", port_),
               absl::StrCat("b.example=mx2.held.example@127.0.0.1:", port_),
               absl::StrCat("c.example=mx.free.example@127.0.0.1:", port_)});
  int rc = -1;
  std::string out = Ctl({"suspend", "--mx", "held.example", "--duration", "10m", "--reason",
                         "provider maintenance"},
                        &rc);
  ASSERT_EQ(rc, 0) << out;
  absl::SleepFor(absl::Milliseconds(500));
  Inject(9, "a.example,b.example,c.example", "user");
  ASSERT_EQ(WaitForLog(3).size(), 3u);
  EXPECT_EQ(WaitForQueued("a.example", 3)["state"], "suspended");
  EXPECT_EQ(WaitForQueued("b.example", 3)["suspend_reason"], "provider maintenance");
  EXPECT_EQ(Received("@a.example") + Received("@b.example"), 0u);
  EXPECT_EQ(Received("@c.example"), 3u);
  out = Ctl({"queue"});
  EXPECT_TRUE(absl::StrContains(out, "DOMAIN")) << out;
  EXPECT_TRUE(absl::StrContains(out, "suspended")) << out;
  EXPECT_TRUE(absl::StrContains(out, "held.example")) << out;
  ASSERT_EQ((Ctl({"resume", "--mx", "held.example"}, &rc), rc), 0);
  EXPECT_EQ(WaitForLog(9).size(), 9u);
  EXPECT_EQ(Received("@a.example") + Received("@b.example"), 6u);
  EXPECT_TRUE(absl::StrContains(ReadFileOrDie(dir_ + "/engine.err"),
                                "control: POST /api/v1/suspend duration=10m mx=held.example"));
}

// Suspend by job: that job's messages wait, the same domain's other mail goes on; then the
// job's queued mail is bounced by job (log records, DSNs), the rest was never held up.
TEST_F(ControlTest, SuspendAndBounceByJob) {
  StartSink("127.0.0.1");
  StartEngine();
  ASSERT_EQ(Command("suspend", "job=spring-sale&duration=1h")->status, 200);
  absl::SleepFor(absl::Milliseconds(500));
  Inject(4, "shop.example", "sale", "spring-sale");
  Inject(4, "shop.example", "receipt", "receipts");
  std::vector<nlohmann::json> log = WaitForLog(4);
  ASSERT_EQ(log.size(), 4u);
  for (const nlohmann::json& rec : log) EXPECT_EQ(rec["job"], "receipts") << rec.dump();
  nlohmann::json d = WaitForQueued("shop.example", 4);
  EXPECT_EQ(d["held_by_job_suspension"], 4) << d.dump();
  auto r = client_->Get("/api/v1/destinations");
  ASSERT_TRUE(r);
  EXPECT_TRUE(absl::StrContains(r->body, R"("kind":"job","reason":"suspended by the operator")") ||
              absl::StrContains(r->body, R"("target":"spring-sale")"))
      << r->body;
  ASSERT_EQ(Command("bounce", "job=spring-sale&reason=sale+cancelled")->status, 200);
  log = WaitForLog(8);
  ASSERT_EQ(log.size(), 8u);
  int bounced = 0;
  for (const nlohmann::json& rec : log) {
    if (rec["job"] != "spring-sale") continue;
    EXPECT_EQ(rec["status"], "bounced");
    EXPECT_TRUE(absl::StrContains(rec["text"].get<std::string>(), "sale cancelled"));
    ++bounced;
  }
  EXPECT_EQ(bounced, 4);
  EXPECT_EQ(Received("sale"), 0u);
  for (int i = 0; i < 100 && Count("bounces") < 4; ++i) absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(Count("bounces"), 4u);
}

// Mail held by a job suspension keeps its destination alive: [timeouts] destination_idle
// forgets only destinations with nothing queued or held (else the held jobs went with it, never
// delivered, and the engine could not stop). Resume delivers them.
TEST_F(ControlTest, JobHeldMailOutlivesIdleDestinationExpiry) {
  StartSink("127.0.0.1");
  StartEngine({}, "[timeouts]\ndestination_idle = 1\n");
  ASSERT_EQ(Command("suspend", "job=later-sale&duration=1h")->status, 200);
  absl::SleepFor(absl::Milliseconds(500));
  Inject(3, "hold.example", "held", "later-sale");
  EXPECT_EQ(WaitForQueued("hold.example", 3)["held_by_job_suspension"], 3);
  absl::SleepFor(absl::Seconds(3));  // three times destination_idle
  nlohmann::json d = Destination("hold.example");
  ASSERT_FALSE(d.is_null()) << "the destination holding 3 jobs was forgotten";
  EXPECT_EQ(d["queued"], 3) << d.dump();
  ASSERT_EQ(Command("resume", "job=later-sale")->status, 200);
  std::vector<nlohmann::json> log = WaitForLog(3);
  ASSERT_EQ(log.size(), 3u);
  EXPECT_EQ(StatusCounts(log)["delivered"], 3);
  EXPECT_EQ(Received("held"), 3u);
}

// The learned banner strict-tls pins are listed by /api/v1/policy (and so by `mxburstctl policy`
// against a live engine), as `mxburstctl policy --spool` lists them from the file. Before, the
// live listing showed only the workers' policy caches: a pin in force was invisible there.
TEST_F(ControlTest, PolicyListsTheLearnedBannerPins) {
  StartSink("127.0.0.1");
  ASSERT_EQ(mkdir((spool_ + "/policy").c_str(), 0700), 0);
  const int64_t now = absl::ToUnixSeconds(absl::Now());
  WriteFileOrDie(spool_ + "/policy/banner-pins.json",
                 absl::StrCat("{\"pins\":[{\"pattern\":\"mx.pinned.example\",",
                              "\"include_subdomains\":false,\"max_age\":3600,",
                              "\"learned_from\":\"mx.pinned.example\",\"learned\":", now,
                              ",\"expires\":", now + 3600, "}]}\n"));
  StartEngine({}, "[tls]\nbanner_pins = \"learn\"\n");
  auto r = client_->Get("/api/v1/policy");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  const nlohmann::json j = nlohmann::json::parse(r->body);
  size_t pins = 0;
  for (const nlohmann::json& p : j["policies"]) {
    if (p.value("source", "") != "banner-pin") continue;
    ++pins;
    EXPECT_EQ(p["pattern"], "mx.pinned.example") << p.dump();
    EXPECT_EQ(p["expired"], false) << p.dump();
  }
  EXPECT_EQ(pins, 1u) << r->body;
  const std::string listed = Ctl({"policy"});
  EXPECT_TRUE(absl::StrContains(listed, "mx.pinned.example")) << listed;
}

// Retry now: deferred mail (nothing listened on the receiver's port, so the destination is also
// "dead" for a minute) is tried again at once when asked, not after the 5-minute retry delay;
// the message endpoint (and mxburstctl message) follow it from deferred/ to done; with the
// engine gone, mxburstctl falls back to the files and says so.
TEST_F(ControlTest, FlushRetriesDeferredMailNowAndMessageShowsIt) {
  port_ = FreePort("127.0.0.1");  // no sink yet: connections are refused
  StartEngine();
  Inject(3, "later.example", "user");
  std::vector<nlohmann::json> log = WaitForLog(3);
  ASSERT_EQ(log.size(), 3u);
  for (int i = 0; i < 100 && Count("deferred") < 3; ++i) absl::SleepFor(absl::Milliseconds(50));
  ASSERT_EQ(Count("deferred"), 3u);
  const std::string id = log[0]["msgid"];
  auto r = client_->Get(("/api/v1/messages/" + id).c_str());
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  nlohmann::json m = nlohmann::json::parse(r->body);
  EXPECT_EQ(m["location"], "deferred") << r->body;
  ASSERT_EQ(m["recipients"].size(), 1u);
  EXPECT_EQ(m["recipients"][0]["state"], "deferred");
  EXPECT_EQ(m["recipients"][0]["class"], "server-error") << r->body;
  EXPECT_EQ(client_->Get("/api/v1/messages/nope")->status, 404);
  EXPECT_EQ(client_->Get("/api/v1/messages/..")->status, 400);

  // The receiver comes up.
  sink_ = std::make_unique<testing::SinkProcess>(
      dir_, std::vector<std::string>{"--listen", absl::StrCat("127.0.0.1:", port_), "--out-dir",
                                     received_});
  ASSERT_TRUE(sink_->ready()) << sink_->error_text();
  int rc = -1;
  std::string out = Ctl({"flush"}, &rc);
  ASSERT_EQ(rc, 0) << out;
  log = WaitForLog(6);
  ASSERT_EQ(log.size(), 6u) << ReadFileOrDie(dir_ + "/engine.err");
  EXPECT_EQ(StatusCounts(log)["delivered"], 3);
  EXPECT_EQ(Received("@later.example"), 3u);
  EXPECT_TRUE(absl::StrContains(ReadFileOrDie(dir_ + "/engine.err"), "retry now: 3 deferred"));
  out = Ctl({"message", id});
  EXPECT_TRUE(absl::StrContains(out, "done")) << out;
  EXPECT_TRUE(absl::StrContains(out, "delivered")) << out;

  engine_->Signal(SIGTERM);
  ASSERT_EQ(engine_->Wait(absl::Seconds(60)), 0);
  engine_.reset();
  out = Ctl({"queue", "--config", dir_ + "/mxburst.toml", "--spool", spool_}, &rc, false);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_TRUE(absl::StrContains(out, "deferred 0")) << out;
  EXPECT_TRUE(absl::StrContains(ReadFileOrDie(dir_ + "/ctl.out.err"), "no engine answers"));
}

// Mutating calls without (or with a wrong) bearer token are refused and change nothing.
TEST_F(ControlTest, CommandsWithoutTheTokenGet401) {
  StartSink("127.0.0.1");
  StartEngine();
  auto r = Command("suspend", "domain=x.example", /*token=*/false);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  httplib::Headers wrong{{"Authorization", "Bearer nope"}};
  r = client_->Post("/api/v1/suspend", wrong, "domain=x.example",
                    "application/x-www-form-urlencoded");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  Inject(3, "x.example", "user");
  EXPECT_EQ(WaitForLog(3).size(), 3u);
  EXPECT_EQ(Received("@x.example"), 3u);
  EXPECT_TRUE(absl::StrContains(ReadFileOrDie(dir_ + "/engine.err"),
                                "control: POST /api/v1/suspend domain=x.example: 401"));
}

// The status page in a real browser: Debian's chromium, headless, driven over the DevTools
// protocol by control_browser.py — the page shows the delivered count and the destination, a
// mouse click on its "suspend" button (with the token typed in) suspends it, as the API then
// reports. The screenshot is kept as tests/integration/control_dashboard.png in the build tree.
TEST_F(ControlTest, DashboardInChromiumSuspendsADestination) {
  StartSink("127.0.0.1");
  StartEngine();
  Inject(40, "top.example,top.example,top.example,second.example", "user");
  ASSERT_EQ(WaitForLog(40).size(), 40u);
  const std::string shot = std::string(MXB_TEST_OUTPUT_DIR) + "/control_dashboard.png";
  unlink(shot.c_str());
  const int rc = RunCommand(
      {"/usr/bin/python3", std::string(MXB_SOURCE_DIR) + "/tests/integration/control_browser.py",
       absl::StrCat("http://127.0.0.1:", http_port_, "/"), "top.example", kToken, shot},
      dir_ + "/browser.log", absl::Minutes(3));
  if (rc == 3) GTEST_SKIP() << ReadFileOrDie(dir_ + "/browser.log");
  ASSERT_EQ(rc, 0) << ReadFileOrDie(dir_ + "/browser.log");
  EXPECT_EQ(Destination("top.example")["state"], "suspended");
  EXPECT_EQ(Destination("second.example")["state"], "ready");
  struct stat st {};
  ASSERT_EQ(stat(shot.c_str(), &st), 0);
  EXPECT_GT(st.st_size, 1000);
  EXPECT_TRUE(absl::StrContains(ReadFileOrDie(dir_ + "/engine.err"),
                                "control: POST /api/v1/suspend domain=top.example duration=20m: 200"));
}

}  // namespace
}  // namespace mxb
