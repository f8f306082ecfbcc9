// ConnectGate (engine/connect_gate.h): the ephemeral port budget per (source, destination) and
// the back-off after a local shortage. Pure bookkeeping; the real shortage is exercised by
// tests/integration/local_backpressure_test.cc.
#include "engine/connect_gate.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cerrno>

#include "engine/connection.h"
#include "engine/worker.h"
#include "gtest/gtest.h"

namespace mxb {
namespace {

ConnectSpec To(const char* ip, uint16_t port) {
  ConnectSpec spec;
  auto& a = reinterpret_cast<sockaddr_in&>(spec.addr);
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  inet_pton(AF_INET, ip, &a.sin_addr);
  return spec;
}

EphemeralPorts Range(int n, int tw_reuse) {
  EphemeralPorts p;
  p.low = 40000;
  p.high = 40000 + n - 1;
  p.tw_reuse = tw_reuse;
  return p;
}

TEST(ConnectGateTest, ClassifiesLocalShortages) {
  for (int err : {EADDRNOTAVAIL, EADDRINUSE, EMFILE, ENFILE, ENOBUFS, ENOMEM}) {
    EXPECT_TRUE(IsLocalShortage(err)) << err;
  }
  for (int err : {ECONNREFUSED, ETIMEDOUT, ECANCELED, ENETUNREACH, EHOSTUNREACH, ECONNRESET}) {
    EXPECT_FALSE(IsLocalShortage(err)) << err;
  }
  // bind(): EADDRNOTAVAIL = the source address is not on this host (configuration error).
  EXPECT_FALSE(IsLocalShortage(EADDRNOTAVAIL, /*at_bind=*/true));
  EXPECT_TRUE(IsLocalShortage(EADDRINUSE, /*at_bind=*/true));
}

TEST(ConnectGateTest, BudgetCountsOpenAndTimeWaitPerDestinationAndSplitsOverWorkers) {
  WorkerStats stats;
  // 8 ports, 2 workers: 4 each. Not loopback, tcp_tw_reuse=2: TIME_WAIT holds 60 s.
  ConnectGate gate(Range(8, 2), 2, &stats, /*quiet=*/true);
  EXPECT_EQ(gate.budget(), 4);
  const ConnectSpec a = To("192.0.2.1", 25), b = To("192.0.2.1", 2525);
  int64_t now = 1000;
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(gate.BlockedUntilMs(a, now), 0);
    gate.Opened(a);
  }
  EXPECT_GT(gate.BlockedUntilMs(a, now), now);  // spent: the next close is not predictable
  EXPECT_TRUE(gate.Spent(a, now));
  EXPECT_EQ(gate.BlockedUntilMs(b, now), 0);    // another port is another 4-tuple space
  gate.Closed(a, /*established=*/true, /*was_ready=*/true, now);    // TIME_WAIT until now + 60 s
  EXPECT_EQ(gate.BlockedUntilMs(a, now + 1000), now + ConnectGate::kTimeWaitMs);
  gate.Closed(a, /*established=*/false, /*was_ready=*/false, now);   // never connected: its port is free at once
  EXPECT_EQ(gate.BlockedUntilMs(a, now), 0);
  gate.Opened(a);
  EXPECT_EQ(gate.BlockedUntilMs(a, now + 10), now + ConnectGate::kTimeWaitMs);
  EXPECT_EQ(gate.BlockedUntilMs(a, now + ConnectGate::kTimeWaitMs), 0);  // TIME_WAIT over
  EXPECT_GT(stats.port_budget_waits.load(), 0u);
}

// Pacing: no more than kMaxUnready sessions to one address that were not greeted yet.
TEST(ConnectGateTest, PacingHoldsConnectsWhileTooManyAreNotGreetedYet) {
  WorkerStats stats;
  ConnectGate gate(Range(28000, 2), 1, &stats, /*quiet=*/true);
  const ConnectSpec a = To("127.0.0.2", 25);
  for (int i = 0; i < ConnectGate::kMaxUnready; ++i) {
    ASSERT_EQ(gate.BlockedUntilMs(a, 0), 0) << i;
    gate.Opened(a);
  }
  EXPECT_EQ(gate.BlockedUntilMs(a, 0), ConnectGate::kMinBackoffMs);
  EXPECT_EQ(gate.BlockedUntilMs(To("127.0.0.3", 25), 0), 0);  // another address
  gate.Ready(a);
  EXPECT_EQ(gate.BlockedUntilMs(a, 0), 0);
  gate.Opened(a);
  gate.Closed(a, /*established=*/true, /*was_ready=*/false, 0);  // failed in the greeting
  EXPECT_EQ(gate.BlockedUntilMs(a, 0), 0);
  EXPECT_EQ(stats.connect_pacing_waits.load(), 1u);
}

TEST(ConnectGateTest, LoopbackTimeWaitIsReusedAfterASecondWithTwReuse2) {
  WorkerStats stats;
  ConnectGate gate(Range(1, 2), 1, &stats, /*quiet=*/true);
  const ConnectSpec lo = To("127.0.0.2", 25);
  gate.Opened(lo);
  gate.Closed(lo, /*established=*/true, /*was_ready=*/true, 5000);
  EXPECT_EQ(gate.BlockedUntilMs(lo, 5001), 5000 + ConnectGate::kTimeWaitReuseMs);
  EXPECT_EQ(gate.BlockedUntilMs(lo, 5000 + ConnectGate::kTimeWaitReuseMs), 0);
  EXPECT_EQ(gate.keys(), 0u);  // nothing left: the key is gone
}

TEST(ConnectGateTest, ShortageBacksOffEveryConnectWithADoublingBoundedDelay) {
  WorkerStats stats;
  ConnectGate gate(Range(100, 2), 1, &stats, /*quiet=*/true);
  const ConnectSpec a = To("127.0.0.2", 25);
  int64_t now = 0;
  int64_t last = 0;
  for (int i = 0; i < 12; ++i) {
    gate.Shortage(EMFILE, "test", now);
    const int64_t wait = gate.retry_at_ms() - now;
    EXPECT_GE(wait, last);
    EXPECT_LE(wait, ConnectGate::kMaxBackoffMs);
    EXPECT_EQ(gate.BlockedUntilMs(a, now), gate.retry_at_ms());
    last = wait;
    now = gate.retry_at_ms();
  }
  EXPECT_EQ(last, ConnectGate::kMaxBackoffMs);
  EXPECT_EQ(gate.BlockedUntilMs(a, now), 0);
  gate.Succeeded();
  gate.Shortage(EMFILE, "test", now);
  EXPECT_EQ(gate.retry_at_ms() - now, ConnectGate::kMinBackoffMs);
  EXPECT_EQ(stats.local_waits.load(), 13u);
}

}  // namespace
}  // namespace mxb
