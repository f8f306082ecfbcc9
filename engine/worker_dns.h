// The worker's DNS on its ring (STYLE.md "dns/ does not know the ring"): the c-ares channel of
// dns/resolver.h reports which sockets it wants watched; DnsPoller arms a POLL_ADD for each
// through the worker's ring and calls the resolver back when one is ready. Also the resolver's
// creation from the engine config and the one-time DNSSEC probe. Private to engine/worker.cc;
// everything here runs on the worker's thread.
//
//   DnsPoller dns(&ring);
//   std::unique_ptr<Resolver> r = CreateWorkerResolver(config, index, &dns);  // nullptr: no DNS
//   ... a kDnsPoll completion: dns.OnPoll(tag, cqe->res);
#pragma once

#include <cstdint>
#include <memory>

#include "absl/container/flat_hash_map.h"
#include "dns/resolver.h"
#include "engine/config.h"
#include "engine/ring.h"
#include "engine/uring_tag.h"

namespace mxb {

// c-ares sockets polled through the ring (dns/ does not know the ring): the resolver says which
// fds it wants watched; each armed POLL_ADD carries the fd and a watch generation, so a poll CQE
// from before a change is recognised and ignored.
class DnsPoller {
 public:
  explicit DnsPoller(Ring* ring) : ring_(ring) {}
  void set_resolver(Resolver* r) { resolver_ = r; }

  void Watch(int fd, bool read, bool write);
  void OnPoll(const UringTag& tag, int res);

 private:
  struct State {
    bool read = false, write = false;
    bool armed = false;  // a POLL_ADD is in the ring
    uint32_t gen = 0;    // bumped when the watch changes
  };

  void Arm(int fd, State& wt);

  Ring* ring_;
  Resolver* resolver_ = nullptr;
  absl::flat_hash_map<int, State> watch_;
};

// The resolver of worker `worker` with the config's servers and TTL bounds, its sockets watched
// by `poller` (which is told about it). nullptr when DNS is unavailable (said once on stderr):
// static routes still work, domains without one are deferred with the reason.
std::unique_ptr<Resolver> CreateWorkerResolver(const EngineConfig& config, uint32_t worker,
                                               DnsPoller* poller);

// RFC 7672 §2.1: DANE needs a validating resolver. Without the AD bit every MX looks insecure
// and DANE silently never applies, so say it once per process, with the first MX lookup.
void ProbeDnssec(Resolver* resolver, const EngineConfig& config);

}  // namespace mxb
