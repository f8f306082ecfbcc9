// DeadDestinations (engine/dead_destinations.h): what the scanner learns from the workers.
#include "engine/dead_destinations.h"

#include "gtest/gtest.h"

namespace mxb {
namespace {

Envelope EnvelopeTo(std::vector<std::string> recipients) {
  Envelope e;
  e.sender = "s@esp.example";
  e.recipients = std::move(recipients);
  return e;
}

// A job back from a worker that found `domain` dead until `until`.
DeliveryJob DeadJob(MessageRecord* msg, const std::string& domain, absl::Time until) {
  DeliveryJob j;
  j.message = msg;
  j.domain = domain;
  j.dead_until = until;
  j.dead_reason = "127.0.0.3:25: connection refused";
  return j;
}

TEST(DeadDestinations, AllRecipientsDeadUntilTheWorkersTimeLapses) {
  const absl::Time now = absl::FromUnixSeconds(1000000);
  DeadDestinations dead(nullptr);
  MessageRecord msg;
  msg.envelope = EnvelopeTo({"a@dead.example"});
  EXPECT_FALSE(dead.any());
  dead.Learn(DeadJob(&msg, "dead.example", now + absl::Seconds(60)));
  ASSERT_TRUE(dead.any());
  std::optional<std::string> text = dead.NotTried(EnvelopeTo({"b@dead.example"}), now);
  ASSERT_TRUE(text.has_value());
  EXPECT_EQ(*text, NotTriedText("127.0.0.3:25: connection refused"));
  // One live recipient: the message takes the normal path.
  EXPECT_FALSE(dead.NotTried(EnvelopeTo({"b@dead.example", "c@live.example"}), now));
  EXPECT_FALSE(dead.NotTried(EnvelopeTo({"c@live.example"}), now));
  // Lapsed: forgotten, the next message goes to the worker, which tries the hosts again.
  EXPECT_FALSE(dead.NotTried(EnvelopeTo({"b@dead.example"}), now + absl::Seconds(60)));
  EXPECT_FALSE(dead.any());
}

TEST(DeadDestinations, JobsThatMetNoDeadDestinationTeachNothing) {
  DeadDestinations dead(nullptr);
  MessageRecord msg;
  msg.envelope = EnvelopeTo({"a@slow.example"});
  DeliveryJob j;
  j.message = &msg;
  j.domain = "slow.example";
  dead.Learn(j);
  EXPECT_FALSE(dead.any());
}

// The look-ahead thread's hint (engine/envelope_looker.h): the dead domains, and a version that
// changes whenever the set may have — a new destination, a lapse, Forget — and not when a known
// one is learned again.
TEST(DeadDestinations, TheDomainsAndTheirVersionFollowTheTable) {
  const absl::Time now = absl::FromUnixSeconds(1000000);
  DeadDestinations dead(nullptr);
  MessageRecord msg;
  msg.envelope = EnvelopeTo({"a@dead.example"});
  const uint64_t v0 = dead.version();
  EXPECT_TRUE(dead.Domains().empty());
  dead.Learn(DeadJob(&msg, "dead.example", now + absl::Seconds(60)));
  const uint64_t v1 = dead.version();
  EXPECT_NE(v1, v0);
  EXPECT_EQ(dead.Domains(), std::vector<std::string>{"dead.example"});
  dead.Learn(DeadJob(&msg, "dead.example", now + absl::Seconds(90)));  // known: same set
  EXPECT_EQ(dead.version(), v1);
  dead.Learn(DeadJob(&msg, "other.example", now + absl::Seconds(10)));
  const uint64_t v2 = dead.version();
  EXPECT_NE(v2, v1);
  EXPECT_EQ(dead.Domains().size(), 2u);
  // other.example lapses at the next look-up that meets it.
  EXPECT_FALSE(dead.NotTried(EnvelopeTo({"b@other.example"}), now + absl::Seconds(30)));
  EXPECT_NE(dead.version(), v2);
  EXPECT_EQ(dead.Domains(), std::vector<std::string>{"dead.example"});
  const uint64_t v3 = dead.version();
  dead.Forget();
  EXPECT_NE(dead.version(), v3);
  EXPECT_TRUE(dead.Domains().empty());
}

TEST(DeadDestinations, PostponedNamesAreHeldUntilReleased) {
  DeadDestinations dead(nullptr);
  PostponedFile f;
  f.name = "m1";
  dead.Postpone(std::move(f));
  EXPECT_TRUE(dead.Holds("m1"));
  EXPECT_FALSE(dead.Holds("m2"));
  ASSERT_TRUE(dead.has_postponed());
  EXPECT_EQ(dead.PopPostponed().name, "m1");
  EXPECT_FALSE(dead.has_postponed());
  EXPECT_TRUE(dead.Holds("m1"));  // until moved
  dead.Release("m1");
  EXPECT_FALSE(dead.holds_any());
}

}  // namespace
}  // namespace mxb
