#include "engine/shaping.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace mxb {

int64_t MessageRate::IntervalUs() const {
  if (count <= 0) return 0;
  return std::max<int64_t>(1, absl::ToInt64Microseconds(period) / count);
}

absl::StatusOr<MessageRate> ParseMessageRate(absl::string_view text) {
  const auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        "expected \"N/second\", \"N/minute\" or \"N/hour\", got '", text, "'"));
  };
  size_t slash = text.find('/');
  if (slash == absl::string_view::npos) return bad();
  MessageRate r;
  absl::string_view n = absl::StripAsciiWhitespace(text.substr(0, slash));
  std::string unit = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text.substr(slash + 1)));
  if (!absl::SimpleAtoi(n, &r.count) || r.count < 1 || r.count > 1000000000) return bad();
  if (unit == "s" || unit == "sec" || unit == "second") r.period = absl::Seconds(1);
  else if (unit == "m" || unit == "min" || unit == "minute") r.period = absl::Minutes(1);
  else if (unit == "h" || unit == "hour") r.period = absl::Hours(1);
  else return bad();
  return r;
}

const char* ToString(ShapingMatch m) {
  switch (m) {
    case ShapingMatch::kDomain: return "domain";
    case ShapingMatch::kMxSuffix: return "mx_suffix";
    case ShapingMatch::kSource: return "source";
  }
  return "?";
}

bool MxSuffixMatches(absl::string_view suffix, absl::string_view host) {
  host = absl::StripSuffix(host, ".");  // a fully qualified "mx.example." is the same host
  if (suffix.empty() || host.size() < suffix.size()) return false;
  if (!absl::EndsWithIgnoreCase(host, suffix)) return false;
  return host.size() == suffix.size() || host[host.size() - suffix.size() - 1] == '.';
}

// A worker that found no leased cluster token looks again after this long.
constexpr int64_t kClusterTokenWaitUs = 2000;

// --- ShapingBudget ------------------------------------------------------------------------------

ShapingBudget::ShapingBudget(std::string name, ShapingLimits limits)
    : name_(std::move(name)), limits_(std::move(limits)) {}

