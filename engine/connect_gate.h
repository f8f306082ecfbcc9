// ConnectGate: what this machine can afford to connect right now, per worker. Two local limits
// that are no fault of the receiver and so must never defer a recipient or count against a
// destination's health (issue 17 item 6):
//
//  - a local resource shortage seen by socket()/bind()/connect() (IsLocalShortage: ephemeral
//    ports, descriptors, kernel buffers): every connect of the worker waits a bounded,
//    doubling back-off (kMinBackoffMs .. kMaxBackoffMs, reset by the next connect that goes
//    through), counted in WorkerStats::local_waits, one log line per kLogEveryMs at most;
//  - the ephemeral port budget per (source IP, destination IP:port): Linux picks a connect()'s
//    local port from net.ipv4.ip_local_port_range, unique per 4-tuple, so one destination
//    address and one source IP share (high - low + 1) ports among all workers. A port stays
//    taken while the connection is open and, because the engine closes actively (QUIT, then
//    close), in TIME_WAIT after it (RFC 9293 §3.6.1: 2 MSL; Linux: 60 s, or ~1 s when
//    net.ipv4.tcp_tw_reuse lets a new connect take it over — 1 = always, 2 = loopback only).
//    The gate counts both and makes the caller wait once this worker's share is spent;
//  - connect pacing: at most kMaxUnready connections per (source, destination) that are not
//    ready yet (connect, greeting, EHLO). A receiver's accept queue is bounded (listen backlog,
//    capped by its net.core.somaxconn: 4096 by default); past it the kernel drops the
//    handshake's final ACK while our side already counts as connected, and the session then
//    waits out the 5-minute greeting timeout (RFC 5321 §4.5.3.2.1) for nothing. Holding the
//    next connect until earlier ones were greeted keeps us inside any sane backlog.
//
// Owns: the per-key counts (open, TIME_WAIT expiries in FIFO order), the back-off state.
// Knows nothing of destinations: the worker asks it before a socket is made (BlockedUntilMs),
// tells it what opened and closed, and a Connection reports a shortage its connect CQE saw.
//
// Thread: the owning worker thread only (ReadPortRange: any thread, at start-up).
//
//   ConnectGate gate(ConnectGate::ReadPortRange(), /*workers=*/2, &stats, /*quiet=*/false);
//   if (int64_t t = gate.BlockedUntilMs(spec, now); t > 0) { ... wait until t ... }
//   gate.Opened(spec); ...; gate.Closed(spec, /*established=*/true, now);
//   gate.Shortage(EADDRNOTAVAIL, "connect to mx [127.0.0.2]:25", now);  // everybody waits
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <deque>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"

namespace mxb {

struct ConnectSpec;   // engine/connection.h
struct WorkerStats;   // engine/worker.h

// True for an errno of socket(), bind() or connect() that says this host ran short
// (EADDRNOTAVAIL, EADDRINUSE, EMFILE, ENFILE, ENOBUFS, ENOMEM), not that the peer failed.
// `at_bind`: from bind(), where EADDRNOTAVAIL means the source address is not on this host —
// a configuration error that waiting does not cure, so the hop fails as before.
bool IsLocalShortage(int err, bool at_bind = false);

// net.ipv4.ip_local_port_range and net.ipv4.tcp_tw_reuse as read at start-up.
struct EphemeralPorts {
  int low = 32768;   // the kernel defaults when /proc cannot be read
  int high = 60999;
  int tw_reuse = 2;
  int count() const { return high >= low ? high - low + 1 : 0; }
};

class ConnectGate {
 public:
  static constexpr int64_t kMinBackoffMs = 20;
  static constexpr int64_t kMaxBackoffMs = 2000;
  static constexpr int64_t kLogEveryMs = 10000;
  static constexpr int64_t kTimeWaitMs = 60000;       // Linux TCP_TIMEWAIT_LEN
  static constexpr int64_t kTimeWaitReuseMs = 1000;   // tcp_tw_reuse: after the 1 s timestamp tick
  static constexpr int kMaxUnready = 512;  // per worker and (source, destination)

  static EphemeralPorts ReadPortRange();
  // One line for the start-up log: the range, the share per worker and the TIME_WAIT model.
  static std::string Describe(const EphemeralPorts& ports, int workers);

  // `workers`: the budget is split evenly (each worker owns its share, no shared counters).
  ConnectGate(const EphemeralPorts& ports, int workers, WorkerStats* stats, bool quiet);

  // 0: connect now. Else the monotonic ms to try again (a back-off after a shortage, or the
  // earliest TIME_WAIT expiry of the spent (source, destination); with only open connections
  // holding it, after kMinBackoffMs).
  int64_t BlockedUntilMs(const ConnectSpec& spec, int64_t now_ms);
  // True while a connect is being held back for `spec`'s (source, destination): idle
  // connections to it should make room.
  bool Spent(const ConnectSpec& spec, int64_t now_ms);
  void Opened(const ConnectSpec& spec);
  // The session opened for `spec` is ready (greeted, EHLO answered): one fewer unready.
  void Ready(const ConnectSpec& spec);
  // The connection is gone; `established`: it had connected, so its port now sits in TIME_WAIT;
  // `was_ready`: Ready() was called for it.
  void Closed(const ConnectSpec& spec, bool established, bool was_ready, int64_t now_ms);
  // A shortage (`err`, positive errno) while doing `what`: every connect waits a back-off.
  void Shortage(int err, absl::string_view what, int64_t now_ms);
  // A connect went through: the back-off starts from the minimum again.
  void Succeeded() { backoff_ms_ = 0; }
  // The time connects may resume after the last shortage (0 = not waiting).
  int64_t retry_at_ms() const { return retry_at_ms_; }
  int budget() const { return budget_; }
  // (source, destination) pairs with an open connection or a port in TIME_WAIT.
  size_t keys() const { return usage_.size(); }

 private:
  struct Usage {
    int open = 0;
    int unready = 0;  // open and not ready yet
    std::deque<int64_t> time_wait_until;  // FIFO: one hold time per key
  };
  // Drops expired TIME_WAIT entries; erases the key when nothing is left.
  Usage* Find(const std::string& key, int64_t now_ms);

  int budget_;
  int tw_reuse_;
  WorkerStats* stats_;
  bool quiet_;
  absl::flat_hash_map<std::string, Usage> usage_;
  int64_t backoff_ms_ = 0;
  int64_t retry_at_ms_ = 0;
  int64_t last_log_ms_ = -kLogEveryMs;
  uint64_t unlogged_ = 0;
};

}  // namespace mxb
