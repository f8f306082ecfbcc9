// engine/destination.h without a ring: scheduling (how many connections, when, to which hop),
// pool choice (source addresses, budgets), idle reuse, dead destinations, the rate-queue cap,
// MX answers and the TLS policy a connection is opened with.
//
// The Destination under test is the real one, with a real ShapingTable, PolicyCache and the real
// tls/ policy decision. Its DestinationHost is TestWorker below: the worker's side of that seam
// without io_uring — it records what the destination asks for (connect, transfer, park, quit,
// complete) and the test plays the connections' part by calling the same ConnectionOwner
// methods engine/connection.cc calls, in the same order (OnClosing before OnFailedBeforeReady,
// OnClosed once the slot is free). The ring-backed path is covered end to end by
// tests/integration (real sink on loopback).
#include "engine/destination.h"

#include <arpa/inet.h>
#include <malloc.h>
#include <netinet/in.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "dns/static_routes.h"
#include "engine/config.h"
#include "engine/mx_pool.h"
#include "gtest/gtest.h"

namespace mxb {
namespace {

sockaddr_storage Addr(const std::string& ip, uint16_t port = 0) {
  sockaddr_storage ss{};
  if (ip.find(':') != std::string::npos) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    inet_pton(AF_INET6, ip.c_str(), &a->sin6_addr);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    inet_pton(AF_INET, ip.c_str(), &a->sin_addr);
  }
  return ss;
}

class TestWorker : public DestinationHost {
 public:
  struct Connected {
    ConnRef ref;
    ConnectionOwner* owner;
    ConnectSpec spec;
  };

  int64_t now_ms() const override { return now; }
  bool stopping() const override { return stop; }
  void Complete(DeliveryJob* job) override { completed.push_back(job); }
  void Throttle(Destination* d) override { throttled.push_back(d); }
  void WakeAt(int64_t at_ms) override { wake_at.push_back(at_ms); }
  void ResolveMx(Destination* d) override { resolving.push_back(d); }
  absl::StatusOr<ConnRef> Connect(ConnectionOwner* owner, ConnectSpec spec) override {
    if (!connect_error.empty()) return absl::UnavailableError(connect_error);
    if (local_shortage) return absl::ResourceExhaustedError("socket: Too many open files");
    ConnRef ref{next_slot++, 7};
    connected.push_back({ref, owner, std::move(spec)});
    parked.resize(next_slot, false);
    return ref;
  }
  bool Transfer(uint32_t slot, DeliveryJob* job) override {
    transfers.emplace_back(slot, job);
    return true;  // under way: the test finishes it
  }
  void Quit(uint32_t slot) override { quits.push_back(slot); }
  void Park(uint32_t slot, int64_t until_ms) override {
    parked[slot] = true;
    park_until.push_back(until_ms);
  }
  bool Unpark(ConnRef c) override {
    if (c.slot >= parked.size() || !parked[c.slot]) return false;
    parked[c.slot] = false;
    return true;
  }
  void Reown(uint32_t /*slot*/, ConnectionOwner* /*owner*/) override {}
  bool IsParked(uint32_t slot) const override { return slot < parked.size() && parked[slot]; }

  // The connection in `slot` failed before it was ready, as Connection reports it.
  void FailBeforeReady(uint32_t slot, const std::string& why) {
    ConnectionOwner* o = connected.at(slot).owner;
    parked[slot] = false;
    o->OnClosing(slot, /*was_connecting=*/true);
    AttemptInfo a;
    a.mx = connected.at(slot).spec.mx;
    o->OnFailedBeforeReady(slot, why, "4.4.1", a);
    o->OnClosed(slot);
  }
  // The transaction of `slot` ended: its job goes back, the session is ready again.
  void FinishTransaction(uint32_t slot, DeliveryJob* job) {
    ConnectionOwner* o = connected.at(slot).owner;
    job->outcomes.assign(job->rcpt_index.size(), RecipientOutcome{});
    for (RecipientOutcome& r : job->outcomes) r.klass = DeliveryClass::kDelivered;
    o->OnReplyCode(slot, 250);
    o->OnJobDone(job);
    o->OnReady(slot, /*first=*/false);
  }

