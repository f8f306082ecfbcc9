// RabbitMQ input end to end (issue 15, tests 1, 2 and 5): real mxburst processes, each with its
// own spool and source address (127.0.0.11..13), consume one durable queue of a real
// rabbitmq-server (started once for the binary, loopback only) and deliver to mxburst-sink on
// 127.0.0.2. Every message is counted at the sink by its unique Message-ID. One ctest entry for
// the whole binary, so the broker starts once.
#include <signal.h>
#include <sys/stat.h>

#include <cstdlib>
#include <map>
#include <set>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "queue/spool.h"
#include "tests/integration/cluster_fixture.h"
#include "tests/integration/fixture.h"

namespace mxb {
namespace {

using testing::Bin;
using testing::CountReceived;
using testing::PickupFile;
using testing::RabbitMqServer;
using testing::ReadFileOrDie;
using testing::ReceivedIds;
using testing::Subprocess;

constexpr int kPrefetch = 50;

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && std::atoi(v) > 0 ? std::atoi(v) : fallback;
}

// One mxburst node: its spool, source address and stderr; restartable on the same spool.
struct Node {
  std::string dir, source;
  int starts = 0;
  std::unique_ptr<Subprocess> proc;
  std::string err() const { return absl::StrCat(dir, "/stderr-", starts); }
};

class AmqpInputTest : public testing::SpoolWorld {
 protected:
  AmqpInputTest() : SpoolWorld("amqp") {}

  static void SetUpTestSuite() {
    if (!RabbitMqServer::Missing().empty()) return;
    broker_dir_ = testing::MakeTempDir("amqp-broker");
    broker_ = new RabbitMqServer(broker_dir_ + "/rabbit");
    broker_up_ = broker_->Start();
  }
  static void TearDownTestSuite() {
    delete broker_;
    broker_ = nullptr;
  }

  void SetUp() override {
    SpoolWorld::SetUp();
    if (std::string why = RabbitMqServer::Missing(); !why.empty()) GTEST_SKIP() << why;
    ASSERT_TRUE(broker_up_) << "rabbitmq-server did not start: " << broker_->log_path();
    queue_ = absl::StrCat("mxburst.test.", ::testing::UnitTest::GetInstance()->current_test_info()->name());
    ASSERT_TRUE(testing::DeleteQueue(broker_->url(), queue_).ok());
    StartSink("127.0.0.2", {"--quiet"});
  }

  void TearDown() override {
    for (auto& n : nodes_) StopNode(n.get());
  }

  void Publish(int count, const std::string& tag) {
    std::vector<std::string> bodies;
    for (int i = 0; i < count; ++i) bodies.push_back(PickupFile(absl::StrCat(tag, "-", i), i % 7));
    ASSERT_TRUE(testing::PublishAmqp(broker_->url(), queue_, bodies).ok());
  }

  // `extra` is more TOML; `consume` = false leaves out [input.amqp] (spool input only).
  Node* AddNode(int index, const std::string& extra = "", bool consume = true) {
    auto n = std::make_unique<Node>();
    n->dir = absl::StrCat(dir_, "/node", index);
    n->source = absl::StrCat("127.0.0.", 10 + index);
    mkdir(n->dir.c_str(), 0755);
    testing::WriteFileOrDie(
        n->dir + "/mxburst.toml",
        absl::StrCat("spool = \"", n->dir, "/spool\"\ndefault_source_pool = \"own\"\n",
                     "[source_pools.own]\naddresses = [\"", n->source, "\"]\n",
                     consume ? absl::StrCat("[input.amqp]\nurl = \"", broker_->url(),
                                            "\"\nqueue = \"", queue_, "\"\nprefetch = ",
                                            kPrefetch, "\n")
                             : "",
                     "[limits]\nmax_in_flight = 500\n", extra));
    nodes_.push_back(std::move(n));
    StartNode(nodes_.back().get());
    return nodes_.back().get();
  }

  void StartNode(Node* n) {
    ++n->starts;
    n->proc = std::make_unique<Subprocess>(
        std::vector<std::string>{Bin("engine/mxburst"), "--allow-root", "--config",
                                 n->dir + "/mxburst.toml", "--route",
                                 absl::StrCat("*=127.0.0.2:", port_), "--workers", "1", "--log",
                                 n->dir + "/accounting.jsonl", "--helo", "node.cluster.test"},
        "", n->err());
  }

