// SIGHUP (DESIGN.md "Interfaces"; issue 14): what a running engine re-reads without dropping a
// connection or a queued message. Scanner thread; main() only sets a flag (RequestReload).
//
// - The accounting log is reopened by path (logrotate renamed it). The switch happens between
//   batches only, right after a commit: the journal's log tail names the file (inode) and the
//   offset its batch went to, and nothing may be half in one file and half in the other. Records
//   written before the switch are at the end of the renamed file; none is lost or doubled.
// - The bounce classification rules (`bounce_classes`, engine/bounce_class.h) and the
//   [[shaping]] rules and [backoff] are read again from the --config file. The whole file
//   must load (the same checks as at start-up); otherwise nothing changes and one line says
//   why. A new ShapingTable goes to every worker, which switches on its next tick: new
//   connections and messages draw on the new budgets, connections open under the old rules
//   keep their leases on the old budgets until they close (every table stays alive, see
//   shaping_generations_). Source pools key the destinations, so they need a restart; the
//   rules' tls/verify keys too (the TLS policy rules are built once per worker).
// - scope = "cluster" rules are registered with the Redis thread at start-up (engine.cc,
//   RedisBudgets): the new table's cluster budgets draw on the same leases (ClusterShare) when
//   those rules and [cluster] are unchanged; a change to them needs a restart, so such a file is
//   refused like a bad one (an unattached budget would silently fall back to its local share).
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/config.h"
#include "engine/control_plane.h"
#include "engine/engine.h"
#include "engine/shaping.h"

namespace mxb {
namespace {

bool SamePools(const ShapingConfig& a, const ShapingConfig& b) {
  if (a.default_pool != b.default_pool || a.pools.size() != b.pools.size() ||
      a.select.size() != b.select.size()) {
    return false;
  }
  for (size_t i = 0; i < a.pools.size(); ++i) {
    if (a.pools[i].name != b.pools[i].name || a.pools[i].addresses != b.pools[i].addresses) {
      return false;
    }
  }
  for (size_t i = 0; i < a.select.size(); ++i) {
    if (a.select[i].job != b.select[i].job || a.select[i].sender_domain != b.select[i].sender_domain ||
        a.select[i].pool != b.select[i].pool) {
      return false;
    }
  }
  return true;
}

bool SameClusterRule(const ShapingRule& a, const ShapingRule& b) {
  return a.match == b.match && a.pattern == b.pattern &&
         a.limits.max_connections == b.limits.max_connections &&
         a.limits.max_message_rate.count == b.limits.max_message_rate.count &&
         a.limits.max_message_rate.period == b.limits.max_message_rate.period &&
         a.limits.rate_burst == b.limits.rate_burst;
}

// "" when `next` has the same scope = "cluster" rules and [cluster] as the running engine,
// else what differs.
std::string ClusterChange(const EngineConfig& running, const ShapingConfig& running_rules,
                          const EngineConfig& fresh) {
  if (running.cluster.redis != fresh.cluster.redis || running.cluster.node != fresh.cluster.node ||
      running.cluster.expected_nodes != fresh.cluster.expected_nodes ||
      running.cluster.lease_ttl != fresh.cluster.lease_ttl) {
    return "[cluster] changed";
  }
  std::vector<const ShapingRule*> a, b;
  for (const ShapingRule& r : running_rules.rules) {
    if (r.cluster) a.push_back(&r);
  }
  for (const ShapingRule& r : fresh.shaping_config.rules) {
    if (r.cluster) b.push_back(&r);
  }
  for (size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
    if (i >= a.size() || i >= b.size() || !SameClusterRule(*a[i], *b[i])) {
      const ShapingRule& r = i < b.size() ? *b[i] : *a[i];
      return absl::StrCat("the scope = \"cluster\" rule for ", ToString(r.match), " ",
                          r.pattern, " changed");
    }
  }
  return "";
}

}  // namespace

void Engine::ServeReload() {
  if (reload_.exchange(false, std::memory_order_relaxed)) {
    reopen_log_ = true;
    ReloadRules();
  }
  if (!reopen_log_) return;
  absl::Status s = log_->Reopen();
  if (absl::IsUnavailable(s)) return;  // a batch is in the way: after the next commit
  reopen_log_ = false;
  if (s.ok()) {
    std::fprintf(stderr, "mxburst: SIGHUP: accounting log %s reopened\n", log_->path().c_str());
  } else {
    std::fprintf(stderr, "mxburst: SIGHUP: %s; still writing to the old file\n",
                 std::string(s.message()).c_str());
  }
}

void Engine::ReloadRules() {
  if (config_.config_path.empty()) {
    std::fprintf(stderr, "mxburst: SIGHUP: no --config file: shaping rules unchanged\n");
    return;
  }
  EngineConfig fresh;
  if (absl::Status s = LoadConfigFile(config_.config_path, &fresh); !s.ok()) {
    std::fprintf(stderr, "mxburst: SIGHUP: %s: keeping the running configuration\n",
                 std::string(s.message()).c_str());
    return;
  }
  absl::StatusOr<BounceClassifier> classes = BounceClassifier::Load(fresh.bounce_classes_file);
  if (!classes.ok()) {
    std::fprintf(stderr, "mxburst: SIGHUP: %s: keeping the running configuration\n",
                 std::string(classes.status().message()).c_str());
    return;
  }
  if (shaping_generations_.empty()) shaping_generations_.push_back(config_.shaping);
  const ShapingTable& running_table = *shaping_generations_.back();
  const ShapingConfig& running = running_table.config();
  if (std::string why = ClusterChange(config_, running, fresh); !why.empty()) {
    std::fprintf(stderr,
                 "mxburst: SIGHUP: %s: %s (that needs a restart): keeping the running "
                 "configuration\n",
                 config_.config_path.c_str(), why.c_str());
    return;
  }
  bounce_classes_ = *std::move(classes);
  ShapingConfig next = std::move(fresh.shaping_config);
  const bool pools_changed = !SamePools(running, next);
  next.pools = running.pools;
  next.select = running.select;
  next.default_pool = running.default_pool;
  const size_t rules = next.rules.size();
  auto table = std::make_shared<const ShapingTable>(std::move(next));
  // The same cluster rules in the same order (ClusterChange): the same Redis leases.
  const auto old_cluster = running_table.ClusterBudgets();
  const auto new_cluster = table->ClusterBudgets();
  for (size_t i = 0; i < new_cluster.size() && i < old_cluster.size(); ++i) {
    new_cluster[i].second->AttachCluster(old_cluster[i].second->cluster());
  }
  shaping_generations_.push_back(table);
  for (auto& w : workers_) w->ReplaceShaping(table.get());
  if (control_) control_->SetShaping(table.get());
  std::fprintf(stderr, "mxburst: SIGHUP: %zu shaping rule(s) loaded from %s%s\n", rules,
               config_.config_path.c_str(),
               pools_changed ? "; source pools changed: they apply after a restart" : "");
}

}  // namespace mxb
