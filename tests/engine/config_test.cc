// Config file and flags: a bad key stops start-up with one line that names it.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
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

// `prefix` + c.toml as a config file must fail with one line naming the file and c.must_name.
void ExpectNamed(const std::string& prefix, const BadCase& c) {
  std::string path = WriteTemp(prefix + c.toml);
  absl::StatusOr<EngineConfig> cfg = Parse({"--config", path, "--route", "*=127.0.0.1:25"});
  ASSERT_FALSE(cfg.ok()) << c.toml;
  std::string msg(cfg.status().message());
  EXPECT_TRUE(absl::StrContains(msg, c.must_name)) << msg;
  EXPECT_TRUE(absl::StrContains(msg, path)) << msg;
  EXPECT_FALSE(absl::StrContains(msg, "\n")) << "one line: " << msg;
  std::remove(path.c_str());
}

TEST(ConfigFile, BadKeysAreNamed) {
  const BadCase cases[] = {
      {"spool = \"/s\"\n[limits]\nmax_conections = 4\n", "limits.max_conections"},
      {"spool = \"/s\"\n[tls]\nprefix_signals = \"strict\"\n", "tls.prefix_signals"},
      {"spool = \"/s\"\n[tls]\nmode = \"sometimes\"\n", "tls.mode"},
      {"spool = \"/s\"\n[domain.\"a.example\"]\nverify = \"yes\"\n", "domain.\"a.example\".verify"},
      {"spool = \"/s\"\n[domain.\"a.example\"]\ntls = \"maybe\"\n", "domain.\"a.example\".tls"},
      {"spool = \"/s\"\nworkers = 0\n", "workers"},
      {"spool = \"/s\"\nworkers = \"two\"\n", "workers"},
      {"spool = \"/s\"\nscanner_threads = 65\n", "scanner_threads"},
      {"spool = \"/s\"\n[timeouts]\nscale = -1.0\n", "timeouts.scale"},
      {"spool = \"/s\"\nroute = \"*=x\"\n", "route"},
      {"spool = \"/s\"\nunknown_top = 1\n", "unknown_top"},
      {"spool = \"/s\"\n[dns_cache]\nttl_floor = 100\nttl_ceiling = 10\n", "dns_cache.ttl_floor"},
      {"spool = \"/s\"\n[dns_cache]\nmax_mx = 3\n", "dns_cache.max_mx"},
      {"spool = \"/s\"\n[queue]\ndsn = \"mailbox\"\n", "queue.dsn"},
      {"spool = \"/s\"\n[queue]\ndsn = 1\n", "queue.dsn"},
  };
  for (const BadCase& c : cases) ExpectNamed("", c);
}