  void StopNode(Node* n) {
    if (!n->proc) return;
    n->proc->Signal(SIGTERM);
    EXPECT_EQ(n->proc->Wait(absl::Seconds(60)), 0) << ReadFileOrDie(n->err());
    n->proc.reset();
  }

  // Waits until the sink holds `count` messages (or the deadline); returns what it holds.
  size_t WaitForSink(size_t count, absl::Duration timeout = absl::Seconds(150)) {
    const absl::Time deadline = absl::Now() + timeout;
    size_t n = CountReceived(received_);
    while (n < count && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(100));
      n = CountReceived(received_);
    }
    return n;
  }

  // Received copies per unique id; checks every published id arrived, returns duplicates.
  int CheckAllOnce(int count, const std::string& tag) {
    std::map<std::string, int> ids = ReceivedIds({received_});
    int dups = 0, missing = 0;
    for (int i = 0; i < count; ++i) {
      auto it = ids.find(absl::StrCat("<", tag, "-", i, "@cluster.test>"));
      if (it == ids.end()) {
        ++missing;
      } else {
        dups += it->second - 1;
      }
    }
    EXPECT_EQ(missing, 0) << "messages lost";
    EXPECT_EQ(ids.size(), static_cast<size_t>(count)) << "ids the test did not publish";
    return dups;
  }

  // Messages the sink got from each source address.
  std::map<std::string, int> BySource() {
    std::map<std::string, int> out;
    for (const std::string& name : testing::ListDir(received_)) {
      if (!absl::EndsWith(name, ".env")) continue;
      for (absl::string_view line : absl::StrSplit(ReadFileOrDie(received_ + "/" + name), '\n')) {
        if (absl::ConsumePrefix(&line, "peer: ")) ++out[std::string(line.substr(0, line.find(':')))];
      }
    }
    return out;
  }

  static inline std::string broker_dir_;
  static inline RabbitMqServer* broker_ = nullptr;
  static inline bool broker_up_ = false;
  std::string queue_;
  std::vector<std::unique_ptr<Node>> nodes_;
};

// Test 1: three nodes, one queue, every message delivered exactly once (no faults).
TEST_F(AmqpInputTest, ThreeNodesShareOneQueueEveryMessageOnce) {
  const int count = EnvInt("MXB_AMQP_MESSAGES", 20000);
  Publish(count, "t1");
  for (int i = 1; i <= 3; ++i) AddNode(i);
  const absl::Time start = absl::Now();
  EXPECT_EQ(WaitForSink(count), static_cast<size_t>(count));
  const absl::Duration took = absl::Now() - start;
  absl::SleepFor(absl::Milliseconds(500));  // a late duplicate would show up by now
  for (auto& n : nodes_) StopNode(n.get());
  EXPECT_EQ(CheckAllOnce(count, "t1"), 0);
  std::map<std::string, int> by = BySource();
  for (int i = 1; i <= 3; ++i) {
    EXPECT_GT(by[absl::StrCat("127.0.0.", 10 + i)], 0) << "node " << i << " delivered nothing";
  }
  EXPECT_EQ(testing::QueueReady(broker_->url(), queue_), 0);
  std::printf("[ measure  ] %d messages over 3 nodes in %.1f s (%.0f msgs/s); per node:", count,
              absl::ToDoubleSeconds(took), count / absl::ToDoubleSeconds(took));
  for (auto& [ip, n] : by) std::printf(" %s=%d", ip.c_str(), n);
  std::printf("\n");
}