  int64_t now = 1000000;
  bool stop = false;
  std::string connect_error;
  bool local_shortage = false;  // Connect() answers as the worker does under EMFILE
  int64_t LocalRetryAtMs() const override { return now + 40; }
  uint32_t next_slot = 0;
  std::vector<Connected> connected;
  std::vector<std::pair<uint32_t, DeliveryJob*>> transfers;
  std::vector<DeliveryJob*> completed;
  std::vector<Destination*> throttled;
  std::vector<int64_t> wake_at;
  std::vector<Destination*> resolving;
  std::vector<uint32_t> quits;
  std::vector<bool> parked;
  std::vector<int64_t> park_until;
};

class DestinationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_.max_connections_per_destination = 4;
    config_.idle_timeout = absl::Seconds(2);
  }

  // Builds the context; call after config_ / shaping_config_ are set.
  void Build(std::vector<std::string> routes) {
    shaping_ = std::make_unique<ShapingTable>(shaping_config_);
    auto r = StaticRoutes::Parse(routes, 25);
    ASSERT_TRUE(r.ok()) << r.status();
    routes_ = *std::move(r);
    rules_.global = config_.tls_global;
    rules_.domains = config_.domain_tls;
    ctx_.config = &config_;
    ctx_.shaping = shaping_.get();
    ctx_.policy_cache = &cache_;
    ctx_.tls_rules = &rules_;
    ctx_.host = &host_;
  }

  std::unique_ptr<Destination> Make(const std::string& domain, int pool = -1) {
    return std::make_unique<Destination>(&ctx_, domain, pool, routes_.Find(domain));
  }

  DeliveryJob* Job(const std::string& domain) {
    auto j = std::make_unique<DeliveryJob>();
    j->domain = domain;
    j->rcpt_index = {0};
    jobs_.push_back(std::move(j));
    return jobs_.back().get();
  }

  EngineConfig config_;
  ShapingConfig shaping_config_;
  std::unique_ptr<ShapingTable> shaping_;
  StaticRoutes routes_ = *StaticRoutes::Parse({}, 25);
  PolicyCache cache_{100};
  TlsPolicyRules rules_;
  TestWorker host_;
  DestinationContext ctx_;
  std::vector<std::unique_ptr<DeliveryJob>> jobs_;
};

TEST_F(DestinationTest, OpensOneConnectionPerWaitingJobUpToTheLimit) {
  Build({"d.example=127.0.0.2:2525"});
  auto d = Make("d.example");
  d->Accept(Job("d.example"));
  d->Accept(Job("d.example"));
  EXPECT_EQ(host_.connected.size(), 2u);  // not more connections than jobs
  for (int i = 0; i < 5; ++i) d->Accept(Job("d.example"));
  EXPECT_EQ(host_.connected.size(), 4u);  // max_connections_per_destination
  EXPECT_EQ(d->connections(), 4);
  EXPECT_EQ(d->queued(), 7u);
  EXPECT_EQ(SockaddrToString(host_.connected[0].spec.addr), "127.0.0.2:2525");
  EXPECT_FALSE(host_.connected[0].spec.source.has_value());
}

TEST_F(DestinationTest, ReadyConnectionTakesJobsParksWhenEmptyAndIsReused) {
  Build({"d.example=127.0.0.2:2525"});
  auto d = Make("d.example");
  DeliveryJob* a = Job("d.example");
  d->Accept(a);
  ASSERT_EQ(host_.connected.size(), 1u);
  host_.connected[0].owner->OnReady(0, /*first=*/true);
  ASSERT_EQ(host_.transfers.size(), 1u);
  EXPECT_EQ(host_.transfers[0].second, a);

  host_.FinishTransaction(0, a);
  ASSERT_EQ(host_.completed.size(), 1u);
  EXPECT_TRUE(host_.parked[0]);  // nothing waits: kept for idle_timeout
  ASSERT_EQ(host_.park_until.size(), 1u);
  EXPECT_EQ(host_.park_until[0], host_.now + 2000);

  DeliveryJob* b = Job("d.example");
  d->Accept(b);  // the idle connection takes it; no new connection
  EXPECT_EQ(host_.connected.size(), 1u);
  ASSERT_EQ(host_.transfers.size(), 2u);
  EXPECT_EQ(host_.transfers[1], std::make_pair(0u, b));
  EXPECT_FALSE(host_.parked[0]);
}

