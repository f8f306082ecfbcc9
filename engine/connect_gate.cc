// ConnectGate (engine/connect_gate.h): local back-pressure before a connect.
#include "engine/connect_gate.h"

#include <netinet/in.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "engine/connection.h"
#include "engine/worker.h"

namespace mxb {
namespace {

// Source address (or nothing: the kernel picks it) + destination address and port, as bytes.
std::string KeyOf(const ConnectSpec& spec) {
  std::string key;
  auto append = [&key](const sockaddr_storage& a) {
    if (a.ss_family == AF_INET6) {
      const auto& s = reinterpret_cast<const sockaddr_in6&>(a);
      key.append(reinterpret_cast<const char*>(&s.sin6_addr), sizeof(s.sin6_addr));
      key.append(reinterpret_cast<const char*>(&s.sin6_port), sizeof(s.sin6_port));
    } else {
      const auto& s = reinterpret_cast<const sockaddr_in&>(a);
      key.append(reinterpret_cast<const char*>(&s.sin_addr), sizeof(s.sin_addr));
      key.append(reinterpret_cast<const char*>(&s.sin_port), sizeof(s.sin_port));
    }
  };
  key.push_back(spec.source ? 's' : '-');
  if (spec.source) append(*spec.source);
  append(spec.addr);
  return key;
}

bool IsLoopback(const sockaddr_storage& a) {
  if (a.ss_family == AF_INET6) {
    const auto& s = reinterpret_cast<const sockaddr_in6&>(a);
    return IN6_IS_ADDR_LOOPBACK(&s.sin6_addr);
  }
  const auto& s = reinterpret_cast<const sockaddr_in&>(a);
  return (ntohl(s.sin_addr.s_addr) >> 24) == 127;
}

}  // namespace

bool IsLocalShortage(int err, bool at_bind) {
  switch (err) {
    case EADDRNOTAVAIL:  // connect(): no free local port for this 4-tuple
      return !at_bind;
    case EADDRINUSE:     // bind() of a source address
    case EMFILE:         // RLIMIT_NOFILE (regular descriptors) or a full direct table
    case ENFILE:         // fs.file-max
    case ENOBUFS:
    case ENOMEM:
      return true;
    default:
      return false;
  }
}

EphemeralPorts ConnectGate::ReadPortRange() {
  EphemeralPorts p;
  std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range");
  int low = 0, high = 0;
  if (range >> low >> high && low > 0 && high >= low) {
    p.low = low;
    p.high = high;
  }
  std::ifstream reuse("/proc/sys/net/ipv4/tcp_tw_reuse");
  int r = 0;
  if (reuse >> r) p.tw_reuse = r;
  return p;
}

std::string ConnectGate::Describe(const EphemeralPorts& ports, int workers) {
  const char* tw = ports.tw_reuse == 1   ? "reused after ~1 s"
                   : ports.tw_reuse == 2 ? "reused after ~1 s to loopback, else held 60 s"
                                         : "held 60 s";
  return absl::StrCat("ephemeral ports ", ports.low, "-", ports.high, ": ", ports.count(),
                      " per (source IP, destination IP:port), ",
                      ports.count() / std::max(1, workers), " per worker; TIME_WAIT ports ", tw,
                      " (net.ipv4.tcp_tw_reuse=", ports.tw_reuse, ")");
}

ConnectGate::ConnectGate(const EphemeralPorts& ports, int workers, WorkerStats* stats, bool quiet)
    : budget_(std::max(1, ports.count() / std::max(1, workers))),
      tw_reuse_(ports.tw_reuse),
      stats_(stats),
      quiet_(quiet) {}

ConnectGate::Usage* ConnectGate::Find(const std::string& key, int64_t now_ms) {
  auto it = usage_.find(key);
  if (it == usage_.end()) return nullptr;
  Usage& u = it->second;
  while (!u.time_wait_until.empty() && u.time_wait_until.front() <= now_ms) {
    u.time_wait_until.pop_front();
  }
  if (u.open == 0 && u.time_wait_until.empty()) {
    usage_.erase(it);
    return nullptr;
  }
  return &u;
}

int64_t ConnectGate::BlockedUntilMs(const ConnectSpec& spec, int64_t now_ms) {
  if (now_ms < retry_at_ms_) return retry_at_ms_;
  const Usage* u = Find(KeyOf(spec), now_ms);
  if (u == nullptr) return 0;
  if (u->unready >= kMaxUnready) {
    stats_->connect_pacing_waits.fetch_add(1, std::memory_order_relaxed);
    return now_ms + kMinBackoffMs;
  }
  if (u->open + static_cast<int>(u->time_wait_until.size()) < budget_) return 0;
  stats_->port_budget_waits.fetch_add(1, std::memory_order_relaxed);
  // A close moves a port into TIME_WAIT rather than freeing it: the first port back is the
  // oldest TIME_WAIT's (or, with none, whatever closes next — ask again soon).
  return u->time_wait_until.empty() ? now_ms + kMinBackoffMs : u->time_wait_until.front();
}

bool ConnectGate::Spent(const ConnectSpec& spec, int64_t now_ms) {
  const Usage* u = Find(KeyOf(spec), now_ms);
  return u != nullptr && u->open + static_cast<int>(u->time_wait_until.size()) >= budget_;
}

void ConnectGate::Opened(const ConnectSpec& spec) {
  Usage& u = usage_[KeyOf(spec)];
  ++u.open;
  ++u.unready;
}

void ConnectGate::Ready(const ConnectSpec& spec) {
  auto it = usage_.find(KeyOf(spec));
  if (it != usage_.end() && it->second.unready > 0) --it->second.unready;
}

void ConnectGate::Closed(const ConnectSpec& spec, bool established, bool was_ready,
                         int64_t now_ms) {
  auto it = usage_.find(KeyOf(spec));
  if (it == usage_.end()) return;
  Usage& u = it->second;
  if (u.open > 0) --u.open;
  if (!was_ready && u.unready > 0) --u.unready;
  if (established) {
    const bool reuse = tw_reuse_ == 1 || (tw_reuse_ == 2 && IsLoopback(spec.addr));
    u.time_wait_until.push_back(now_ms + (reuse ? kTimeWaitReuseMs : kTimeWaitMs));
  }
  Find(it->first, now_ms);  // erases an empty key
}

void ConnectGate::Shortage(int err, absl::string_view what, int64_t now_ms) {
  stats_->local_waits.fetch_add(1, std::memory_order_relaxed);
  backoff_ms_ = backoff_ms_ == 0 ? kMinBackoffMs : std::min(kMaxBackoffMs, backoff_ms_ * 2);
  retry_at_ms_ = std::max(retry_at_ms_, now_ms + backoff_ms_);
  ++unlogged_;
  if (quiet_ || now_ms - last_log_ms_ < kLogEveryMs) return;
  std::fprintf(stderr,
               "mxburst: local resource shortage: %.*s: %s; connects wait %lld ms and retry, "
               "recipients are not deferred for it (%llu such waits since the last line)\n",
               static_cast<int>(what.size()), what.data(), std::strerror(err),
               static_cast<long long>(backoff_ms_), static_cast<unsigned long long>(unlogged_));
  last_log_ms_ = now_ms;
  unlogged_ = 0;
}

}  // namespace mxb