bool ShapingBudget::TryOpenConnection() {
  int max = limits_.max_connections;
  if (max > 0 && cluster_ != nullptr && cluster_->online.load(std::memory_order_relaxed)) {
    // The slots this node leased from the cluster-wide limit (cluster/redis_budgets.h).
    max = cluster_->slots.load(std::memory_order_relaxed);
    if (connections() >= max) {
      cluster_->want_slots.store(true, std::memory_order_relaxed);
      return false;
    }
  }
  if (max <= 0) {
    if (cluster_ != nullptr) cluster_->in_use.fetch_add(1, std::memory_order_relaxed);
    connections_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  int cur = connections_.load(std::memory_order_relaxed);
  while (cur < max) {
    if (connections_.compare_exchange_weak(cur, cur + 1, std::memory_order_relaxed)) {
      if (cluster_ != nullptr) cluster_->in_use.fetch_add(1, std::memory_order_relaxed);
      return true;
    }
  }
  return false;
}

void ShapingBudget::CloseConnection() {
  connections_.fetch_sub(1, std::memory_order_relaxed);
  if (cluster_ != nullptr) cluster_->in_use.fetch_sub(1, std::memory_order_relaxed);
}

void ShapingBudget::NoteRefused(int64_t now_ms) {
  refused_ms_.store(now_ms, std::memory_order_relaxed);
}

bool ShapingBudget::HasWaiters(int64_t now_ms) const {
  return now_ms - refused_ms_.load(std::memory_order_relaxed) < kWaiterMemoryMs;
}

// GCRA (the generic cell rate algorithm): a token bucket of `rate_burst` tokens kept as one
// timestamp, the theoretical arrival time (TAT) of the next message. A message may start when
// TAT - (burst - 1) * interval <= now; it moves TAT to max(TAT, now) + interval. So after the
// burst, message k starts no earlier than (k - burst + 1) intervals after the first.
int64_t ShapingBudget::WaitBeforeMessageUs(int64_t now_us) const {
  if (limits_.max_message_rate.unlimited()) return 0;
  if (cluster_ != nullptr && cluster_->online.load(std::memory_order_relaxed)) {
    if (cluster_->tokens.load(std::memory_order_relaxed) > 0) return 0;
    // No leased token: the Redis thread leases more within a few ms; look again then.
    cluster_->want_tokens.store(true, std::memory_order_relaxed);
    return kClusterTokenWaitUs;
  }
  const int64_t interval = limits_.max_message_rate.IntervalUs();
  const int64_t tolerance = static_cast<int64_t>(std::max(limits_.rate_burst, 1) - 1) * interval;
  const int64_t tat = std::max(tat_us_.load(std::memory_order_relaxed), now_us);
  return std::max<int64_t>(0, tat - tolerance - now_us);
}

void ShapingBudget::TakeMessage(int64_t now_us) {
  if (limits_.max_message_rate.unlimited()) return;
  if (cluster_ != nullptr && cluster_->online.load(std::memory_order_relaxed)) {
    // Two workers may take the last token at once: the debt is leased first next time.
    cluster_->tokens.fetch_sub(1, std::memory_order_relaxed);
    cluster_->last_take_us.store(now_us, std::memory_order_relaxed);
    return;
  }
  const int64_t interval = limits_.max_message_rate.IntervalUs();
  int64_t tat = tat_us_.load(std::memory_order_relaxed);
  while (!tat_us_.compare_exchange_weak(tat, std::max(tat, now_us) + interval,
                                        std::memory_order_relaxed)) {
  }
}

bool ShapingBudget::OnReply(int code, int64_t now_ms) {
  const BackoffSettings& b = limits_.backoff;
  if (code >= 200 && code < 300) {
    consecutive_4xx_.store(0, std::memory_order_relaxed);
    level_.store(0, std::memory_order_relaxed);
    return false;
  }
  if (code >= 500) {
    consecutive_4xx_.store(0, std::memory_order_relaxed);
    return false;
  }
  if (code < 400 || !b.enabled || Paused(now_ms)) return false;
  bool start = code == 421;
  if (!start) {
    int n = consecutive_4xx_.fetch_add(1, std::memory_order_relaxed) + 1;
    start = b.after_4xx > 0 && n >= b.after_4xx;
  }
  if (!start) return false;
  // Only one of several workers seeing 4xx at the same instant starts the pause.
  int64_t until = paused_until_ms();
  if (now_ms < until) return false;
  const int k = level_.load(std::memory_order_relaxed);
  absl::Duration pause = b.base;
  for (int i = 0; i < k && pause < b.max; ++i) pause *= 2;
  pause = std::min(pause, b.max);
  if (!paused_until_ms_.compare_exchange_strong(until, now_ms + absl::ToInt64Milliseconds(pause),
                                                std::memory_order_relaxed)) {
    return false;
  }
  level_.store(k + 1, std::memory_order_relaxed);
  consecutive_4xx_.store(0, std::memory_order_relaxed);
  last_pause_code_.store(code, std::memory_order_relaxed);
  last_pause_ms_.store(absl::ToInt64Milliseconds(pause), std::memory_order_relaxed);
  return true;
}

std::string ShapingBudget::PauseReason() const {
  const int code = last_pause_code_.load(std::memory_order_relaxed);
  return absl::StrCat(name_, " paused ",
                      absl::FormatDuration(
                          absl::Milliseconds(last_pause_ms_.load(std::memory_order_relaxed))),
                      " after ",
                      code == 421 ? std::string("421")
                                  : absl::StrCat(limits_.backoff.after_4xx, " consecutive 4xx"),
                      " (back-off ", backoff_level(), ")");
}

std::string ShapingBudget::DumpJson(int64_t now_ms) const {
  const int64_t paused_for = std::max<int64_t>(0, paused_until_ms() - now_ms);
  const int64_t rate_wait = WaitBeforeMessageUs(now_ms * 1000) / 1000;
  std::string name;
  for (char ch : name_) {  // rule names are domains, suffixes, IPs: escape just in case
    if (ch == '"' || ch == '\\') name.push_back('\\');
    name.push_back(ch);
  }
  return absl::StrCat("{\"rule\":\"", name, "\",\"connections\":", connections(),
                      ",\"paused_for_ms\":", paused_for, ",\"backoff_level\":", backoff_level(),
                      ",\"consecutive_4xx\":", consecutive_4xx(), ",\"rate_wait_ms\":", rate_wait,
                      "}");
}

// --- BudgetSet ------------------------------------------------------------------------------

const ShapingBudget* BudgetSet::PausedBy(int64_t now_ms) const {
  for (int i : {kDomain, kMx}) {
    if (budgets[i] != nullptr && budgets[i]->Paused(now_ms)) return budgets[i];
  }
  return nullptr;
}

bool BudgetSet::TryOpenConnection(int64_t now_ms) {
  for (size_t i = 0; i < budgets.size(); ++i) {
    if (budgets[i] == nullptr || budgets[i]->TryOpenConnection()) continue;
    budgets[i]->NoteRefused(now_ms);
    for (size_t j = 0; j < i; ++j) {
      if (budgets[j] != nullptr) budgets[j]->CloseConnection();
    }
    return false;
  }
  return true;
}

bool BudgetSet::HasWaiters(int64_t now_ms) const {
  for (const ShapingBudget* b : budgets) {
    if (b != nullptr && b->HasWaiters(now_ms)) return true;
  }
  return false;
}

void BudgetSet::CloseConnection() {
  for (ShapingBudget* b : budgets) {
    if (b != nullptr) b->CloseConnection();
  }
}

int BudgetSet::MaxMessagesPerConnection(int global) const {
  int m = global;
  for (const ShapingBudget* b : budgets) {
    if (b != nullptr && b->limits().max_messages_per_connection > 0) {
      m = std::min(m, b->limits().max_messages_per_connection);
    }
  }
  return m;
}

int64_t BudgetSet::WaitBeforeMessageUs(int64_t now_us) const {
  int64_t wait = 0;
  for (const ShapingBudget* b : budgets) {
    if (b != nullptr) wait = std::max(wait, b->WaitBeforeMessageUs(now_us));
  }
  return wait;
}

void BudgetSet::TakeMessage(int64_t now_us) {
  for (ShapingBudget* b : budgets) {
    if (b != nullptr) b->TakeMessage(now_us);
  }
}

bool BudgetSet::OnReply(int code, int64_t now_ms) {
  bool started = false;
  for (int i : {kDomain, kMx}) {
    if (budgets[i] != nullptr && budgets[i]->OnReply(code, now_ms)) started = true;
  }
  return started;
}

// --- ShapingTable ---------------------------------------------------------------------------

ShapingTable::ShapingTable(ShapingConfig config) : config_(std::move(config)) {
  for (const ShapingRule& r : config_.rules) {
    ShapingLimits limits = r.limits;
    if (r.cluster && config_.cluster_nodes > 1) {
      // The local share, used while Redis is unreachable: limit / expected_nodes, never 0
      // (never unlimited either). A rate keeps its count over an N times longer period.
      const int n = config_.cluster_nodes;
      if (limits.max_connections > 0) limits.max_connections = std::max(1, limits.max_connections / n);
      limits.max_message_rate.period *= n;
    }
    budgets_.push_back(std::make_unique<ShapingBudget>(
        absl::StrCat(ToString(r.match), " ", r.pattern), limits));
    ShapingBudget* b = budgets_.back().get();
    // The first rule for a key wins (the config parser rejects duplicates anyway).
    switch (r.match) {
      case ShapingMatch::kDomain: by_domain_.emplace(r.pattern, b); break;
      case ShapingMatch::kSource: by_source_.emplace(r.pattern, b); break;
      case ShapingMatch::kMxSuffix: by_mx_suffix_.emplace_back(r.pattern, b); break;
    }
  }
  auto pool_index = [this](const std::string& name) {
    for (size_t i = 0; i < config_.pools.size(); ++i) {
      if (config_.pools[i].name == name) return static_cast<int>(i);
    }
    return -1;
  };
  default_pool_ = config_.default_pool.empty() ? -1 : pool_index(config_.default_pool);
  for (const SourceSelect& s : config_.select) select_pool_.push_back(pool_index(s.pool));
}

ShapingBudget* ShapingTable::ForDomain(absl::string_view domain) const {
  auto it = by_domain_.find(domain);
  return it == by_domain_.end() ? nullptr : it->second;
}

ShapingBudget* ShapingTable::ForMx(absl::string_view mx_host) const {
  ShapingBudget* best = nullptr;
  size_t best_len = 0;
  for (const auto& [suffix, b] : by_mx_suffix_) {
    if (suffix.size() > best_len && MxSuffixMatches(suffix, mx_host)) {
      best = b;
      best_len = suffix.size();
    }
  }
  return best;
}

ShapingBudget* ShapingTable::ForSource(absl::string_view ip) const {
  auto it = by_source_.find(ip);
  return it == by_source_.end() ? nullptr : it->second;
}

int ShapingTable::PoolFor(absl::string_view job, absl::string_view sender_domain) const {
  for (size_t i = 0; i < config_.select.size(); ++i) {
    const SourceSelect& s = config_.select[i];
    if ((!s.job.empty() && s.job == job) ||
        (!s.sender_domain.empty() && absl::EqualsIgnoreCase(s.sender_domain, sender_domain))) {
      return select_pool_[i];
    }
  }
  return default_pool_;
}

bool ShapingTable::AnyWaiters(int64_t now_ms) const {
  for (const auto& b : budgets_) {
    if (b->HasWaiters(now_ms)) return true;
  }
  return false;
}

std::vector<std::pair<const ShapingRule*, ShapingBudget*>> ShapingTable::ClusterBudgets() const {
  std::vector<std::pair<const ShapingRule*, ShapingBudget*>> out;
  for (size_t i = 0; i < config_.rules.size(); ++i) {
    if (config_.rules[i].cluster) out.emplace_back(&config_.rules[i], budgets_[i].get());
  }
  return out;
}

std::string ShapingTable::DumpJson(int64_t now_ms) const {
  std::string out;
  for (const auto& b : budgets_) absl::StrAppend(&out, b->DumpJson(now_ms), "\n");
  return out;
}

}  // namespace mxb
