// Test helpers for dns/: a real unbound on 127.0.0.1 with a free port, a poll() loop that drives
// a Resolver the way the engine's ring does, and small UDP servers for fault injection.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "dns/resolver.h"

namespace mxb::testing {

// bogus.: served unsigned (as an auth-zone) while the trust anchor says it is signed, so
// validation fails and unbound answers SERVFAIL at once — the real-world "DNSSEC broken" case,
// which must defer, never bounce. Put kBogusAnchor in the server: clause and
// AuthZone("bogus.", file with kBogusZone) after it.
inline constexpr char kBogusAnchor[] =
    "  trust-anchor: \"bogus. DS 4242 13 2 "
    "0000000000000000000000000000000000000000000000000000000000000000\"\n";
inline constexpr char kBogusZone[] = R"($TTL 300
bogus. IN SOA ns.bogus. host.bogus. 1 3600 600 86400 60
bogus. IN NS ns.bogus.
bogus. IN MX 10 mx.bogus.
mx.bogus. IN A 127.0.0.100
)";
// An unbound auth-zone: clause serving `file` for upstream use only.
std::string AuthZone(const std::string& name, const std::string& file);

// A free port on 127.0.0.1 for both UDP and TCP (bound and released: a small race, fine here).
absl::StatusOr<uint16_t> FreeLoopbackPort();

// unbound -d with a config written to a temp dir; stopped (SIGTERM) and the dir removed by the
// destructor. `server_conf` lines go into the server: clause, `extra_conf` after it (auth-zone:,
// stub-zone:, ...). "@DIR@" in either is replaced by the temp dir.
class UnboundServer {
 public:
  static absl::StatusOr<std::unique_ptr<UnboundServer>> Start(const std::string& server_conf,
                                                              const std::string& extra_conf);
  ~UnboundServer();
  uint16_t port() const { return port_; }
  std::string address() const;  // "127.0.0.1:PORT" for Resolver::Options::servers
  const std::string& dir() const { return dir_; }

 private:
  UnboundServer() = default;
  pid_t pid_ = -1;
  uint16_t port_ = 0;
  std::string dir_;
};

// A temp dir with a DNSSEC-signed zone file for `zone` (ldns-keygen + ldns-signzone) and the
// KSK as unbound trust-anchor-file. Error when ldnsutils is missing.
struct SignedZone {
  std::string zone_file;
  std::string anchor_file;
};
absl::StatusOr<SignedZone> MakeSignedZone(const std::string& dir, const std::string& zone,
                                          const std::string& records);

// Drives a Resolver with poll() over the fds its WatchFn reported, plus extra test sockets.
class PollLoop {
 public:
  Resolver::WatchFn Watcher();
  void AddReader(int fd, std::function<void()> on_readable) { readers_[fd] = std::move(on_readable); }
  // Runs until done() or `limit`; false on timeout.
  bool RunUntil(Resolver& r, const std::function<bool()>& done,
                absl::Duration limit = absl::Seconds(10));
  size_t watched() const { return fds_.size(); }

 private:
  std::map<int, std::pair<bool, bool>> fds_;
  std::map<int, std::function<void()>> readers_;
};

// A UDP socket on 127.0.0.1 that never answers (the "slow" DNS server).
class UdpBlackhole {
 public:
  static absl::StatusOr<std::unique_ptr<UdpBlackhole>> Start();
  ~UdpBlackhole();
  std::string address() const;
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

// Fault-injection responder: a UDP socket on 127.0.0.1 that answers every query with the bytes
// `respond(query)` returns (empty: no answer). Driven by PollLoop::AddReader.
class ScriptedResponder {
 public:
  using Script = std::function<std::vector<uint8_t>(const std::vector<uint8_t>& query)>;
  static absl::StatusOr<std::unique_ptr<ScriptedResponder>> Start(Script respond);
  ~ScriptedResponder();
  std::string address() const;
  int fd() const { return fd_; }
  void OnReadable();
  int queries() const { return queries_; }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
  Script respond_;
  int queries_ = 0;
};

}  // namespace mxb::testing