TEST_F(DestinationTest, MessagesPerConnectionLimitEndsWithQuit) {
  config_.max_messages_per_connection = 1;
  Build({"d.example=127.0.0.2:2525"});
  auto d = Make("d.example");
  DeliveryJob* a = Job("d.example");
  d->Accept(a);
  host_.connected[0].owner->OnReady(0, true);
  host_.FinishTransaction(0, a);
  EXPECT_EQ(host_.quits, std::vector<uint32_t>{0});
  EXPECT_FALSE(host_.parked[0]);
}

TEST_F(DestinationTest, AfterAFailureOneProbeAtATimeThenDeadForAWhile) {
  config_.max_connections_per_destination = 2;
  Build({"d.example=127.0.0.2:2525,127.0.0.3:2525"});
  auto d = Make("d.example");
  for (int i = 0; i < 3; ++i) d->Accept(Job("d.example"));
  ASSERT_EQ(host_.connected.size(), 2u);
  EXPECT_EQ(SockaddrToString(host_.connected[1].spec.addr), "127.0.0.2:2525");

  host_.FailBeforeReady(0, "connect to 127.0.0.2: refused");
  // The other connection is still trying: it decides. Nothing new opens.
  EXPECT_EQ(host_.connected.size(), 2u);
  host_.FailBeforeReady(1, "connect to 127.0.0.2: refused");
  // One probe of the next hop, not max_connections of them.
  ASSERT_EQ(host_.connected.size(), 3u);
  EXPECT_EQ(SockaddrToString(host_.connected[2].spec.addr), "127.0.0.3:2525");
  EXPECT_TRUE(host_.completed.empty());

  host_.FailBeforeReady(2, "connect to 127.0.0.3: refused");
  // Every hop failed: what waits is deferred with the last reason, nothing is retried now.
  ASSERT_EQ(host_.completed.size(), 3u);
  for (DeliveryJob* j : host_.completed) {
    EXPECT_EQ(j->outcomes[0].klass, DeliveryClass::kDeferred);
    EXPECT_EQ(j->outcomes[0].enhanced, "4.4.1");
    EXPECT_EQ(j->outcomes[0].text, "connect to 127.0.0.3: refused");
  }
  EXPECT_EQ(host_.connected.size(), 3u);
  EXPECT_EQ(d->dead_until_ms(), host_.now + 60000);

  d->Accept(Job("d.example"));  // dead: deferred without a connection attempt
  EXPECT_EQ(host_.connected.size(), 3u);
  ASSERT_EQ(host_.completed.size(), 4u);
  EXPECT_TRUE(absl::StrContains(host_.completed[3]->outcomes[0].text,
                                "all next hops failed recently"));
  // No hop was tried for it: no TLS policy applied (the log said "opportunistic" before, whatever
  // the domain's policy was).
  EXPECT_EQ(host_.completed[3]->outcomes[0].attempt.policy, "none");
  EXPECT_EQ(host_.completed[3]->outcomes[0].attempt.policy_source, "none");
}

TEST_F(DestinationTest, ReadySessionClearsFailures) {
  config_.max_connections_per_destination = 2;
  Build({"d.example=127.0.0.2:2525,127.0.0.3:2525"});
  auto d = Make("d.example");
  for (int i = 0; i < 3; ++i) d->Accept(Job("d.example"));
  host_.FailBeforeReady(0, "refused");
  EXPECT_EQ(d->hops().failed_count, 1u);
  host_.connected[1].owner->OnReady(1, /*first=*/true);
  EXPECT_EQ(d->hops().failed_count, 0u);
  EXPECT_EQ(host_.connected.size(), 2u);
  // With the failure forgotten, the next job may open a second connection again (to the hop
  // after the failed one).
  d->Accept(Job("d.example"));
  ASSERT_EQ(host_.connected.size(), 3u);
  EXPECT_EQ(SockaddrToString(host_.connected[2].spec.addr), "127.0.0.3:2525");
}

TEST_F(DestinationTest, SourcePoolRotatesOverAddressesOfTheHopsFamily) {
  SourcePool pool;
  pool.name = "bulk";
  for (const char* ip : {"127.0.0.5", "::1", "127.0.0.6"}) {
    pool.addresses.push_back(ip);
    pool.sockaddrs.push_back(Addr(ip));
  }
  shaping_config_.pools.push_back(pool);
  config_.max_connections_per_destination = 3;
  Build({"d.example=127.0.0.2:2525"});
  auto d = Make("d.example", /*pool=*/0);
  for (int i = 0; i < 3; ++i) d->Accept(Job("d.example"));
  ASSERT_EQ(host_.connected.size(), 3u);
  std::vector<std::string> sources;
  for (const auto& c : host_.connected) {
    ASSERT_TRUE(c.spec.source.has_value());
    sources.push_back(SockaddrIp(*c.spec.source));
  }
  EXPECT_EQ(sources, (std::vector<std::string>{"127.0.0.5", "127.0.0.6", "127.0.0.5"}));
}

