// RetrySchedule table (defaults, custom, 4-day expiry), PlanRetry, DeferredQueue ordering,
// PopDue, rescheduling and loading from spool/deferred/; envelope retry fields round trip.
#include "queue/retry_schedule.h"

#include <unistd.h>

#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace mxb {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

struct Case {
  uint32_t attempts;
  std::optional<absl::Duration> offset;  // nullopt: expired
};

TEST(RetryScheduleTest, DefaultTable) {
  const RetrySchedule s;
  const Case cases[] = {
      {0, absl::ZeroDuration()},
      {1, absl::Minutes(5)},
      {2, absl::Minutes(15)},
      {3, absl::Minutes(35)},
      {4, absl::Minutes(75)},
      {5, absl::Minutes(135)},  // then hourly
      {6, absl::Minutes(195)},
      // 75 min + 94 h = 95 h 15 min: the last attempt inside 4 days (96 h).
      {98, absl::Minutes(75) + absl::Hours(94)},
      {99, std::nullopt},
      {1000, std::nullopt},
      {UINT32_MAX, std::nullopt},
  };
  for (const Case& c : cases) {
    std::optional<absl::Time> t = s.NextAttempt(kT0, c.attempts);
    if (!c.offset) {
      EXPECT_FALSE(t.has_value()) << "attempts " << c.attempts;
    } else {
      ASSERT_TRUE(t.has_value()) << "attempts " << c.attempts;
      EXPECT_EQ(*t - kT0, *c.offset) << "attempts " << c.attempts;
    }
  }
  EXPECT_EQ(s.max_age(), absl::Hours(96));  // RFC 5321 §4.5.4.1: 4-5 days
  EXPECT_EQ(s.GiveUpTime(kT0), kT0 + absl::Hours(96));
  EXPECT_EQ(s.DelayAfter(1), absl::Minutes(5));
  EXPECT_EQ(s.DelayAfter(4), absl::Minutes(40));
  EXPECT_EQ(s.DelayAfter(5), absl::Minutes(60));
}

TEST(RetryScheduleTest, CustomTable) {
  absl::StatusOr<RetrySchedule> s =
      RetrySchedule::Create({absl::Seconds(30), absl::Minutes(2)}, absl::Minutes(10),
                            absl::Minutes(30));
  ASSERT_TRUE(s.ok()) << s.status();
  const Case cases[] = {
      {1, absl::Seconds(30)},
      {2, absl::Seconds(150)},
      {3, absl::Seconds(750)},
      {4, absl::Seconds(1350)},
      {5, std::nullopt},  // 1950 s > 30 min
  };
  for (const Case& c : cases) {
    std::optional<absl::Time> t = s->NextAttempt(kT0, c.attempts);
    ASSERT_EQ(t.has_value(), c.offset.has_value()) << "attempts " << c.attempts;
    if (t) {
      EXPECT_EQ(*t - kT0, *c.offset) << "attempts " << c.attempts;
    }
  }
  // Exactly at the give-up time is still allowed.
  absl::StatusOr<RetrySchedule> edge =
      RetrySchedule::Create({absl::Minutes(10)}, absl::Minutes(10), absl::Minutes(20));
  ASSERT_TRUE(edge.ok());
  EXPECT_TRUE(edge->NextAttempt(kT0, 2).has_value());
  EXPECT_FALSE(edge->NextAttempt(kT0, 3).has_value());
}

TEST(RetryScheduleTest, RejectsBadConfig) {
  EXPECT_FALSE(RetrySchedule::Create({}, absl::Minutes(1), absl::Hours(1)).ok());
  absl::StatusOr<RetrySchedule> s =
      RetrySchedule::Create({absl::Minutes(5), absl::ZeroDuration()}, absl::Minutes(1),
                            absl::Hours(1));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("delay 2"), absl::string_view::npos) << s.status();
  EXPECT_FALSE(RetrySchedule::Create({absl::Minutes(5)}, absl::ZeroDuration(), absl::Hours(1)).ok());
  EXPECT_FALSE(RetrySchedule::Create({absl::Minutes(5)}, absl::Minutes(5), -absl::Hours(1)).ok());
}

