// StsFetcher: discovers and fetches recipient domains' MTA-STS policies (RFC 8461 §3) on its own
// thread, and answers workers from the spool-backed StsPolicyStore (tls/mta_sts.h).
//
// Owns: one thread with its own DNS resolver (dns/resolver.h, same servers as the workers) and a
// libcurl multi handle; per domain, when it was last checked and why the last check failed. A
// check is: TXT _mta-sts.<domain> (§3.1) -> the §5.1 decision -> when needed, the address of
// mta-sts.<domain> through the engine's DNS and an HTTPS GET of /.well-known/mta-sts.txt (§3.3):
// PKIX-valid certificate for mta-sts.<domain> against the configured CA file, no redirects,
// status 200, Content-Type text/plain, at most 64 KiB, connect and total timeouts, no proxy.
//
// Why a thread and not curl's multi interface on a worker ring: a policy is per domain and
// process-wide (every worker reads the same store), fetches are rare (once per domain per
// max_age or id change), and libcurl brings OpenSSL handshakes and its own resolver threads that
// would put milliseconds of CPU and foreign sockets on a delivery ring. One fetcher thread
// drives all checks concurrently (c-ares and curl multi polled together with curl_multi_poll),
// so one slow policy server never delays another domain's check.
//
// The same thread carries out TLS-RPT's network steps (engine/tlsrpt_reporter.h, the
// TlsRptNetwork interface): the `_smtp._tls` TXT lookup and the https POST of a report, with
// the same resolver pinning, CA file, timeouts and no-proxy rule; their callbacks run on it.
//
// Proactive refresh (RFC 8461 §5.1 "senders SHOULD ... proactively refresh", §10.2): a cached
// policy of a domain looked up within its max_age is re-checked from this thread once half its
// max_age (at most a day) has passed — TXT, and since the id is unchanged and the policy old
// enough, a fetch — without waiting for mail, so a policy in use never lapses between the
// `recheck` lookups (a max_age shorter than `recheck` would otherwise expire before the next
// one). A failed refresh keeps the cached policy (§5.1) and is retried every max_age/10
// (between 1 s and `recheck`) until it expires.
//
// Thread: Lookup(), LookupTxt() and PostReport() from any thread, never blocking on I/O: a mutex
// guards the per-domain state and the request queue. Create/destructor on the engine's thread.
//
//   StsFetcher::Options o; o.ca_file = config.ca_file; o.dns_servers = config.dns_servers;
//   auto f = StsFetcher::Create(o, spool_dir + "/policy/mta-sts");
//   StsLookup l = (*f)->Lookup("dest.example", absl::Now());  // kPending the first time
#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/tlsrpt_reporter.h"
#include "tls/mta_sts.h"

namespace mxb {

class StsFetcher : public StsSource, public TlsRptNetwork {
 public:
  struct Options {
    std::vector<std::string> dns_servers;  // "127.0.0.1:5353"; empty = /etc/resolv.conf
    std::string ca_file;                   // empty = the system CA store
    uint16_t https_port = 443;             // tests serve the policy on a high port
    absl::Duration connect_timeout = absl::Seconds(5);
    absl::Duration total_timeout = absl::Seconds(15);
    // How often a domain's TXT record is looked at again (§5.1: an id change means refetch).
    absl::Duration recheck = absl::Minutes(5);
  };

  static absl::StatusOr<std::unique_ptr<StsFetcher>> Create(const Options& opts,
                                                            std::string store_dir);
  ~StsFetcher() override;
  StsFetcher(const StsFetcher&) = delete;
  StsFetcher& operator=(const StsFetcher&) = delete;

  StsLookup Lookup(absl::string_view domain, absl::Time now) override;
  // TlsRptNetwork
  void LookupTxt(std::string name, TxtDone done) override;
  void PostReport(std::string url, std::string body, std::string content_type,
                  PostDone done) override;
  StsPolicyStore& store() { return *store_; }

  struct Stats {
    uint64_t checks = 0, fetches = 0, fetched_ok = 0, fetch_failures = 0;
    uint64_t proactive_refreshes = 0;  // checks started by the refresh timer, not by a lookup
  };
  Stats stats() const;

 private:
  struct DomainState {
    absl::Time checked = absl::InfinitePast();  // last completed check
    bool busy = false;
    std::string failure;
    // Proactive refresh (RFC 8461 §10.2): the cached policy's refresh time and expiry, set
    // when a check completes; refreshed from the fetcher thread while the domain is in use
    // (looked up within the policy's max_age), retried every `refresh_retry` after a failure.
    absl::Time last_lookup = absl::InfinitePast();
    absl::Time refresh_at = absl::InfiniteFuture();
    absl::Time expires = absl::InfinitePast();
    absl::Duration max_age;
    absl::Duration refresh_retry;
    absl::Time refresh_tried = absl::InfinitePast();
  };
  // The fetcher thread: domains whose cached policy is due for a proactive refresh; marks them
  // busy as Lookup() does for a recheck.
  std::vector<std::string> DueRefreshes(absl::Time now);
  class Loop;
  StsFetcher(const Options& opts, std::unique_ptr<StsPolicyStore> store);
  void Finish(const std::string& domain, std::string failure, bool fetched, bool ok);

  const Options opts_;
  std::unique_ptr<StsPolicyStore> store_;
  mutable std::mutex mu_;
  absl::flat_hash_map<std::string, DomainState> states_;
  std::deque<std::string> requests_;
  std::deque<std::function<void(Loop*)>> tasks_;  // TLS-RPT steps, run on the fetcher thread
  Stats stats_;
  std::atomic<bool> stop_{false};
  std::unique_ptr<Loop> loop_;
  std::thread thread_;
};

}  // namespace mxb