// Test 2: kill -9 one node mid-run, restart it later: nothing lost, the others carry on, and
// the duplicates stay within the killed node's windows — deliveries it had spooled but not yet
// acked (≤ prefetch), plus messages the sink had accepted whose outcome it had not journaled
// (README "Duplicate bound per crash"; ≤ its in-flight messages).
TEST_F(AmqpInputTest, KillNineOneNodeNothingLostDuplicatesWithinItsWindow) {
  const int count = EnvInt("MXB_AMQP_KILL_MESSAGES", 6000);
  Publish(count, "t2");
  for (int i = 1; i <= 3; ++i) AddNode(i);
  ASSERT_GE(WaitForSink(count / 4), static_cast<size_t>(count / 4));
  Node* victim = nodes_[1].get();
  victim->proc->Signal(SIGKILL);
  EXPECT_EQ(victim->proc->Wait(absl::Seconds(10)), 128 + SIGKILL);
  victim->proc.reset();
  const size_t at_kill = CountReceived(received_);
  // The two others carry on meanwhile (and take the victim's unacked deliveries).
  EXPECT_GE(WaitForSink(at_kill + count / 4), at_kill + count / 4) << "the others stalled";
  StartNode(victim);
  WaitForSink(count);
  // Wait until nothing is left anywhere, then for stragglers.
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (ReceivedIds({received_}).size() < static_cast<size_t>(count) && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(200));
  }
  absl::SleepFor(absl::Milliseconds(500));
  for (auto& n : nodes_) StopNode(n.get());
  const int dups = CheckAllOnce(count, "t2");
  EXPECT_LE(dups, kPrefetch + 500) << "duplicates beyond the killed node's windows";
  std::printf("[ measure  ] kill -9 of one of 3 nodes with %d messages: %d duplicate(s) "
              "(bound: prefetch %d + in-flight 500)\n", count, dups, kPrefetch);
}

// Test 5: the broker restarts mid-run: no loss, consumption resumes, one log line per state
// change (not one per reconnect attempt).
TEST_F(AmqpInputTest, BrokerRestartMidRunNothingLostConsumptionResumes) {
  const int count = EnvInt("MXB_AMQP_RESTART_MESSAGES", 6000);
  Publish(count, "t5");
  for (int i = 1; i <= 2; ++i) AddNode(i);
  ASSERT_GE(WaitForSink(count / 4), static_cast<size_t>(count / 4));
  broker_->Stop();
  const size_t while_down = CountReceived(received_);
  // Every node sees the broker gone (its "reconnecting" line) before it comes back: a bounded
  // poll instead of a fixed sleep.
  for (const absl::Time until = absl::Now() + absl::Seconds(30); absl::Now() < until;) {
    bool all = true;
    for (auto& n : nodes_) all = all && absl::StrContains(ReadFileOrDie(n->err()), "reconnecting");
    if (all) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_TRUE(broker_->Start()) << "the broker did not come back: " << broker_->log_path();
  EXPECT_GE(WaitForSink(count), static_cast<size_t>(count));
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (ReceivedIds({received_}).size() < static_cast<size_t>(count) && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(200));
  }
  for (auto& n : nodes_) StopNode(n.get());
  const int dups = CheckAllOnce(count, "t5");
  EXPECT_LE(dups, 2 * kPrefetch) << "duplicates beyond the unacked windows";
  for (auto& n : nodes_) {
    const std::string err = ReadFileOrDie(n->err());
    int down = 0, up = 0;
    for (absl::string_view line : absl::StrSplit(err, '\n')) {
      if (absl::StrContains(line, "mxburst: amqp:") && absl::StrContains(line, "reconnecting")) ++down;
      if (absl::StrContains(line, "mxburst: amqp:") && absl::StrContains(line, "consuming queue")) ++up;
    }
    EXPECT_GE(down, 1) << err;
    EXPECT_LE(down, 2) << "one line per state change, not per retry:\n" << err;
    EXPECT_GE(up, 2) << err;
  }
  std::printf("[ measure  ] broker restart with %d messages (%zu at the sink when it stopped): "
              "%d duplicate(s)\n", count, while_down, dups);
}

// Lines of a file, without the empty ones.
std::vector<std::string> Lines(const std::string& path) {
  std::vector<std::string> out;
  for (absl::string_view l : absl::StrSplit(ReadFileOrDie(path), '\n', absl::SkipEmpty())) {
    out.emplace_back(l);
  }
  return out;
}

