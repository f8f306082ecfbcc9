// The TOML config file (toml++). Every key is checked: an unknown or mistyped key stops start-up
// with one line naming it, because a silently ignored "max_conections" is worse than no config.
#define TOML_EXCEPTIONS 0
#include <toml++/toml.h>

#include <set>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "engine/config.h"

namespace mxb {
namespace {

class Reader {
 public:
  Reader(const std::string& file, EngineConfig* c) : file_(file), c_(c) {}

  absl::Status Error(const std::string& key, const std::string& why) const {
    return absl::InvalidArgumentError(absl::StrCat(file_, ": ", key, ": ", why));
  }

  // Rejects keys of `table` not in `known` (the typo guard).
  absl::Status CheckKeys(const toml::table& table, const std::string& prefix,
                         const std::set<std::string>& known) const {
    for (const auto& [k, v] : table) {
      std::string key(k.str());
      if (!known.count(key)) {
        return Error(absl::StrCat(prefix, key),
                     absl::StrCat("unknown key (line ", k.source().begin.line, ")"));
      }
    }
    return absl::OkStatus();
  }

  template <typename T>
  absl::Status Int(const toml::table& t, const std::string& prefix, const char* key, T min, T max,
                   T* out) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return absl::OkStatus();
    std::optional<int64_t> v = n->value<int64_t>();
    if (!v || *v < static_cast<int64_t>(min) || *v > static_cast<int64_t>(max)) {
      return Error(absl::StrCat(prefix, key),
                   absl::StrCat("expected an integer in [", min, ", ", max, "]"));
    }
    *out = static_cast<T>(*v);
    return absl::OkStatus();
  }

  absl::Status Seconds(const toml::table& t, const std::string& prefix, const char* key,
                       int64_t max, absl::Duration* out) const {
    int64_t secs = -1;
    if (absl::Status s = Int<int64_t>(t, prefix, key, 0, max, &secs); !s.ok()) return s;
    if (secs >= 0) *out = absl::Seconds(secs);
    return absl::OkStatus();
  }

  absl::Status String(const toml::table& t, const std::string& prefix, const char* key,
                      std::string* out) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return absl::OkStatus();
    std::optional<std::string> v = n->value<std::string>();
    if (!v) return Error(absl::StrCat(prefix, key), "expected a string");
    *out = *v;
    return absl::OkStatus();
  }

  absl::Status Bool(const toml::table& t, const std::string& prefix, const char* key,
                    bool* out) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return absl::OkStatus();
    std::optional<bool> v = n->value<bool>();
    if (!v) return Error(absl::StrCat(prefix, key), "expected true or false");
    *out = *v;
    return absl::OkStatus();
  }

  absl::Status StringList(const toml::table& t, const std::string& prefix, const char* key,
                          std::vector<std::string>* out) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return absl::OkStatus();
    const toml::array* a = n->as_array();
    if (a == nullptr) return Error(absl::StrCat(prefix, key), "expected an array of strings");
    out->clear();
    for (const toml::node& e : *a) {
      std::optional<std::string> v = e.value<std::string>();
      if (!v) return Error(absl::StrCat(prefix, key), "expected an array of strings");
      out->push_back(*v);
    }
    return absl::OkStatus();
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

  absl::Status Read(const toml::table& root) {
    absl::Status s;
    if (!(s = CheckKeys(root, "", {"spool", "log", "workers", "helo", "route", "dns", "drain",
                                   "limits", "timeouts", "queue", "dns_cache", "tls", "domain"}))
             .ok())
      return s;
    if (!(s = String(root, "", "spool", &c_->spool_dir)).ok()) return s;
    if (!(s = String(root, "", "log", &c_->log_path)).ok()) return s;
    if (!(s = Int(root, "", "workers", 1, 256, &c_->workers)).ok()) return s;
    if (!(s = String(root, "", "helo", &c_->helo_name)).ok()) return s;
    if (!(s = StringList(root, "", "route", &c_->routes)).ok()) return s;
    if (!(s = StringList(root, "", "dns", &c_->dns_servers)).ok()) return s;
    if (!(s = Bool(root, "", "drain", &c_->drain)).ok()) return s;

    if (const toml::table* t = root["limits"].as_table()) {
      const std::string p = "limits.";
      if (!(s = CheckKeys(*t, p, {"max_connections", "max_messages_per_connection",
                                  "max_recipients", "max_in_flight", "max_in_flight_mb",
                                  "policy_cache_entries"}))
               .ok())
        return s;
      if (!(s = Int(*t, p, "max_connections", 1, 100000, &c_->max_connections_per_destination))
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
      if (!(s = CheckKeys(*t, p, {"connect", "idle", "scale", "dead_destination"}))
               .ok())
        return s;
      if (!(s = Seconds(*t, p, "connect", 3600, &c_->connect_timeout)).ok()) return s;
      if (!(s = Seconds(*t, p, "idle", 3600, &c_->idle_timeout)).ok()) return s;
      if (!(s = Seconds(*t, p, "dead_destination", 86400, &c_->dead_destination_time)).ok())
        return s;
      if (const toml::node* n = t->get("scale")) {
        std::optional<double> v = n->value<double>();
        if (!v || *v <= 0 || *v > 100) return Error("timeouts.scale", "expected a number in (0, 100]");
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
      if (!(s = CheckKeys(*t, p, {"retry_delays", "retry_repeat", "max_age"})).ok()) return s;
      if (const toml::node* n = t->get("retry_delays")) {
        const toml::array* a = n->as_array();
        if (a == nullptr || a->empty()) return Error("queue.retry_delays", "expected a non-empty array of seconds");
        c_->retry_delays.clear();
        for (const toml::node& e : *a) {
          std::optional<int64_t> v = e.value<int64_t>();
          if (!v || *v <= 0) return Error("queue.retry_delays", "expected positive integers (seconds)");
          c_->retry_delays.push_back(absl::Seconds(*v));
        }
      }
      if (!(s = Seconds(*t, p, "retry_repeat", 86400 * 7, &c_->retry_repeat)).ok()) return s;
      if (!(s = Seconds(*t, p, "max_age", 86400 * 60, &c_->max_queue_age)).ok()) return s;
    } else if (root.contains("queue")) {
      return Error("queue", "expected a table");
    }

    if (const toml::table* t = root["tls"].as_table()) {
      const std::string p = "tls.";
      if (!(s = CheckKeys(*t, p, {"mode", "prefix_signals", "ca_file", "smtp_port",
                                  "smtps_port", "implicit_tls_retry"}))
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
    return absl::OkStatus();
  }

 private:
  std::string file_;
  EngineConfig* c_;
};

}  // namespace

absl::Status LoadConfigFile(const std::string& path, EngineConfig* config) {
  toml::parse_result result = toml::parse_file(path);
  if (!result) {
    const toml::parse_error& e = result.error();
    return absl::InvalidArgumentError(absl::StrCat(path, ":", e.source().begin.line, ":",
                                                   e.source().begin.column, ": ",
                                                   std::string(e.description())));
  }
  config->config_path = path;
  return Reader(path, config).Read(result.table());
}

}  // namespace mxb
