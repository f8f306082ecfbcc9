// EngineConfig: everything the engine needs to start, from flags (and later the TOML config).
// Built once by main(), then read-only; every thread may read it.
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/container/flat_hash_map.h"
#include "dkim/signer.h"
#include "engine/relay.h"
#include "cluster/cluster_share.h"
#include "engine/shaping.h"
#include "input/amqp_input.h"
#include "output/amqp_output.h"
#include "engine/smtp_session.h"
#include "queue/dsn.h"
#include "tls/banner_pin.h"
#include "tls/policy.h"

namespace mxb {

struct EngineConfig {
  std::string spool_dir;
  std::string log_path;             // accounting log (JSON lines); "-" = stdout
  int workers = 0;                  // 0 = number of cores
  // Claim threads (engine/scanner.h: claim, read, parse, DKIM, encode): 0 = on the scanner
  // thread itself, -1 = Scanner::DefaultThreads (`scanner_threads`, --scanner-threads).
  int scanner_threads = -1;
  std::vector<std::string> routes;  // --route specs
  uint16_t smtp_port = 25;
  std::string helo_name;            // default: gethostname()
  TlsMode tls = TlsMode::kOpportunistic;
  std::string ca_file;

  int max_connections_per_destination = 16;
  // Per worker and MX pool key (engine/mx_pool.h: MX host, address and port, source pool, TLS
  // policy): the connections every domain routed to that host shares (`[limits]
  // max_connections_per_mx`, --max-connections-per-mx).
  int max_connections_per_mx = 16;
  int max_messages_per_connection = 1000;
  size_t max_recipients_per_transaction = 100;
  size_t max_messages_in_flight = 20000;   // claimed and not yet final (memory bound)
  size_t max_bytes_in_flight = size_t{512} << 20;  // their file + wire bytes (memory bound)
  absl::Duration connect_timeout = absl::Seconds(30);
  // How long a connection waits for the next message of its destination before QUIT
  // (Postfix's smtp_connection_cache_time_limit plays the same role).
  absl::Duration idle_timeout = absl::Seconds(2);
  // After every next hop of a destination failed, its new jobs are deferred without a
  // connection attempt for this long (Postfix: a "dead" destination).
  absl::Duration dead_destination_time = absl::Seconds(60);
  // A destination with nothing queued, open, pending or remembered is forgotten after this
  // (issue 17: the long tail must not keep ~3 KiB per domain ever seen).
  absl::Duration destination_idle_time = absl::Seconds(300);
  // After SIGTERM/SIGINT, in-flight transactions may finish for this long; then they are aborted
  // and deferred ("shutdown"), so a stalled peer cannot hold the process for its RFC timeout.
  absl::Duration shutdown_timeout = absl::Seconds(15);
  double reply_timeout_scale = 1.0;        // multiplies the RFC 5321 §4.5.3.2 timeouts
  // RFC 5321 §4.5.4.1 retry schedule: waits after attempt 1, 2, ...; then `retry_repeat`; give
  // up (expire, DSN) when the next attempt would be past `max_queue_age` after the first.
  std::vector<absl::Duration> retry_delays = {absl::Minutes(5), absl::Minutes(10),
                                              absl::Minutes(20), absl::Minutes(40)};
  absl::Duration retry_repeat = absl::Hours(1);
  absl::Duration max_queue_age = absl::Hours(96);
  // Where DSNs go (`[queue] dsn`, --dsn): "bounces" = spool/bounces/ for an external bounce
  // processor; "spool" = spool/incoming/ as a null-sender pickup file the engine delivers itself.
  DsnDestination dsn_destination = DsnDestination::kBouncesDir;

  // DNS servers ("127.0.0.1:5353"); empty = /etc/resolv.conf.
  std::vector<std::string> dns_servers;
  // DNS cache bounds (dns/resolver.h): TTLs are clamped to [floor, ceiling]; NXDOMAIN/NODATA
  // cached up to negative_ttl; SERVFAIL/timeouts for tempfail_ttl (never a bounce).
  absl::Duration dns_ttl_floor = absl::Seconds(30);
  absl::Duration dns_ttl_ceiling = absl::Hours(24);
  absl::Duration dns_negative_ttl = absl::Minutes(5);
  absl::Duration dns_tempfail_ttl = absl::Seconds(30);
  size_t dns_max_mx_hosts = 10;
  // MX hosts whose addresses are loopback, private, link-local or unspecified are refused
  // (dns/address_scope.h): a recipient domain must not steer the engine at internal services.
  // `[dns] allow_private_mx` / --allow-private-mx for tests and lab setups.
  bool allow_private_mx = false;
  // A name the configured resolvers must answer with the AD bit when they validate DNSSEC; one
  // TXT query per process. No AD: one line that DANE is inert (RFC 7672 §2.1 needs a
  // validating resolver). `[dns] dnssec_probe` / --dnssec-probe; "" = no probe. Sent with the
  // first MX lookup (a run with static routes only asks nothing). com is signed, so a validating
  // resolver answers TXT com with an authenticated NODATA.
  std::string dnssec_probe = "com";
  // TLS policy (tls/policy.h): prefix signals, ports, per-domain rules.
  GlobalTlsConfig tls_global;
  absl::flat_hash_map<std::string, DomainTlsConfig> domain_tls;  // key: lower-case domain
  size_t policy_cache_entries = 100000;
  // RFC 3030: BDAT instead of DATA when the server offers CHUNKING (`[smtp] chunking`,
  // --no-chunking).
  bool chunking = true;
  // Smarthost relays, the [relay.NAME] tables (engine/relay.h), for "DOMAIN=relay:NAME" routes.
  std::vector<RelayConfig> relays;
  bool tls_resumption = true;  // resume TLS sessions per MX (off: for benchmarks)
  // The banner "strict-tls" pin (tls/banner_pin.h; experimental, not a standard): `[tls]
  // banner_pins` / --banner-pins. learn = pins announced in a verified host's 220 greeting are
  // kept in SPOOL/policy/banner-pins.json and enforced like a starttls- prefix.
  BannerPinMode banner_pins = BannerPinMode::kOff;
  // MTA-STS (RFC 8461, engine/sts_fetcher.h), the [mta_sts] table: applied to MX delivery (not
  // static routes); policies cached in SPOOL/policy/mta-sts/. `wait`: how long jobs of a domain
  // whose first check is still running wait before they are deferred.
  bool mta_sts = true;
  uint16_t mta_sts_https_port = 443;
  absl::Duration mta_sts_wait = absl::Seconds(10);
  absl::Duration mta_sts_recheck = absl::Minutes(5);
  // TLS-RPT (RFC 8460, engine/tlsrpt_reporter.h), the [tlsrpt] table; off by default. Empty
  // strings get defaults from the HELO name: submitter = helo, from = tlsrpt-noreply@submitter,
  // organization_name = submitter, contact_info = postmaster@submitter.
  bool tlsrpt = false;
  std::string tlsrpt_organization, tlsrpt_contact, tlsrpt_submitter, tlsrpt_from;

