// Traffic shaping: which limits apply to a connection and to a message, and the budgets that
// enforce them (DESIGN.md "Delivery behaviour users expect": limits per destination domain, per
// MX, per source IP; back-off after 421 or repeated 4xx; source IP pools).
//
// A ShapingRule matches one key — a recipient domain (exact), an MX host (suffix: every MX under
// `.google.com` shares ONE budget), or a source IP (exact) — and carries limits. Each rule owns a
// ShapingBudget: its open connections, its message-rate state (GCRA, the token bucket kept as one
// timestamp) and its back-off state. Budgets are shared by all workers (the destinations of one
// MX suffix or source IP are hashed to different workers), so their state is atomic and
// lock-free: an exact process-wide budget, not budget/workers. A destination without a domain
// rule gets a private budget of its own (default back-off only).
//
// A connection draws on a BudgetSet: {domain budget, MX budget, source budget}; each limit is
// checked against its own budget, so the tightest applicable rule decides. Back-off is kept on
// the domain and MX budgets (a 421 is about the receiving host, not about our address).
//
// Threads: ShapingTable is built once from the config and then only read (its budgets are
// thread-safe); every method of ShapingBudget may be called from any worker. Time is passed in
// by the caller (monotonic ms / µs), so the logic is testable without a clock.
//
//   ShapingTable table(config.shaping);
//   BudgetSet set{{table.ForDomain("a.example"), table.ForMx("mx1.google.com"),
//                  table.ForSource("127.0.0.5")}};
//   if (set.PausedBy(now_ms) == nullptr && set.TryOpenConnection()) { ...connect... }
//   if (set.WaitBeforeMessageUs(now_us) == 0) { set.TakeMessage(now_us); ...send... }
//   set.OnReply(421, now_ms);   // starts a back-off of base * 2^k, capped
#pragma once

#include <sys/socket.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "cluster/cluster_share.h"

namespace mxb {

// max_message_rate: `count` messages per `period`, e.g. "100/s", "6000/minute", "20000/hour".
struct MessageRate {
  int64_t count = 0;  // 0 = unlimited
  absl::Duration period = absl::Seconds(1);
  bool unlimited() const { return count == 0; }
  // Spacing between messages, in µs (>= 1).
  int64_t IntervalUs() const;
};
// "N/second" with unit second|sec|s, minute|min|m, hour|h; N in [1, 10^9]. The error says what
// was expected (the caller prefixes the key).
[[nodiscard]] absl::StatusOr<MessageRate> ParseMessageRate(absl::string_view text);

struct BackoffSettings {
  bool enabled = false;
  int after_4xx = 0;  // this many consecutive 4xx replies start a back-off; 0 = only 421 does
  absl::Duration base = absl::Seconds(30);
  absl::Duration max = absl::Minutes(30);
};

struct ShapingLimits {
  int max_connections = 0;              // 0 = no limit from this rule
  int max_messages_per_connection = 0;  // 0 = no limit from this rule
  MessageRate max_message_rate;
  int rate_burst = 1;                   // messages that may go back to back after a quiet time
  BackoffSettings backoff;
};

enum class ShapingMatch { kDomain, kMxSuffix, kSource };
const char* ToString(ShapingMatch m);  // "domain", "mx_suffix", "source"

struct ShapingRule {
  ShapingMatch match = ShapingMatch::kDomain;
  std::string pattern;  // lower-case domain, MX suffix without leading "*." / ".", or IP text
  ShapingLimits limits;
  bool cluster = false;  // scope = "cluster": limits are for the whole cluster (cluster/)
};

// A named set of local addresses to bind() before connect; connections rotate over them.
struct SourcePool {
  std::string name;
  std::vector<std::string> addresses;       // as written
  std::vector<sockaddr_storage> sockaddrs;  // port 0
};

// Which pool a message's connections come from: first rule whose job (x-job, exact) or
// sender_domain (exact, lower-case) matches; else ShapingConfig::default_pool.
struct SourceSelect {
  std::string job;
  std::string sender_domain;
  std::string pool;
};

struct ShapingConfig {
  std::vector<ShapingRule> rules;
  BackoffSettings default_backoff;  // every destination without a domain rule
  std::vector<SourcePool> pools;
  std::vector<SourceSelect> select;
  std::string default_pool;  // "" = no bind (the kernel picks the source address)
  // [cluster] expected_nodes: a scope = "cluster" rule's budget applies limit / this while
  // Redis is unreachable (its local share).
  int cluster_nodes = 1;
};

// host == suffix, or host ends with "." + suffix (ASCII case-insensitive).
bool MxSuffixMatches(absl::string_view suffix, absl::string_view host);

// The budget of one rule (or of one destination without a rule). Thread-safe, lock-free.
class ShapingBudget {
 public:
  ShapingBudget(std::string name, ShapingLimits limits);
  ShapingBudget(const ShapingBudget&) = delete;
  ShapingBudget& operator=(const ShapingBudget&) = delete;

  const std::string& name() const { return name_; }  // "mx_suffix google.com", ...
  const ShapingLimits& limits() const { return limits_; }

  // False (and nothing taken) when max_connections are already open.
  [[nodiscard]] bool TryOpenConnection();
  void CloseConnection();
  int connections() const { return connections_.load(std::memory_order_relaxed); }
  // A connection was refused at now_ms because this budget was full. While that is recent
  // (kWaiterMemoryMs), connections holding the budget should not sit idle: HasWaiters().
  void NoteRefused(int64_t now_ms);
  bool HasWaiters(int64_t now_ms) const;
  static constexpr int64_t kWaiterMemoryMs = 300;

