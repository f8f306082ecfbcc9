#include "cluster/redis_budgets.h"

#include <hiredis/hiredis.h>
#include <time.h>

#include <algorithm>
#include <cstdio>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

namespace mxb {
namespace {

constexpr timeval kRedisTimeout{0, 200000};
constexpr absl::Duration kBackoffMin = absl::Milliseconds(250);
constexpr absl::Duration kBackoffMax = absl::Seconds(2);
constexpr int64_t kTokenIdleReturnUs = 500000;  // unused tokens go back after this
constexpr int64_t kDemandMemoryUs = 1000000;    // "recently used": keep a lease ready

// GCRA over Redis' clock. ARGV: interval µs, tolerance in tokens, n (> 0: lease up to n tokens,
// < 0: return -n unused ones). Returns {granted (negative when returned), µs until the next token}.
// Times are µs since the epoch (< 2^53, exact in Lua's doubles; '%.0f' keeps every digit).
constexpr const char* kGcraScript = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tol = tonumber(ARGV[2]) * interval
local n = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local k = n
if n < 0 then
  tat = math.max(now, tat + n * interval)
else
  k = math.floor((now + tol - tat) / interval)
  if k > n then k = n end
  if k < 0 then k = 0 end
  tat = tat + k * interval
end
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 60000)
local wait = tat + interval - tol - now
if wait < 0 then wait = 0 end
return {k, string.format('%.0f', wait)}
)lua";

// Connection slots as TTL leases. ARGV: node, in use, want, max, ttl ms. Returns {granted,
// whether this node's lease was still there}.
constexpr const char* kSlotsScript = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local others, present = 0, 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local sep = string.find(all[i + 1], ':', 1, true)
  local exp = tonumber(string.sub(all[i + 1], 1, sep - 1))
  local cnt = tonumber(string.sub(all[i + 1], sep + 1))
  if exp <= now then
    redis.call('HDEL', KEYS[1], all[i])
  elseif all[i] == ARGV[1] then
    present = 1
  else
    others = others + cnt
  end
end
local in_use, want, max = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local grant = math.min(want, max - others)
if grant < 0 then grant = 0 end
local hold = math.max(grant, in_use)
redis.call('HSET', KEYS[1], ARGV[1], string.format('%.0f', now + tonumber(ARGV[5])) .. ':' .. hold)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[5]) * 2)
return {grant, present}
)lua";

int64_t MonotonicUs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000 + ts.tv_nsec / 1000;
}

// An integer from a reply element (integer or decimal string).
bool ReplyInt(const redisReply* r, int64_t* out) {
  if (r == nullptr) return false;
  if (r->type == REDIS_REPLY_INTEGER) {
    *out = r->integer;
    return true;
  }
  if (r->type == REDIS_REPLY_STRING) return absl::SimpleAtoi(absl::string_view(r->str, r->len), out);
  return false;
}

}  // namespace

// One hiredis connection with timeouts (loop thread only).
class RedisBudgets::Connection {
 public:
  ~Connection() {
    if (ctx_ != nullptr) redisFree(ctx_);
  }
  absl::Status Open(const std::string& url) {
    std::string host;
    int port = 6379, db = 0;
    if (absl::Status s = ParseUrl(url, &host, &port, &db); !s.ok()) return s;
    where_ = absl::StrCat(host, ":", port);
    ctx_ = redisConnectWithTimeout(host.c_str(), port, kRedisTimeout);
    if (ctx_ == nullptr || ctx_->err != 0) {
      return absl::UnavailableError(
          absl::StrCat("redis ", where_, ": ", ctx_ != nullptr ? ctx_->errstr : "out of memory"));
    }
    redisSetTimeout(ctx_, kRedisTimeout);
    if (db != 0) {
      if (absl::Status s = Command({"SELECT", std::to_string(db)}, nullptr); !s.ok()) return s;
    }
    return absl::OkStatus();
  }
  // Runs one command; its integer array reply (if any) into *ints.
  absl::Status Command(const std::vector<std::string>& argv, std::vector<int64_t>* ints) {
    std::vector<const char*> a;
    std::vector<size_t> len;
    for (const std::string& s : argv) {
      a.push_back(s.data());
      len.push_back(s.size());
    }
    auto* r = static_cast<redisReply*>(
        redisCommandArgv(ctx_, static_cast<int>(a.size()), a.data(), len.data()));
    if (r == nullptr) {
      return absl::UnavailableError(absl::StrCat("redis ", where_, ": ", ctx_->errstr));
    }
    absl::Status s;
    if (r->type == REDIS_REPLY_ERROR) {
      s = absl::InternalError(absl::StrCat("redis ", where_, ": ", std::string(r->str, r->len)));
    } else if (ints != nullptr) {
      ints->clear();
      for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; ++i) {
        int64_t v = 0;
        if (!ReplyInt(r->element[i], &v)) break;
        ints->push_back(v);
      }
    }
    freeReplyObject(r);
    return s;
  }
  const std::string& where() const { return where_; }

 private:
  redisContext* ctx_ = nullptr;
  std::string where_;
};

