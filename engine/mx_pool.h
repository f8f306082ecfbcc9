// MxPool: one worker's connections grouped by what makes them interchangeable between recipient
// domains — PowerMTA's "mx-rollup", Postfix's connection cache by next hop. Every domain whose
// next hop is the same MX host draws on the same connections, so 1,000 domains on 4 MX hosts
// open at most workers x 4 x max_connections_per_mx sessions instead of one pool per domain.
//
// The key is (MX host name, address and port, source pool, the TLS policy the connection was
// opened with and the DNS facts it reports). Two domains share a connection only when their
// policies for that hop are the same policy — name, requirement, verification, DANE authority,
// TLS-Required: No relaxation, MX DNSSEC/MTA-STS listing for REQUIRETLS —, so a DANE or
// MTA-STS domain never rides on a connection an opportunistic domain opened, and every log
// record still names the policy its own domain asked for.
//
// Owns, per key: how many connections are open or opening (the cap), the parked ones (with the
// Destination that owns each one now; entries go stale when the connection is taken back,
// handed on or closed — the taker checks), and the destinations waiting for one because the cap
// is reached. It never touches a connection: Destination (engine/destination.cc) moves leases
// between domains and the worker re-owns the slot.
//
// Thread: the worker thread that owns it, for everything.
//
//   MxPool pool(config.max_connections_per_mx);
//   std::string key = MxPool::KeyOf(spec, pool_index, relaxed);
//   if (pool.Full(key)) pool.Wait(key, this); else { ...connect...; pool.Opened(key); }
//   pool.Park(key, {slot, gen}, this);              // between transactions
//   MxPool::Idle e; while (pool.PopIdle(key, &e)) { ...e.owner->Release(e.conn)... }
//   if (Destination* d = pool.Closed(key)) d->Pump();  // a slot under the cap is free again
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "engine/connection.h"

namespace mxb {

class Destination;

// {slot, generation} of a connection: stays meaningful after the slot is reused.
struct ConnRef {
  uint32_t slot = 0;
  uint32_t gen = 0;
};

class MxPool {
 public:
  struct Idle {
    ConnRef conn;
    Destination* owner = nullptr;  // who parked it
  };

  explicit MxPool(int max_per_key) : max_per_key_(max_per_key < 1 ? 1 : max_per_key) {}

  // The pool key of a connection opened with `spec` (before the source address is picked:
  // connections of one source pool are interchangeable; the per-address budgets stay with the
  // connection). `relaxed`: opened for TLS-Required: No jobs only.
  static std::string KeyOf(const ConnectSpec& spec, int source_pool, bool relaxed);

  bool Full(const std::string& key) const;
  int open(const std::string& key) const;
  void Opened(const std::string& key);
  // A connection of `key` closed: the first destination that waited for the cap, if any (removed
  // from the wait list; the caller pumps it).
  Destination* Closed(const std::string& key);

  void Park(const std::string& key, ConnRef c, Destination* owner);
  // The most recently parked entry (possibly stale), removed. False: none left.
  bool PopIdle(const std::string& key, Idle* out);

  // `d` waits for a connection of `key` (once; FIFO, so domains take turns).
  void Wait(const std::string& key, Destination* d);
  bool HasWaiters(const std::string& key) const;
  // The next waiting destination, removed; nullptr: none.
  Destination* PopWaiter(const std::string& key);
  // `d` goes away (idle-destination expiry): no entry may name it any more.
  void Forget(Destination* d);
  // The same for several at once (one pass over the keys).
  void Forget(const absl::flat_hash_set<Destination*>& gone);

  size_t keys() const { return entries_.size(); }

 private:
  struct Entry {
    int open = 0;
    std::vector<Idle> idle;
    std::deque<Destination*> waiting;
    absl::flat_hash_set<Destination*> waiting_set;
  };
  void MaybeErase(const std::string& key);

  const int max_per_key_;
  absl::flat_hash_map<std::string, Entry> entries_;
};

}  // namespace mxb