TEST_F(DestinationTest, FullSourceBudgetIsSkipped) {
  SourcePool pool;
  pool.name = "bulk";
  for (const char* ip : {"127.0.0.5", "127.0.0.6"}) {
    pool.addresses.push_back(ip);
    pool.sockaddrs.push_back(Addr(ip));
  }
  shaping_config_.pools.push_back(pool);
  ShapingRule rule;
  rule.match = ShapingMatch::kSource;
  rule.pattern = "127.0.0.5";
  rule.limits.max_connections = 1;
  shaping_config_.rules.push_back(rule);
  config_.max_connections_per_destination = 3;
  Build({"d.example=127.0.0.2:2525"});
  auto d = Make("d.example", 0);
  for (int i = 0; i < 3; ++i) d->Accept(Job("d.example"));
  ASSERT_EQ(host_.connected.size(), 3u);
  EXPECT_EQ(SockaddrIp(*host_.connected[0].spec.source), "127.0.0.5");
  EXPECT_EQ(SockaddrIp(*host_.connected[1].spec.source), "127.0.0.6");
  EXPECT_EQ(SockaddrIp(*host_.connected[2].spec.source), "127.0.0.6");  // .5 is full
}

TEST_F(DestinationTest, PoolWithoutTheHopsFamilyFailsTheHop) {
  SourcePool pool;
  pool.name = "v6only";
  pool.addresses.push_back("::1");
  pool.sockaddrs.push_back(Addr("::1"));
  shaping_config_.pools.push_back(pool);
  Build({"d.example=127.0.0.2:2525"});
  auto d = Make("d.example", 0);
  d->Accept(Job("d.example"));
  EXPECT_TRUE(host_.connected.empty());
  ASSERT_EQ(host_.completed.size(), 1u);
  EXPECT_EQ(host_.completed[0]->outcomes[0].text,
            "source pool v6only has no address of 127.0.0.2's family");
}

TEST_F(DestinationTest, SocketErrorFailsTheHopWithItsReason) {
  Build({"d.example=127.0.0.2:2525"});
  host_.connect_error = "socket: Address family not supported by protocol";
  auto d = Make("d.example");
  d->Accept(Job("d.example"));
  ASSERT_EQ(host_.completed.size(), 1u);
  EXPECT_EQ(host_.completed[0]->outcomes[0].text,
            "socket: Address family not supported by protocol");
  EXPECT_EQ(d->connections(), 0);
}

// Issue 17: a local shortage (the worker's Connect says ResourceExhausted) is back-pressure: the
// job stays queued, the hop is not marked failed, the destination is not dead, and the
// connection is opened once the host's retry time has come.
TEST_F(DestinationTest, LocalShortageAtConnectWaitsInsteadOfDeferring) {
  Build({"d.example=127.0.0.2:2525"});
  host_.local_shortage = true;
  auto d = Make("d.example");
  d->Accept(Job("d.example"));
  EXPECT_TRUE(host_.completed.empty());
  EXPECT_EQ(d->queued(), 1u);
  EXPECT_EQ(d->hops().failed_count, 0u);
  EXPECT_EQ(d->dead_until_ms(), 0);
  ASSERT_FALSE(host_.throttled.empty());
  EXPECT_EQ(d->shaping_wake_ms(), host_.now + 40);
  host_.local_shortage = false;
  d->Pump();  // too early: still waiting
  EXPECT_TRUE(host_.connected.empty());
  host_.now += 40;
  d->Pump();
  EXPECT_EQ(host_.connected.size(), 1u);
}

