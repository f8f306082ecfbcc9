// RedisBudgets: the Redis side of cluster-wide shaping (issue 15). One thread keeps, for every
// `scope = "cluster"` shaping rule, a small lease of message tokens and connection slots in the
// rule's ClusterShare (cluster/cluster_share.h), which the workers draw from with atomics only.
//
// - Message rate: GCRA (the generic cell rate algorithm, one theoretical-arrival-time key per
//   rule) as a Redis Lua script — one round trip leases up to `batch` tokens (50 ms of the
//   cluster rate, 1..64) using Redis' own clock, so node clocks never matter. Tokens a node has
//   not used for 500 ms go back (the script moves the TAT back). Bound: over any window the
//   cluster sends at most rate × window + max(rate_burst, 2 × batch) + nodes × batch messages.
// - Connection slots: one hash per rule, field = node, value = "expiry_ms:count"; a Lua script
//   drops expired leases, grants min(want, max − others) and renews this node's lease for
//   `lease_ttl`. A dead node's slots expire after lease_ttl instead of leaking. A node never
//   registers fewer slots than it has open; after its lease was lost (Redis restarted, lease
//   expired) it asks for no new slots for one lease_ttl, so every live node re-registers first.
// - Redis unreachable (connect/command timeout 200 ms): every share goes offline, the budget
//   applies its local share (limit / expected_nodes), one stderr line, and
//   mxburst_cluster_redis_up 0; reconnects with back-off (0.25 s doubling to 2 s).
//
// Threads: constructed, Start()ed and Stop()ped by the scanner before/after the workers run;
// Loop() on its own thread; WriteMetrics from the control plane's HTTP threads.
//
//   RedisBudgets rb(config.cluster, {{"domain d1.example", 6, 10000, 1, &share}}, quiet);
//   rb.Start();   ...   rb.Stop();
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "cluster/cluster_share.h"
#include "control/prometheus.h"

namespace mxb {

class RedisBudgets {
 public:
  struct Rule {
    std::string name;        // "domain d1.example": the Redis keys are mxb:{name}:rate|slots
    int max_connections = 0; // cluster-wide; 0 = no connection limit
    int64_t interval_us = 0; // cluster-wide message spacing; 0 = no rate limit
    int burst = 1;
    ClusterShare* share = nullptr;
  };

  RedisBudgets(ClusterConfig config, std::vector<Rule> rules, bool quiet);
  ~RedisBudgets();
  RedisBudgets(const RedisBudgets&) = delete;
  RedisBudgets& operator=(const RedisBudgets&) = delete;

  // "redis://host[:port][/db]" → host, port, db; the error names the value.
  [[nodiscard]] static absl::Status ParseUrl(const std::string& url, std::string* host,
                                             int* port, int* db);

  void Start();
  void Stop();
  void WriteMetrics(control::PrometheusText* p) const;

 private:
  class Connection;
  struct RuleState;
  void Loop();
  void GoOffline(const std::string& why);
  bool Tick(Connection* c, int64_t now_us);  // false: Redis failed

  const ClusterConfig config_;
  std::vector<std::unique_ptr<RuleState>> rules_;
  const bool quiet_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::atomic<bool> up_{false};
  std::atomic<uint64_t> calls_{0};
  std::atomic<uint64_t> fallbacks_{0};
};

}  // namespace mxb
