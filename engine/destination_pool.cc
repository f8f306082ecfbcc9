// Destination (engine/destination.h) and the worker's MX pool (engine/mx_pool.h): taking a
// parked connection of another domain on the same MX host, handing a ready one to a domain that
// waits for it, and moving the lease (and the domain budget) between them.
#include <algorithm>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "engine/config.h"
#include "engine/destination.h"

namespace mxb {

size_t ForgetIdleDestinations(DestinationMap* dests, MxPool* pool, int64_t idle_ms,
                              absl::FunctionRef<void(Destination*)> erasing) {
  absl::flat_hash_set<Destination*> gone;
  for (const auto& [key, d] : *dests) {
    if (d->Expirable(idle_ms)) gone.insert(d.get());
  }
  if (gone.empty()) return 0;
  if (pool != nullptr) pool->Forget(gone);
  absl::erase_if(*dests, [&](const auto& kv) {
    if (!gone.contains(kv.second.get())) return false;
    erasing(kv.second.get());
    return true;
  });
  return gone.size();
}

bool Destination::Owns(ConnRef c) const {
  auto it = leases_.find(c.slot);
  return it != leases_.end() && it->second.gen == c.gen;
}

bool Destination::Adopt(const std::string& key, size_t hop) {
  MxPool& pool = *ctx_->mx_pool;
  MxPool::Idle e;
  std::vector<MxPool::Idle> own;  // ours are parked on purpose (a rate slot): ResumeIdle's
  bool taken = false;
  while (!taken && pool.PopIdle(key, &e)) {
    Destination* from = e.owner;
    if (!from->Owns(e.conn) || !ctx_->host->IsParked(e.conn.slot)) continue;  // stale
    if (from == this) {
      own.push_back(e);
      continue;
    }
    Lease l = from->leases_[e.conn.slot];
    if (!Receive(e.conn.slot, std::move(l), from, hop)) {
      pool.Park(key, e.conn, from);  // still parked and still theirs
      break;
    }
    taken = true;
  }
  for (const MxPool::Idle& i : own) pool.Park(key, i.conn, this);
  return taken;
}

bool Destination::HandOver(uint32_t slot) {
  MxPool& pool = *ctx_->mx_pool;
  const std::string key = leases_[slot].key;
  while (Destination* d = pool.PopWaiter(key)) {
    if (d == this) continue;
    Lease l = leases_[slot];
    if (d->Receive(slot, std::move(l), this, d->hops_.next)) return true;
  }
  return false;
}

// The connection's domain budget moves with it: it counts against the domain whose mail it
// carries (and that may park it), while its MX and source budgets hold it from connect to
// close. Its message count stays the connection's (max_messages_per_connection is per session).
bool Destination::Receive(uint32_t slot, Lease&& l, Destination* from, size_t hop) {
  if (queue_.empty() || Suspended() || state_ != State::kReady || now() < shaping_wake_ms_ ||
      connections_ >= ctx_->config->max_connections_per_destination || PausedFor() != nullptr) {
    return false;
  }
  if (l.relaxed && std::none_of(queue_.begin(), queue_.end(),
                                [](const DeliveryJob* j) { return j->tls_optional; })) {
    return false;  // a TLS-Required: No connection carries nothing else (PopJobFor)
  }
  BudgetSet mine;
  mine.budgets = {budget_, nullptr, nullptr};
  if (!mine.TryOpenConnection(now())) {
    ctx_->host->Throttle(this);  // its domain budget is full: try again on the next tick
    return false;
  }
  const bool was_parked = ctx_->host->IsParked(slot);
  if (was_parked && !ctx_->host->Unpark({slot, l.gen})) {
    mine.CloseConnection();
    return false;
  }
  BudgetSet theirs;
  theirs.budgets = {l.budgets.budgets[BudgetSet::kDomain], nullptr, nullptr};
  theirs.CloseConnection();
  from->leases_.erase(slot);
  from->ReleaseLeaseTable();
  --from->connections_;
  l.budgets.budgets[BudgetSet::kDomain] = budget_;
  l.hop = hop < hops_.size() ? hop : 0;
  l.max_messages = l.budgets.MaxMessagesPerConnection(ctx_->config->max_messages_per_connection);
  leases_[slot] = std::move(l);
  ++connections_;
  ctx_->host->Reown(slot, this);
  StartTransaction(slot, /*may_hand_over=*/false);
  return true;
}

}  // namespace mxb
