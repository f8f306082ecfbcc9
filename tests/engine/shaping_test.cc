// Traffic shaping: rule matching, the GCRA rate budget, connection budgets, back-off, source pool
// selection, and the TOML keys that configure them (every bad key is one line naming it).
// Time is passed in explicitly: nothing here sleeps or reads a clock.
#include "engine/shaping.h"

#include <unistd.h>

#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "engine/config.h"
#include "gtest/gtest.h"

namespace mxb {
namespace {

ShapingLimits RateLimits(int64_t count, absl::Duration period, int burst) {
  ShapingLimits l;
  l.max_message_rate.count = count;
  l.max_message_rate.period = period;
  l.rate_burst = burst;
  return l;
}

TEST(MessageRate, Parses) {
  struct Case {
    const char* text;
    int64_t count;
    absl::Duration period;
  } cases[] = {
      {"100/s", 100, absl::Seconds(1)},   {"100/second", 100, absl::Seconds(1)},
      {"6/minute", 6, absl::Minutes(1)},  {"6 / min", 6, absl::Minutes(1)},
      {"20000/hour", 20000, absl::Hours(1)}, {"1/h", 1, absl::Hours(1)},
  };
  for (const Case& c : cases) {
    absl::StatusOr<MessageRate> r = ParseMessageRate(c.text);
    ASSERT_TRUE(r.ok()) << c.text;
    EXPECT_EQ(r->count, c.count) << c.text;
    EXPECT_EQ(r->period, c.period) << c.text;
  }
  for (const char* bad : {"", "100", "0/s", "-1/s", "10/day", "x/s", "10/"}) {
    EXPECT_FALSE(ParseMessageRate(bad).ok()) << bad;
  }
  EXPECT_EQ(ParseMessageRate("4/s")->IntervalUs(), 250000);
  EXPECT_EQ(ParseMessageRate("60/minute")->IntervalUs(), 1000000);
}

TEST(MxSuffix, MatchesOnLabelBoundaries) {
  struct Case {
    const char* suffix;
    const char* host;
    bool match;
  } cases[] = {
      {"google.com", "aspmx.l.google.com", true},
      {"google.com", "ALT1.ASPMX.L.GOOGLE.COM", true},
      {"google.com", "google.com", true},
      {"google.com", "mx.google.com.", true},   // fully qualified
      {"google.com", "notgoogle.com", false},   // not a label boundary
      {"google.com", "google.com.evil.example", false},
      {"l.google.com", "aspmx.l.google.com", true},
      {"l.google.com", "mx.google.com", false},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(MxSuffixMatches(c.suffix, c.host), c.match) << c.suffix << " " << c.host;
  }
}

TEST(ShapingTable, LongestMxSuffixWinsAndKeysAreExact) {
  ShapingConfig cfg;
  cfg.rules.push_back({ShapingMatch::kMxSuffix, "google.com", {}});
  cfg.rules.push_back({ShapingMatch::kMxSuffix, "l.google.com", {}});
  cfg.rules.push_back({ShapingMatch::kDomain, "a.example", {}});
  cfg.rules.push_back({ShapingMatch::kSource, "127.0.0.5", {}});
  ShapingTable t(cfg);
  ASSERT_NE(t.ForMx("aspmx.l.google.com"), nullptr);
  EXPECT_EQ(t.ForMx("aspmx.l.google.com")->name(), "mx_suffix l.google.com");
  EXPECT_EQ(t.ForMx("smtp.google.com")->name(), "mx_suffix google.com");
  // Two MX hosts under one suffix share ONE budget.
  EXPECT_EQ(t.ForMx("alt1.gmail-smtp-in.google.com"), t.ForMx("alt2.gmail-smtp-in.google.com"));
  EXPECT_EQ(t.ForMx("mx.example.net"), nullptr);
  EXPECT_NE(t.ForDomain("a.example"), nullptr);
  EXPECT_EQ(t.ForDomain("b.a.example"), nullptr);
  EXPECT_NE(t.ForSource("127.0.0.5"), nullptr);
  EXPECT_EQ(t.ForSource("127.0.0.6"), nullptr);
}

TEST(ShapingBudget, ConnectionLimitIsAllOrNothing) {
  ShapingLimits two;
  two.max_connections = 2;
  ShapingLimits one;
  one.max_connections = 1;
  ShapingBudget mx("mx_suffix example", two);
  ShapingBudget src("source 127.0.0.5", one);
  BudgetSet a{{nullptr, &mx, nullptr}};
  BudgetSet b{{nullptr, &mx, &src}};
  EXPECT_TRUE(b.TryOpenConnection());   // mx 1/2, src 1/1
  EXPECT_FALSE(b.TryOpenConnection());  // src full: mx must not keep the half-taken slot
  EXPECT_EQ(mx.connections(), 1);
  EXPECT_TRUE(a.TryOpenConnection());   // mx 2/2
  EXPECT_FALSE(a.TryOpenConnection());
  a.CloseConnection();
  EXPECT_TRUE(a.TryOpenConnection());
  EXPECT_EQ(mx.connections(), 2);
  EXPECT_EQ(src.connections(), 1);
}

TEST(ShapingBudget, ARefusedConnectionIsRememberedBriefly) {
  ShapingLimits one;
  one.max_connections = 1;
  ShapingBudget mx("mx_suffix example", one);
  BudgetSet set{{nullptr, &mx, nullptr}};
  EXPECT_TRUE(set.TryOpenConnection(1000));
  EXPECT_FALSE(set.HasWaiters(1000));  // holding it alone: an idle connection may stay
  EXPECT_FALSE(set.TryOpenConnection(1000));
  // Someone waits: idle holders should give the connection back.
  EXPECT_TRUE(set.HasWaiters(1000));
  EXPECT_TRUE(set.HasWaiters(1000 + ShapingBudget::kWaiterMemoryMs - 1));
  EXPECT_FALSE(set.HasWaiters(1000 + ShapingBudget::kWaiterMemoryMs));
  ShapingConfig cfg;
  cfg.rules.push_back({ShapingMatch::kMxSuffix, "example", one});
  ShapingTable t(cfg);
  EXPECT_FALSE(t.AnyWaiters(5000));
  BudgetSet in_table{{nullptr, t.ForMx("mx.example"), nullptr}};
  EXPECT_TRUE(in_table.TryOpenConnection(5000));
  EXPECT_FALSE(in_table.TryOpenConnection(5000));
  EXPECT_TRUE(t.AnyWaiters(5000));
}

TEST(ShapingBudget, ConnectionLimitHoldsAcrossThreads) {
  ShapingLimits l;
  l.max_connections = 7;
  ShapingBudget b("mx_suffix shared", l);
  std::atomic<int> opened{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) {
        if (b.TryOpenConnection()) opened.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(opened.load(), 7);
  EXPECT_EQ(b.connections(), 7);
}

TEST(ShapingBudget, RateSpacesMessagesAfterTheBurst) {
  ShapingBudget b("domain a.example", RateLimits(10, absl::Seconds(1), 3));  // 100 ms apart
  int64_t now = 5'000'000;
  // The burst goes at once.
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(b.WaitBeforeMessageUs(now), 0) << i;
    b.TakeMessage(now);
  }
  EXPECT_EQ(b.WaitBeforeMessageUs(now), 100'000);
  EXPECT_EQ(b.WaitBeforeMessageUs(now + 99'999), 1);
  // Then one per interval: N messages never start sooner than (N - burst) intervals.
  int64_t t = now;
  for (int i = 3; i < 20; ++i) {
    t += b.WaitBeforeMessageUs(t);
    b.TakeMessage(t);
    EXPECT_GE(t - now, (i - 3 + 1) * 100'000) << i;
  }
  EXPECT_EQ(t - now, 17 * 100'000);
  // After a quiet time the burst is available again, but not more.
  t += 10'000'000;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(b.WaitBeforeMessageUs(t), 0);
    b.TakeMessage(t);
  }
  EXPECT_GT(b.WaitBeforeMessageUs(t), 0);
}

TEST(ShapingBudget, UnlimitedRateNeverWaits) {
  ShapingBudget b("domain a.example", ShapingLimits{});
  for (int i = 0; i < 1000; ++i) {
    EXPECT_EQ(b.WaitBeforeMessageUs(1), 0);
    b.TakeMessage(1);
  }
}

TEST(ShapingBudget, BudgetSetWaitsForTheSlowestRule) {
  ShapingBudget fast("domain a.example", RateLimits(100, absl::Seconds(1), 1));
  ShapingBudget slow("mx_suffix example", RateLimits(1, absl::Seconds(1), 1));
  BudgetSet set{{&fast, &slow, nullptr}};
  EXPECT_EQ(set.WaitBeforeMessageUs(0), 0);
  set.TakeMessage(0);
  EXPECT_EQ(set.WaitBeforeMessageUs(0), 1'000'000);
}

ShapingLimits Backoff(int after_4xx, absl::Duration base, absl::Duration max) {
  ShapingLimits l;
  l.backoff.enabled = true;
  l.backoff.after_4xx = after_4xx;
  l.backoff.base = base;
  l.backoff.max = max;
  return l;
}

TEST(ShapingBudget, BackoffAfter421IsExponentialCappedAndResetsOnSuccess) {
  ShapingBudget b("mx_suffix example", Backoff(0, absl::Seconds(2), absl::Seconds(10)));
  int64_t now = 1'000'000;
  const int64_t expected_ms[] = {2000, 4000, 8000, 10000, 10000};
  for (int64_t pause : expected_ms) {
    EXPECT_TRUE(b.OnReply(421, now));
    EXPECT_EQ(b.paused_until_ms(), now + pause);
    EXPECT_TRUE(b.Paused(now + pause - 1));
    EXPECT_FALSE(b.Paused(now + pause));
    now += pause;
  }
  EXPECT_TRUE(absl::StrContains(b.PauseReason(), "after 421")) << b.PauseReason();
  b.OnReply(250, now);  // success resets the level
  EXPECT_EQ(b.backoff_level(), 0);
  EXPECT_TRUE(b.OnReply(421, now));
  EXPECT_EQ(b.paused_until_ms(), now + 2000);
}

TEST(ShapingBudget, RepliesDuringAPauseDoNotEscalate) {
  ShapingBudget b("domain a.example", Backoff(2, absl::Seconds(1), absl::Seconds(60)));
  EXPECT_TRUE(b.OnReply(421, 0));
  EXPECT_FALSE(b.OnReply(421, 10));  // other connections' 421 for the same event
  EXPECT_FALSE(b.OnReply(451, 20));
  EXPECT_FALSE(b.OnReply(451, 30));
  EXPECT_EQ(b.backoff_level(), 1);
  EXPECT_EQ(b.paused_until_ms(), 1000);
}

TEST(ShapingBudget, ConsecutiveTempFailuresStartABackoff) {
  ShapingBudget b("domain a.example", Backoff(3, absl::Seconds(1), absl::Seconds(60)));
  EXPECT_FALSE(b.OnReply(451, 0));
  EXPECT_FALSE(b.OnReply(452, 0));
  EXPECT_FALSE(b.OnReply(250, 0));  // not consecutive any more
  EXPECT_FALSE(b.OnReply(451, 0));
  EXPECT_FALSE(b.OnReply(550, 0));  // a 5xx breaks the run too
  EXPECT_FALSE(b.OnReply(451, 0));
  EXPECT_FALSE(b.OnReply(451, 0));
  EXPECT_TRUE(b.OnReply(451, 0));
  EXPECT_TRUE(b.Paused(999));
  EXPECT_TRUE(absl::StrContains(b.PauseReason(), "3 consecutive 4xx")) << b.PauseReason();
}

TEST(ShapingBudget, DisabledBackoffNeverPauses) {
  ShapingBudget b("domain a.example", ShapingLimits{});
  for (int i = 0; i < 100; ++i) EXPECT_FALSE(b.OnReply(i % 2 ? 421 : 451, i));
  EXPECT_FALSE(b.Paused(100));
}

TEST(ShapingBudget, BudgetSetPausesOnDomainAndMxNotSource) {
  ShapingLimits l = Backoff(0, absl::Seconds(5), absl::Seconds(5));
  ShapingBudget domain("domain a.example", l), mx("mx_suffix example", l), src("source 127.0.0.5", l);
  BudgetSet set{{&domain, &mx, &src}};
  EXPECT_EQ(set.PausedBy(0), nullptr);
  EXPECT_TRUE(set.OnReply(421, 0));
  EXPECT_EQ(set.PausedBy(1), &domain);
  EXPECT_FALSE(src.Paused(1));  // a 421 is about the receiving host, not our address
  BudgetSet other_domain{{nullptr, &mx, nullptr}};
  EXPECT_EQ(other_domain.PausedBy(1), &mx);  // every domain behind the MX rule waits
  EXPECT_EQ(set.PausedBy(5000), nullptr);
}

TEST(ShapingBudget, MaxMessagesPerConnectionIsTheTightest) {
  ShapingLimits a, b;
  a.max_messages_per_connection = 50;
  b.max_messages_per_connection = 5;
  ShapingBudget x("domain a", a), y("mx_suffix b", b);
  EXPECT_EQ((BudgetSet{{&x, nullptr, nullptr}}).MaxMessagesPerConnection(1000), 50);
  EXPECT_EQ((BudgetSet{{&x, &y, nullptr}}).MaxMessagesPerConnection(1000), 5);
  EXPECT_EQ((BudgetSet{{&x, &y, nullptr}}).MaxMessagesPerConnection(3), 3);
  EXPECT_EQ((BudgetSet{}).MaxMessagesPerConnection(1000), 1000);
}

// --- the TOML keys ------------------------------------------------------------------------------

std::string WriteTemp(const std::string& text) {
  char name[] = "/tmp/mxb-shaping-XXXXXX";
  int fd = mkstemp(name);
  close(fd);
  std::ofstream(name) << text;
  return name;
}

absl::StatusOr<EngineConfig> ParseToml(const std::string& toml) {
  std::string path = WriteTemp("spool = \"/s\"\n" + toml);
  std::vector<std::string> args = {"mxburst", "--config", path};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  bool help = false, version = false;
  absl::StatusOr<EngineConfig> c =
      ParseFlags(static_cast<int>(argv.size()), argv.data(), &help, &version);
  unlink(path.c_str());
  return c;
}

TEST(ShapingConfig, ReadsRulesPoolsAndSelection) {
  absl::StatusOr<EngineConfig> c = ParseToml(R"(
default_source_pool = "bulk"

[backoff]
base = 7
max = 70

[source_pools.bulk]
addresses = ["127.0.0.5", "127.0.0.6"]
[source_pools.vip]
addresses = ["127.0.0.7"]

[[source_select]]
job = "newsletter-7"
pool = "vip"
[[source_select]]
sender_domain = "Shop.Example"
pool = "vip"

[[shaping]]
mx_suffix = "*.google.com"
max_connections = 3
max_message_rate = "600/minute"
rate_burst = 5
backoff_after_4xx = 4

[[shaping]]
domain = "Bank.Example"
max_messages_per_connection = 10
tls = "required"
verify = true

[[shaping]]
source = "127.0.0.5"
max_connections = 100
)");
  ASSERT_TRUE(c.ok()) << c.status();
  const ShapingConfig& s = c->shaping_config;
  ASSERT_EQ(s.rules.size(), 3u);
  EXPECT_EQ(s.rules[0].match, ShapingMatch::kMxSuffix);
  EXPECT_EQ(s.rules[0].pattern, "google.com");
  EXPECT_EQ(s.rules[0].limits.max_connections, 3);
  EXPECT_EQ(s.rules[0].limits.max_message_rate.count, 600);
  EXPECT_EQ(s.rules[0].limits.max_message_rate.period, absl::Minutes(1));
  EXPECT_EQ(s.rules[0].limits.rate_burst, 5);
  EXPECT_TRUE(s.rules[0].limits.backoff.enabled);
  EXPECT_EQ(s.rules[0].limits.backoff.after_4xx, 4);
  EXPECT_EQ(s.rules[0].limits.backoff.base, absl::Seconds(7));  // inherited from [backoff]
  EXPECT_EQ(s.rules[1].pattern, "bank.example");
  EXPECT_EQ(s.rules[1].limits.max_messages_per_connection, 10);
  ASSERT_TRUE(c->domain_tls.contains("bank.example"));
  EXPECT_EQ(c->domain_tls.at("bank.example").requirement, TlsRequirement::kRequired);
  EXPECT_TRUE(c->domain_tls.at("bank.example").verify);
  EXPECT_TRUE(s.default_backoff.enabled);
  EXPECT_EQ(s.default_backoff.max, absl::Seconds(70));

  ASSERT_NE(c->shaping, nullptr);
  const ShapingTable& t = *c->shaping;
  EXPECT_NE(t.ForMx("alt1.aspmx.l.google.com"), nullptr);
  EXPECT_NE(t.ForDomain("bank.example"), nullptr);
  EXPECT_NE(t.ForSource("127.0.0.5"), nullptr);
  ASSERT_EQ(t.config().pools.size(), 2u);
  const int vip = t.config().pools[0].name == "vip" ? 0 : 1;
  EXPECT_EQ(t.PoolFor("newsletter-7", "esp.example"), vip);
  EXPECT_EQ(t.PoolFor("other", "shop.example"), vip);
  EXPECT_EQ(t.PoolFor("other", "esp.example"), 1 - vip);  // the default pool
  EXPECT_EQ(t.config().pools[1 - vip].sockaddrs.size(), 2u);
}

TEST(ShapingConfig, NoConfigMeansNoShaping) {
  absl::StatusOr<EngineConfig> c = ParseToml("");
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_NE(c->shaping, nullptr);
  EXPECT_TRUE(c->shaping->empty());
  EXPECT_EQ(c->shaping->PoolFor("job", "a.example"), -1);
  EXPECT_FALSE(c->shaping_config.default_backoff.enabled);
}

TEST(ShapingConfig, BadKeysAreNamedOnOneLine) {
  struct Case {
    const char* toml;
    const char* must_name;
  } cases[] = {
      {"[[shaping]]\ndomain = \"a.example\"\nmax_conections = 2\n", "shaping[0].max_conections"},
      {"[[shaping]]\nmax_connections = 2\n", "shaping[0]"},
      {"[[shaping]]\ndomain = \"a\"\nmx_suffix = \"b\"\n", "shaping[0]"},
      {"[[shaping]]\ndomain = \"a\"\n[[shaping]]\ndomain = \"b\"\nmax_connections = 0\n",
       "shaping[1].max_connections"},
      {"[[shaping]]\ndomain = \"a\"\nmax_message_rate = \"10/day\"\n", "shaping[0].max_message_rate"},
      {"[[shaping]]\ndomain = \"a\"\nmax_message_rate = 10\n", "shaping[0].max_message_rate"},
      {"[[shaping]]\ndomain = \"a\"\nrate_burst = 3\n", "shaping[0].rate_burst"},
      {"[[shaping]]\nsource = \"127.0.0.300\"\n", "shaping[0].source"},
      {"[[shaping]]\nmx_suffix = \"*\"\n", "shaping[0].mx_suffix"},
      {"[[shaping]]\nmx_suffix = \"google.com\"\ntls = \"required\"\n", "shaping[0].tls"},
      {"[[shaping]]\ndomain = \"a\"\ntls = \"maybe\"\n", "shaping[0].tls"},
      {"[[shaping]]\ndomain = \"a\"\n[[shaping]]\ndomain = \"A\"\n", "shaping[1].domain"},
      {"[[shaping]]\ndomain = \"a\"\nbackoff_base = 60\nbackoff_max = 10\n", "shaping[0].backoff_max"},
      {"[[shaping]]\ndomain = \"a\"\nbackoff_base = 0\n", "shaping[0].backoff_base"},
      {"shaping = 3\n", "shaping"},
      {"[backoff]\nafter4xx = 3\n", "backoff.after4xx"},
      {"[source_pools.a]\naddresses = [\"localhost\"]\n", "source_pools.a.addresses"},
      {"[source_pools.a]\naddresses = []\n", "source_pools.a.addresses"},
      {"[source_pools.a]\nadresses = [\"127.0.0.5\"]\n", "source_pools.a.adresses"},
      {"default_source_pool = \"nope\"\n", "default_source_pool"},
      {"[source_pools.a]\naddresses = [\"127.0.0.5\"]\n[[source_select]]\njob = \"j\"\npool = \"b\"\n",
       "source_select[0].pool"},
      {"[source_pools.a]\naddresses = [\"127.0.0.5\"]\n[[source_select]]\npool = \"a\"\n",
       "source_select[0]"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<EngineConfig> cfg = ParseToml(c.toml);
    ASSERT_FALSE(cfg.ok()) << c.toml;
    std::string msg(cfg.status().message());
    EXPECT_TRUE(absl::StrContains(msg, c.must_name)) << c.toml << " -> " << msg;
    EXPECT_FALSE(absl::StrContains(msg, "\n")) << "one line: " << msg;
  }
}

}  // namespace
}  // namespace mxb

namespace mxb {
namespace {

// scope = "cluster" (issue 15): online, the leased slots and tokens bound the budget; offline,
// its own limits (the local share) apply as for any rule.
TEST(ShapingBudget, ClusterShareBoundsConnectionsAndRateOfflineTheLocalShare) {
  ShapingLimits l = RateLimits(10, absl::Seconds(1), 1);  // the local share: 100 ms apart
  l.max_connections = 2;
  ShapingBudget b("domain a.example", l);
  ClusterShare share;
  b.AttachCluster(&share);
  share.online = true;
  share.slots = 3;
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(b.TryOpenConnection()) << i;  // above the local 2
  EXPECT_FALSE(b.TryOpenConnection());
  EXPECT_TRUE(share.want_slots.load()) << "the Redis thread is asked for more";
  EXPECT_EQ(share.in_use.load(), 3);
  b.CloseConnection();
  EXPECT_EQ(share.in_use.load(), 2);
  share.tokens = 2;
  const int64_t now = 1'000'000;
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(b.WaitBeforeMessageUs(now), 0) << i;  // leased tokens go back to back
    b.TakeMessage(now);
  }
  EXPECT_GT(b.WaitBeforeMessageUs(now), 0);
  EXPECT_TRUE(share.want_tokens.load());
  EXPECT_EQ(share.last_take_us.load(), now);
  // Redis gone: the local share, 2 connections (2 open: none more) and 10/s.
  share.online = false;
  EXPECT_FALSE(b.TryOpenConnection());
  b.CloseConnection();
  EXPECT_TRUE(b.TryOpenConnection());
  ASSERT_EQ(b.WaitBeforeMessageUs(now), 0);
  b.TakeMessage(now);
  EXPECT_EQ(b.WaitBeforeMessageUs(now), 100'000);
}

}  // namespace
}  // namespace mxb
