// The TOML config file (toml++). Every key is checked: an unknown or mistyped key stops start-up
// with one line naming it, because a silently ignored "max_conections" is worse than no config.
#include "engine/config_reader.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <string_view>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "dns/resolver.h"
#include "engine/config.h"
#include "engine/config_toml_ascii.h"

namespace mxb {
namespace {

// An IPv4 or IPv6 literal (port 0).
bool ParseIp(const std::string& text, sockaddr_storage* out) {
  *out = sockaddr_storage{};
  auto* v4 = reinterpret_cast<sockaddr_in*>(out);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(out);
  if (inet_pton(AF_INET, text.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    return true;
  }
  if (inet_pton(AF_INET6, text.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    return true;
  }
  return false;
}

class Reader : public TomlReader {
 public:
  Reader(const std::string& file, EngineConfig* c, ConfigKeyListing* listing = nullptr)
      : TomlReader(file), c_(c) {
    if (listing != nullptr) ListKeys(&listing->accepted, &listing->present);
  }

  absl::Status TlsMode(const toml::table& t, const std::string& prefix, const char* key,
                       TlsRequirement* out, bool* present) const {
    std::string v;
    if (absl::Status s = String(t, prefix, key, &v); !s.ok()) return s;
    if (v.empty()) return absl::OkStatus();
    *present = true;
    if (v == "required") *out = TlsRequirement::kRequired;
    else if (v == "opportunistic") *out = TlsRequirement::kOpportunistic;
    else if (v == "disabled") *out = TlsRequirement::kDisabled;
    else {
      return Error(absl::StrCat(prefix, key),
                   absl::StrCat("expected required|opportunistic|disabled, got '", v, "'"));
    }
    return absl::OkStatus();
  }

  // [relay.NAME] (engine/relay.h); the password file is read now, at start-up.
  absl::Status Relays(const toml::table& root) {
    const toml::node* n = root.get("relay");
    if (n == nullptr) return absl::OkStatus();
    if (!n->is_table()) return Error("relay", "expected [relay.NAME] tables");
    for (const auto& [name, node] : *n->as_table()) {
      RelayConfig r;
      r.name = std::string(name.str());
      const std::string p = absl::StrCat("relay.", r.name, ".");
      const toml::table* t = node.as_table();
      std::string tls = "implicit", auth, password_file;
      absl::Status s;
      if (t == nullptr) return Error(absl::StrCat("relay.", r.name), "expected a table");
      if (!(s = CheckKeys(*t, p, {"host", "port", "tls", "auth", "username", "password_file"}))
               .ok() ||
          !(s = String(*t, p, "host", &r.host)).ok() ||
          !(s = Int<uint16_t>(*t, p, "port", 1, 65535, &r.port)).ok() ||
          !(s = String(*t, p, "tls", &tls)).ok() || !(s = String(*t, p, "auth", &auth)).ok() ||
          !(s = String(*t, p, "username", &r.credentials.username)).ok() ||
          !(s = String(*t, p, "password_file", &password_file)).ok()) {
        return s;
      }
      if (r.host.empty()) return Error(p + "host", "required");
      if (tls != "implicit" && tls != "starttls") {
        return Error(p + "tls", absl::StrCat("expected implicit|starttls, got '", tls, "'"));
      }
      r.implicit_tls = tls == "implicit";
      r.credentials.relay = r.name;
      if (auth.empty() && (!r.credentials.username.empty() || !password_file.empty())) {
        return Error(p + "auth", "required with username/password_file (plain or login)");
      }
      if (!auth.empty()) {
        if (auth != "plain" && auth != "login") {
          return Error(p + "auth", absl::StrCat("expected plain|login, got '", auth, "'"));
        }
        r.auth = true;
        r.credentials.mechanism = auth == "plain" ? AuthMechanism::kPlain : AuthMechanism::kLogin;
        if (r.credentials.username.empty()) return Error(p + "username", "required with auth");
        if (password_file.empty()) return Error(p + "password_file", "required with auth");
        s = ReadPasswordFile(password_file, &r.credentials.password);
        if (!s.ok()) return Error(p + "password_file", std::string(s.message()));
      }
      c_->relays.push_back(std::move(r));
    }
    return absl::OkStatus();
  }

  absl::Status Read(const toml::table& root) {
    absl::Status s;
    if (!(s = CheckKeys(root, "", {"spool", "log", "workers", "scanner_threads", "helo", "route", "dns", "drain",
                                   "limits", "timeouts", "queue", "dns_cache", "tls", "domain",
                                   "backoff", "shaping", "source_pools", "source_select",
                                   "default_source_pool", "mta_sts", "tlsrpt", "http", "user",
                                   "allow_root", "smtp", "dkim",
                                   "relay", "input", "output", "cluster", "bounce_classes"}))
             .ok())
      return s;
    if (!(s = String(root, "", "spool", &c_->spool_dir)).ok()) return s;
    if (!(s = String(root, "", "log", &c_->log_path)).ok()) return s;
    if (!(s = Int(root, "", "workers", 1, 256, &c_->workers)).ok()) return s;
    if (!(s = Int(root, "", "scanner_threads", 0, 64, &c_->scanner_threads)).ok()) return s;
    if (!(s = String(root, "", "helo", &c_->helo_name)).ok()) return s;
    if (!(s = StringList(root, "", "route", &c_->routes)).ok()) return s;
    // `dns = [...]` at the top, or [dns] servers = [...], allow_private_mx = bool, dnssec_probe.
    const toml::table* dns_table = root["dns"].as_table();
    if (dns_table != nullptr) {
      const std::string p = "dns.";
      if (!(s = CheckKeys(*dns_table, p, {"servers", "allow_private_mx", "dnssec_probe"})).ok()) return s;
      if (!(s = StringList(*dns_table, p, "servers", &c_->dns_servers)).ok()) return s;
      if (!(s = Bool(*dns_table, p, "allow_private_mx", &c_->allow_private_mx)).ok()) return s;
      if (!(s = String(*dns_table, p, "dnssec_probe", &c_->dnssec_probe)).ok()) return s;
    } else if (!(s = StringList(root, "", "dns", &c_->dns_servers)).ok()) {
      return s;
    }
    const char* dns_key = dns_table != nullptr ? "dns.servers" : "dns";
    if (dns_table != nullptr ? dns_table->contains("servers") : root.contains("dns")) {
      if (c_->dns_servers.empty()) {
        return Error(dns_key, "empty list (leave `dns` out to use /etc/resolv.conf)");
      }
      for (const std::string& server : c_->dns_servers) {
        if (absl::Status bad = CheckDnsServer(server); !bad.ok()) {
          return Error(dns_key, std::string(bad.message()));
        }
      }
    }
    if (!(s = Bool(root, "", "drain", &c_->drain)).ok()) return s;
    if (!(s = String(root, "", "user", &c_->user)).ok()) return s;
    if (!(s = Bool(root, "", "allow_root", &c_->allow_root)).ok()) return s;
    if (!(s = String(root, "", "bounce_classes", &c_->bounce_classes_file)).ok()) return s;

    if (const toml::table* t = root["limits"].as_table()) {
      const std::string p = "limits.";
      if (!(s = CheckKeys(*t, p, {"max_connections", "max_connections_per_mx",
                                  "max_messages_per_connection", "max_recipients",
                                  "max_in_flight", "max_in_flight_mb", "policy_cache_entries"}))
               .ok())
        return s;
      if (!(s = Int(*t, p, "max_connections", 1, 100000, &c_->max_connections_per_destination))
               .ok())
        return s;
      if (!(s = Int(*t, p, "max_connections_per_mx", 1, 100000, &c_->max_connections_per_mx))
               .ok())
        return s;
      if (!(s = Int(*t, p, "max_messages_per_connection", 1, 1000000,
                    &c_->max_messages_per_connection))
               .ok())
        return s;
      if (!(s = Int<size_t>(*t, p, "max_recipients", 1, 10000,
                            &c_->max_recipients_per_transaction))
               .ok())
        return s;
      if (!(s = Int<size_t>(*t, p, "max_in_flight", 1, 10000000, &c_->max_messages_in_flight))
               .ok())
        return s;
      size_t mb = 0;
      if (!(s = Int<size_t>(*t, p, "max_in_flight_mb", 1, 1 << 20, &mb)).ok()) return s;
      if (mb > 0) c_->max_bytes_in_flight = mb << 20;
      if (!(s = Int<size_t>(*t, p, "policy_cache_entries", 16, 100000000,
                            &c_->policy_cache_entries))
               .ok())
        return s;
    } else if (root.contains("limits")) {
      return Error("limits", "expected a table");
    }

    if (const toml::table* t = root["timeouts"].as_table()) {
      const std::string p = "timeouts.";
      if (!(s = CheckKeys(*t, p, {"connect", "idle", "scale", "dead_destination", "shutdown",
                                      "destination_idle"}))
               .ok())
        return s;
      if (!(s = Seconds(*t, p, "connect", 3600, &c_->connect_timeout)).ok()) return s;
      if (!(s = Seconds(*t, p, "idle", 3600, &c_->idle_timeout)).ok()) return s;
      if (!(s = Seconds(*t, p, "dead_destination", 86400, &c_->dead_destination_time)).ok())
        return s;
      if (!(s = Seconds(*t, p, "shutdown", 3600, &c_->shutdown_timeout)).ok()) return s;
      if (!(s = Seconds(*t, p, "destination_idle", 86400, &c_->destination_idle_time)).ok())
        return s;
      if (const toml::node* n = t->get("scale")) {
        std::optional<double> v = n->value<double>();
        // nan compares false with everything: without isfinite it would pass both checks.
        if (!v || !std::isfinite(*v) || *v <= 0 || *v > 100) {
          return Error("timeouts.scale", "expected a number in (0, 100]");
        }
        c_->reply_timeout_scale = *v;
      }
    } else if (root.contains("timeouts")) {
      return Error("timeouts", "expected a table");
    }

    if (const toml::table* t = root["dns_cache"].as_table()) {
      const std::string p = "dns_cache.";
      if (!(s = CheckKeys(*t, p, {"ttl_floor", "ttl_ceiling", "negative_ttl", "tempfail_ttl",
                                  "max_mx_hosts"}))
               .ok())
        return s;
      if (!(s = Seconds(*t, p, "ttl_floor", 86400, &c_->dns_ttl_floor)).ok()) return s;
      if (!(s = Seconds(*t, p, "ttl_ceiling", 86400 * 7, &c_->dns_ttl_ceiling)).ok()) return s;
      if (!(s = Seconds(*t, p, "negative_ttl", 86400, &c_->dns_negative_ttl)).ok()) return s;
      if (!(s = Seconds(*t, p, "tempfail_ttl", 3600, &c_->dns_tempfail_ttl)).ok()) return s;
      if (!(s = Int<size_t>(*t, p, "max_mx_hosts", 1, 100, &c_->dns_max_mx_hosts)).ok()) return s;
      if (c_->dns_ttl_floor > c_->dns_ttl_ceiling) {
        return Error("dns_cache.ttl_floor", "must not be above dns_cache.ttl_ceiling");
      }
    } else if (root.contains("dns_cache")) {
      return Error("dns_cache", "expected a table");
    }

    if (const toml::table* t = root["queue"].as_table()) {
      const std::string p = "queue.";
      if (!(s = CheckKeys(*t, p, {"retry_delays", "retry_repeat", "max_age", "dsn"})).ok()) return s;
      if (const toml::node* n = t->get("retry_delays")) {
        const toml::array* a = n->as_array();
        if (a == nullptr || a->empty()) return Error("queue.retry_delays", "expected a non-empty array of seconds");
        c_->retry_delays.clear();
        for (const toml::node& e : *a) {
          const toml::value<int64_t>* v = e.as_integer();
          if (v == nullptr || v->get() <= 0 || v->get() > kMaxRetrySeconds) {
            return Error("queue.retry_delays",
                         absl::StrCat("expected integers in [1, ", kMaxRetrySeconds, "] (seconds)"));
          }
          c_->retry_delays.push_back(absl::Seconds(v->get()));
        }
      }
      if (!(s = Seconds(*t, p, "retry_repeat", 86400 * 7, &c_->retry_repeat)).ok()) return s;
      if (!(s = Seconds(*t, p, "max_age", kMaxRetrySeconds, &c_->max_queue_age)).ok()) return s;
      if (t->contains("dsn")) {
        std::string dsn;
        if (!(s = String(*t, p, "dsn", &dsn)).ok()) return s;
        if (!ParseDsnDestination(dsn, &c_->dsn_destination)) {
          return Error("queue.dsn", absl::StrCat("expected \"bounces\" or \"spool\", got '", dsn, "'"));
        }
      }
    } else if (root.contains("queue")) {
      return Error("queue", "expected a table");
    }

    if (const toml::table* t = root["http"].as_table()) {
      const std::string p = "http.";
      if (!(s = CheckKeys(*t, p, {"listen", "token_file", "top_destinations"})).ok()) return s;
      if (!(s = String(*t, p, "listen", &c_->http_listen)).ok()) return s;
      if (!(s = String(*t, p, "token_file", &c_->http_token_file)).ok()) return s;
      if (!(s = Int<size_t>(*t, p, "top_destinations", 0, 10000, &c_->http_top_destinations))
               .ok())
        return s;
    } else if (root.contains("http")) {
      return Error("http", "expected a table");
    }

    if (const toml::table* t = root["tls"].as_table()) {
      const std::string p = "tls.";
      if (!(s = CheckKeys(*t, p, {"mode", "prefix_signals", "ca_file", "smtp_port",
                                  "smtps_port", "implicit_tls_retry", "dane",
                                  "honor_tls_required_no", "banner_pins"}))
               .ok())
        return s;
      std::string mode;
      if (!(s = String(*t, p, "mode", &mode)).ok()) return s;
      if (!mode.empty()) {
        if (mode == "opportunistic") c_->tls = TlsMode::kOpportunistic;
        else if (mode == "required") c_->tls = TlsMode::kRequired;
        else if (mode == "disabled") c_->tls = TlsMode::kDisabled;
        else return Error("tls.mode", absl::StrCat("expected opportunistic|required|disabled, got '", mode, "'"));
      }
      std::string signals;
      if (!(s = String(*t, p, "prefix_signals", &signals)).ok()) return s;
      if (!signals.empty()) {
        if (signals == "enforce") c_->tls_global.prefix_signals = PrefixSignals::kEnforce;
        else if (signals == "log-only") c_->tls_global.prefix_signals = PrefixSignals::kLogOnly;
        else if (signals == "off") c_->tls_global.prefix_signals = PrefixSignals::kOff;
        else return Error("tls.prefix_signals", absl::StrCat("expected enforce|log-only|off, got '", signals, "'"));
      }
      std::string pins;
      if (!(s = String(*t, p, "banner_pins", &pins)).ok()) return s;
      if (!pins.empty()) {
        // The banner strict-tls pin (tls/banner_pin.h): experimental, off by default.
        if (pins == "off") c_->banner_pins = BannerPinMode::kOff;
        else if (pins == "learn") c_->banner_pins = BannerPinMode::kLearn;
        else return Error("tls.banner_pins", absl::StrCat("expected off|learn, got '", pins, "'"));
      }
      std::string dane;
      if (!(s = String(*t, p, "dane", &dane)).ok()) return s;
      if (!dane.empty()) {
        // RFC 7672 DANE: TLSA lookups for DNSSEC-validated MX hosts (default on).
        if (dane == "on") c_->tls_global.dane = true;
        else if (dane == "off") c_->tls_global.dane = false;
        else return Error("tls.dane", absl::StrCat("expected on|off, got '", dane, "'"));
      }
      if (!(s = Bool(*t, p, "honor_tls_required_no", &c_->tls_global.honor_tls_required_no))
               .ok())
        return s;
      if (!(s = String(*t, p, "ca_file", &c_->ca_file)).ok()) return s;
      if (!(s = Int<uint16_t>(*t, p, "smtp_port", 1, 65535, &c_->smtp_port)).ok()) return s;
      c_->tls_global.smtp_port = c_->smtp_port;
      if (!(s = Int<uint16_t>(*t, p, "smtps_port", 1, 65535, &c_->tls_global.smtps_port)).ok())
        return s;
      if (!(s = Seconds(*t, p, "implicit_tls_retry", 86400 * 7,
                        &c_->tls_global.implicit_tls_negative_ttl))
               .ok())
        return s;
    } else if (root.contains("tls")) {
      return Error("tls", "expected a table");
    }

    if (const toml::table* t = root["smtp"].as_table()) {
      if (!(s = CheckKeys(*t, "smtp.", {"chunking"})).ok()) return s;
      if (!(s = Bool(*t, "smtp.", "chunking", &c_->chunking)).ok()) return s;
    } else if (root.contains("smtp")) {
      return Error("smtp", "expected a table");
    }

    if (!(s = Relays(root)).ok()) return s;

    if (const toml::table* t = root["mta_sts"].as_table()) {
      const std::string p = "mta_sts.";
      if (!(s = CheckKeys(*t, p, {"enabled", "https_port", "wait", "recheck"})).ok()) return s;
      if (!(s = Bool(*t, p, "enabled", &c_->mta_sts)).ok()) return s;
      if (!(s = Int<uint16_t>(*t, p, "https_port", 1, 65535, &c_->mta_sts_https_port)).ok())
        return s;
      if (!(s = Seconds(*t, p, "wait", 3600, &c_->mta_sts_wait)).ok()) return s;
      if (!(s = Seconds(*t, p, "recheck", 86400, &c_->mta_sts_recheck)).ok()) return s;
    } else if (root.contains("mta_sts")) {
      return Error("mta_sts", "expected a table");
    }
    if (const toml::table* t = root["tlsrpt"].as_table()) {  // RFC 8460, engine/tlsrpt_reporter.h
      const std::string p = "tlsrpt.";
      if (!(s = CheckKeys(*t, p, {"enabled", "organization_name", "contact_info", "submitter",
                                  "from"})).ok())
        return s;
      if (!(s = Bool(*t, p, "enabled", &c_->tlsrpt)).ok()) return s;
      for (auto [key, into] : {std::pair{"organization_name", &c_->tlsrpt_organization},
                               {"contact_info", &c_->tlsrpt_contact}, {"submitter", &c_->tlsrpt_submitter},
                               {"from", &c_->tlsrpt_from}}) {
        if (!(s = String(*t, p, key, into)).ok()) return s;
      }
    } else if (root.contains("tlsrpt")) {
      return Error("tlsrpt", "expected a table");
    }

    if (const toml::table* domains = root["domain"].as_table()) {
      for (const auto& [name, node] : *domains) {
        std::string domain = absl::AsciiStrToLower(std::string(name.str()));
        const std::string p = absl::StrCat("domain.\"", domain, "\".");
        const toml::table* t = node.as_table();
        if (t == nullptr) return Error(absl::StrCat("domain.\"", domain, "\""), "expected a table");
        if (!(s = CheckKeys(*t, p, {"tls", "verify"})).ok()) return s;
        DomainTlsConfig d;
        if (!(s = TlsMode(*t, p, "tls", &d.requirement, &d.has_rule)).ok()) return s;
        if (t->contains("verify")) {
          if (!(s = Bool(*t, p, "verify", &d.verify)).ok()) return s;
          d.has_rule = true;
        }
        c_->domain_tls[domain] = d;
      }
    } else if (root.contains("domain")) {
      return Error("domain", "expected a table of domains: [domain.\"example.com\"]");
    }
    if (!(s = ReadDkimConfig(*this, root, &c_->dkim_keys)).ok()) return s;
    return ReadShaping(root);  // after [domain.*]: a shaping rule's tls overrides its domain's
  }

  // [backoff], [[shaping]], [source_pools.NAME], [[source_select]], default_source_pool
  // (engine/shaping.h, README "Traffic shaping").
  absl::Status ReadShaping(const toml::table& root);

 private:
  EngineConfig* c_;
};

absl::Status Reader::ReadShaping(const toml::table& root) {
  absl::Status s;
  ShapingConfig& sc = c_->shaping_config;
  // Back-off settings: [backoff] for destinations without a domain rule, and the defaults of
  // every rule (a rule's own backoff_* keys override them and turn back-off on).
  auto backoff = [&](const toml::table& t, const std::string& p, const char* after,
                     const char* base, const char* max, BackoffSettings* b) -> absl::Status {
    absl::Status st;
    if (t.contains(after) || t.contains(base) || t.contains(max)) b->enabled = true;
    if (!(st = Int(t, p, after, 0, 1000, &b->after_4xx)).ok()) return st;
    if (!(st = Seconds(t, p, base, 86400, &b->base)).ok()) return st;
    if (!(st = Seconds(t, p, max, 86400 * 7, &b->max)).ok()) return st;
    if (b->base <= absl::ZeroDuration()) return Error(p + base, "must be at least 1 second");
    if (b->max < b->base) return Error(p + max, absl::StrCat("must not be below ", p, base));
    return absl::OkStatus();
  };
  if (const toml::table* t = root["backoff"].as_table()) {
    if (!(s = CheckKeys(*t, "backoff.", {"after_4xx", "base", "max", "enabled"})).ok()) return s;
    sc.default_backoff.enabled = true;
    if (!(s = Bool(*t, "backoff.", "enabled", &sc.default_backoff.enabled)).ok()) return s;
    bool enabled = sc.default_backoff.enabled;
    if (!(s = backoff(*t, "backoff.", "after_4xx", "base", "max", &sc.default_backoff)).ok())
      return s;
    sc.default_backoff.enabled = enabled;
  } else if (root.contains("backoff")) {
    return Error("backoff", "expected a table");
  }

  if (const toml::node* n = root.get("source_pools")) {
    const toml::table* pools = n->as_table();
    if (pools == nullptr) return Error("source_pools", "expected tables: [source_pools.NAME]");
    for (const auto& [name, node] : *pools) {
      const std::string pool_name(name.str());
      const std::string p = absl::StrCat("source_pools.", pool_name, ".");
      const toml::table* t = node.as_table();
      if (t == nullptr) return Error(absl::StrCat("source_pools.", pool_name), "expected a table");
      if (!(s = CheckKeys(*t, p, {"addresses"})).ok()) return s;
      SourcePool pool;
      pool.name = pool_name;
      if (!(s = StringList(*t, p, "addresses", &pool.addresses)).ok()) return s;
      if (pool.addresses.empty()) return Error(p + "addresses", "expected at least one address");
      for (const std::string& a : pool.addresses) {
        sockaddr_storage ss{};
        if (!ParseIp(a, &ss)) {
          return Error(p + "addresses", absl::StrCat("not an IPv4/IPv6 address: '", a, "'"));
        }
        pool.sockaddrs.push_back(ss);
      }
      sc.pools.push_back(std::move(pool));
    }
  }
  auto has_pool = [&](const std::string& name) {
    for (const SourcePool& p : sc.pools) {
      if (p.name == name) return true;
    }
    return false;
  };
  if (!(s = String(root, "", "default_source_pool", &sc.default_pool)).ok()) return s;
  if (!sc.default_pool.empty() && !has_pool(sc.default_pool)) {
    return Error("default_source_pool", absl::StrCat("no [source_pools.", sc.default_pool, "]"));
  }

  if (const toml::node* n = root.get("source_select")) {
    const toml::array* a = n->as_array();
    if (a == nullptr) return Error("source_select", "expected an array of tables: [[source_select]]");
    for (size_t i = 0; i < a->size(); ++i) {
      const std::string p = absl::StrCat("source_select[", i, "].");
      const toml::table* t = (*a)[i].as_table();
      if (t == nullptr) return Error(absl::StrCat("source_select[", i, "]"), "expected a table");
      if (!(s = CheckKeys(*t, p, {"job", "sender_domain", "pool"})).ok()) return s;
      SourceSelect sel;
      if (!(s = String(*t, p, "job", &sel.job)).ok()) return s;
      if (!(s = String(*t, p, "sender_domain", &sel.sender_domain)).ok()) return s;
      if (!(s = String(*t, p, "pool", &sel.pool)).ok()) return s;
      sel.sender_domain = absl::AsciiStrToLower(sel.sender_domain);
      if (sel.job.empty() == sel.sender_domain.empty()) {
        return Error(absl::StrCat("source_select[", i, "]"), "expected exactly one of job, sender_domain");
      }
      if (sel.pool.empty()) return Error(p + "pool", "required");
      if (!has_pool(sel.pool)) {
        return Error(p + "pool", absl::StrCat("no [source_pools.", sel.pool, "]"));
      }
      sc.select.push_back(std::move(sel));
    }
  }

  if (const toml::node* n = root.get("shaping")) {
    const toml::array* a = n->as_array();
    if (a == nullptr) return Error("shaping", "expected an array of tables: [[shaping]]");
    std::set<std::string> seen;
    for (size_t i = 0; i < a->size(); ++i) {
      const std::string p = absl::StrCat("shaping[", i, "].");
      const toml::table* t = (*a)[i].as_table();
      if (t == nullptr) return Error(absl::StrCat("shaping[", i, "]"), "expected a table");
      if (!(s = CheckKeys(*t, p, {"domain", "mx_suffix", "source", "max_connections",
                                  "max_messages_per_connection", "max_message_rate",
                                  "rate_burst", "backoff_after_4xx", "backoff_base",
                                  "backoff_max", "tls", "verify", "scope"}))
               .ok())
        return s;
      ShapingRule r;
      int keys = 0;
      for (auto [key, match] : {std::pair{"domain", ShapingMatch::kDomain},
                                std::pair{"mx_suffix", ShapingMatch::kMxSuffix},
                                std::pair{"source", ShapingMatch::kSource}}) {
        if (!t->contains(key)) continue;
        ++keys;
        if (!(s = String(*t, p, key, &r.pattern)).ok()) return s;
        r.match = match;
      }
      if (keys != 1) {
        return Error(absl::StrCat("shaping[", i, "]"), "expected exactly one of domain, mx_suffix, source");
      }
      const std::string match_key = p + ToString(r.match);
      if (r.match == ShapingMatch::kSource) {
        sockaddr_storage ss{};
        if (!ParseIp(r.pattern, &ss)) {
          return Error(match_key, absl::StrCat("not an IPv4/IPv6 address: '", r.pattern, "'"));
        }
      } else {
        r.pattern = absl::AsciiStrToLower(r.pattern);
        if (r.match == ShapingMatch::kMxSuffix) {
          // "*.google.com", ".google.com" and "google.com" all mean google.com and below.
          if (absl::StartsWith(r.pattern, "*")) r.pattern.erase(0, 1);
          if (absl::StartsWith(r.pattern, ".")) r.pattern.erase(0, 1);
        }
        if (r.pattern.empty() || r.pattern.find_first_of(" */") != std::string::npos) {
          return Error(match_key, "expected a domain name");
        }
      }
      if (!seen.insert(absl::StrCat(ToString(r.match), " ", r.pattern)).second) {
        return Error(match_key, absl::StrCat("duplicate rule for '", r.pattern, "'"));
      }
      std::string scope;
      if (!(s = String(*t, p, "scope", &scope)).ok()) return s;
      if (!scope.empty() && scope != "local" && scope != "cluster") {
        return Error(p + "scope", absl::StrCat("expected local|cluster, got '", scope, "'"));
      }
      r.cluster = scope == "cluster";  // shared through Redis: [cluster] (config_cluster.cc)
      ShapingLimits& l = r.limits;
      if (!(s = Int(*t, p, "max_connections", 1, 100000, &l.max_connections)).ok()) return s;
      if (!(s = Int(*t, p, "max_messages_per_connection", 1, 1000000,
                    &l.max_messages_per_connection))
               .ok())
        return s;
      std::string rate;
      if (!(s = String(*t, p, "max_message_rate", &rate)).ok()) return s;
      if (t->contains("max_message_rate")) {
        absl::StatusOr<MessageRate> mr = ParseMessageRate(rate);
        if (!mr.ok()) return Error(p + "max_message_rate", std::string(mr.status().message()));
        l.max_message_rate = *mr;
      }
      if (!(s = Int(*t, p, "rate_burst", 1, 1000000, &l.rate_burst)).ok()) return s;
      if (t->contains("rate_burst") && l.max_message_rate.unlimited()) {
        return Error(p + "rate_burst", "needs max_message_rate");
      }
      l.backoff = sc.default_backoff;
      if (!(s = backoff(*t, p, "backoff_after_4xx", "backoff_base", "backoff_max", &l.backoff))
               .ok())
        return s;
      if (t->contains("tls") || t->contains("verify")) {
        if (r.match != ShapingMatch::kDomain) {
          return Error(t->contains("tls") ? p + "tls" : p + "verify",
                       "only a domain rule can set TLS (MX rules: see the starttls-/smtps- names)");
        }
        DomainTlsConfig& d = c_->domain_tls[r.pattern];
        if (!(s = TlsMode(*t, p, "tls", &d.requirement, &d.has_rule)).ok()) return s;
        if (t->contains("verify")) {
          if (!(s = Bool(*t, p, "verify", &d.verify)).ok()) return s;
          d.has_rule = true;
        }
      }
      sc.rules.push_back(std::move(r));
    }
  }
  return absl::OkStatus();
}

}  // namespace

// config_cluster.cc: [input.amqp], [output.amqp], [cluster], and the scope = "cluster" rules' needs.
absl::Status ReadClusterTables(const toml::table& root, const std::string& file, EngineConfig* c,
                               ConfigKeyListing* listing);

absl::Status LoadConfigString(absl::string_view text, const std::string& name,
                              EngineConfig* config, ConfigKeyListing* listing) {
  absl::StatusOr<std::string> ascii = AsciiForToml(text, name);
  if (!ascii.ok()) return ascii.status();
  toml::parse_result result = toml::parse(std::string_view(*ascii), name);
  if (!result) {
    const toml::parse_error& e = result.error();
    return absl::InvalidArgumentError(absl::StrCat(name, ":", e.source().begin.line, ":",
                                                   e.source().begin.column, ": ",
                                                   std::string(e.description())));
  }
  if (absl::Status s = Reader(name, config, listing).Read(result.table()); !s.ok()) return s;
  return ReadClusterTables(result.table(), name, config, listing);
}

absl::Status LoadConfigFile(const std::string& path, EngineConfig* config) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  }
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": read error: ", std::strerror(errno)));
  }
  config->config_path = path;
  return LoadConfigString(text, path, config);
}

}  // namespace mxb