// Issue 17: an idle destination may be forgotten only once nothing can point at it.
TEST_F(DestinationTest, ExpirableOnlyWhenNothingIsQueuedOpenOrPendingForTheIdleTime) {
  Build({"d.example=127.0.0.2:2525"});
  auto d = Make("d.example");
  DeliveryJob* job = Job("d.example");
  d->Accept(job);
  EXPECT_FALSE(d->Expirable(0));  // queued, connecting
  ASSERT_EQ(host_.connected.size(), 1u);
  ConnectionOwner* o = host_.connected[0].owner;
  o->OnReady(0, /*first=*/true);
  host_.FinishTransaction(0, host_.transfers.at(0).second);
  EXPECT_FALSE(d->Expirable(0));  // parked connection
  o->OnClosing(0, /*was_connecting=*/false);
  EXPECT_FALSE(d->Expirable(0));  // closing: its lease is held until OnClosed
  o->OnClosed(0);
  EXPECT_FALSE(d->Expirable(1000));  // just closed
  host_.now += 1000;
  EXPECT_TRUE(d->Expirable(1000));
}

// Issue 17: a dead destination (its deferred mail comes back) is kept while it is dead, so the
// scanner's and its own "not tried" state stays one.
TEST_F(DestinationTest, DeadDestinationIsNotForgottenWhileItIsDead) {
  Build({"d.example=127.0.0.2:2525"});
  auto d = Make("d.example");
  d->Accept(Job("d.example"));
  ASSERT_EQ(host_.connected.size(), 1u);
  host_.FailBeforeReady(0, "connection refused");
  ASSERT_EQ(host_.completed.size(), 1u);  // deferred: every next hop failed
  host_.now += 1000;
  EXPECT_FALSE(d->Expirable(1000));
  host_.now += absl::ToInt64Milliseconds(config_.dead_destination_time);
  EXPECT_TRUE(d->Expirable(1000));
}

// Issue 17: a destination forgotten while the MX pool still names it (the wait-list entry left
// when its queue was bounced) used to be called after it was freed, by the next close of that
// key (MxPool::Closed -> Pump). ForgetIdleDestinations makes the pool forget it first; one with
// a connection or a queued job stays.
TEST_F(DestinationTest, ForgottenDestinationsLeaveNoEntryInTheMxPool) {
  config_.max_connections_per_mx = 1;
  Build({"a.example=127.0.0.2:2525", "b.example=127.0.0.2:2525"});
  MxPool pool(1);
  ctx_.mx_pool = &pool;
  DestinationMap dests;
  dests["a.example"] = Make("a.example");
  dests["b.example"] = Make("b.example");
  dests["a.example"]->Accept(Job("a.example"));
  ASSERT_EQ(host_.connected.size(), 1u);  // a's connection fills the key's cap
  dests["b.example"]->Accept(Job("b.example"));
  EXPECT_EQ(host_.connected.size(), 1u);  // b waits for it
  const std::string key = MxPool::KeyOf(host_.connected[0].spec, -1, /*relaxed=*/false);
  ASSERT_TRUE(pool.HasWaiters(key));
  dests["b.example"]->BounceQueued("operator");  // b's queue is empty; its wait entry stays
  host_.now += 1000;
  std::vector<Destination*> erased;
  EXPECT_EQ(ForgetIdleDestinations(&dests, &pool, 1000,
                                   [&](Destination* d) { erased.push_back(d); }),
            1u);
  EXPECT_EQ(erased.size(), 1u);
  EXPECT_EQ(dests.count("b.example"), 0u);
  ASSERT_EQ(dests.count("a.example"), 1u);  // its connection is opening, its job queued
  EXPECT_FALSE(pool.HasWaiters(key));       // else a's close would pump the freed b
  // a's connection fails: nothing left in the pool that names b.
  host_.FailBeforeReady(0, "connection refused");
  EXPECT_EQ(pool.PopWaiter(key), nullptr);
}