struct RedisBudgets::RuleState {
  Rule rule;
  std::string rate_key, slots_key;
  int64_t batch = 1;
  int64_t next_renew_us = 0;
  int64_t grace_until_us = 0;  // after a lost lease: ask for no new slots until then
  int64_t want_slots_until_us = 0;
  std::atomic<uint64_t> tokens_leased{0};
};

absl::Status RedisBudgets::ParseUrl(const std::string& url, std::string* host, int* port,
                                    int* db) {
  absl::string_view rest = url;
  const auto bad = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat("expected redis://HOST[:PORT][/DB], got '", url, "'"));
  };
  if (!absl::ConsumePrefix(&rest, "redis://") || rest.empty()) return bad();
  *port = 6379;
  *db = 0;
  if (size_t slash = rest.find('/'); slash != absl::string_view::npos) {
    if (!absl::SimpleAtoi(rest.substr(slash + 1), db) || *db < 0) return bad();
    rest = rest.substr(0, slash);
  }
  if (size_t colon = rest.rfind(':'); colon != absl::string_view::npos) {
    if (!absl::SimpleAtoi(rest.substr(colon + 1), port) || *port < 1 || *port > 65535) return bad();
    rest = rest.substr(0, colon);
  }
  if (rest.empty()) return bad();
  *host = std::string(rest);
  return absl::OkStatus();
}

RedisBudgets::RedisBudgets(ClusterConfig config, std::vector<Rule> rules, bool quiet)
    : config_(std::move(config)), quiet_(quiet) {
  for (Rule& r : rules) {
    auto st = std::make_unique<RuleState>();
    // A hash tag ({...}) keeps one rule's keys in one slot should the Redis be a cluster.
    st->rate_key = absl::StrCat("mxb:{", r.name, "}:rate");
    st->slots_key = absl::StrCat("mxb:{", r.name, "}:slots");
    // 50 ms of the cluster rate per lease: a lease round trip delayed by a busy CPU does not
    // leave the node without tokens.
    if (r.interval_us > 0) st->batch = std::clamp<int64_t>(50000 / r.interval_us, 1, 64);
    st->rule = std::move(r);
    rules_.push_back(std::move(st));
  }
}

RedisBudgets::~RedisBudgets() { Stop(); }

void RedisBudgets::Start() { thread_ = std::thread([this] { Loop(); }); }

void RedisBudgets::Stop() {
  stop_.store(true, std::memory_order_relaxed);
  if (thread_.joinable()) thread_.join();
}

void RedisBudgets::GoOffline(const std::string& why) {
  for (auto& st : rules_) {
    st->rule.share->online.store(false, std::memory_order_relaxed);
    st->rule.share->tokens.store(0, std::memory_order_relaxed);
  }
  if (up_.exchange(false) || fallbacks_.load() == 0) {
    fallbacks_.fetch_add(1, std::memory_order_relaxed);
    std::fprintf(stderr,
                 "mxburst: cluster: %s — cluster rules use their local share (limit / %d "
                 "expected nodes) until Redis answers again\n",
                 why.c_str(), config_.expected_nodes);
  }
}

bool RedisBudgets::Tick(Connection* c, int64_t now_us) {
  std::vector<int64_t> out;
  for (auto& stp : rules_) {
    RuleState& st = *stp;
    ClusterShare& sh = *st.rule.share;
    if (st.rule.interval_us > 0) {
      const int64_t tokens = sh.tokens.load(std::memory_order_relaxed);
      const int64_t last = sh.last_take_us.load(std::memory_order_relaxed);
      const bool wanted = sh.want_tokens.exchange(false, std::memory_order_relaxed);
      int64_t n = 0;
      if (tokens <= st.batch / 2 && (wanted || now_us - last < kDemandMemoryUs)) {
        n = st.batch - tokens;  // a debt (tokens < 0) is paid for first
      } else if (tokens > 0 && now_us - last > kTokenIdleReturnUs) {
        n = -tokens;
      }
      if (n != 0) {
        calls_.fetch_add(1, std::memory_order_relaxed);
        absl::Status s = c->Command({"EVAL", kGcraScript, "1", st.rate_key,
                                     std::to_string(st.rule.interval_us),
                                     std::to_string(std::max<int64_t>(st.rule.burst, 2 * st.batch)),
                                     std::to_string(n)},
                                    &out);
        if (!s.ok() || out.size() != 2) {
          GoOffline(s.ok() ? "redis: unexpected reply to the GCRA script" : std::string(s.message()));
          return false;
        }
        sh.tokens.fetch_add(out[0], std::memory_order_relaxed);
        if (out[0] > 0) st.tokens_leased.fetch_add(static_cast<uint64_t>(out[0]));
      }
    }
    if (st.rule.max_connections > 0) {
      const int in_use = sh.in_use.load(std::memory_order_relaxed);
      if (sh.want_slots.exchange(false, std::memory_order_relaxed)) {
        st.want_slots_until_us = now_us + kDemandMemoryUs;
        st.next_renew_us = 0;  // ask now
      }
      if (now_us >= st.next_renew_us || in_use > sh.slots.load(std::memory_order_relaxed)) {
        // Small batches: one slot more than in use while connections wait, else just what is
        // in use (unused slots go back at the next renewal).
        const bool grace = now_us < st.grace_until_us;
        const int want = in_use + (!grace && now_us < st.want_slots_until_us ? 1 : 0);
        calls_.fetch_add(1, std::memory_order_relaxed);
        absl::Status s = c->Command(
            {"EVAL", kSlotsScript, "1", st.slots_key, config_.node, std::to_string(in_use),
             std::to_string(want), std::to_string(st.rule.max_connections),
             std::to_string(absl::ToInt64Milliseconds(config_.lease_ttl))},
            &out);
        if (!s.ok() || out.size() != 2) {
          GoOffline(s.ok() ? "redis: unexpected reply to the slots script" : std::string(s.message()));
          return false;
        }
        if (out[1] == 0 && sh.slots.load(std::memory_order_relaxed) > 0 && !grace) {
          // Our lease was gone (Redis restarted or we were too slow): the others may not have
          // re-registered their connections yet.
          st.grace_until_us = now_us + absl::ToInt64Microseconds(config_.lease_ttl);
        }
        sh.slots.store(static_cast<int>(out[0]), std::memory_order_relaxed);
        st.next_renew_us = now_us + absl::ToInt64Microseconds(config_.lease_ttl) / 4;
      }
    }
    sh.online.store(true, std::memory_order_relaxed);
  }
  return true;
}

