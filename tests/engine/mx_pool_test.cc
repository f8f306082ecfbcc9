// MxPool (engine/mx_pool.h): which connections are interchangeable between domains, the cap,
// the FIFO of waiting destinations and the parked entries.
#include "engine/mx_pool.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "tls/dane.h"

namespace mxb {
namespace {

ConnectSpec Spec(const char* mx, const char* ip, uint16_t port) {
  ConnectSpec s;
  s.mx = mx;
  auto* a = reinterpret_cast<sockaddr_in*>(&s.addr);
  a->sin_family = AF_INET;
  a->sin_port = htons(port);
  inet_pton(AF_INET, ip, &a->sin_addr);
  s.policy.name = "opportunistic";
  return s;
}

// One row per field that must keep two domains' jobs apart.
TEST(MxPool, KeySeparatesWhatMayNotBeShared) {
  const ConnectSpec base = Spec("mx.example", "127.0.0.2", 25);
  const std::string k = MxPool::KeyOf(base, -1, false);
  EXPECT_EQ(k, MxPool::KeyOf(Spec("mx.example", "127.0.0.2", 25), -1, false));
  struct Case {
    const char* what;
    ConnectSpec spec;
    int pool;
    bool relaxed;
  };
  ConnectSpec verify = base;
  verify.policy.verify = true;
  verify.policy.requirement = TlsRequirement::kRequired;
  verify.policy.name = "mta-sts-enforce id=1";
  ConnectSpec dane = base;
  dane.policy.dane = std::make_shared<DaneAuthority>();
  dane.policy.name = "dane";
  ConnectSpec dnssec = base;
  dnssec.mx_dnssec = true;
  ConnectSpec implicit = base;
  implicit.implicit_tls = true;
  const Case cases[] = {
      {"other MX name", Spec("mx2.example", "127.0.0.2", 25), -1, false},
      {"other address", Spec("mx.example", "127.0.0.3", 25), -1, false},
      {"other port", Spec("mx.example", "127.0.0.2", 26), -1, false},
      {"other source pool", base, 0, false},
      {"TLS-Required: No", base, -1, true},
      {"verified policy", verify, -1, false},
      {"DANE authority", dane, -1, false},
      {"DNSSEC MX (REQUIRETLS)", dnssec, -1, false},
      {"implicit TLS", implicit, -1, false},
  };
  for (const Case& c : cases) {
    EXPECT_NE(k, MxPool::KeyOf(c.spec, c.pool, c.relaxed)) << c.what;
  }
}

TEST(MxPool, CapWaitersInOrderOnceEach) {
  MxPool pool(2);
  auto* a = reinterpret_cast<Destination*>(0x10);
  auto* b = reinterpret_cast<Destination*>(0x20);
  const std::string k = "k";
  EXPECT_FALSE(pool.Full(k));
  pool.Opened(k);
  pool.Opened(k);
  EXPECT_TRUE(pool.Full(k));
  pool.Wait(k, a);
  pool.Wait(k, b);
  pool.Wait(k, a);  // already waiting
  EXPECT_EQ(pool.Closed(k), a);
  EXPECT_FALSE(pool.Full(k));
  EXPECT_EQ(pool.PopWaiter(k), b);
  EXPECT_EQ(pool.PopWaiter(k), nullptr);
  pool.Wait(k, a);
  pool.Forget(a);
  EXPECT_FALSE(pool.HasWaiters(k));
  EXPECT_EQ(pool.Closed(k), nullptr);
  EXPECT_EQ(pool.keys(), 0u) << "nothing open, nobody waiting: the key is gone";
}

TEST(MxPool, ParkedEntriesNewestFirstAndBounded) {
  MxPool pool(4);
  auto* a = reinterpret_cast<Destination*>(0x10);
  const std::string k = "k";
  pool.Opened(k);
  for (uint32_t i = 0; i < 100; ++i) pool.Park(k, {i % 3, i}, a);  // re-parks pile up
  MxPool::Idle e;
  int n = 0;
  ASSERT_TRUE(pool.PopIdle(k, &e));
  EXPECT_EQ(e.conn.gen, 99u);
  EXPECT_EQ(e.owner, a);
  ++n;
  while (pool.PopIdle(k, &e)) ++n;
  EXPECT_LE(n, 2 * 1 + 5) << "compacted to about the open connections";
}

}  // namespace
}  // namespace mxb