  // Message rate as GCRA: 0 when a message may start at now_us, else µs to wait. TakeMessage
  // books one message (call it when the message starts).
  int64_t WaitBeforeMessageUs(int64_t now_us) const;
  void TakeMessage(int64_t now_us);

  // Back-off. A 421 (RFC 5321 §3.8: the server is closing, "not now") or `after_4xx`
  // consecutive 4xx replies pause the budget for base * 2^k, capped at max, k = pauses since the
  // last 2xx. Replies that arrive during a pause (from transactions already under way) do not
  // escalate it. A 2xx resets k and the 4xx count; a 5xx resets the 4xx count. Returns true
  // when this reply started a pause.
  bool OnReply(int code, int64_t now_ms);
  int64_t paused_until_ms() const { return paused_until_ms_.load(std::memory_order_relaxed); }
  bool Paused(int64_t now_ms) const { return now_ms < paused_until_ms(); }
  int backoff_level() const { return level_.load(std::memory_order_relaxed); }
  int consecutive_4xx() const { return consecutive_4xx_.load(std::memory_order_relaxed); }
  // Why jobs wait: "mx_suffix google.com paused 4s after 421 (back-off 2)".
  std::string PauseReason() const;

  // scope = "cluster" (before the workers start): while `share` is online, connections are
  // bounded by its leased slots and messages by its leased tokens; offline, limits() (the
  // local share) apply as for any rule.
  void AttachCluster(ClusterShare* share) { cluster_ = share; }
  ClusterShare* cluster() const { return cluster_; }

  // One JSON object (no newline): rule, connections, paused_for_ms, backoff_level,
  // consecutive_4xx, rate_wait_ms.
  std::string DumpJson(int64_t now_ms) const;

 private:
  const std::string name_;
  const ShapingLimits limits_;
  std::atomic<int> connections_{0};
  std::atomic<int64_t> refused_ms_{INT64_MIN / 2};
  std::atomic<int64_t> tat_us_{0};  // GCRA theoretical arrival time of the next message
  std::atomic<int64_t> paused_until_ms_{0};
  std::atomic<int> level_{0};
  std::atomic<int> consecutive_4xx_{0};
  std::atomic<int> last_pause_code_{0};
  std::atomic<int64_t> last_pause_ms_{0};
  ClusterShare* cluster_ = nullptr;
};

// The budgets one connection draws on; null entries are skipped.
struct BudgetSet {
  enum Index { kDomain = 0, kMx = 1, kSource = 2 };
  std::array<ShapingBudget*, 3> budgets{};

  // The first budget pausing at now_ms (domain, then MX), or nullptr. Source budgets never pause.
  const ShapingBudget* PausedBy(int64_t now_ms) const;
  // All or nothing: on false no budget holds the connection, and the full ones remember that
  // someone waits (NoteRefused).
  [[nodiscard]] bool TryOpenConnection(int64_t now_ms = 0);
  bool HasWaiters(int64_t now_ms) const;
  void CloseConnection();
  // min(global, every rule's max_messages_per_connection).
  int MaxMessagesPerConnection(int global) const;
  int64_t WaitBeforeMessageUs(int64_t now_us) const;  // the longest wait of any budget
  void TakeMessage(int64_t now_us);
  // Feeds a reply to the domain and MX budgets; true when one of them started a pause.
  bool OnReply(int code, int64_t now_ms);
};

// The rules of a config with their budgets. Built once; then any thread may read it.
class ShapingTable {
 public:
  ShapingTable() = default;
  explicit ShapingTable(ShapingConfig config);
  ShapingTable(const ShapingTable&) = delete;
  ShapingTable& operator=(const ShapingTable&) = delete;

  const ShapingConfig& config() const { return config_; }
  bool empty() const { return budgets_.empty() && config_.pools.empty(); }

  // The budget of the rule for this key, or nullptr. Domains are matched exactly (lower-case),
  // MX hosts by the longest matching suffix, sources by the IP text ("127.0.0.5").
  ShapingBudget* ForDomain(absl::string_view domain) const;
  ShapingBudget* ForMx(absl::string_view mx_host) const;
  ShapingBudget* ForSource(absl::string_view ip) const;

  // Index into config().pools for a message, -1 = no pool (no bind).
  int PoolFor(absl::string_view job, absl::string_view sender_domain) const;

  // Some rule's connection budget refused a connection recently (ShapingBudget::HasWaiters).
  bool AnyWaiters(int64_t now_ms) const;
  // The scope = "cluster" rules (with their cluster-wide limits) and their budgets.
  std::vector<std::pair<const ShapingRule*, ShapingBudget*>> ClusterBudgets() const;
  // One JSON line per rule budget (for the shaping dump next to the policy dump).
  std::string DumpJson(int64_t now_ms) const;

 private:
  ShapingConfig config_;
  std::vector<std::unique_ptr<ShapingBudget>> budgets_;  // one per rule, in rule order
  absl::flat_hash_map<std::string, ShapingBudget*> by_domain_;
  absl::flat_hash_map<std::string, ShapingBudget*> by_source_;
  std::vector<std::pair<std::string, ShapingBudget*>> by_mx_suffix_;
  int default_pool_ = -1;
  std::vector<int> select_pool_;  // per config_.select entry
};

}  // namespace mxb
