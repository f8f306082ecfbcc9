// MxPool (engine/mx_pool.h): the per-worker connection pool keyed by MX host and TLS policy.
#include "engine/mx_pool.h"

#include <netinet/in.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "dns/static_routes.h"

namespace mxb {
namespace {

uint16_t PortOf(const sockaddr_storage& a) {
  if (a.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&a)->sin_port);
  if (a.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&a)->sin6_port);
  return 0;
}

}  // namespace

std::string MxPool::KeyOf(const ConnectSpec& spec, int source_pool, bool relaxed) {
  const TlsPolicy& p = spec.policy;
  // Everything a connection carries into its outcomes or its checks (Connection::Attempt,
  // RequireTlsProblem, the TLS verification) is part of the key: a job may only ride on a
  // connection that is, for it, the one its own domain would have opened.
  return absl::StrCat(spec.mx, "|", SockaddrIp(spec.addr), "|", PortOf(spec.addr), "|",
                      source_pool, "|", p.name, "|", static_cast<int>(p.requirement), p.verify,
                      p.log_only, static_cast<int>(p.source), spec.implicit_tls, "|",
                      reinterpret_cast<uintptr_t>(p.dane.get()), "|", spec.mx_dnssec,
                      spec.mx_sts_listed, relaxed);
}

bool MxPool::Full(const std::string& key) const { return open(key) >= max_per_key_; }

int MxPool::open(const std::string& key) const {
  auto it = entries_.find(key);
  return it == entries_.end() ? 0 : it->second.open;
}

void MxPool::Opened(const std::string& key) { ++entries_[key].open; }

Destination* MxPool::Closed(const std::string& key) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return nullptr;
  if (it->second.open > 0) --it->second.open;
  Destination* d = PopWaiter(key);
  MaybeErase(key);
  return d;
}

void MxPool::Park(const std::string& key, ConnRef c, Destination* owner) {
  Entry& e = entries_[key];
  e.idle.push_back({c, owner});
  if (e.idle.size() <= 2 * static_cast<size_t>(e.open) + 4) return;
  // Stale entries pile up when owners take their own connections back: keep the newest entry
  // per slot, and no more entries than connections are open.
  std::vector<Idle> kept;
  absl::flat_hash_set<uint32_t> seen;
  for (auto it = e.idle.rbegin(); it != e.idle.rend(); ++it) {
    if (kept.size() >= static_cast<size_t>(e.open)) break;
    if (seen.insert(it->conn.slot).second) kept.push_back(*it);
  }
  std::reverse(kept.begin(), kept.end());
  e.idle = std::move(kept);
}

bool MxPool::PopIdle(const std::string& key, Idle* out) {
  auto it = entries_.find(key);
  if (it == entries_.end() || it->second.idle.empty()) return false;
  *out = it->second.idle.back();
  it->second.idle.pop_back();
  return true;
}

void MxPool::Wait(const std::string& key, Destination* d) {
  Entry& e = entries_[key];
  if (e.waiting_set.insert(d).second) e.waiting.push_back(d);
}

bool MxPool::HasWaiters(const std::string& key) const {
  auto it = entries_.find(key);
  return it != entries_.end() && !it->second.waiting.empty();
}

Destination* MxPool::PopWaiter(const std::string& key) {
  auto it = entries_.find(key);
  if (it == entries_.end() || it->second.waiting.empty()) return nullptr;
  Destination* d = it->second.waiting.front();
  it->second.waiting.pop_front();
  it->second.waiting_set.erase(d);
  return d;
}

void MxPool::Forget(Destination* d) { Forget(absl::flat_hash_set<Destination*>{d}); }

void MxPool::Forget(const absl::flat_hash_set<Destination*>& gone) {
  if (gone.empty()) return;
  for (auto& [key, e] : entries_) {
    // Linear in the entries, not keys x destinations (the long tail forgets thousands).
    e.waiting.erase(std::remove_if(e.waiting.begin(), e.waiting.end(),
                                   [&](Destination* d) {
                                     if (!gone.contains(d)) return false;
                                     e.waiting_set.erase(d);
                                     return true;
                                   }),
                    e.waiting.end());
    e.idle.erase(std::remove_if(e.idle.begin(), e.idle.end(),
                                [&](const Idle& i) { return gone.contains(i.owner); }),
                 e.idle.end());
  }
}

void MxPool::MaybeErase(const std::string& key) {
  auto it = entries_.find(key);
  if (it != entries_.end() && it->second.open == 0 && it->second.waiting.empty()) {
    entries_.erase(it);  // parked entries of a key with nothing open are all stale
  }
}

}  // namespace mxb
