// ClusterShare: what one node holds of a cluster-wide shaping budget (issue 15), and the
// `[cluster]` settings. A `[[shaping]]` rule with `scope = "cluster"` has its connection count and
// message rate shared by every node through Redis; the Redis client thread (cluster/
// redis_budgets.h) leases small batches of message tokens and connection slots into this struct,
// and the workers draw from it with atomics only — Redis is never on a worker's path.
//
// While `online` is false (Redis unreachable, or not yet asked) the rule's budget falls back to
// its local share, limit / expected_nodes (engine/shaping.h keeps that as the budget's own
// limits), never unlimited.
//
// Threads: workers (through ShapingBudget) and the Redis client thread; every field is atomic.
//
//   if (share->online.load()) {
//     ok = budget.connections() < share->slots.load();   // a leased connection slot is free
//     wait = share->tokens.load() > 0 ? 0 : ...;         // a leased message token is there
//   }
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/time/time.h"

namespace mxb {

// `[cluster]`: redis = "redis://127.0.0.1:6379[/db]", node = "mx1", expected_nodes = 3,
// lease_ttl = 3 (seconds a node's connection-slot lease lives without renewal).
struct ClusterConfig {
  std::string redis;  // "" = no cluster: every rule is local
  std::string node;   // this node's name in Redis (default: the host name)
  int expected_nodes = 1;
  absl::Duration lease_ttl = absl::Seconds(3);
  bool enabled() const { return !redis.empty(); }
};

struct ClusterShare {
  std::atomic<bool> online{false};     // leases are current; else the local share applies
  std::atomic<int64_t> tokens{0};      // leased message tokens not yet used (may dip below 0)
  std::atomic<int> slots{0};           // connection slots leased to this node
  std::atomic<int> in_use{0};          // connections of the rule open on this node
  std::atomic<bool> want_tokens{false};  // a worker found no token: lease more now
  std::atomic<bool> want_slots{false};   // a worker found no free slot: lease more now
  std::atomic<int64_t> last_take_us{0};  // monotonic µs of the last token used
};

}  // namespace mxb