// Issue 17 item 6: the long tail keeps every destination in memory until destination_idle
// (100,000 domains with one message each: 100,000 of them). One whose mail went out and whose
// connection closed costs at most 1 KiB of heap. It cost 1,711 bytes: an empty std::deque of held
// jobs (libstdc++ allocates ~576 bytes for one) and a 128-byte sockaddr_storage per hop.
TEST_F(DestinationTest, AnIdleDestinationCostsAtMostOneKibOfHeap) {
  Build({"*=127.0.0.2:2525"});
  constexpr size_t kN = 2000;
  std::vector<std::string> names;
  std::vector<DeliveryJob*> jobs;
  for (size_t i = 0; i < kN; ++i) {
    names.push_back(absl::StrCat("d", 100000 + i, ".example"));  // as long as the bench's
    jobs.push_back(Job(names.back()));
    jobs.back()->outcomes.resize(1);  // the outcome the test's transaction writes: not counted
  }
  // What the test itself records must not count.
  host_.connected.reserve(kN);
  host_.transfers.reserve(kN);
  host_.completed.reserve(kN);
  host_.parked.reserve(kN + 1);
  host_.park_until.reserve(kN);
  std::vector<std::unique_ptr<Destination>> dests;
  dests.reserve(kN);
  const size_t before = mallinfo2().uordblks;
  for (size_t i = 0; i < kN; ++i) {
    dests.push_back(Make(names[i]));
    Destination* d = dests.back().get();
    d->Accept(jobs[i]);
    ASSERT_EQ(host_.connected.size(), i + 1);
    d->OnReady(static_cast<uint32_t>(i), /*first=*/true);
    host_.FinishTransaction(static_cast<uint32_t>(i), jobs[i]);
    host_.parked[i] = false;  // the idle connection times out and closes
    d->OnClosing(static_cast<uint32_t>(i), /*was_connecting=*/false);
    d->OnClosed(static_cast<uint32_t>(i));
  }
  const size_t after = mallinfo2().uordblks;
  host_.now += 1000;
  for (const auto& d : dests) ASSERT_TRUE(d->Expirable(1000)) << d->domain();
  const size_t per_destination = (after - before) / kN;
  EXPECT_LE(per_destination, 1024u);
  RecordProperty("heap_bytes_per_idle_destination", static_cast<int>(per_destination));
}

// The same shortage reported by a connect completion (EADDRNOTAVAIL: no free local port).
TEST_F(DestinationTest, LocalShortageOfAConnectionWaitsInsteadOfDeferring) {
  Build({"d.example=127.0.0.2:2525"});
  auto d = Make("d.example");
  d->Accept(Job("d.example"));
  ASSERT_EQ(host_.connected.size(), 1u);
  ConnectionOwner* o = host_.connected[0].owner;
  o->OnClosing(0, /*was_connecting=*/true);
  o->OnLocalShortage(0);
  o->OnClosed(0);
  EXPECT_TRUE(host_.completed.empty());
  EXPECT_EQ(d->queued(), 1u);
  EXPECT_EQ(d->hops().failed_count, 0u);
  EXPECT_EQ(d->dead_until_ms(), 0);
  EXPECT_EQ(host_.connected.size(), 1u);  // OnClosed's Pump waits for the retry time
  host_.now += 40;
  d->Pump();
  EXPECT_EQ(host_.connected.size(), 2u);
}

TEST_F(DestinationTest, RateLimitedDestinationKeepsOnlyWhatItsRateSendsBeforeTheFirstRetry) {
  ShapingRule rule;
  rule.match = ShapingMatch::kDomain;
  rule.pattern = "d.example";
  rule.limits.max_message_rate = *ParseMessageRate("1/minute");
  shaping_config_.rules.push_back(rule);
  config_.retry_delays = {absl::Minutes(5)};
  Build({"d.example=127.0.0.2:2525"});
  auto d = Make("d.example");
  for (int i = 0; i < 7; ++i) d->Accept(Job("d.example"));
  EXPECT_EQ(d->queued(), 5u);  // 1/minute x 5 minutes
  ASSERT_EQ(host_.completed.size(), 2u);
  EXPECT_EQ(host_.completed[0]->outcomes[0].text,
            "not tried: 5 messages for d.example already wait for max_message_rate");
  EXPECT_EQ(host_.connected.size(), 1u);  // rate-limited: one connection at a time

  // The first message goes at once; the second waits for its slot, the session is parked.
  host_.connected[0].owner->OnReady(0, true);
  ASSERT_EQ(host_.transfers.size(), 1u);
  host_.FinishTransaction(0, host_.transfers[0].second);
  EXPECT_EQ(host_.transfers.size(), 1u);
  EXPECT_TRUE(host_.parked[0]);
  ASSERT_FALSE(host_.wake_at.empty());
  EXPECT_EQ(host_.wake_at.back(), d->shaping_wake_ms());
  EXPECT_GT(d->shaping_wake_ms(), host_.now);
  // The tick after the slot is due hands the next job to the parked session.
  host_.now = d->shaping_wake_ms();
  d->ResumeIdle();
  ASSERT_EQ(host_.transfers.size(), 2u);
  EXPECT_EQ(host_.transfers[1].first, 0u);
}

