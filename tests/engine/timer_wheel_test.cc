#include "engine/timer_wheel.h"

#include <vector>

#include "gtest/gtest.h"

namespace mxb {
namespace {

struct Fired {
  uint32_t slot;
  int64_t deadline;
};

TEST(TimerWheel, FiresAtDeadlineNotBefore) {
  TimerWheel w(100, 16);
  w.Start(0);
  w.Insert(1, 0, 250);
  w.Insert(2, 0, 1000);
  std::vector<Fired> fired;
  auto fire = [&](uint32_t s, uint32_t, int64_t d) { fired.push_back({s, d}); };
  w.Advance(199, fire);
  EXPECT_TRUE(fired.empty());
  w.Advance(299, fire);
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].slot, 1u);
  w.Advance(999, fire);
  EXPECT_EQ(fired.size(), 1u);
  w.Advance(1000, fire);
  ASSERT_EQ(fired.size(), 2u);
  EXPECT_EQ(w.size(), 0u);
}

TEST(TimerWheel, DeadlinesBeyondOneRevolutionWaitTheirRound) {
  TimerWheel w(100, 8);  // one revolution = 800 ms
  w.Start(0);
  w.Insert(7, 0, 2550);  // same bucket as 150 and 950, two revolutions later
  std::vector<Fired> fired;
  auto fire = [&](uint32_t s, uint32_t, int64_t d) { fired.push_back({s, d}); };
  w.Advance(2499, fire);
  EXPECT_TRUE(fired.empty());
  w.Advance(2599, fire);
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].deadline, 2550);
}

TEST(TimerWheel, PastDeadlineFiresOnNextTick) {
  TimerWheel w(100, 8);
  w.Start(1000);
  w.Insert(3, 0, 500);
  int n = 0;
  w.Advance(1100, [&](uint32_t, uint32_t, int64_t) { ++n; });
  EXPECT_EQ(n, 1);
}

// WheelDeadline: a connection re-arms its reply deadline after every reply (~5 per message).
// Each re-arm used to insert an entry that stayed until its own deadline, minutes later.
TEST(WheelDeadline, ReArmingAfterEveryReplyKeepsOneEntry) {
  TimerWheel w(100, 1024);
  w.Start(0);
  WheelDeadline d;
  int fired = 0;
  auto fire = [&](uint32_t s, uint32_t g, int64_t at) {
    if (d.OnFired(&w, s, g, at)) ++fired;
  };
  // 10,000 replies, 2 ms apart, each arming "now + 5 minutes".
  for (int64_t now = 0; now < 20000; now += 2) {
    w.Advance(now, fire);
    d.Arm(&w, 7, 1, now + 300000);
  }
  EXPECT_EQ(w.size(), 1u);
  EXPECT_EQ(fired, 0);
}

TEST(WheelDeadline, ALaterDeadlineFiresAtItsOwnTimeNotTheFirstOnes) {
  TimerWheel w(100, 16);
  w.Start(0);
  WheelDeadline d;
  std::vector<int64_t> due;
  auto fire = [&](uint32_t s, uint32_t g, int64_t at) {
    if (d.OnFired(&w, s, g, at)) due.push_back(at);
  };
  d.Arm(&w, 1, 0, 1000);
  w.Advance(500, fire);
  d.Arm(&w, 1, 0, 2550);  // beyond one revolution of this wheel (1600 ms)
  EXPECT_EQ(w.size(), 1u);
  w.Advance(1100, fire);  // the 1000 entry fires and is queued again for 2550
  EXPECT_TRUE(due.empty());
  EXPECT_EQ(w.size(), 1u);
  w.Advance(2499, fire);
  EXPECT_TRUE(due.empty());
  w.Advance(2599, fire);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0], 2550);
  EXPECT_EQ(w.size(), 0u);
}

TEST(WheelDeadline, AnEarlierDeadlineFiresOnTimeAndTheOldEntryIsIgnored) {
  TimerWheel w(100, 64);
  w.Start(0);
  WheelDeadline d;
  std::vector<int64_t> due;
  auto fire = [&](uint32_t s, uint32_t g, int64_t at) {
    if (d.OnFired(&w, s, g, at)) due.push_back(at);
  };
  d.Arm(&w, 1, 0, 5000);  // e.g. the 10-minute "." reply
  d.Arm(&w, 1, 0, 800);   // then a shorter one
  EXPECT_EQ(w.size(), 2u);
  w.Advance(799, fire);
  EXPECT_TRUE(due.empty());
  w.Advance(899, fire);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0], 800);
  d.Disarm();  // the timeout was handled
  w.Advance(6000, fire);
  EXPECT_EQ(due.size(), 1u);
  EXPECT_EQ(w.size(), 0u);
}

TEST(WheelDeadline, DisarmedOrReplacedOwnersNeverFire) {
  TimerWheel w(100, 64);
  w.Start(0);
  WheelDeadline d;
  uint32_t gen = 0;
  int fired = 0;
  auto fire = [&](uint32_t s, uint32_t g, int64_t at) {  // the worker's slab.Find(s, g)
    if (g == gen && d.OnFired(&w, s, g, at)) ++fired;
  };
  d.Arm(&w, 1, 0, 300);
  d.Disarm();  // idle between commands
  w.Advance(1000, fire);
  EXPECT_EQ(fired, 0);
  d.Arm(&w, 1, 0, 1500);
  d = WheelDeadline();  // the slot gets a new occupant; its old entry no longer matches
  gen = 1;
  d.Arm(&w, 1, 1, 1700);
  w.Advance(1599, fire);
  EXPECT_EQ(fired, 0);
  w.Advance(1799, fire);
  EXPECT_EQ(fired, 1);
}

}  // namespace
}  // namespace mxb