TEST(PlanRetryTest, SetsRetryFieldsAndExpires) {
  Envelope env;
  env.sender = "s@esp.example";
  env.recipients = {"a@x.example", "b@y.example"};
  const RetrySchedule schedule;
  std::optional<Envelope> next = PlanRetry(env, {"b@y.example"}, kT0, schedule);
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->recipients, std::vector<std::string>{"b@y.example"});
  EXPECT_EQ(next->attempts, 1u);
  EXPECT_EQ(next->first_attempt, absl::ToUnixSeconds(kT0));
  EXPECT_EQ(next->next_attempt, absl::ToUnixSeconds(kT0 + absl::Minutes(5)));

  // Second failure an hour late: first attempt kept, next due per the table (15 min) is in the
  // past, so it is due at once.
  std::optional<Envelope> again =
      PlanRetry(*next, {"b@y.example"}, kT0 + absl::Minutes(65), schedule);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->attempts, 2u);
  EXPECT_EQ(again->first_attempt, absl::ToUnixSeconds(kT0));
  EXPECT_EQ(again->next_attempt, absl::ToUnixSeconds(kT0 + absl::Minutes(65)));

  // After 98 attempts the 4 days are used up.
  Envelope old = *next;
  old.attempts = 98;
  EXPECT_FALSE(PlanRetry(old, {"b@y.example"}, kT0 + absl::Hours(95), schedule).has_value());
}

TEST(EnvelopeRetryFieldsTest, RoundTripAndOmittedWhenZero) {
  Envelope env;
  env.sender = "s@esp.example";
  env.recipients = {"a@x.example"};
  const std::string plain = SerializeEnvelope(env, "Subject: x\n\nbody\n");
  EXPECT_EQ(plain.find("x-attempts"), std::string::npos);
  env.attempts = 3;
  env.first_attempt = 1'700'000'000;
  env.next_attempt = 1'700'002'100;
  const std::string file = SerializeEnvelope(env, "Subject: x\r\n\r\nbody\r\n");
  EXPECT_NE(file.find("x-attempts: 3\r\nx-first-attempt: 1700000000\r\n"
                      "x-next-attempt: 1700002100\r\n"),
            std::string::npos)
      << file;
  absl::StatusOr<Envelope> back = ParseEnvelope(file);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->attempts, 3u);
  EXPECT_EQ(back->first_attempt, 1'700'000'000);
  EXPECT_EQ(back->next_attempt, 1'700'002'100);
  EXPECT_EQ(file.substr(back->body_offset), "Subject: x\r\n\r\nbody\r\n");
}

TEST(EnvelopeRetryFieldsTest, RejectsBadValues) {
  const std::string head = "x-sender: <s@e.example>\nx-receiver: <r@d.example>\n";
  const std::string body = "Subject: x\n\nbody\n";
  for (const char* bad : {"x-attempts: -1\n", "x-attempts: +2\n", "x-attempts: two\n",
                          "x-attempts: 99999999999\n", "x-first-attempt: \n",
                          "x-next-attempt: 1.5\n", "x-attempts: 1\nX-Attempts: 2\n"}) {
    absl::StatusOr<Envelope> env = ParseEnvelope(head + bad + body);
    EXPECT_FALSE(env.ok()) << bad;
  }
  absl::StatusOr<Envelope> ok =
      ParseEnvelope(head + "X-Attempts:  7 \nx-next-attempt:0\n" + body);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->attempts, 7u);
  EXPECT_EQ(ok->next_attempt, 0);
}

TEST(DeferredQueueTest, PopDueInTimeOrder) {
  DeferredQueue q;
  q.Schedule("c", kT0 + absl::Minutes(30));
  q.Schedule("a", kT0 + absl::Minutes(5));
  q.Schedule("b", kT0 + absl::Minutes(10));
  q.Schedule("a2", kT0 + absl::Minutes(5));  // same time: insertion order
  EXPECT_EQ(q.size(), 4u);
  EXPECT_EQ(q.NextDue(), kT0 + absl::Minutes(5));
  EXPECT_TRUE(q.PopDue(kT0).empty());
  EXPECT_EQ(q.PopDue(kT0 + absl::Minutes(10)), (std::vector<std::string>{"a", "a2", "b"}));
  EXPECT_EQ(q.size(), 1u);
  EXPECT_EQ(q.PopDue(kT0 + absl::Hours(1)), std::vector<std::string>{"c"});
  EXPECT_TRUE(q.empty());
  EXPECT_FALSE(q.NextDue().has_value());
}

