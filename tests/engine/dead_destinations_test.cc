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