// [[dkim]] syntax (the key files themselves are checked by dkim::Signer::Load, tests/dkim).
TEST(ConfigFile, DkimEntries) {
  const std::string k = "domain = \"d.example\"\nselector = \"s1\"\nkey_file = \"/k.pem\"\n";
  const BadCase cases[] = {
      {"dkim = 1\n", "dkim"},
      {"[[dkim]]\nselector = \"s\"\nkey_file = \"/k\"\n", "dkim[0].domain"},
      {"[[dkim]]\ndomain = \"d.example\"\nkey_file = \"/k\"\n", "dkim[0].selector"},
      {"[[dkim]]\ndomain = \"d.example\"\nselector = \"s\"\n", "dkim[0].key_file"},
      {"[[dkim]]\ndomain = \"d.example\"\nselector = \"s 1\"\nkey_file = \"/k\"\n",
       "dkim[0].selector"},
      {"[[dkim]]\ndomain = \"d..example\"\nselector = \"s\"\nkey_file = \"/k\"\n",
       "dkim[0].domain"},
      {"[[dkim]]\ndomain = \"d.example\"\nselector = \"s\"\nkey_file = \"/k\"\nalgorithm = \"rsa-sha1\"\n",
       "dkim[0].algorithm"},
      {"[[dkim]]\ndomain = \"d.example\"\nselector = \"s\"\nkey_file = \"/k\"\ncanonicalization = \"loose\"\n",
       "dkim[0].canonicalization"},
      {"[[dkim]]\ndomain = \"d.example\"\nselector = \"s\"\nkey_file = \"/k\"\nheaders = []\n",
       "dkim[0].headers"},
      {"[[dkim]]\ndomain = \"d.example\"\nselector = \"s\"\nkey_file = \"/k\"\nexpire = -5\n",
       "dkim[0].expire"},
      {"[[dkim]]\ndomain = \"d.example\"\nselector = \"s\"\nkey_file = \"/k\"\nsender_domain = \"a b\"\n",
       "dkim[0].sender_domain"},
      {"[[dkim]]\ndomain = \"d.example\"\nselector = \"s\"\nkey_file = \"/k\"\nkeyfile = \"/k\"\n",
       "dkim[0].keyfile"},
  };
  for (const BadCase& c : cases) ExpectNamed("spool = \"/s\"\n", c);
  std::string path = WriteTemp(absl::StrCat(
      "spool = \"/s\"\n[[dkim]]\n", k, "[[dkim]]\n", k,
      "algorithm = \"ed25519-sha256\"\ncanonicalization = \"simple\"\nheaders = [\"From\", "
      "\"To\"]\noversign = []\nexpire = 86400\njob = \"j1\"\nsender_domain = \"*\"\n"));
  absl::StatusOr<EngineConfig> cfg = Parse({"--config", path, "--route", "*=127.0.0.1:25"});
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  ASSERT_EQ(cfg->dkim_keys.size(), 2u);
  const dkim::SigningKey& a = cfg->dkim_keys[0];
  EXPECT_EQ(a.domain, "d.example");
  EXPECT_EQ(a.algorithm, dkim::Algorithm::kRsaSha256);
  EXPECT_EQ(a.header_canon, dkim::Canonicalization::kRelaxed);
  EXPECT_EQ(a.body_canon, dkim::Canonicalization::kRelaxed);
  EXPECT_TRUE(a.headers.empty());  // the default list, filled in by Signer::Load
  EXPECT_EQ(a.oversign, std::vector<std::string>{"From"});
  const dkim::SigningKey& b = cfg->dkim_keys[1];
  EXPECT_EQ(b.algorithm, dkim::Algorithm::kEd25519Sha256);
  EXPECT_EQ(b.header_canon, dkim::Canonicalization::kSimple);
  EXPECT_EQ(b.body_canon, dkim::Canonicalization::kSimple);
  EXPECT_EQ(b.headers, (std::vector<std::string>{"From", "To"}));
  EXPECT_TRUE(b.oversign.empty());
  EXPECT_EQ(b.expire_seconds, 86400);
  EXPECT_EQ(b.job, "j1");
  EXPECT_EQ(b.sender_domain, "*");
  EXPECT_EQ(cfg->dkim, nullptr);  // keys are loaded by LoadDkimSigner, not by parsing
  std::remove(path.c_str());
}