int Occurrences(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// The header form (input/amqp_envelope.h): bare RFC 5322 messages whose AMQP headers carry
// x-sender and x-receiver (an array) reach exactly the header recipients; in the same queue a
// body-form message still works, and a header envelope with a line break in a recipient goes to
// bad/ with a .why naming the header (acknowledged: the queue ends empty, nothing is lost).
TEST_F(AmqpInputTest, HeaderEnvelopeDeliversToTheHeaderRecipients) {
  const int count = 40;
  std::vector<std::string> bodies;
  std::vector<testing::HeaderEnvelope> envelopes;
  for (int i = 0; i < count; ++i) {
    bodies.push_back(absl::StrCat("From: news@esp.example\nTo: list@esp.example\nMessage-ID: <hd-",
                                  i, "@cluster.test>\nSubject: headers\n\nenvelope in headers\n"));
    envelopes.push_back({"<bounce@esp.example>",
                         {absl::StrCat("<a-", i, "@dom-1.example>"), absl::StrCat("b-", i, "@dom-2.example")}});
  }
  // A recipient with a line break would add an envelope line: refused.
  bodies.push_back("From: x@esp.example\nMessage-ID: <hd-bad@cluster.test>\n\nbad\n");
  envelopes.push_back({"<bounce@esp.example>", {"<ok@dom-1.example>\nx-receiver: <evil@dom-3.example>"}});
  ASSERT_TRUE(testing::PublishAmqp(broker_->url(), queue_, bodies, &envelopes).ok());
  Publish(1, "body-form");
  Node* n = AddNode(1);
  EXPECT_EQ(WaitForSink(2 * count + 1), static_cast<size_t>(2 * count + 1));
  StopNode(n);
  std::map<std::string, std::set<std::string>> rcpts;  // Message-ID -> envelope recipients
  for (const std::string& name : testing::ListDir(received_)) {
    if (!absl::EndsWith(name, ".env")) continue;
    const std::string stem = received_ + "/" + name.substr(0, name.size() - 4);
    const std::string id = testing::MessageIdOf(ReadFileOrDie(stem + ".eml"));
    for (absl::string_view line : absl::StrSplit(ReadFileOrDie(stem + ".env"), '\n')) {
      if (absl::ConsumePrefix(&line, "rcpt-to: ")) rcpts[id].insert(std::string(line));
    }
  }
  for (int i = 0; i < count; ++i) {
    const std::set<std::string> want = {absl::StrCat("a-", i, "@dom-1.example"),
                                        absl::StrCat("b-", i, "@dom-2.example")};
    EXPECT_EQ(rcpts[absl::StrCat("<hd-", i, "@cluster.test>")], want) << i;
  }
  EXPECT_EQ(rcpts["<body-form-0@cluster.test>"].size(), 1u);
  EXPECT_EQ(rcpts.count("<hd-bad@cluster.test>"), 0u);
  std::vector<std::string> why;
  for (const std::string& name : testing::ListDir(n->dir + "/spool/bad")) {
    if (absl::EndsWith(name, ".why")) why.push_back(ReadFileOrDie(n->dir + "/spool/bad/" + name));
  }
  ASSERT_EQ(why.size(), 1u);
  EXPECT_TRUE(absl::StrContains(why[0], "AMQP header x-receiver[0]: contains CR, LF or NUL")) << why[0];
  EXPECT_EQ(testing::QueueReady(broker_->url(), queue_), 0);
}

// [output.amqp]: every accounting record, byte for byte, arrives once on a queue bound to the
// exchange with the configured routing key, and every delivered recipient has its record there.
TEST_F(AmqpInputTest, OutcomeStreamCarriesEveryDeliveredRecipientsRecord) {
  const int count = EnvInt("MXB_AMQP_OUTCOME_MESSAGES", 500);
  const std::string outcomes = queue_ + ".outcomes", key = "mxb.outcome." + queue_;
  ASSERT_TRUE(testing::DeleteQueue(broker_->url(), outcomes).ok());
  ASSERT_TRUE(testing::BindQueue(broker_->url(), outcomes, "amq.topic", key).ok());
  Publish(count, "oc");
  Node* n = AddNode(1, absl::StrCat("[output.amqp]\nurl = \"", broker_->url(),
                                    "\"\nrouting_key = \"", key, "\"\n"));
  EXPECT_EQ(WaitForSink(count), static_cast<size_t>(count));
  StopNode(n);  // the stream publishes the last records and collects their confirms first
  const std::vector<std::string> records = Lines(n->dir + "/accounting.jsonl");
  absl::StatusOr<std::vector<std::string>> got = testing::TakeAll(broker_->url(), outcomes);
  ASSERT_TRUE(got.ok()) << got.status();
  std::multiset<std::string> want(records.begin(), records.end());
  std::multiset<std::string> streamed(got->begin(), got->end());
  int delivered = 0, not_once = 0;
  std::string example;
  for (const std::string& r : records) {
    if (!absl::StrContains(r, "\"status\":\"delivered\"")) continue;
    ++delivered;
    if (streamed.count(r) != 1) {
      ++not_once;
      example = r;
    }
  }
  EXPECT_EQ(delivered, count);
  EXPECT_EQ(not_once, 0) << "delivered recipients' records not streamed exactly once, e.g. "
                         << example;
  EXPECT_EQ(streamed.size(), want.size());
  EXPECT_TRUE(streamed == want) << "the stream differs from the accounting log";
  const std::string err = ReadFileOrDie(n->err());
  EXPECT_EQ(Occurrences(err, "amqp output: publishing outcomes"), 1) << err;
  EXPECT_EQ(Occurrences(err, "not confirmed by the broker"), 0) << err;
}

// [output.amqp] with no broker: delivery and the local log go on at full pace, the bounded queue
// fills and drops are counted in the metrics, with one line for the state change (not one per
// record or retry).
TEST_F(AmqpInputTest, OutcomeStreamBrokerDownDeliveryGoesOnDropsCounted) {
  const int count = 200;
  const int http_port = testing::FreePort("127.0.0.1");
  const int dead_port = testing::FreePort("127.0.0.1");  // nothing listens there
  const std::string spool = dir_ + "/node1/spool";  // AddNode(1)'s, filled before it starts
  mkdir((dir_ + "/node1").c_str(), 0755);
  ASSERT_TRUE(Spool::Open(spool).ok());
  for (int i = 0; i < count; ++i) {
    ASSERT_TRUE(InjectFile(spool, absl::StrCat("down-", i, ".eml"),
                           PickupFile(absl::StrCat("down-", i), i % 7)).ok());
  }
  Node* n = AddNode(1,
                    absl::StrCat("[http]\nlisten = \"127.0.0.1:", http_port, "\"\n",
                                 "[output.amqp]\nurl = \"amqp://guest:guest@127.0.0.1:", dead_port,
                                 "\"\nmax_queued = 8\n"),
                    /*consume=*/false);
  EXPECT_EQ(WaitForSink(count), static_cast<size_t>(count));
  // The records follow the deliveries within a group commit: poll the metrics, bounded.
  std::string metrics;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  do {
    absl::SleepFor(absl::Milliseconds(100));
    httplib::Client c("127.0.0.1", http_port);
    if (auto r = c.Get("/metrics"); r && r->status == 200) metrics = r->body;
  } while (!absl::StrContains(metrics, absl::StrCat(
               "mxburst_amqp_output_records_total{stage=\"offered\"} ", count)) &&
           absl::Now() < deadline);
  EXPECT_TRUE(absl::StrContains(metrics, absl::StrCat(
      "mxburst_amqp_output_records_total{stage=\"offered\"} ", count))) << metrics;
  EXPECT_TRUE(absl::StrContains(metrics, absl::StrCat(
      "mxburst_amqp_output_dropped_total{reason=\"queue_full\"} ", count - 8))) << metrics;
  EXPECT_TRUE(absl::StrContains(metrics, "mxburst_amqp_output_connected 0")) << metrics;
  StopNode(n);
  int delivered = 0;
  for (const std::string& r : Lines(n->dir + "/accounting.jsonl")) {
    delivered += absl::StrContains(r, "\"status\":\"delivered\"") ? 1 : 0;
  }
  EXPECT_EQ(delivered, count) << "the local log is the source of truth";
  const std::string err = ReadFileOrDie(n->err());
  EXPECT_EQ(Occurrences(err, "amqp output: queue full"), 1) << err;
  EXPECT_EQ(Occurrences(err, "retrying with back-off"), 1) << "one line per state change:\n" << err;
  EXPECT_EQ(Occurrences(err, "stopping with 8 record(s) not confirmed"), 1) << err;
}

}  // namespace
}  // namespace mxb
