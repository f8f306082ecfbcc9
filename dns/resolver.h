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
// Driving it (what the engine's ring does; tests/dns use poll()):
//   - WatchFn(fd, rd, wr) is the complete desired state of fd: arm a one-shot POLL_ADD with
//     POLLIN if rd, POLLOUT if wr (UDP sockets only ever ask for read; TCP ones for write while
//     connecting/sending); (fd, false, false) = stop watching, the fd is about to be closed.
//     It is called from inside Create/ResolveMx/OnReadable/OnWritable/ProcessTimeouts.
//   - A poll CQE with POLLIN/POLLERR/POLLHUP -> OnReadable(fd); with POLLOUT -> OnWritable(fd);
//     then re-arm if the fd is still watched. OnReadable drains every datagram queued on fd.
//   - ProcessTimeouts() on each timer tick (or when NextTimeout() has passed): retries and
//     timeouts happen only there.
// Semantics worth knowing:
//   - Callbacks run synchronously on a cache hit and for kBadName; a callback may call
//     ResolveMx/ResolveTlsa/ResolveTxt again. It must not destroy the Resolver.
//   - Destroying the Resolver drops pending callbacks (they are not called) and does not call
//     WatchFn: the owner stops watching every fd it was told about.
//   - Two caches: whole MX results (TTL = min over the MX and the hosts' address answers) and
//     RRsets (so a host shared by many domains is looked up once). Positive TTLs are clamped to
//     [ttl_floor, ttl_ceiling]; NXDOMAIN/NODATA live min(SOA TTL, SOA MINIMUM) clamped to
//     [ttl_floor, negative_ttl] (negative_ttl without a SOA); temporary failures tempfail_ttl.
//   - MX targets: "0 ." alone (or only null records) -> kNullMx; targets that are address
//     literals ("1.2.3.4.", "[1.2.3.4].") or not host names are skipped and named in
//     MxResult::error; a target that is a CNAME is followed (RFC 5321 §5.1 forbids it, real
//     MTAs accept it) and MxHost::name stays the MX target; duplicate targets are dropped.
//   - Every MX host without an address: kTempFail if any address lookup failed temporarily,
//     else kNoData (bounce, as Postfix does). Hosts without address stay in the list with
//     address_status kNoData/kTempFail. Implicit MX whose A/AAAA do not exist: kNoData
//     (kNxDomain if the name vanished). A DNSSEC validation failure is SERVFAIL -> kTempFail.
//   - A CNAME loop or a chain longer than 16 CNAMEs (in one answer) / 8 chased lookups is
//     kTempFail ("CNAME loop: a -> b -> a"), like SERVFAIL: the mail waits, it never bounces.
//   - Error texts say what the DNS said, and which servers: "SERVFAIL from 127.0.0.1:53 for MX
//     x", "REFUSED by ...", "DNS timeout: no answer from ...", "NXDOMAIN (no such name) for ...",
//     "no records (NODATA) for ...".
//   - dnssec flags are the AD bit of the answers (queries carry AD, RFC 6840 §5.7; no DO):
//     only meaningful when the configured server is a validating resolver on a trusted path
//     (loopback unbound).
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
  kTempFail,   // SERVFAIL, timeout, refused, CNAME loop, network error: defer, never bounce
  kBadName,    // syntactically invalid domain / IDN conversion failed: bounce (5.1.2)
};
const char* ToString(DnsStatus s);

struct MxHost {
  std::string name;           // A-label host name, no trailing dot (or the domain for implicit MX)
  uint16_t preference = 0;
  std::vector<sockaddr_storage> addresses;  // port 0; IPv6 first only if opts.prefer_ipv6
  DnsStatus address_status = DnsStatus::kOk;  // kNoData: host has no address (skip it)
  bool dnssec = false;        // the address answers were AD-validated
  // The name the address answers' CNAMEs led to (RFC 7672 §2.2.3: DANE's TLSA base name when
  // the chain is secure); empty when `name` has no CNAME.
  std::string canonical;
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
  std::string error;  // human text for logs when status != kOk
};

// TXT records of one name, each RR's character-strings concatenated (RFC 7208 §3.3 /
// RFC 8461 §3.1 read them that way).
struct TxtResult {
  DnsStatus status = DnsStatus::kTempFail;
  std::vector<std::string> records;
  bool dnssec = false;
  std::string error;
};

// Checks one DNS server spec as Resolver::Options::servers takes it: an IPv4 or IPv6 address
// literal with an optional port 1..65535 ("127.0.0.1", "127.0.0.1:5353", "::1",
// "[::1]:5353"). The error names the value and what is wrong, for start-up messages.
[[nodiscard]] absl::Status CheckDnsServer(absl::string_view spec);

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
    bool prefer_ipv6 = false;  // MxHost::addresses lists IPv6 before IPv4
    size_t max_cache_entries = 1000000;  // per cache (MX results, RRsets)
    // DNS queries outstanding at once; more wait in a FIFO (Stats::queued). c-ares 1.18 costs
    // O(outstanding) per ares_process_fd, and a burst beyond a resolver's socket buffers is lost.
    size_t max_in_flight = 256;
    // Clock for TTLs; tests set it to step time. Default: CLOCK_MONOTONIC_COARSE.
    std::function<absl::Time()> clock;
  };
  // fd, want_read, want_write; both false = stop watching fd.
  using WatchFn = std::function<void(int fd, bool want_read, bool want_write)>;
  using MxCallback = std::function<void(const MxResult&)>;
  using TlsaCallback = std::function<void(const TlsaResult&)>;
  using TxtCallback = std::function<void(const TxtResult&)>;

  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Resolver>> Create(const Options& opts,
                                                                        WatchFn watch);
  virtual ~Resolver() = default;

  // Resolves the MX list of `domain` (U-label or A-label) with the addresses of every MX host.
  // N concurrent calls for one domain cause one query set; the result is cached with its TTL.
  virtual void ResolveMx(absl::string_view domain, MxCallback done) = 0;
  // TLSA records at _<port>._tcp.<host> (RFC 6698 / 7672).
  virtual void ResolveTlsa(absl::string_view host, uint16_t port, TlsaCallback done) = 0;
  // TXT records of `name` (e.g. "_mta-sts.example.com", RFC 8461 §3.1).
  virtual void ResolveTxt(absl::string_view name, TxtCallback done) = 0;

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
    uint64_t in_flight = 0;       // DNS queries sent, not answered yet
    uint64_t peak_in_flight = 0;
    uint64_t queued = 0;          // queries waiting for a slot (Options::max_in_flight)
  };
  virtual Stats stats() const = 0;
};

}  // namespace mxb
