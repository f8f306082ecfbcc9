// Config file and flags: a bad key stops start-up with one line that names it.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "engine/config.h"
#include "gtest/gtest.h"

namespace mxb {
namespace {

std::string WriteTemp(const std::string& text) {
  char name[] = "/tmp/mxb-config-XXXXXX";
  int fd = mkstemp(name);
  close(fd);
  std::ofstream(name) << text;
  return name;
}

absl::StatusOr<EngineConfig> Parse(std::vector<std::string> args) {
  std::vector<char*> argv;
  static std::string prog = "mxburst";
  argv.push_back(prog.data());
  for (std::string& a : args) argv.push_back(a.data());
  bool help = false, version = false;
  return ParseFlags(static_cast<int>(argv.size()), argv.data(), &help, &version);
}

struct BadCase {
  const char* toml;
  const char* must_name;  // the key the one-line error must mention
};

TEST(ConfigFile, BadKeysAreNamed) {
  const BadCase cases[] = {
      {"spool = \"/s\"\n[limits]\nmax_conections = 4\n", "limits.max_conections"},
      {"spool = \"/s\"\n[tls]\nprefix_signals = \"strict\"\n", "tls.prefix_signals"},
      {"spool = \"/s\"\n[tls]\nmode = \"sometimes\"\n", "tls.mode"},
      {"spool = \"/s\"\n[domain.\"a.example\"]\nverify = \"yes\"\n", "domain.\"a.example\".verify"},
      {"spool = \"/s\"\n[domain.\"a.example\"]\ntls = \"maybe\"\n", "domain.\"a.example\".tls"},
      {"spool = \"/s\"\nworkers = 0\n", "workers"},
      {"spool = \"/s\"\nworkers = \"two\"\n", "workers"},
      {"spool = \"/s\"\n[timeouts]\nscale = -1.0\n", "timeouts.scale"},
      {"spool = \"/s\"\nroute = \"*=x\"\n", "route"},
      {"spool = \"/s\"\nunknown_top = 1\n", "unknown_top"},
      {"spool = \"/s\"\n[dns_cache]\nttl_floor = 100\nttl_ceiling = 10\n", "dns_cache.ttl_floor"},
      {"spool = \"/s\"\n[dns_cache]\nmax_mx = 3\n", "dns_cache.max_mx"},
      {"spool = \"/s\"\n[queue]\ndsn = \"mailbox\"\n", "queue.dsn"},
      {"spool = \"/s\"\n[queue]\ndsn = 1\n", "queue.dsn"},
  };
  for (const BadCase& c : cases) {
    std::string path = WriteTemp(c.toml);
    absl::StatusOr<EngineConfig> cfg = Parse({"--config", path, "--route", "*=127.0.0.1:25"});
    ASSERT_FALSE(cfg.ok()) << c.toml;
    std::string msg(cfg.status().message());
    EXPECT_TRUE(absl::StrContains(msg, c.must_name)) << msg;
    EXPECT_TRUE(absl::StrContains(msg, path)) << msg;
    EXPECT_FALSE(absl::StrContains(msg, "\n")) << "one line: " << msg;
    std::remove(path.c_str());
  }
}

TEST(ConfigFile, GoodFileIsReadAndFlagsOverrideIt) {
  std::string path = WriteTemp(R"(spool = "/var/spool/mxb"
workers = 3
route = ["*=127.0.0.1:2525"]
dns = ["127.0.0.1:5353"]
[limits]
max_connections = 7
[timeouts]
idle = 9
scale = 0.5
[dns_cache]
ttl_floor = 60
negative_ttl = 120
[tls]
prefix_signals = "log-only"
smtps_port = 2626
[domain."Bank.Example"]
tls = "required"
verify = true
)");
  absl::StatusOr<EngineConfig> cfg = Parse({"--workers", "2", "--config", path});
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->spool_dir, "/var/spool/mxb");
  EXPECT_EQ(cfg->workers, 2);  // the flag wins, wherever --config stands
  EXPECT_EQ(cfg->max_connections_per_destination, 7);
  EXPECT_EQ(cfg->idle_timeout, absl::Seconds(9));
  EXPECT_DOUBLE_EQ(cfg->reply_timeout_scale, 0.5);
  EXPECT_EQ(cfg->tls_global.prefix_signals, PrefixSignals::kLogOnly);
  EXPECT_EQ(cfg->tls_global.smtps_port, 2626);
  ASSERT_EQ(cfg->dns_servers.size(), 1u);
  EXPECT_EQ(cfg->dns_ttl_floor, absl::Seconds(60));
  EXPECT_EQ(cfg->dns_negative_ttl, absl::Seconds(120));
  ASSERT_TRUE(cfg->domain_tls.contains("bank.example"));
  EXPECT_EQ(cfg->domain_tls["bank.example"].requirement, TlsRequirement::kRequired);
  EXPECT_TRUE(cfg->domain_tls["bank.example"].verify);
  std::remove(path.c_str());
}

TEST(Flags, BadFlagsAreNamed) {
  const std::vector<std::vector<std::string>> cases = {
      {"--spool", "/s", "--route", "*=127.0.0.1", "--workers", "0"},
      {"--spool", "/s", "--route", "*=127.0.0.1", "--tls", "maybe"},
      {"--spool", "/s", "--route", "*=127.0.0.1", "--bogus"},
      {"--spool", "/s", "--route", "*=127.0.0.1", "--prefix-signals", "x"},
      {"--spool", "/s", "--route", "*=127.0.0.1", "--dsn", "mailbox"},
      {"--spool"},
  };
  for (const auto& args : cases) {
    absl::StatusOr<EngineConfig> cfg = Parse(args);
    ASSERT_FALSE(cfg.ok());
    EXPECT_TRUE(absl::StartsWith(cfg.status().message(), "--")) << cfg.status();
  }
}

// [queue] dsn picks where DSNs go; the flag overrides the file; the default is bounces/.
TEST(ConfigFile, DsnDestination) {
  absl::StatusOr<EngineConfig> cfg = Parse({"--spool", "/s"});
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->dsn_destination, DsnDestination::kBouncesDir);
  std::string path = WriteTemp("spool = \"/s\"\n[queue]\ndsn = \"spool\"\n");
  cfg = Parse({"--config", path});
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->dsn_destination, DsnDestination::kIncoming);
  cfg = Parse({"--config", path, "--dsn", "bounces"});
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->dsn_destination, DsnDestination::kBouncesDir);
  std::remove(path.c_str());
}

}  // namespace
}  // namespace mxb
