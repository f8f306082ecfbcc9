#include "engine/config.h"

#include <unistd.h>

#include <cmath>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "dns/resolver.h"

namespace mxb {
namespace {

const char kUsage[] = R"(usage: mxburst --spool DIR [options]

Delivers the messages in a spool directory (DIR/incoming/*, PowerMTA-style pickup files with
x-sender:/x-receiver: lines) to their destinations over SMTP.

  --config FILE            TOML config file (see README); flags override its keys
  --spool DIR              spool directory (tmp/ incoming/ active/ deferred/ bad/ are created)
  --route DOMAIN=HOST[:PORT][,HOST[:PORT]...]
                           static next hop for DOMAIN instead of its MX records ('*' = every
                           domain, '.example.com' = subdomains; HOST may be NAME@ADDRESS to keep
                           the MX name for TLS policy); repeatable
  --log FILE               accounting log, JSON lines, one record per recipient outcome
                           (default DIR/log/accounting.jsonl; '-' = stdout)
  --workers N              worker threads, one io_uring ring each (default: number of cores)
  --scanner-threads N      claim threads: claim, read, parse, DKIM-sign, encode spool files
                           (0 = on the scanner thread; default: one per core with [[dkim]],
                           else one per 4 cores, 0 below 4 cores)
  --smtp-port N            SMTP port of MX hosts and of hops given without one (default 25)
  --smtps-port N           implicit-TLS port tried first for smtps- MX hosts (default 26)
  --dns HOST:PORT[,...]    DNS servers (default: /etc/resolv.conf)
  --prefix-signals MODE    enforce (default) | log-only | off: the starttls-/smtps- MX name rules
  --banner-pins MODE       off (default) | learn: keep the "strict-tls=" pins verified MX hosts
                           announce in their greeting (experimental, not a standard)
  --helo NAME              name sent in EHLO/HELO (default: host name)
  --tls MODE               opportunistic (default) | required | disabled
  --ca-file FILE           CA bundle for certificate checks (default: system store)
  --max-connections N      per destination (default 16)
  --max-connections-per-mx N  per worker and MX host, shared by its domains (default 16)
  --max-messages-per-connection N   (default 1000)
  --max-recipients N       per transaction (default 100)
  --max-in-flight N        messages claimed and not final, bounds memory (default 20000)
  --max-in-flight-mb N     and their size in MiB (default 512)
  --connect-timeout SECS   (default 30)
  --idle-timeout SECS      keep an idle connection this long for the next message (default 2)
  --timeout-scale X        multiply the RFC 5321 reply timeouts by X (default 1)
  --retry D1,D2,.../REPEAT/MAX_AGE
                           retry schedule in seconds (default 300,600,1200,2400/3600/345600:
                           5m 10m 20m 40m, then hourly, expire after 4 days with a DSN)
  --dsn bounces|spool      DSNs into DIR/bounces/ (default) or DIR/incoming/ (delivered by
                           mxburst itself, null sender: a DSN never causes another DSN)
  --no-chunking            send with DATA even where CHUNKING is offered ([smtp] chunking)
  --no-tls-resumption      full handshake on every connection (for benchmarks)
  --http HOST:PORT         control API, /metrics and the status page ("" = off, the default)
  --allow-private-mx       accept MX hosts on loopback/private/link-local addresses (tests, labs;
                           [dns] allow_private_mx); static --route targets are always allowed
  --dnssec-probe NAME      TXT query with the first MX lookup that a validating resolver answers
                           with AD; none: one line that DANE is inert (default com, "" = none)
  --drain                  exit once the spool has nothing left to try (for batch runs, demos)
  --quiet                  no progress lines on stderr
  --user NAME              started as root: own the spool as NAME and run as NAME (`user` key)
  --allow-root             run as root without dropping privileges (not recommended)
  --version                print the version and exit
  --help                   this text
)";

absl::Status Bad(absl::string_view flag, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(flag, ": ", why));
}

template <typename T>
absl::Status ParseInt(absl::string_view flag, const char* v, T min, T max, T* out) {
  int64_t x = 0;
  if (!absl::SimpleAtoi(v, &x) || x < static_cast<int64_t>(min) ||
      x > static_cast<int64_t>(max)) {
    return Bad(flag, absl::StrCat("expected an integer in [", min, ", ", max, "], got '", v, "'"));
  }
  *out = static_cast<T>(x);
  return absl::OkStatus();
}

}  // namespace

const char* UsageText() { return kUsage; }

bool ParseDsnDestination(absl::string_view v, DsnDestination* out) {
  if (v == "bounces") {
    *out = DsnDestination::kBouncesDir;
  } else if (v == "spool") {
    *out = DsnDestination::kIncoming;
  } else {
    return false;
  }
  return true;
}

absl::StatusOr<EngineConfig> ParseFlags(int argc, char** argv, bool* help, bool* version) {
  EngineConfig c;
  *help = false;
  *version = false;
  // The config file first, whatever its position: flags override it.
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    std::string path;
    if (a == "--config" && i + 1 < argc) path = argv[i + 1];
    else if (a.rfind("--config=", 0) == 0) path = a.substr(9);
    else continue;
    if (absl::Status s = LoadConfigFile(path, &c); !s.ok()) return s;
  }
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    std::string value;
    bool has_inline = false;
    if (size_t eq = flag.find('='); flag.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
      has_inline = true;
    }
    auto next = [&]() -> const char* {
      if (has_inline) return value.c_str();
      if (i + 1 >= argc) return nullptr;
      return argv[++i];
    };
    auto need = [&](const char*& v) -> absl::Status {
      v = next();
      if (v == nullptr) return Bad(flag, "missing value");
      return absl::OkStatus();
    };
    const char* v = nullptr;
    absl::Status st;
    if (flag == "--help" || flag == "-h") {
      *help = true;
      return c;
    } else if (flag == "--version") {
      *version = true;
      return c;
    } else if (flag == "--config") {
      if (!(st = need(v)).ok()) return st;  // already read above
    } else if (flag == "--dns") {
      if (!(st = need(v)).ok()) return st;
      c.dns_servers.clear();
      if (*v == '\0') return Bad(flag, "empty value (leave --dns out to use /etc/resolv.conf)");
      for (absl::string_view server : absl::StrSplit(v, ',')) {
        if (absl::Status bad = CheckDnsServer(server); !bad.ok()) return Bad(flag, bad.message());
        c.dns_servers.emplace_back(server);
      }
    } else if (flag == "--prefix-signals") {
      if (!(st = need(v)).ok()) return st;
      std::string m = v;
      if (m == "enforce") c.tls_global.prefix_signals = PrefixSignals::kEnforce;
      else if (m == "log-only") c.tls_global.prefix_signals = PrefixSignals::kLogOnly;
      else if (m == "off") c.tls_global.prefix_signals = PrefixSignals::kOff;
      else return Bad(flag, absl::StrCat("expected enforce|log-only|off, got '", m, "'"));
    } else if (flag == "--banner-pins") {
      if (!(st = need(v)).ok()) return st;
      std::string m = v;
      if (m == "off") c.banner_pins = BannerPinMode::kOff;
      else if (m == "learn") c.banner_pins = BannerPinMode::kLearn;
      else return Bad(flag, absl::StrCat("expected off|learn, got '", m, "'"));
    } else if (flag == "--smtps-port") {
      if (!(st = need(v)).ok() ||
          !(st = ParseInt<uint16_t>(flag, v, 1, 65535, &c.tls_global.smtps_port)).ok())
        return st;
    } else if (flag == "--spool") {
      if (!(st = need(v)).ok()) return st;
      c.spool_dir = v;
    } else if (flag == "--route") {
      if (!(st = need(v)).ok()) return st;
      c.routes.push_back(v);
    } else if (flag == "--log") {
      if (!(st = need(v)).ok()) return st;
      c.log_path = v;
    } else if (flag == "--workers") {
      if (!(st = need(v)).ok() || !(st = ParseInt(flag, v, 1, 256, &c.workers)).ok()) return st;
    } else if (flag == "--scanner-threads") {
      if (!(st = need(v)).ok() || !(st = ParseInt(flag, v, 0, 64, &c.scanner_threads)).ok())
        return st;
    } else if (flag == "--smtp-port") {
      if (!(st = need(v)).ok() || !(st = ParseInt<uint16_t>(flag, v, 1, 65535, &c.smtp_port)).ok())
        return st;
    } else if (flag == "--helo") {
      if (!(st = need(v)).ok()) return st;
      c.helo_name = v;
    } else if (flag == "--tls") {
      if (!(st = need(v)).ok()) return st;
      std::string m = v;
      if (m == "opportunistic") c.tls = TlsMode::kOpportunistic;
      else if (m == "required") c.tls = TlsMode::kRequired;
      else if (m == "disabled") c.tls = TlsMode::kDisabled;
      else return Bad(flag, absl::StrCat("expected opportunistic|required|disabled, got '", m, "'"));
    } else if (flag == "--ca-file") {
      if (!(st = need(v)).ok()) return st;
      c.ca_file = v;
    } else if (flag == "--max-connections") {
      if (!(st = need(v)).ok() ||
          !(st = ParseInt(flag, v, 1, 100000, &c.max_connections_per_destination)).ok())
        return st;
    } else if (flag == "--max-connections-per-mx") {
      if (!(st = need(v)).ok() ||
          !(st = ParseInt(flag, v, 1, 100000, &c.max_connections_per_mx)).ok())
        return st;
    } else if (flag == "--max-messages-per-connection") {
      if (!(st = need(v)).ok() ||
          !(st = ParseInt(flag, v, 1, 1000000, &c.max_messages_per_connection)).ok())
        return st;
    } else if (flag == "--max-recipients") {
      if (!(st = need(v)).ok() ||
          !(st = ParseInt<size_t>(flag, v, 1, 10000, &c.max_recipients_per_transaction)).ok())
        return st;
    } else if (flag == "--max-in-flight") {
      if (!(st = need(v)).ok() ||
          !(st = ParseInt<size_t>(flag, v, 1, 10000000, &c.max_messages_in_flight)).ok())
        return st;
    } else if (flag == "--max-in-flight-mb") {
      size_t mb = 0;
      if (!(st = need(v)).ok() || !(st = ParseInt<size_t>(flag, v, 1, 1 << 20, &mb)).ok())
        return st;
      c.max_bytes_in_flight = mb << 20;
    } else if (flag == "--connect-timeout") {
      int secs = 0;
      if (!(st = need(v)).ok() || !(st = ParseInt(flag, v, 1, 3600, &secs)).ok()) return st;
      c.connect_timeout = absl::Seconds(secs);
    } else if (flag == "--idle-timeout") {
      int secs = 0;
      if (!(st = need(v)).ok() || !(st = ParseInt(flag, v, 0, 3600, &secs)).ok()) return st;
      c.idle_timeout = absl::Seconds(secs);
    } else if (flag == "--timeout-scale") {
      if (!(st = need(v)).ok()) return st;
      // nan compares false with everything: without isfinite it would pass both checks.
      if (!absl::SimpleAtod(v, &c.reply_timeout_scale) || !std::isfinite(c.reply_timeout_scale) ||
          c.reply_timeout_scale <= 0 || c.reply_timeout_scale > 100) {
        return Bad(flag, absl::StrCat("expected a number in (0, 100], got '", v, "'"));
      }
    } else if (flag == "--retry") {
      // "300,600,1200,2400/3600/345600": delays, then the repeat interval, then the max age.
      if (!(st = need(v)).ok()) return st;
      std::vector<std::string> parts = absl::StrSplit(v, '/');
      if (parts.size() != 3) return Bad(flag, "expected DELAYS/REPEAT/MAX_AGE in seconds");
      c.retry_delays.clear();
      for (absl::string_view d : absl::StrSplit(parts[0], ',', absl::SkipEmpty())) {
        int64_t secs = 0;
        if (!absl::SimpleAtoi(d, &secs) || secs <= 0 || secs > kMaxRetrySeconds) {
          return Bad(flag, absl::StrCat("bad delay '", d, "' (seconds, 1 to ", kMaxRetrySeconds,
                                        ")"));
        }
        c.retry_delays.push_back(absl::Seconds(secs));
      }
      int64_t repeat = 0, age = 0;
      if (c.retry_delays.empty() || !absl::SimpleAtoi(parts[1], &repeat) || repeat <= 0 ||
          repeat > kMaxRetrySeconds || !absl::SimpleAtoi(parts[2], &age) || age <= 0 ||
          age > kMaxRetrySeconds) {
        return Bad(flag, absl::StrCat("expected DELAYS/REPEAT/MAX_AGE in seconds (1 to ",
                                      kMaxRetrySeconds, "), e.g. 300,600/3600/345600"));
      }
      c.retry_repeat = absl::Seconds(repeat);
      c.max_queue_age = absl::Seconds(age);
    } else if (flag == "--dsn") {
      if (!(st = need(v)).ok()) return st;
      if (!ParseDsnDestination(v, &c.dsn_destination)) {
        return Bad(flag, absl::StrCat("expected bounces|spool, got '", v, "'"));
      }
    } else if (flag == "--http") {
      if (!(st = need(v)).ok()) return st;
      c.http_listen = v;
    } else if (flag == "--no-chunking") {
      c.chunking = false;
    } else if (flag == "--no-tls-resumption") {
      c.tls_resumption = false;
    } else if (flag == "--allow-private-mx") {
      c.allow_private_mx = true;
    } else if (flag == "--dnssec-probe") {
      if (!(st = need(v)).ok()) return st;
      c.dnssec_probe = v;
    } else if (flag == "--drain") {
      c.drain = true;
    } else if (flag == "--quiet") {
      c.quiet = true;
    } else if (flag == "--user") {
      if (!(st = need(v)).ok()) return st;
      c.user = v;
      if (c.user.empty()) return Bad(flag, "expected a user name");
    } else if (flag == "--allow-root") {
      c.allow_root = true;
    } else {
      return Bad(flag, "unknown option (see --help)");
    }
  }
  c.tls_global.smtp_port = c.smtp_port;
  c.shaping = std::make_shared<const ShapingTable>(c.shaping_config);
  if (c.spool_dir.empty()) return Bad("--spool", "required (flag or `spool` in the config file)");
  if (c.log_path.empty()) c.log_path = c.spool_dir + "/log/accounting.jsonl";
  if (c.helo_name.empty()) {
    char host[256] = {0};
    if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') std::strcpy(host, "localhost");
    c.helo_name = host;
  }
  return c;
}

}  // namespace mxb