TEST(ConfigFile, GoodFileIsReadAndFlagsOverrideIt) {
  std::string path = WriteTemp(R"(spool = "/var/spool/mxb"
workers = 3
scanner_threads = 2
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
  EXPECT_EQ(cfg->scanner_threads, 2);
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
      {"--spool", "/s", "--route", "*=127.0.0.1", "--scanner-threads", "-1"},
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

// Issue 10 item 11: every numeric key rejects non-finite, negative, fractional (for counts)
// and out-of-range values with one line naming the key. timeouts.scale = nan used to pass
// (nan compares false with both bounds) and then stopped all mail.
TEST(ConfigFile, EveryNumericKeyRejectsNonFiniteAndOutOfRange) {
  struct Key {
    const char* table;  // "" = top level; "[[shaping]]" gets a domain = line
    const char* key;
    const char* named;
  };
  const Key keys[] = {
      {"", "workers", "workers"},
      {"[limits]", "max_connections", "limits.max_connections"},
      {"[limits]", "max_messages_per_connection", "limits.max_messages_per_connection"},
      {"[limits]", "max_recipients", "limits.max_recipients"},
      {"[limits]", "max_in_flight", "limits.max_in_flight"},
      {"[limits]", "max_in_flight_mb", "limits.max_in_flight_mb"},
      {"[limits]", "policy_cache_entries", "limits.policy_cache_entries"},
      {"[timeouts]", "connect", "timeouts.connect"},
      {"[timeouts]", "idle", "timeouts.idle"},
      {"[timeouts]", "scale", "timeouts.scale"},
      {"[timeouts]", "dead_destination", "timeouts.dead_destination"},
      {"[dns_cache]", "ttl_floor", "dns_cache.ttl_floor"},
      {"[dns_cache]", "ttl_ceiling", "dns_cache.ttl_ceiling"},
      {"[dns_cache]", "negative_ttl", "dns_cache.negative_ttl"},
      {"[dns_cache]", "tempfail_ttl", "dns_cache.tempfail_ttl"},
      {"[dns_cache]", "max_mx_hosts", "dns_cache.max_mx_hosts"},
      {"[queue]", "retry_repeat", "queue.retry_repeat"},
      {"[queue]", "max_age", "queue.max_age"},
      {"[tls]", "smtp_port", "tls.smtp_port"},
      {"[tls]", "smtps_port", "tls.smtps_port"},
      {"[tls]", "implicit_tls_retry", "tls.implicit_tls_retry"},
      {"[backoff]", "after_4xx", "backoff.after_4xx"},
      {"[backoff]", "base", "backoff.base"},
      {"[backoff]", "max", "backoff.max"},
      {"[[shaping]]", "max_connections", "shaping[0].max_connections"},
      {"[[shaping]]", "max_messages_per_connection", "shaping[0].max_messages_per_connection"},
      {"[[shaping]]", "backoff_after_4xx", "shaping[0].backoff_after_4xx"},
      {"[[shaping]]", "backoff_base", "shaping[0].backoff_base"},
      {"[[shaping]]", "backoff_max", "shaping[0].backoff_max"},
  };
  const char* values[] = {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "-1", "1e300",
                          "-1e300", "9223372036854775807", "-9223372036854775808"};
  for (const Key& k : keys) {
    for (const char* v : values) {
      std::string text = "spool = \"/s\"\n";
      if (*k.table != '\0') absl::StrAppend(&text, k.table, "\n");
      if (std::string(k.table) == "[[shaping]]") text += "domain = \"x.example\"\n";
      absl::StrAppend(&text, k.key, " = ", v, "\n");
      std::string path = WriteTemp(text);
      absl::StatusOr<EngineConfig> cfg = Parse({"--config", path});
      std::remove(path.c_str());
      ASSERT_FALSE(cfg.ok()) << text;
      std::string msg(cfg.status().message());
      EXPECT_TRUE(absl::StrContains(msg, k.named)) << text << " -> " << msg;
      EXPECT_FALSE(absl::StrContains(msg, "\n")) << msg;
    }
  }
  // Retry delays: each element.
  for (const char* v : {"nan", "inf", "-1", "0", "1.5", "1e300", "9223372036854775807"}) {
    std::string path = WriteTemp(absl::StrCat("spool = \"/s\"\n[queue]\nretry_delays = [60, ", v, "]\n"));
    absl::StatusOr<EngineConfig> cfg = Parse({"--config", path});
    std::remove(path.c_str());
    ASSERT_FALSE(cfg.ok()) << v;
    EXPECT_TRUE(absl::StrContains(cfg.status().message(), "queue.retry_delays")) << cfg.status();
  }
  // In range is still fine, and an integer is a number for scale.
  std::string path = WriteTemp("spool = \"/s\"\n[timeouts]\nscale = 2\nconnect = 10\n");
  absl::StatusOr<EngineConfig> cfg = Parse({"--config", path});
  std::remove(path.c_str());
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->reply_timeout_scale, 2.0);
}

// The same for every numeric flag, and --dns / the `dns` key (issue 10 item 11: a port of 99999,
// a non-address and an empty value were accepted and the engine then deferred all mail).
TEST(Flags, NumericFlagsRejectNonFiniteAndOutOfRange) {
  const char* flags[] = {"--workers", "--smtp-port", "--smtps-port", "--max-connections",
                         "--max-messages-per-connection", "--max-recipients", "--max-in-flight",
                         "--max-in-flight-mb", "--connect-timeout", "--idle-timeout",
                         "--timeout-scale"};
  const char* values[] = {"nan", "NaN", "-nan", "inf", "-inf", "infinity", "-1", "1e300", "",
                          "99999999999999999999", "1x"};
  for (const char* f : flags) {
    for (const char* v : values) {
      absl::StatusOr<EngineConfig> cfg = Parse({"--spool", "/s", f, v});
      ASSERT_FALSE(cfg.ok()) << f << " " << v;
      EXPECT_TRUE(absl::StartsWith(cfg.status().message(), f)) << cfg.status();
    }
  }
  for (const char* v : {"nan/3600/345600", "300/inf/345600", "300/3600/-1", "1e300/1/1",
                        "99999999999999999999/1/1", "300/3600/99999999999", "300,nan/1/1"}) {
    absl::StatusOr<EngineConfig> cfg = Parse({"--spool", "/s", "--retry", v});
    ASSERT_FALSE(cfg.ok()) << v;
    EXPECT_TRUE(absl::StartsWith(cfg.status().message(), "--retry")) << cfg.status();
  }
  absl::StatusOr<EngineConfig> ok = Parse({"--spool", "/s", "--timeout-scale", "0.25"});
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->reply_timeout_scale, 0.25);
}