TEST_F(DestinationTest, MxAnswerGivesHopsAndNullMxBounces) {
  Build({});
  auto d = Make("d.example");
  d->Accept(Job("d.example"));
  ASSERT_EQ(host_.resolving.size(), 1u);
  EXPECT_EQ(d->state(), Destination::State::kResolving);
  d->Accept(Job("d.example"));  // still resolving: one lookup
  EXPECT_EQ(host_.resolving.size(), 1u);

  MxResult null_mx;
  null_mx.status = DnsStatus::kNullMx;
  d->OnMx(null_mx);
  ASSERT_EQ(host_.completed.size(), 2u);
  EXPECT_EQ(host_.completed[0]->outcomes[0].klass, DeliveryClass::kBounced);
  EXPECT_EQ(host_.completed[0]->outcomes[0].code, 556);
  EXPECT_EQ(host_.completed[0]->outcomes[0].enhanced, "5.1.10");

  d->Accept(Job("d.example"));  // asks again (the resolver's negative cache answers)
  ASSERT_EQ(host_.resolving.size(), 2u);
  MxResult ok;
  ok.status = DnsStatus::kOk;
  ok.dnssec = true;
  MxHost h;
  h.name = "mx1.d.example";
  h.addresses = {Addr("192.0.2.10")};
  ok.hosts.push_back(h);
  d->OnMx(ok);
  ASSERT_EQ(host_.connected.size(), 1u);
  EXPECT_EQ(host_.connected[0].spec.mx, "mx1.d.example");
  EXPECT_TRUE(host_.connected[0].spec.mx_dnssec);
  EXPECT_EQ(SockaddrToString(host_.connected[0].spec.addr), "192.0.2.10:25");
}

TEST_F(DestinationTest, ConnectionCarriesTheHopsTlsPolicy) {
  Build({"a.example=starttls-mx.a.example@127.0.0.2:2525",
         "b.example=smtps-mx.b.example@127.0.0.3:2525"});
  auto a = Make("a.example");
  auto b = Make("b.example");
  a->Accept(Job("a.example"));
  b->Accept(Job("b.example"));
  ASSERT_EQ(host_.connected.size(), 2u);
  const ConnectSpec& sa = host_.connected[0].spec;
  EXPECT_EQ(sa.policy.requirement, TlsRequirement::kRequired);
  EXPECT_TRUE(sa.policy.verify);
  EXPECT_FALSE(sa.implicit_tls);
  EXPECT_EQ(SockaddrPort(sa.addr), 2525);
  const ConnectSpec& sb = host_.connected[1].spec;
  EXPECT_TRUE(sb.implicit_tls);  // smtps-: the implicit-TLS port first
  EXPECT_EQ(SockaddrPort(sb.addr), config_.tls_global.smtps_port);

  // Once port 26 failed (remembered in the policy cache), the next connection goes to 25.
  cache_.Find("smtps-mx.b.example")->implicit_tls_failed_until = absl::Now() + absl::Minutes(30);
  host_.connected[1].owner->OnClosing(1, true);
  host_.connected[1].owner->OnImplicitTlsFailed(1);
  ASSERT_EQ(host_.connected.size(), 3u);
  EXPECT_FALSE(host_.connected[2].spec.implicit_tls);
  EXPECT_EQ(SockaddrPort(host_.connected[2].spec.addr), 2525);
}

TEST_F(DestinationTest, ShutdownDefersWaitingJobsAndQuitsIdleConnections) {
  Build({"d.example=127.0.0.2:2525"});
  auto d = Make("d.example");
  DeliveryJob* a = Job("d.example");
  d->Accept(a);
  host_.connected[0].owner->OnReady(0, true);
  host_.FinishTransaction(0, a);
  ASSERT_TRUE(host_.parked[0]);
  host_.stop = true;
  d->Shutdown();
  EXPECT_EQ(host_.quits, std::vector<uint32_t>{0});
  d->Accept(Job("d.example"));
  ASSERT_EQ(host_.completed.size(), 2u);
  EXPECT_EQ(host_.completed[1]->outcomes[0].text, "engine shutting down");
}