void RedisBudgets::Loop() {
  absl::Duration backoff = kBackoffMin;
  while (!stop_.load(std::memory_order_relaxed)) {
    Connection c;
    if (absl::Status s = c.Open(config_.redis); !s.ok()) {
      GoOffline(std::string(s.message()));
      for (absl::Time until = absl::Now() + backoff;
           absl::Now() < until && !stop_.load(std::memory_order_relaxed);) {
        absl::SleepFor(absl::Milliseconds(20));
      }
      backoff = std::min(backoff * 2, kBackoffMax);
      continue;
    }
    backoff = kBackoffMin;
    // Coming back from the fallback: other nodes may hold more than their lease says.
    const int64_t now = MonotonicUs();
    for (auto& st : rules_) {
      st->grace_until_us = fallbacks_.load() > 0 ? now + absl::ToInt64Microseconds(config_.lease_ttl) : 0;
      st->next_renew_us = 0;
    }
    bool first = true;
    while (!stop_.load(std::memory_order_relaxed)) {
      const int64_t t = MonotonicUs();
      if (!Tick(&c, t)) break;
      if (first) {
        first = false;
        up_.store(true);
        if (!quiet_ || fallbacks_.load() > 0) {
          std::fprintf(stderr, "mxburst: cluster: redis %s answers: node %s leases %zu cluster rule(s)\n",
                       c.where().c_str(), config_.node.c_str(), rules_.size());
        }
      }
      // Poll often while mail flows (a worker waiting for a token asks through want_tokens).
      bool busy = false;
      for (auto& st : rules_) {
        busy |= t - st->rule.share->last_take_us.load(std::memory_order_relaxed) < kDemandMemoryUs;
        busy |= t < st->want_slots_until_us;
      }
      absl::SleepFor(absl::Milliseconds(busy ? 2 : 20));
    }
  }
  for (auto& st : rules_) st->rule.share->online.store(false, std::memory_order_relaxed);
}

void RedisBudgets::WriteMetrics(control::PrometheusText* p) const {
  p->Family("mxburst_cluster_redis_up", "gauge",
            "1 while Redis answers and cluster rules use leases; 0: local share (fallback).");
  p->Sample("mxburst_cluster_redis_up", {}, up_.load() ? 1 : 0);
  p->Family("mxburst_cluster_fallbacks_total", "counter",
            "Times Redis became unreachable and cluster rules fell back to the local share.");
  p->Sample("mxburst_cluster_fallbacks_total", {}, static_cast<double>(fallbacks_.load()));
  p->Family("mxburst_cluster_redis_calls_total", "counter", "Lease scripts run on Redis.");
  p->Sample("mxburst_cluster_redis_calls_total", {}, static_cast<double>(calls_.load()));
  p->Family("mxburst_cluster_tokens_leased_total", "counter",
            "Message tokens leased from the cluster rate, per rule.");
  p->Family("mxburst_cluster_slots", "gauge", "Connection slots leased to this node, per rule.");
  for (const auto& st : rules_) {
    p->Sample("mxburst_cluster_tokens_leased_total", {{"rule", st->rule.name}},
              static_cast<double>(st->tokens_leased.load()));
  }
  for (const auto& st : rules_) {
    p->Sample("mxburst_cluster_slots", {{"rule", st->rule.name}},
              static_cast<double>(st->rule.share->slots.load()));
  }
}

}  // namespace mxb
