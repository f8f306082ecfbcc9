// Resolver: asynchronous DNS for one worker thread — c-ares underneath, RFC 5321 §5.1 MX logic,
// a TTL cache with negative entries and in-flight de-duplication, the DNSSEC AD bit recorded
// for every answer, IDN domains converted to A-labels (libidn2).
//
// dns/ does not know the ring (STYLE.md): the resolver reports "watch fd X for read/write"
// through WatchFn; the engine polls those fds through its io_uring and calls OnReadable /
// OnWritable, and calls ProcessTimeouts() when NextTimeout() has passed. Not thread-safe: one
// Resolver per worker, used only on that worker's thread. Callbacks run on that thread, from
// inside OnReadable/OnWritable/ProcessTimeouts, or synchronously from ResolveMx on a cache hit.
//
//   auto r = mxb::Resolver::Create(opts, [&](int fd, bool rd, bool wr) { ring_watch(fd, rd, wr); });
//   (*r)->ResolveMx("example.com", [](const mxb::MxResult& mx) {
//     if (mx.status == mxb::DnsStatus::kOk) for (auto& h : mx.hosts) connect(h.addresses...);
//   });
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace mxb {

enum class DnsStatus {
  kOk,
  kNxDomain,   // the domain does not exist: bounce (5.1.2)
  kNoData,     // exists, no usable MX and no A/AAAA: bounce (5.1.2... RFC 5321 §5.1)
  kNullMx,     // RFC 7505 "0 ." : bounce at once, 556 5.1.10
  kTempFail,   // SERVFAIL, timeout, refused, network error: always defer, never bounce
  kBadName,    // syntactically invalid domain / IDN conversion failed: bounce (5.1.2)
};
const char* ToString(DnsStatus s);

struct MxHost {
  std::string name;           // A-label host name, no trailing dot (or the domain for implicit MX)
  uint16_t preference = 0;
  std::vector<sockaddr_storage> addresses;  // port 0; IPv6 first only if opts.prefer_ipv6
  DnsStatus address_status = DnsStatus::kOk;  // kNoData: host has no address (skip it)
  bool dnssec = false;        // the address answers were AD-validated
};

struct MxResult {
  DnsStatus status = DnsStatus::kTempFail;
  std::string error;          // human text for logs ("SERVFAIL for MX example.com")
  std::string domain;         // the A-label form that was looked up
  std::vector<MxHost> hosts;  // sorted by preference, equal preferences shuffled, capped
  bool implicit_mx = false;   // no MX records: the domain's own A/AAAA (RFC 5321 §5.1)
  bool dnssec = false;        // the MX answer carried the AD bit
};

struct TlsaRecord {
  uint8_t usage = 0, selector = 0, matching_type = 0;
  std::string data;  // raw bytes
};
struct TlsaResult {
  DnsStatus status = DnsStatus::kTempFail;
  std::vector<TlsaRecord> records;
  bool dnssec = false;
};

class Resolver {
 public:
  struct Options {
    std::vector<std::string> servers;  // "127.0.0.1:5353"; empty = /etc/resolv.conf
    absl::Duration ttl_floor = absl::Seconds(30);
    absl::Duration ttl_ceiling = absl::Hours(24);
    absl::Duration negative_ttl = absl::Minutes(5);   // NXDOMAIN / NODATA cache time
    absl::Duration tempfail_ttl = absl::Seconds(30);  // SERVFAIL cached briefly (no stampede)
    absl::Duration query_timeout = absl::Seconds(5);  // per try
    int tries = 2;
    size_t max_mx_hosts = 10;  // cap on MX hosts kept per domain
    bool ipv6 = true;          // also look up AAAA
    size_t max_cache_entries = 1000000;
  };
  // fd, want_read, want_write; both false = stop watching fd.
  using WatchFn = std::function<void(int fd, bool want_read, bool want_write)>;
  using MxCallback = std::function<void(const MxResult&)>;
  using TlsaCallback = std::function<void(const TlsaResult&)>;

  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Resolver>> Create(const Options& opts,
                                                                        WatchFn watch);
  virtual ~Resolver() = default;

  // Resolves the MX list of `domain` (U-label or A-label) with the addresses of every MX host.
  // N concurrent calls for one domain cause one query set; the result is cached with its TTL.
  virtual void ResolveMx(absl::string_view domain, MxCallback done) = 0;
  // TLSA records at _<port>._tcp.<host> (RFC 6698 / 7672).
  virtual void ResolveTlsa(absl::string_view host, uint16_t port, TlsaCallback done) = 0;

  virtual void OnReadable(int fd) = 0;
  virtual void OnWritable(int fd) = 0;
  // Drives c-ares timeouts/retries; call when NextTimeout() has elapsed (or on every tick).
  virtual void ProcessTimeouts() = 0;
  // Time until c-ares needs ProcessTimeouts(); InfiniteDuration when nothing is pending.
  virtual absl::Duration NextTimeout() const = 0;

  struct Stats {
    uint64_t queries_sent = 0;
    uint64_t cache_hits = 0;
    uint64_t deduplicated = 0;   // callers attached to an in-flight lookup
    uint64_t in_flight = 0;
    uint64_t peak_in_flight = 0;
  };
  virtual Stats stats() const = 0;
};

}  // namespace mxb