TEST_F(DestinationTest, BackOffAfter421DefersWhatWaitsAndWhatArrives) {
  shaping_config_.default_backoff.enabled = true;
  config_.quiet = true;
  config_.max_connections_per_destination = 1;
  Build({"d.example=127.0.0.2:2525"});
  auto d = Make("d.example");
  for (int i = 0; i < 3; ++i) d->Accept(Job("d.example"));
  ASSERT_EQ(host_.connected.size(), 1u);
  host_.connected[0].owner->OnReady(0, true);
  ASSERT_EQ(host_.transfers.size(), 1u);
  // The receiver says 421 (RFC 5321 §3.8): the domain pauses, the two waiting jobs go back.
  host_.connected[0].owner->OnReplyCode(0, 421);
  ASSERT_EQ(host_.completed.size(), 2u);
  for (DeliveryJob* j : host_.completed) {
    EXPECT_EQ(j->outcomes[0].enhanced, "4.4.5");
    EXPECT_TRUE(absl::StrContains(j->outcomes[0].text, "not tried: domain d.example paused"))
        << j->outcomes[0].text;
  }
  d->Accept(Job("d.example"));  // paused: deferred at once
  ASSERT_EQ(host_.completed.size(), 3u);
  EXPECT_EQ(host_.completed[2]->outcomes[0].enhanced, "4.4.5");
  EXPECT_EQ(host_.connected.size(), 1u);
}

TEST_F(DestinationTest, IdleConnectionHoldingAContendedBudgetQuits) {
  ShapingRule rule;
  rule.match = ShapingMatch::kMxSuffix;
  rule.pattern = "shared.example";
  rule.limits.max_connections = 1;
  shaping_config_.rules.push_back(rule);
  Build({"a.example=mx.shared.example@127.0.0.2:2525",
         "b.example=mx.shared.example@127.0.0.2:2525"});
  auto a = Make("a.example");
  auto b = Make("b.example");
  DeliveryJob* ja = Job("a.example");
  a->Accept(ja);
  host_.connected[0].owner->OnReady(0, true);
  host_.FinishTransaction(0, ja);
  ASSERT_TRUE(host_.parked[0]);  // nobody waits: a keeps its connection idle
  b->Accept(Job("b.example"));   // the MX budget is full: b waits
  EXPECT_EQ(host_.connected.size(), 1u);
  ASSERT_FALSE(host_.throttled.empty());
  EXPECT_EQ(host_.throttled.back(), b.get());
  // The next tick: a's idle connection gives the budget back at once instead of after idle.
  a->ReleaseContendedIdle();
  EXPECT_EQ(host_.quits, std::vector<uint32_t>{0});
  host_.connected[0].owner->OnClosing(0, false);
  host_.connected[0].owner->OnClosed(0);
  b->ResumeIdle();
  b->Pump();
  ASSERT_EQ(host_.connected.size(), 2u);
  EXPECT_EQ(host_.connected[1].owner, b.get());
}

// Issue 10 item 10: an MX answer that points at loopback or a private network gives no hop
// (no connection is even asked for) and bounces with the reason, unless allow_private_mx.
TEST_F(DestinationTest, MxOnLoopbackOrPrivateAddressIsRefusedUnlessAllowed) {
  Build({});
  auto d = Make("d.example");
  d->Accept(Job("d.example"));
  MxResult mx;
  mx.status = DnsStatus::kOk;
  MxHost h;
  h.name = "mx.d.example";
  h.addresses = {Addr("127.0.0.1")};
  mx.hosts.push_back(h);
  MxHost p;
  p.name = "mx2.d.example";
  p.addresses = {Addr("10.1.2.3")};
  mx.hosts.push_back(p);
  d->OnMx(mx);
  EXPECT_TRUE(host_.connected.empty());
  ASSERT_EQ(host_.completed.size(), 1u);
  const RecipientOutcome& o = host_.completed[0]->outcomes[0];
  EXPECT_EQ(o.klass, DeliveryClass::kBounced);
  EXPECT_EQ(o.enhanced, "5.4.6");
  EXPECT_NE(o.text.find("loops back to myself"), std::string::npos) << o.text;

  config_.allow_private_mx = true;
  d->Accept(Job("d.example"));
  d->OnMx(mx);
  ASSERT_EQ(host_.connected.size(), 1u);
  EXPECT_EQ(SockaddrToString(host_.connected[0].spec.addr), "127.0.0.1:25");
}

}  // namespace
}  // namespace mxb
