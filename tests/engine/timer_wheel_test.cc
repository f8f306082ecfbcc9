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

}  // namespace
}  // namespace mxb
