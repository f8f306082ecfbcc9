// The worker's DNS plumbing (engine/worker_dns.h): c-ares sockets polled through the ring, the
// resolver's creation from the engine config, and the DNSSEC probe. Worker thread.
#include "engine/worker_dns.h"

#include <liburing.h>
#include <poll.h>

#include <atomic>
#include <cstdio>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace mxb {

void DnsPoller::Watch(int fd, bool read, bool write) {
  State& wt = watch_[fd];
  if (wt.armed) {
    // Cancel the armed poll; its CQE (if any) is stale from now on.
    io_uring_sqe* sqe = ring_->Sqe();
    io_uring_prep_poll_remove(sqe, UringTag{UringOp::kDnsPoll, wt.gen,
                                            static_cast<uint32_t>(fd)}.Encode());
    Ring::SetTag(sqe, UringTag{UringOp::kCancel, 0, kNoSlot});
    wt.armed = false;
  }
  wt.gen = (wt.gen + 1) & kGenMask;
  wt.read = read;
  wt.write = write;
  if (!read && !write) {
    watch_.erase(fd);
    return;
  }
  Arm(fd, wt);
}

void DnsPoller::OnPoll(const UringTag& tag, int res) {
  int fd = static_cast<int>(tag.slot);
  auto it = watch_.find(fd);
  if (it == watch_.end() || it->second.gen != tag.gen) return;  // stale
  it->second.armed = false;
  if (res > 0 && (res & (POLLIN | POLLERR | POLLHUP))) resolver_->OnReadable(fd);
  it = watch_.find(fd);  // the resolver may have changed the watch
  if (it != watch_.end() && it->second.gen == tag.gen && res > 0 && (res & POLLOUT)) {
    resolver_->OnWritable(fd);
  }
  it = watch_.find(fd);
  if (it != watch_.end() && !it->second.armed) Arm(fd, it->second);
}

void DnsPoller::Arm(int fd, State& wt) {
  io_uring_sqe* sqe = ring_->Sqe();
  unsigned mask = (wt.read ? POLLIN : 0) | (wt.write ? POLLOUT : 0);
  io_uring_prep_poll_add(sqe, fd, mask);
  Ring::SetTag(sqe, UringTag{UringOp::kDnsPoll, wt.gen, static_cast<uint32_t>(fd)});
  wt.armed = true;
}

std::unique_ptr<Resolver> CreateWorkerResolver(const EngineConfig& config, uint32_t worker,
                                               DnsPoller* poller) {
  Resolver::Options ro;
  ro.servers = config.dns_servers;
  ro.ttl_floor = config.dns_ttl_floor;
  ro.ttl_ceiling = config.dns_ttl_ceiling;
  ro.negative_ttl = config.dns_negative_ttl;
  ro.tempfail_ttl = config.dns_tempfail_ttl;
  ro.max_mx_hosts = config.dns_max_mx_hosts;
  absl::StatusOr<std::unique_ptr<Resolver>> r = Resolver::Create(
      ro, [poller](int fd, bool rd, bool wr) { poller->Watch(fd, rd, wr); });
  if (!r.ok()) {
    // Static routes still work; domains without one are deferred with the reason.
    std::fprintf(stderr, "mxburst: worker %u: DNS unavailable: %s\n", worker,
                 std::string(r.status().message()).c_str());
    return nullptr;
  }
  std::unique_ptr<Resolver> resolver = *std::move(r);
  poller->set_resolver(resolver.get());
  return resolver;
}

void ProbeDnssec(Resolver* resolver, const EngineConfig& config) {
  static std::atomic<bool> probed{false};
  const std::string& probe = config.dnssec_probe;
  if (!config.tls_global.dane || probe.empty() || probed.exchange(true)) return;
  resolver->ResolveTxt(probe, [probe](const TxtResult& r) {
    if (r.dnssec) return;
    const std::string why =
        r.status == DnsStatus::kOk || r.status == DnsStatus::kNoData ||
                r.status == DnsStatus::kNxDomain
            ? std::string("answered without the AD bit")
            : absl::StrCat("did not answer (", r.error.empty() ? ToString(r.status) : r.error,
                           ")");
    std::fprintf(stderr,
                 "mxburst: dns: the resolver %s for TXT %s: no DNSSEC validation, so DANE is "
                 "inert (use a validating resolver; [tls] dane = \"off\" or [dns] "
                 "dnssec_probe = \"\" silences this)\n",
                 why.c_str(), probe.c_str());
  });
}

}  // namespace mxb