TEST(Flags, DnsServersAreValidated) {
  for (const char* v : {"", "127.0.0.1:99999", "127.0.0.1:0", "127.0.0.1:", "dns.example",
                        "dns.example:53", "localhost", "127.0.0.1:53x", "[::1]:99999", "[::1",
                        "[127.0.0.1]:53", "127.0.0.1:53,", ",127.0.0.1", "127.0.0.1:-53",
                        "1.2.3:53"}) {
    absl::StatusOr<EngineConfig> cfg = Parse({"--spool", "/s", "--dns", v});
    ASSERT_FALSE(cfg.ok()) << "'" << v << "'";
    std::string msg(cfg.status().message());
    EXPECT_TRUE(absl::StartsWith(msg, "--dns: ")) << msg;
    EXPECT_FALSE(absl::StrContains(msg, "\n")) << msg;
  }
  for (const char* v : {"127.0.0.1", "127.0.0.1:53", "[::1]:5353", "::1",
                        "127.0.0.1:53,127.0.0.2:5353"}) {
    absl::StatusOr<EngineConfig> cfg = Parse({"--spool", "/s", "--dns", v});
    EXPECT_TRUE(cfg.ok()) << v << ": " << cfg.status();
  }
  for (const char* list : {"[]", "[\"127.0.0.1:99999\"]", "[\"resolver.example\"]", "[\"\"]"}) {
    std::string path = WriteTemp(absl::StrCat("spool = \"/s\"\ndns = ", list, "\n"));
    absl::StatusOr<EngineConfig> cfg = Parse({"--config", path});
    std::remove(path.c_str());
    ASSERT_FALSE(cfg.ok()) << list;
    EXPECT_TRUE(absl::StrContains(cfg.status().message(), ": dns: ")) << cfg.status();
  }
}

