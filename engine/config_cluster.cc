// The `[input.amqp]`, `[output.amqp]` and `[cluster]` tables of the TOML config (issue 15), read after the rest
// of the file (config_file.cc) so that `scope = "cluster"` rules can be checked against
// `[cluster]`. Same rule as there: an unknown or mistyped key stops start-up with one line.
#define TOML_EXCEPTIONS 0
#include <toml++/toml.h>
#include <unistd.h>

#include <set>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/config.h"
#include "input/amqp_input.h"

namespace mxb {
namespace {

struct TableReader {
  const std::string& file;
  const toml::table& t;
  std::string prefix;
  ConfigKeyListing* listing;  // the example config's test (engine/config.h); usually null

  absl::Status Error(const std::string& key, const std::string& why) const {
    return absl::InvalidArgumentError(absl::StrCat(file, ": ", prefix, key, ": ", why));
  }
  absl::Status Keys(const std::set<std::string>& known) const {
    if (listing != nullptr) {
      for (const std::string& k : known) listing->accepted.insert(prefix + k);
      for (const auto& [k, v] : t) listing->present.insert(prefix + std::string(k.str()));
    }
    for (const auto& [k, v] : t) {
      if (!known.count(std::string(k.str()))) {
        return Error(std::string(k.str()),
                     absl::StrCat("unknown key (line ", k.source().begin.line, ")"));
      }
    }
    return absl::OkStatus();
  }
  absl::Status Text(const char* key, std::string* out) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return absl::OkStatus();
    if (!n->is_string()) return Error(key, "expected a string");
    *out = std::string(*n->value<std::string_view>());
    return absl::OkStatus();
  }
  absl::Status Count(const char* key, int64_t min, int64_t max, int64_t* out) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return absl::OkStatus();
    const toml::value<int64_t>* i = n->as_integer();
    if (i == nullptr || i->get() < min || i->get() > max) {
      return Error(key, absl::StrCat("expected an integer in [", min, ", ", max, "]"));
    }
    *out = i->get();
    return absl::OkStatus();
  }
};

}  // namespace

absl::Status ReadClusterTables(const toml::table& root, const std::string& file,
                               EngineConfig* c, ConfigKeyListing* listing) {
  absl::Status s;
  if (const toml::node* input = root.get("input")) {
    const toml::table* it = input->as_table();
    if (it == nullptr) return absl::InvalidArgumentError(absl::StrCat(file, ": input: expected a table"));
    TableReader in{file, *it, "input.", listing};
    if (!(s = in.Keys({"amqp"})).ok()) return s;
    if (const toml::node* a = it->get("amqp")) {
      if (!a->is_table()) return in.Error("amqp", "expected a table");
      TableReader r{file, *a->as_table(), "input.amqp.", listing};
      if (!(s = r.Keys({"url", "queue", "prefetch"})).ok()) return s;
      if (!(s = r.Text("url", &c->amqp.url)).ok()) return s;
      if (!(s = r.Text("queue", &c->amqp.queue)).ok()) return s;
      int64_t prefetch = c->amqp.prefetch;
      if (!(s = r.Count("prefetch", 1, 65535, &prefetch)).ok()) return s;
      c->amqp.prefetch = static_cast<int>(prefetch);
      if (c->amqp.url.empty()) return r.Error("url", "required");
      if (absl::Status u = CheckAmqpUrl(c->amqp.url); !u.ok()) {
        return r.Error("url", std::string(u.message()));
      }
      if (c->amqp.queue.empty()) return r.Error("queue", "must not be empty");
    }
  }
  if (const toml::node* output = root.get("output")) {
    const toml::table* ot = output->as_table();
    if (ot == nullptr) return absl::InvalidArgumentError(absl::StrCat(file, ": output: expected a table"));
    TableReader out{file, *ot, "output.", listing};
    if (!(s = out.Keys({"amqp"})).ok()) return s;
    if (const toml::node* a = ot->get("amqp")) {
      if (!a->is_table()) return out.Error("amqp", "expected a table");
      TableReader r{file, *a->as_table(), "output.amqp.", listing};
      AmqpOutputConfig& o = c->amqp_output;
      if (!(s = r.Keys({"url", "exchange", "routing_key", "max_queued"})).ok()) return s;
      if (!(s = r.Text("url", &o.url)).ok()) return s;
      if (!(s = r.Text("exchange", &o.exchange)).ok()) return s;
      if (!(s = r.Text("routing_key", &o.routing_key)).ok()) return s;
      int64_t queued = static_cast<int64_t>(o.max_queued);
      if (!(s = r.Count("max_queued", 1, 1000000, &queued)).ok()) return s;
      o.max_queued = static_cast<size_t>(queued);
      if (o.url.empty()) return r.Error("url", "required");
      if (absl::Status u = CheckAmqpUrl(o.url); !u.ok()) return r.Error("url", std::string(u.message()));
      // AMQP 0-9-1 §4.2.5.3: exchange names and routing keys are short strings (≤ 255 octets).
      if (o.exchange.size() > 255) return r.Error("exchange", "longer than 255 bytes");
      if (o.routing_key.size() > 255) return r.Error("routing_key", "longer than 255 bytes");
      if (o.exchange.empty() && o.routing_key.empty()) {
        return r.Error("routing_key", "must name a queue when exchange is \"\" (the default exchange)");
      }
    }
  }
  if (const toml::node* cl = root.get("cluster")) {
    if (!cl->is_table()) return absl::InvalidArgumentError(absl::StrCat(file, ": cluster: expected a table"));
    TableReader r{file, *cl->as_table(), "cluster.", listing};
    if (!(s = r.Keys({"redis", "node", "expected_nodes", "lease_ttl"})).ok()) return s;
    if (!(s = r.Text("redis", &c->cluster.redis)).ok()) return s;
    if (!(s = r.Text("node", &c->cluster.node)).ok()) return s;
    int64_t nodes = c->cluster.expected_nodes;
    if (!(s = r.Count("expected_nodes", 1, 10000, &nodes)).ok()) return s;
    c->cluster.expected_nodes = static_cast<int>(nodes);
    c->shaping_config.cluster_nodes = c->cluster.expected_nodes;
    int64_t ttl = absl::ToInt64Seconds(c->cluster.lease_ttl);
    if (!(s = r.Count("lease_ttl", 1, 3600, &ttl)).ok()) return s;
    c->cluster.lease_ttl = absl::Seconds(ttl);
    if (!absl::StartsWith(c->cluster.redis, "redis://")) {
      return r.Error("redis", absl::StrCat("expected redis://HOST[:PORT][/DB], got '",
                                           c->cluster.redis, "'"));
    }
    if (c->cluster.node.empty()) {
      char host[256] = {};
      gethostname(host, sizeof(host) - 1);
      c->cluster.node = host;
    }
    if (c->cluster.node.find_first_of(" {}\r\n") != std::string::npos) {
      return r.Error("node", "must not contain spaces or braces");
    }
  }
  for (size_t i = 0; i < c->shaping_config.rules.size(); ++i) {
    const ShapingRule& rule = c->shaping_config.rules[i];
    if (rule.cluster && !c->cluster.enabled()) {
      return absl::InvalidArgumentError(absl::StrCat(
          file, ": shaping[", i, "].scope: \"cluster\" needs [cluster] redis = \"redis://...\""));
    }
  }
  return absl::OkStatus();
}

}  // namespace mxb