  // Traffic shaping and source IP pools (engine/shaping.h): the [[shaping]], [backoff],
  // [source_pools.NAME], [[source_select]] and default_source_pool keys. `shaping` is built from
  // `shaping_config` by ParseFlags(); its budgets are process-wide and thread-safe, which is why
  // a read-only config may point at them.
  ShapingConfig shaping_config;
  std::shared_ptr<const ShapingTable> shaping;

  // Control plane (engine/control_plane.h, `[http]`, --http): "" = off; "127.0.0.1:8025".
  std::string http_listen;
  std::string http_token_file;        // bearer token for mutating calls (mode 0600)
  size_t http_top_destinations = 20;  // per-destination metric series: the top N by queue

  // DKIM signing (dkim/signer.h, [[dkim]]): the entries as read, and the signer built from them
  // by LoadDkimSigner() — main() calls it before privileges are dropped, so a key file may be
  // readable by root only. The scanner signs each message once (Engine::Dispatch).
  std::vector<dkim::SigningKey> dkim_keys;
  std::shared_ptr<dkim::Signer> dkim;
  // Past one node (issue 15): `[input.amqp]` (input/amqp_input.h), `[output.amqp]` (the
  // outcome stream, output/amqp_output.h) and `[cluster]` (cluster/cluster_share.h;
  // `scope = "cluster"` shaping rules share their limits via Redis).
  AmqpInputConfig amqp;
  AmqpOutputConfig amqp_output;
  ClusterConfig cluster;
  // Bounce classification rules tried before the built-in ones (engine/bounce_class.h);
  // "" = built-in only. Read at start-up and on SIGHUP.
  std::string bounce_classes_file;

  std::string config_path;  // --config, for messages
  bool drain = false;       // exit when incoming/ and active/ are empty and nothing is in flight
  bool quiet = false;
  // Privileges (engine/privileges.h): started as root, mxburst drops to `user` right after it
  // took the spool lock and raised RLIMIT_NOFILE; without `user` it refuses to run as root
  // unless `allow_root` (--allow-root).
  std::string user;
  bool allow_root = false;
};

// Upper bound of every retry time (a delay, the repeat interval, the maximum queue age): 60 days.
inline constexpr int64_t kMaxRetrySeconds = int64_t{86400} * 60;

// "bounces" | "spool" (the values of `[queue] dsn` and --dsn); false for anything else.
[[nodiscard]] bool ParseDsnDestination(absl::string_view v, DsnDestination* out);

// Reads a TOML config file into *config (keys it does not set keep their values). The error is
// one line naming the file, the key and what is wrong: "mxburst.toml: tls.prefix_signals:
// expected enforce|log-only|off, got 'strict'".
[[nodiscard]] absl::Status LoadConfigFile(const std::string& path, EngineConfig* config);
// Which keys a config text names and which the parser accepts in the tables it names, as dotted
// paths ("limits.max_connections", "shaping[0].domain", "domain.\"x\".tls"). The example
// config's test (tests/engine/config_example_test.cc) uses it so the example cannot drift.
struct ConfigKeyListing {
  std::set<std::string> accepted;
  std::set<std::string> present;
};
// The same for TOML text already in memory (`name` stands for the file in messages); the fuzz
// target's entry point. Non-ASCII outside strings and comments is rejected before toml++ sees it.
[[nodiscard]] absl::Status LoadConfigString(absl::string_view text, const std::string& name,
                                            EngineConfig* config,
                                            ConfigKeyListing* listing = nullptr);

// Loads and checks the [[dkim]] keys into config->dkim (nothing to do without entries); the
// error is one line naming the entry and the file: "mxburst.toml: dkim[0].key_file: /k.pem: ...".
[[nodiscard]] absl::Status LoadDkimSigner(EngineConfig* config);

// Parses argv into a config (a --config file is read first, flags override it). Returns an error naming the bad flag; `help` is set for --help.
[[nodiscard]] absl::StatusOr<EngineConfig> ParseFlags(int argc, char** argv, bool* help,
                                                      bool* version);
const char* UsageText();

}  // namespace mxb