// Issue 10 item 15: Debian's toml++ 3.3 reaches `unreachable` on a non-ASCII bare key. Such
// input is rejected before toml++ with one line naming the line; non-ASCII inside strings and
// comments (TOML allows it there) is still fine.
TEST(ConfigFile, NonAsciiBareKeyIsRejectedWithItsLine) {
  for (const char* text : {"spool = \"/s\"\n[domain.b\xc3\xbc" "cher.example]\ntls = \"required\"\n",
                           "spool = \"/s\"\n\n[domain]\nb\xc3\xbc" "cher = 1\n",
                           "spool = \"/s\"\n\"\"\"x\"\"\" = 1\n\xe2\x82\xac = 2\n"}) {
    std::string path = WriteTemp(text);
    absl::StatusOr<EngineConfig> cfg = Parse({"--config", path});
    ASSERT_FALSE(cfg.ok()) << text;
    std::string msg(cfg.status().message());
    EXPECT_TRUE(absl::StrContains(msg, "non-ASCII character outside a string")) << msg;
    EXPECT_TRUE(absl::StartsWith(msg, path + ":")) << msg;
    EXPECT_FALSE(absl::StrContains(msg, "\n")) << msg;
    std::remove(path.c_str());
  }
  EngineConfig c;
  absl::Status s = LoadConfigString("spool = \"/s\"\n# caf\xc3\xa9\n[domain.x]\ntls = \"required\"\n"
                                    "[domain.b\xc3\xbc" "cher]\n", "t.toml", &c);
  EXPECT_EQ(s.message(), "t.toml:5: non-ASCII character outside a string (a bare key must be "
                         "ASCII; quote it: [domain.\"b\xc3\xbc" "cher.example\"])");
  // Quoted, in strings (basic, literal, multi-line) and comments: accepted.
  c = EngineConfig{};
  s = LoadConfigString("spool = \"/sp\xc3\xb6ol\" # \xc3\xa9\nhelo = 'h\xc3\xa9'\n"
                       "log = \"\"\"\nl\xc3\xb6g\\\n\"\"\"\n"
                       "[domain.\"b\xc3\xbc" "cher.example\"]\ntls = \"required\"\n",
                       "t.toml", &c);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(c.spool_dir, "/sp\xc3\xb6ol");
  EXPECT_EQ(c.domain_tls.count("b\xc3\xbc" "cher.example"), 1u);
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

namespace mxb {
namespace {

// Issue 16: [relay.NAME]. The password file is read at start-up; one readable by group or
// others, a missing one, an empty one or one with two lines stops start-up with one line that
// names the key and the file — and never the password.
TEST(ConfigFile, RelayTablesAndTheirPasswordFile) {
  const std::string secret = WriteTemp("correct horse\n");
  ASSERT_EQ(chmod(secret.c_str(), 0600), 0);
  const std::string good = absl::StrCat(
      "spool = \"/s\"\n[relay.smart]\nhost = \"relay.example@127.0.0.26\"\nport = 587\n"
      "tls = \"starttls\"\nauth = \"login\"\nusername = \"mx@esp.example\"\npassword_file = \"",
      secret, "\"\n[relay.plainhost]\nhost = \"relay2.example\"\n");
  const std::string path = WriteTemp(good);
  absl::StatusOr<EngineConfig> cfg = Parse({"--config", path});
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  ASSERT_EQ(cfg->relays.size(), 2u);
  const RelayConfig* smart = FindRelay(cfg->relays, "smart");
  ASSERT_NE(smart, nullptr);
  EXPECT_EQ(smart->HopSpec(), "relay.example@127.0.0.26:587");
  EXPECT_FALSE(smart->implicit_tls);
  EXPECT_TRUE(smart->auth);
  EXPECT_EQ(smart->credentials.mechanism, AuthMechanism::kLogin);
  EXPECT_EQ(smart->credentials.password, "correct horse");
  const RelayConfig* plain = FindRelay(cfg->relays, "plainhost");
  ASSERT_NE(plain, nullptr);
  EXPECT_EQ(plain->port, 465);  // RFC 8314 §7.3: submissions
  EXPECT_TRUE(plain->implicit_tls);
  EXPECT_FALSE(plain->auth);
  const TlsPolicy p = RelayTlsPolicy(*plain);
  EXPECT_EQ(p.requirement, TlsRequirement::kRequired);
  EXPECT_TRUE(p.verify);
  std::remove(path.c_str());

  const std::string two_lines = WriteTemp("correct horse\nsecond\n");
  const std::string empty = WriteTemp("");
  ASSERT_EQ(chmod(two_lines.c_str(), 0600), 0);
  ASSERT_EQ(chmod(empty.c_str(), 0600), 0);
  const std::string readable = WriteTemp("correct horse\n");
  ASSERT_EQ(chmod(readable.c_str(), 0640), 0);
  struct Case {
    std::string body;
    const char* must_say;
  };
  const std::string head = "spool = \"/s\"\n[relay.smart]\nhost = \"r.example\"\n";
  const Case cases[] = {
      {head + "auth = \"plain\"\nusername = \"u\"\npassword_file = \"" + readable + "\"\n",
       "readable or writable by group or others (mode 0640): chmod 600 it"},
      {head + "auth = \"plain\"\nusername = \"u\"\npassword_file = \"/nonexistent/pw\"\n",
       "cannot open"},
      {head + "auth = \"plain\"\nusername = \"u\"\npassword_file = \"" + two_lines + "\"\n",
       "more than one line"},
      {head + "auth = \"plain\"\nusername = \"u\"\npassword_file = \"" + empty + "\"\n", "empty"},
      {head + "auth = \"cram-md5\"\nusername = \"u\"\npassword_file = \"" + secret + "\"\n",
       "relay.smart.auth: expected plain|login"},
      {head + "auth = \"plain\"\npassword_file = \"" + secret + "\"\n",
       "relay.smart.username: required"},
      {head + "username = \"u\"\n", "relay.smart.auth: required"},
      {head + "tls = \"none\"\n", "relay.smart.tls: expected implicit|starttls"},
      {"spool = \"/s\"\n[relay.smart]\nport = 465\n", "relay.smart.host: required"},
      {head + "pasword_file = \"x\"\n", "relay.smart.pasword_file: unknown key"},
  };
  for (const Case& c : cases) {
    const std::string file = WriteTemp(c.body);
    absl::StatusOr<EngineConfig> bad = Parse({"--config", file});
    ASSERT_FALSE(bad.ok()) << c.body;
    const std::string msg(bad.status().message());
    EXPECT_TRUE(absl::StrContains(msg, c.must_say)) << msg;
    EXPECT_TRUE(absl::StrContains(msg, file)) << msg;
    EXPECT_FALSE(absl::StrContains(msg, "correct horse")) << msg;
    EXPECT_FALSE(absl::StrContains(msg, "\n")) << msg;
    std::remove(file.c_str());
  }
  for (const std::string& f : {secret, two_lines, empty, readable}) std::remove(f.c_str());
}

// Issue 15: [input.amqp], [cluster] and scope = "cluster" (engine/config_cluster.cc).
TEST(ConfigFile, AmqpInputAndClusterKeys) {
  const BadCase cases[] = {
      {"spool = \"/s\"\n[input.amqp]\nurl = \"http://x\"\n", "input.amqp.url"},
      {"spool = \"/s\"\n[input.amqp]\nqueue = \"q\"\n", "input.amqp.url"},
      {"spool = \"/s\"\n[input.amqp]\nurl = \"amqp://h\"\nprefetch = 0\n", "input.amqp.prefetch"},
      {"spool = \"/s\"\n[input.amqp]\nurl = \"amqp://h\"\nprefech = 5\n", "input.amqp.prefech"},
      {"spool = \"/s\"\n[input.kafka]\nurl = \"x\"\n", "input.kafka"},
      {"spool = \"/s\"\n[cluster]\nredis = \"127.0.0.1:6379\"\n", "cluster.redis"},
      {"spool = \"/s\"\n[cluster]\nredis = \"redis://h\"\nexpected_nodes = 0\n",
       "cluster.expected_nodes"},
      {"spool = \"/s\"\n[[shaping]]\ndomain = \"a.example\"\nscope = \"global\"\n",
       "shaping[0].scope"},
      {"spool = \"/s\"\n[[shaping]]\ndomain = \"a.example\"\nscope = \"cluster\"\n",
       "shaping[0].scope"},
  };
  for (const BadCase& c : cases) ExpectNamed("", c);
  std::string path = WriteTemp(
      "spool = \"/s\"\n[input.amqp]\nurl = \"amqp://u:p@127.0.0.1:5673/\"\nqueue = \"out\"\n"
      "prefetch = 64\n[cluster]\nredis = \"redis://127.0.0.1:6380\"\nnode = \"n2\"\n"
      "expected_nodes = 3\n[[shaping]]\ndomain = \"a.example\"\nscope = \"cluster\"\n"
      "max_connections = 7\nmax_message_rate = \"90/second\"\n");
  absl::StatusOr<EngineConfig> cfg = Parse({"--config", path, "--route", "*=127.0.0.1:25"});
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->amqp.queue, "out");
  EXPECT_EQ(cfg->amqp.prefetch, 64);
  EXPECT_EQ(cfg->cluster.node, "n2");
  ASSERT_EQ(cfg->shaping->ClusterBudgets().size(), 1u);
  // The budget's own limits are the local share used while Redis is unreachable.
  auto [rule, budget] = cfg->shaping->ClusterBudgets()[0];
  EXPECT_EQ(rule->limits.max_connections, 7);
  EXPECT_EQ(budget->limits().max_connections, 2);
  EXPECT_EQ(budget->limits().max_message_rate.IntervalUs(), 33333) << "90/s over 3 nodes: 30/s each";
  std::remove(path.c_str());
}

// Issue 15: [output.amqp], the outcome stream (output/amqp_output.h).
TEST(ConfigFile, AmqpOutputKeys) {
  const std::string long_key = absl::StrCat(
      "spool = \"/s\"\n[output.amqp]\nurl = \"amqp://h\"\nrouting_key = \"", std::string(256, 'k'),
      "\"\n");
  const BadCase cases[] = {
      {"spool = \"/s\"\n[output.amqp]\nexchange = \"x\"\n", "output.amqp.url"},
      {"spool = \"/s\"\n[output.amqp]\nurl = \"http://x\"\n", "output.amqp.url"},
      {"spool = \"/s\"\n[output.amqp]\nurl = \"amqp://h\"\nmax_queued = 0\n",
       "output.amqp.max_queued"},
      {"spool = \"/s\"\n[output.amqp]\nurl = \"amqp://h\"\nexchange = 5\n", "output.amqp.exchange"},
      {"spool = \"/s\"\n[output.amqp]\nurl = \"amqp://h\"\nroutingkey = \"k\"\n",
       "output.amqp.routingkey"},
      {"spool = \"/s\"\n[output.amqp]\nurl = \"amqp://h\"\nexchange = \"\"\nrouting_key = \"\"\n",
       "output.amqp.routing_key"},
      {long_key.c_str(), "output.amqp.routing_key"},
      {"spool = \"/s\"\n[output.kafka]\nurl = \"x\"\n", "output.kafka"},
      {"spool = \"/s\"\noutput = 3\n", "output"},
  };
  for (const BadCase& c : cases) ExpectNamed("", c);
  std::string path = WriteTemp(
      "spool = \"/s\"\n[output.amqp]\nurl = \"amqp://u:p@127.0.0.1:5673/\"\n"
      "exchange = \"outcomes\"\nrouting_key = \"mx1\"\nmax_queued = 500\n");
  absl::StatusOr<EngineConfig> cfg = Parse({"--config", path, "--route", "*=127.0.0.1:25"});
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_TRUE(cfg->amqp_output.enabled());
  EXPECT_EQ(cfg->amqp_output.exchange, "outcomes");
  EXPECT_EQ(cfg->amqp_output.routing_key, "mx1");
  EXPECT_EQ(cfg->amqp_output.max_queued, 500u);
  EXPECT_FALSE(cfg->amqp.enabled()) << "[output.amqp] alone consumes nothing";
  std::remove(path.c_str());
  path = WriteTemp("spool = \"/s\"\n[output.amqp]\nurl = \"amqp://127.0.0.1\"\n");
  cfg = Parse({"--config", path, "--route", "*=127.0.0.1:25"});
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->amqp_output.exchange, "amq.topic");
  EXPECT_EQ(cfg->amqp_output.routing_key, "mxburst.outcome");
  std::remove(path.c_str());
}

}  // namespace
}  // namespace mxb