TEST(DeferredQueueTest, RescheduleRemoveMaxAndFlush) {
  DeferredQueue q;
  q.Schedule("a", kT0 + absl::Minutes(5));
  q.Schedule("b", kT0 + absl::Minutes(6));
  q.Schedule("a", kT0 + absl::Minutes(60));  // moved later: the old entry is stale
  EXPECT_EQ(q.size(), 2u);
  EXPECT_EQ(q.PopDue(kT0 + absl::Minutes(10)), std::vector<std::string>{"b"});
  EXPECT_TRUE(q.Remove("a"));
  EXPECT_FALSE(q.Remove("a"));
  EXPECT_TRUE(q.PopDue(kT0 + absl::Hours(2)).empty());

  for (int i = 0; i < 10; ++i) q.Schedule(absl::StrCat("m", i), kT0 + absl::Minutes(100 - i));
  EXPECT_EQ(q.PopDue(kT0 + absl::Hours(3), 3), (std::vector<std::string>{"m9", "m8", "m7"}));
  q.FlushAll(kT0);
  EXPECT_EQ(q.PopDue(kT0).size(), 7u);
}

TEST(DeferredQueueTest, ManyReschedulesStayCorrect) {
  DeferredQueue q;
  for (int round = 0; round < 50; ++round) {
    for (int i = 0; i < 100; ++i) {
      q.Schedule(absl::StrCat("m", i), kT0 + absl::Seconds((i * 7919 + round * 31) % 1000));
    }
  }
  EXPECT_EQ(q.size(), 100u);
  std::vector<std::string> all = q.PopDue(kT0 + absl::Hours(1));
  EXPECT_EQ(all.size(), 100u);
  EXPECT_TRUE(q.empty());
}

TEST(DeferredQueueTest, LoadFromSpoolUsesNextAttempt) {
  std::string tmpl = absl::StrCat(testing::TempDir(), "/mxb-deferred-XXXXXX");
  ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
  const std::string root = tmpl + "/spool";
  absl::StatusOr<Spool> spool = Spool::Open(root);
  ASSERT_TRUE(spool.ok()) << spool.status();
  Envelope env;
  env.sender = "s@esp.example";
  env.recipients = {"r@d.example"};
  env.attempts = 2;
  auto put = [&](const std::string& name, int64_t next) {
    env.next_attempt = next;
    ASSERT_TRUE(InjectFile(root, name, SerializeEnvelope(env, "Subject: x\n\nbody\n"), false).ok());
    ASSERT_TRUE(spool->Claim(name).ok());
    ASSERT_TRUE(spool->Defer(name, SerializeEnvelope(env, "Subject: x\n\nbody\n")).ok());
  };
  put("late.eml", absl::ToUnixSeconds(kT0 + absl::Minutes(40)));
  put("soon.eml", absl::ToUnixSeconds(kT0 + absl::Minutes(5)));
  put("nofield.eml", 0);
  // Deferred without a rewrite: the retry mark on the file wins over its (absent) fields.
  env.next_attempt = 0;
  ASSERT_TRUE(InjectFile(root, "marked.eml", SerializeEnvelope(env, "Subject: x\n\nbody\n"), false).ok());
  ASSERT_TRUE(spool->Claim("marked.eml").ok());
  const bool xattrs =
      spool->DeferUnchanged("marked.eml", {3, absl::ToUnixSeconds(kT0),
                                           absl::ToUnixSeconds(kT0 + absl::Minutes(20))})
          .ok();
  if (!xattrs) {
    env.next_attempt = absl::ToUnixSeconds(kT0 + absl::Minutes(20));
    ASSERT_TRUE(spool->Defer("marked.eml", SerializeEnvelope(env, "Subject: x\n\nbody\n")).ok());
  }
  DeferredQueue q;
  EXPECT_EQ(q.LoadFromSpool(*spool, kT0), 4u);
  EXPECT_EQ(q.PopDue(kT0), std::vector<std::string>{"nofield.eml"});
  EXPECT_EQ(q.PopDue(kT0 + absl::Minutes(10)), std::vector<std::string>{"soon.eml"});
  EXPECT_EQ(q.PopDue(kT0 + absl::Minutes(30)), std::vector<std::string>{"marked.eml"});
  EXPECT_EQ(q.PopDue(kT0 + absl::Hours(1)), std::vector<std::string>{"late.eml"});
  ASSERT_EQ(std::system(absl::StrCat("rm -rf '", tmpl, "'").c_str()), 0);
}

}  // namespace
}  // namespace mxb
