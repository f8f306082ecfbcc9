#include "dns/resolver.h"

#include <ares.h>
#include <arpa/inet.h>
#include <time.h>

#include <algorithm>
#include <deque>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "dns/dns_wire.h"

namespace mxb {

const char* ToString(DnsStatus s) {
  switch (s) {
    case DnsStatus::kOk: return "ok";
    case DnsStatus::kNxDomain: return "nxdomain";
    case DnsStatus::kNoData: return "nodata";
    case DnsStatus::kNullMx: return "null-mx";
    case DnsStatus::kTempFail: return "tempfail";
    case DnsStatus::kBadName: return "bad-name";
  }
  return "unknown";
}

namespace {

using dns_wire::kTypeA;
using dns_wire::kTypeAaaa;
using dns_wire::kTypeMx;
using dns_wire::kTypeTlsa;
using dns_wire::kTypeTxt;

// One RRset answer (after CNAMEs), shared by the RRset cache and every lookup waiting for it.
struct RrAnswer {
  DnsStatus status = DnsStatus::kTempFail;  // kOk, kNxDomain, kNoData or kTempFail
  std::string error;
  bool dnssec = false;
  absl::Time expires;
  dns_wire::ParsedAnswer data;
};
using RrAnswerPtr = std::shared_ptr<const RrAnswer>;
using RrWaiter = std::function<void(const RrAnswerPtr&)>;
using RrKey = std::pair<std::string, uint16_t>;

class ResolverImpl;

// An RRset query in flight; c-ares' callback argument. Owned by ResolverImpl::rr_inflight_.
struct RrLookup {
  ResolverImpl* resolver = nullptr;
  RrKey key;
  int cname_depth = 0;  // > 0: chasing a CNAME target for another lookup
  // The names a CNAME chase came through before this lookup (its key is the next one): a
  // target among them is a loop.
  std::vector<std::string> chain;
  std::vector<RrWaiter> waiters;
  std::vector<uint8_t> query;  // kept for a re-send on the diagnosis channel
  bool diagnosing = false;     // sent again on ResolverImpl::diagnose_channel_
};

// How many CNAMEs the resolver chases itself when a server answers with the chain but not its
// end (unbound's local-data does; RFC 1034 §4.3.2 lets a server stop at a CNAME).
constexpr int kMaxCnameChase = 8;

struct MxHostState {
  std::string name;
  uint16_t preference = 0;
  RrAnswerPtr a, aaaa;
};

// A ResolveMx in flight for one domain: the MX query, then the address queries of its hosts.
struct MxJob {
  std::string domain;
  std::vector<Resolver::MxCallback> waiters;
  RrAnswerPtr mx;
  bool implicit_mx = false;
  std::vector<MxHostState> hosts;
  int pending = 0;
  std::string skipped;  // MX targets that are not host names
};

struct CachedMx {
  std::shared_ptr<const MxResult> result;
  absl::Time expires;
  bool has_ties = false;  // equal preferences: every caller gets its own shuffle
};

bool HasTies(const std::vector<MxHost>& hosts) {
  for (size_t i = 1; i < hosts.size(); ++i) {
    if (hosts[i].preference == hosts[i - 1].preference) return true;
  }
  return false;
}

// RFC 5321 §5.1: hosts of equal preference are tried in random order. `hosts` is sorted.
template <typename Host, typename Rng>
void ShuffleTies(std::vector<Host>& hosts, Rng& rng) {
  size_t i = 0;
  while (i < hosts.size()) {
    size_t j = i + 1;
    while (j < hosts.size() && hosts[j].preference == hosts[i].preference) ++j;
    if (j - i > 1) std::shuffle(hosts.begin() + i, hosts.begin() + j, rng);
    i = j;
  }
}

absl::Time MonotonicNow() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return absl::TimeFromTimespec(ts);
}

// Drops expired entries when a cache is full; if that frees too little, drops arbitrary ones
// down to 7/8 of the cap (a cheap bound, not LRU: a full cache means far more domains than fit).
template <typename Map, typename ExpiresFn>
void MakeRoom(Map& map, size_t cap, absl::Time now, ExpiresFn expires) {
  if (map.size() < cap) return;
  absl::erase_if(map, [&](const auto& kv) { return expires(kv.second) <= now; });
  const size_t target = cap - cap / 8;
  for (auto it = map.begin(); it != map.end() && map.size() > target;) map.erase(it++);
}

class ResolverImpl final : public Resolver {
 public:
  ResolverImpl(const Options& opts, WatchFn watch) : opts_(opts), watch_(std::move(watch)) {}

  ~ResolverImpl() override {
    // ares_destroy runs the callbacks of pending queries (ARES_EDESTRUCTION) and closes the
    // sockets (sock_state_cb with 0/0): both are ignored from here on — the owner is going
    // away and stops watching our fds itself; pending MxCallbacks are dropped, not called.
    destroying_ = true;
    if (channel_ != nullptr) ares_destroy(channel_);
    if (diagnose_channel_ != nullptr) ares_destroy(diagnose_channel_);
  }

  // The text an operator reads for a failed lookup: what happened, in DNS terms, and where.
  std::string FailureText(int ares_status, absl::string_view what) const {
    const std::string servers =
        opts_.servers.empty() ? std::string("the resolv.conf servers")
                              : absl::StrJoin(opts_.servers, ", ");
    switch (ares_status) {
      case ARES_ETIMEOUT:
        return absl::StrCat("DNS timeout: no answer from ", servers, " for ", what, " (",
                            opts_.tries, " tries)");
      case ARES_ECONNREFUSED:
        return absl::StrCat("DNS server unreachable (connection refused by ", servers,
                            ") for ", what);
      case ARES_ESERVFAIL:
        return absl::StrCat("SERVFAIL from ", servers, " for ", what);
      case ARES_EREFUSED:
        return absl::StrCat("REFUSED by ", servers, " for ", what);
      case ARES_ENOTIMP:
        return absl::StrCat("NOTIMP from ", servers, " for ", what);
      default:
        return absl::StrCat("DNS error (", ares_strerror(ares_status), ") for ", what);
    }
  }

  absl::Status Init() {
    if (!watch_) return absl::InvalidArgumentError("Resolver: WatchFn is empty");
    if (opts_.tries < 1) return absl::InvalidArgumentError("Resolver: tries must be >= 1");
    int64_t timeout_ms = absl::ToInt64Milliseconds(opts_.query_timeout);
    if (timeout_ms < 1) return absl::InvalidArgumentError("Resolver: query_timeout < 1 ms");
    if (opts_.max_cache_entries < 8) opts_.max_cache_entries = 8;

    // STAYOPEN: keep the UDP sockets between bursts, so the ring's watch set stays stable.
    if (absl::Status s = MakeChannel(ARES_FLAG_STAYOPEN | ARES_FLAG_NOSEARCH, &channel_);
        !s.ok()) {
      return s;
    }
    // c-ares 1.18 reports a query whose every server answered SERVFAIL/REFUSED/NOTIMP as
    // ARES_ECONNREFUSED ("Could not contact DNS servers"). Such a query is asked once more on
    // this channel, which passes those answers through (NOCHECKRESP), so the log can say what
    // the server said. Only failures pay for it, and they are cached for tempfail_ttl.
    return MakeChannel(ARES_FLAG_STAYOPEN | ARES_FLAG_NOSEARCH | ARES_FLAG_NOCHECKRESP,
                       &diagnose_channel_);
  }

  absl::Status MakeChannel(int flags, ares_channel* out) {
    ares_options o{};
    int mask = ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_SOCK_STATE_CB;
    o.flags = flags;
    o.timeout = static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(opts_.query_timeout),
                                                   1 << 30));
    o.tries = opts_.tries;
    o.sock_state_cb = &ResolverImpl::SockState;
    o.sock_state_cb_data = this;
    int rc = ares_init_options(out, &o, mask);
    if (rc != ARES_SUCCESS) {
      *out = nullptr;
      return absl::InternalError(absl::StrCat("ares_init_options: ", ares_strerror(rc)));
    }
    if (!opts_.servers.empty()) {
      // NOTES.md: servers can only be set while no query is pending, i.e. now.
      std::string csv = absl::StrJoin(opts_.servers, ",");
      rc = ares_set_servers_ports_csv(*out, csv.c_str());
      if (rc != ARES_SUCCESS) {
        return absl::InvalidArgumentError(
            absl::StrCat("DNS servers '", csv, "': ", ares_strerror(rc)));
      }
    }
    return absl::OkStatus();
  }

  // --- public API ------------------------------------------------------------------------------

  void ResolveMx(absl::string_view domain, MxCallback done) override {
    absl::StatusOr<std::string> name = dns_wire::NormalizeName(domain);
    if (!name.ok()) {
      MxResult r;
      r.status = DnsStatus::kBadName;
      r.error = std::string(name.status().message());
      r.domain = std::string(domain);
      done(r);
      return;
    }
    auto hit = mx_cache_.find(*name);
    if (hit != mx_cache_.end()) {
      if (hit->second.expires > Now()) {
        ++stats_.cache_hits;
        // Local copies: the callback may call us again and evict this entry.
        std::shared_ptr<const MxResult> r = hit->second.result;
        Deliver(*r, hit->second.has_ties, done);
        return;
      }
      mx_cache_.erase(hit);
    }
    auto running = mx_inflight_.find(*name);
    if (running != mx_inflight_.end()) {
      ++stats_.deduplicated;
      running->second->waiters.push_back(std::move(done));
      return;
    }
    auto job = std::make_unique<MxJob>();
    MxJob* jp = job.get();
    jp->domain = *std::move(name);
    jp->waiters.push_back(std::move(done));
    mx_inflight_.emplace(jp->domain, std::move(job));
    Lookup(jp->domain, kTypeMx, [this, jp](const RrAnswerPtr& a) { OnMxAnswer(jp, a); });
  }

  void ResolveTlsa(absl::string_view host, uint16_t port, TlsaCallback done) override {
    absl::StatusOr<std::string> name = dns_wire::NormalizeName(host);
    if (!name.ok()) {
      TlsaResult r;
      r.status = DnsStatus::kBadName;
      r.error = std::string(name.status().message());
      done(r);
      return;
    }
    // RFC 6698 §3 / RFC 7672 §2.2: _<port>._tcp.<host>.
    Lookup(absl::StrCat("_", port, "._tcp.", *name), kTypeTlsa,
           [done = std::move(done)](const RrAnswerPtr& a) {
             TlsaResult r;
             r.status = a->status;
             r.dnssec = a->dnssec;
             r.error = a->error;
             r.records = a->data.tlsa;
             done(r);
           });
  }

  void ResolveTxt(absl::string_view name, TxtCallback done) override {
    absl::StatusOr<std::string> n = dns_wire::NormalizeName(name);
    if (!n.ok()) {
      TxtResult r;
      r.status = DnsStatus::kBadName;
      r.error = std::string(n.status().message());
      done(r);
      return;
    }
    Lookup(*n, kTypeTxt, [done = std::move(done)](const RrAnswerPtr& a) {
      TxtResult r;
      r.status = a->status;
      r.dnssec = a->dnssec;
      r.error = a->error;
      r.records = a->data.txt;
      done(r);
    });
  }

  // Each channel ignores fds that are not its own. The diagnosis channel is idle unless a
  // query failed, and then costs one more walk of its (short) query list.
  void OnReadable(int fd) override {
    ares_process_fd(channel_, fd, ARES_SOCKET_BAD);
    ares_process_fd(diagnose_channel_, fd, ARES_SOCKET_BAD);
  }
  void OnWritable(int fd) override {
    ares_process_fd(channel_, ARES_SOCKET_BAD, fd);
    ares_process_fd(diagnose_channel_, ARES_SOCKET_BAD, fd);
  }
  void ProcessTimeouts() override {
    ares_process_fd(channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    ares_process_fd(diagnose_channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
  }

  absl::Duration NextTimeout() const override {
    absl::Duration next = absl::InfiniteDuration();
    for (ares_channel ch : {channel_, diagnose_channel_}) {
      timeval tv{};
      if (ares_timeout(ch, nullptr, &tv) != nullptr) {
        next = std::min(next, absl::DurationFromTimeval(tv));
      }
    }
    return next;
  }

  Stats stats() const override { return stats_; }

 private:
  absl::Time Now() const { return opts_.clock ? opts_.clock() : MonotonicNow(); }

  static void SockState(void* data, ares_socket_t fd, int readable, int writable) {
    auto* self = static_cast<ResolverImpl*>(data);
    if (self->destroying_) return;
    self->watch_(fd, readable != 0, writable != 0);
  }

  void Deliver(const MxResult& r, bool has_ties, const MxCallback& done) {
    if (!has_ties) {
      done(r);
      return;
    }
    MxResult copy = r;
    ShuffleTies(copy.hosts, rng_);
    done(copy);
  }

  // --- RRset layer: cache, de-duplication, c-ares ------------------------------------------------

  void Lookup(std::string name, uint16_t type, RrWaiter waiter, int cname_depth = 0,
              std::vector<std::string> chain = {}) {
    RrKey key(std::move(name), type);
    auto hit = rr_cache_.find(key);
    if (hit != rr_cache_.end()) {
      if (hit->second->expires > Now()) {
        ++stats_.cache_hits;
        RrAnswerPtr a = hit->second;
        waiter(a);
        return;
      }
      rr_cache_.erase(hit);
    }
    auto running = rr_inflight_.find(key);
    if (running != rr_inflight_.end()) {
      // A CNAME chase never waits for a lookup in flight: that one may be waiting for us
      // (a CNAME loop); it sends its own query instead, bounded by kMaxCnameChase.
      if (cname_depth == 0) {
        ++stats_.deduplicated;
        running->second->waiters.push_back(std::move(waiter));
        return;
      }
    }
    absl::StatusOr<std::vector<uint8_t>> query = dns_wire::BuildQuery(key.first, type);
    if (!query.ok()) {
      auto a = std::make_shared<RrAnswer>();
      a->status = DnsStatus::kBadName;
      a->error = std::string(query.status().message());
      waiter(a);
      return;
    }
    auto lookup = std::make_unique<RrLookup>();
    RrLookup* lp = lookup.get();
    lp->resolver = this;
    lp->key = key;
    lp->cname_depth = cname_depth;
    lp->chain = std::move(chain);
    lp->waiters.push_back(std::move(waiter));
    if (running != rr_inflight_.end()) {
      // A chase for a key in flight: owned by chases_, never found by key.
      chases_.push_back(std::move(lookup));
    } else {
      rr_inflight_.emplace(std::move(key), std::move(lookup));
    }
    lp->query = *std::move(query);
    send_queue_.push_back(lp);
    ++stats_.queued;
    PumpSends();
  }

  // Sends queued queries while fewer than max_in_flight are outstanding. c-ares 1.18 walks every
  // pending query on each ares_process_fd (process_timeouts) and a local resolver drops what
  // overflows its socket buffers, so a bounded window is both faster and loss-free.
  void PumpSends() {
    if (pumping_) return;  // a synchronous completion inside ares_send: the outer loop goes on
    pumping_ = true;
    const uint64_t cap = std::max<uint64_t>(1, opts_.max_in_flight);
    while (!send_queue_.empty() && stats_.in_flight < cap && !destroying_) {
      RrLookup* lp = send_queue_.front();
      send_queue_.pop_front();
      --stats_.queued;
      const std::vector<uint8_t>& q = lp->query;
      ++stats_.queries_sent;
      ++stats_.in_flight;
      stats_.peak_in_flight = std::max(stats_.peak_in_flight, stats_.in_flight);
      // ares_send copies the query. It may call OnAresAnswer before returning (no server,
      // socket error): `lp` may be gone then, so nothing after this line may touch it.
      ares_send(lp->diagnosing ? diagnose_channel_ : channel_, q.data(),
                static_cast<int>(q.size()), &ResolverImpl::OnAresAnswer, lp);
    }
    pumping_ = false;
  }

  static void OnAresAnswer(void* arg, int status, int /*timeouts*/, unsigned char* abuf,
                           int alen) {
    auto* lp = static_cast<RrLookup*>(arg);
    ResolverImpl* self = lp->resolver;
    if (self->destroying_) return;
    --self->stats_.in_flight;
    if (!lp->diagnosing && (status == ARES_ECONNREFUSED || status == ARES_ESERVFAIL ||
                            status == ARES_EREFUSED || status == ARES_ENOTIMP)) {
      // Every server failed (see Init): ask once more to learn what they answered.
      lp->diagnosing = true;
      self->send_queue_.push_front(lp);
      ++self->stats_.queued;
      self->PumpSends();
      return;
    }
    RrAnswer answer = self->MakeAnswer(lp->key, status, abuf, alen);
    const std::string& canonical = answer.data.canonical;
    if (answer.status == DnsStatus::kNoData && canonical != lp->key.first && !canonical.empty()) {
      // The answer stopped at a CNAME. RFC 1034 §3.6.2: a chain must not loop; a loop (or a
      // chain too long to be real) is a temporary failure — the zone's owner can fix it, so
      // the mail waits (defer), it is never bounced as "no such host".
      std::vector<std::string> chain = lp->chain;
      chain.insert(chain.end(), answer.data.cname_chain.begin(), answer.data.cname_chain.end());
      const bool loop = std::find(lp->chain.begin(), lp->chain.end(), canonical) != lp->chain.end();
      if (loop || lp->cname_depth >= kMaxCnameChase) {
        answer.status = DnsStatus::kTempFail;
        answer.error = absl::StrCat(
            loop ? "CNAME loop: " : absl::StrCat("CNAME chain longer than ", kMaxCnameChase,
                                                 " lookups: "),
            absl::StrJoin(chain, " -> "), " for ", dns_wire::TypeName(lp->key.second), " ",
            chain.front());
        answer.expires = self->Now() + self->opts_.tempfail_ttl;
        self->CompleteLookup(lp, std::move(answer));
      } else {
        chain.pop_back();  // the target is the chase's own key
        self->ChaseCname(lp, std::move(answer), std::move(chain));
      }
    } else {
      self->CompleteLookup(lp, std::move(answer));
    }
    self->PumpSends();
  }

  // The answer ended at a CNAME without the records: ask for the target, then complete `lp`
  // with the target's answer (TTL and AD of both).
  void ChaseCname(RrLookup* lp, RrAnswer&& answer, std::vector<std::string> chain) {
    auto head = std::make_shared<RrAnswer>(std::move(answer));
    std::string target = head->data.canonical;
    Lookup(
        std::move(target), lp->key.second,
        [this, lp, head](const RrAnswerPtr& t) {
          RrAnswer merged = *t;
          merged.dnssec = merged.dnssec && head->dnssec;
          if (merged.status == DnsStatus::kOk) {
            merged.expires = std::min(merged.expires, head->expires);
          }
          CompleteLookup(lp, std::move(merged));
        },
        lp->cname_depth + 1, std::move(chain));
  }

  RrAnswer MakeAnswer(const RrKey& key, int status, const unsigned char* abuf, int alen) {
    RrAnswer a;
    const char* type = dns_wire::TypeName(key.second);
    const std::string what = absl::StrCat(type, " ", key.first);
    if (status != ARES_SUCCESS) {
      // Timeouts and socket errors (server failures come as answers: NOCHECKRESP): temporary.
      a.status = DnsStatus::kTempFail;
      a.error = FailureText(status, what);
    } else {
      a.data = dns_wire::ParseAnswer(abuf, alen > 0 ? static_cast<size_t>(alen) : 0, key.first,
                                     key.second);
      a.dnssec = a.data.authenticated;
      const int rcode = a.data.rcode;
      if (rcode == dns_wire::kRcodeNoError || (rcode == dns_wire::kRcodeNxDomain &&
                                                a.data.records > 0)) {
        a.status = a.data.records > 0 ? DnsStatus::kOk : DnsStatus::kNoData;
      } else if (rcode == dns_wire::kRcodeNxDomain) {
        a.status = DnsStatus::kNxDomain;
      } else {
        a.status = DnsStatus::kTempFail;
      }
      if (a.status != DnsStatus::kOk && !a.data.cname_error.empty()) {
        a.status = DnsStatus::kTempFail;  // a loop inside one answer (RFC 1034 §3.6.2)
        a.error = absl::StrCat(a.data.cname_error, " for ", what);
      } else if (a.status == DnsStatus::kNoData) {
        a.error = absl::StrCat("no records (NODATA) for ", what);
      } else if (rcode == dns_wire::kRcodeNxDomain) {
        a.error = absl::StrCat("NXDOMAIN (no such name) for ", what);
      } else if (rcode == dns_wire::kRcodeServFail) {
        // A validating resolver also answers SERVFAIL when DNSSEC validation fails.
        a.error = absl::StrCat(FailureText(ARES_ESERVFAIL, what),
                               " (the resolver could not get a valid answer)");
      } else if (rcode == dns_wire::kRcodeRefused) {
        a.error = FailureText(ARES_EREFUSED, what);
      } else if (a.status != DnsStatus::kOk) {
        a.error = absl::StrCat(dns_wire::RcodeName(rcode), a.data.error.empty() ? "" : ": ",
                               a.data.error, " from the DNS server for ", what);
      }
    }
    a.expires = Now() + CacheTime(a);
    return a;
  }

  absl::Duration CacheTime(const RrAnswer& a) const {
    switch (a.status) {
      case DnsStatus::kOk:
        return std::clamp(absl::Seconds(a.data.ttl), opts_.ttl_floor,
                          std::max(opts_.ttl_floor, opts_.ttl_ceiling));
      case DnsStatus::kNxDomain:
      case DnsStatus::kNoData:
        // RFC 2308 §5: the SOA says how long; Options::negative_ttl caps it.
        if (a.data.negative_ttl) {
          return std::min(std::max(absl::Seconds(*a.data.negative_ttl), opts_.ttl_floor),
                          opts_.negative_ttl);
        }
        return opts_.negative_ttl;
      default:
        return opts_.tempfail_ttl;
    }
  }

  void CompleteLookup(RrLookup* lp, RrAnswer&& answer) {
    RrAnswerPtr shared = std::make_shared<const RrAnswer>(std::move(answer));
    absl::Time now = Now();
    if (shared->expires > now) {
      MakeRoom(rr_cache_, opts_.max_cache_entries, now,
               [](const RrAnswerPtr& e) { return e->expires; });
      rr_cache_[lp->key] = shared;
    }
    std::unique_ptr<RrLookup> owned;
    auto it = rr_inflight_.find(lp->key);
    if (it != rr_inflight_.end() && it->second.get() == lp) {
      owned = std::move(it->second);
      rr_inflight_.erase(it);
    } else {
      auto c = std::find_if(chases_.begin(), chases_.end(),
                            [lp](const std::unique_ptr<RrLookup>& x) { return x.get() == lp; });
      if (c == chases_.end()) return;  // cannot happen: every lookup is owned by one of them
      owned = std::move(*c);
      chases_.erase(c);
    }
    // Waiters may start lookups (even for this key): the entry is gone, `owned` keeps ours.
    for (RrWaiter& w : owned->waiters) w(shared);
  }

  // --- MX layer (RFC 5321 §5.1) ------------------------------------------------------------------

  void OnMxAnswer(MxJob* job, const RrAnswerPtr& a) {
    job->mx = a;
    if (a->status == DnsStatus::kNoData) {
      // RFC 5321 §5.1: no MX records — the domain itself is the implicit MX, preference 0.
      job->implicit_mx = true;
      job->hosts.push_back(MxHostState{job->domain, 0, nullptr, nullptr});
    } else if (a->status != DnsStatus::kOk) {
      FinishMx(job, a->status, a->error, a->expires);
      return;
    } else {
      size_t null_mx = 0;
      std::vector<std::string> skipped;
      for (const dns_wire::MxRecord& r : a->data.mx) {
        if (r.exchange.empty()) {  // "." : RFC 7505
          ++null_mx;
          continue;
        }
        // An MX must name a host (RFC 5321 §5.1, RFC 7505 §4 discourages address literals):
        // "1.2.3.4." or "[1.2.3.4]." targets are skipped, as Postfix does for malformed names.
        absl::StatusOr<std::string> host = dns_wire::NormalizeName(r.exchange);
        if (!host.ok()) {
          skipped.push_back(r.exchange);
          continue;
        }
        bool dup = false;
        for (const MxHostState& h : job->hosts) dup = dup || h.name == *host;
        if (!dup) job->hosts.push_back(MxHostState{*std::move(host), r.preference, nullptr, nullptr});
      }
      if (!skipped.empty()) {
        job->skipped = absl::StrCat("skipped MX targets that are not host names: ",
                                    absl::StrJoin(skipped, ", "));
      }
      if (job->hosts.empty()) {
        if (null_mx > 0) {
          // RFC 7505 §3: "0 ." means the domain accepts no mail (a null MX mixed with real
          // hosts is a misconfiguration; the real hosts are used then).
          FinishMx(job, DnsStatus::kNullMx,
                   absl::StrCat(job->domain, " has a null MX (RFC 7505)"), a->expires);
        } else {
          FinishMx(job, DnsStatus::kNoData,
                   absl::StrCat("no usable MX host for ", job->domain, "; ", job->skipped),
                   a->expires);
        }
        return;
      }
      std::stable_sort(job->hosts.begin(), job->hosts.end(),
                       [](const MxHostState& x, const MxHostState& y) {
                         return x.preference < y.preference;
                       });
      ShuffleTies(job->hosts, rng_);
      // The cap applies after the shuffle: which of several equal hosts at the cap survive is
      // random once per cache lifetime of the answer.
      if (job->hosts.size() > opts_.max_mx_hosts && opts_.max_mx_hosts > 0) {
        job->hosts.resize(opts_.max_mx_hosts);
      }
    }
    // The guard count keeps the job alive while lookups answer synchronously from the cache.
    job->pending = 1;
    for (size_t i = 0; i < job->hosts.size(); ++i) {
      ++job->pending;
      Lookup(job->hosts[i].name, kTypeA, [this, job, i](const RrAnswerPtr& r) {
        job->hosts[i].a = r;
        HostAnswered(job);
      });
      if (opts_.ipv6) {
        ++job->pending;
        Lookup(job->hosts[i].name, kTypeAaaa, [this, job, i](const RrAnswerPtr& r) {
          job->hosts[i].aaaa = r;
          HostAnswered(job);
        });
      }
    }
    HostAnswered(job);
  }

  void HostAnswered(MxJob* job) {
    if (--job->pending == 0) AssembleMx(job);
  }

  void AssembleMx(MxJob* job) {
    auto result = std::make_shared<MxResult>();
    result->domain = job->domain;
    result->implicit_mx = job->implicit_mx;
    result->dnssec = job->mx->dnssec;
    absl::Time expires = job->mx->expires;
    bool any_address = false;
    bool any_temp = false;
    bool all_nxdomain = true;
    std::string first_error;
    for (MxHostState& h : job->hosts) {
      MxHost host;
      host.name = h.name;
      host.preference = h.preference;
      host.dnssec = true;
      bool temp = false;
      const RrAnswerPtr order[2] = {opts_.prefer_ipv6 ? h.aaaa : h.a,
                                    opts_.prefer_ipv6 ? h.a : h.aaaa};
      for (const RrAnswerPtr& a : order) {
        if (a == nullptr) continue;
        expires = std::min(expires, a->expires);
        host.dnssec = host.dnssec && a->dnssec;
        if (a->status == DnsStatus::kOk) {
          host.addresses.insert(host.addresses.end(), a->data.addresses.begin(),
                                a->data.addresses.end());
          absl::string_view canonical = absl::StripSuffix(a->data.canonical, ".");
          if (host.canonical.empty() && !canonical.empty() &&
              !absl::EqualsIgnoreCase(canonical, h.name)) {
            host.canonical = std::string(canonical);
          }
        } else {
          temp = temp || a->status == DnsStatus::kTempFail;
          if (a->status != DnsStatus::kNxDomain) all_nxdomain = false;
          if (first_error.empty()) first_error = a->error;
        }
      }
      if (!host.addresses.empty()) {
        any_address = true;
        all_nxdomain = false;
      } else {
        // Kept in the list (logs show it), but with no address to connect to.
        host.address_status = temp ? DnsStatus::kTempFail : DnsStatus::kNoData;
        any_temp = any_temp || temp;
      }
      result->hosts.push_back(std::move(host));
    }
    if (any_address) {
      result->status = DnsStatus::kOk;
      result->error = job->skipped;
    } else if (any_temp) {
      // Postfix's rule: "no MX host has an address" bounces only when every lookup failed
      // permanently; one temporary failure defers the whole domain.
      result->status = DnsStatus::kTempFail;
      result->error = absl::StrCat("no address for any MX host of ", job->domain,
                                   " (temporary): ", first_error);
      expires = std::min(expires, Now() + opts_.tempfail_ttl);
    } else if (job->implicit_mx) {
      // RFC 5321 §5.1: neither MX nor A/AAAA — the domain has no mail host.
      result->status = all_nxdomain ? DnsStatus::kNxDomain : DnsStatus::kNoData;
      result->error = absl::StrCat("no MX and no A/AAAA records for ", job->domain);
    } else {
      result->status = DnsStatus::kNoData;
      result->error = absl::StrCat("no MX host of ", job->domain, " has an address: ",
                                   first_error);
    }
    FinishMx(job, std::move(result), expires);
  }

  void FinishMx(MxJob* job, DnsStatus status, std::string error, absl::Time expires) {
    auto result = std::make_shared<MxResult>();
    result->status = status;
    result->error = std::move(error);
    result->domain = job->domain;
    result->dnssec = job->mx != nullptr && job->mx->dnssec;
    FinishMx(job, std::move(result), expires);
  }

  void FinishMx(MxJob* job, std::shared_ptr<MxResult> result, absl::Time expires) {
    const bool ties = HasTies(result->hosts);
    std::shared_ptr<const MxResult> shared = std::move(result);
    absl::Time now = Now();
    if (expires > now) {
      MakeRoom(mx_cache_, opts_.max_cache_entries, now,
               [](const CachedMx& e) { return e.expires; });
      mx_cache_[job->domain] = CachedMx{shared, expires, ties};
    }
    auto it = mx_inflight_.find(job->domain);
    if (it == mx_inflight_.end()) return;  // cannot happen: the map owns `job`
    std::unique_ptr<MxJob> owned = std::move(it->second);
    mx_inflight_.erase(it);
    // Callers may call ResolveMx again (a cache hit, or a new job for this domain when the
    // answer was not cacheable): the job is out of the map, `owned` keeps it alive.
    for (size_t i = 0; i < owned->waiters.size(); ++i) {
      if (i == 0) {
        owned->waiters[i](*shared);  // already shuffled once
      } else {
        Deliver(*shared, ties, owned->waiters[i]);
      }
    }
  }

  Options opts_;
  WatchFn watch_;
  ares_channel channel_ = nullptr;
  ares_channel diagnose_channel_ = nullptr;  // NOCHECKRESP: see Init()
  bool destroying_ = false;
  bool pumping_ = false;
  Stats stats_;
  std::deque<RrLookup*> send_queue_;  // owned by rr_inflight_ / chases_
  std::minstd_rand rng_{static_cast<std::minstd_rand::result_type>(absl::BitGen()())};
  absl::flat_hash_map<std::string, CachedMx> mx_cache_;
  absl::flat_hash_map<std::string, std::unique_ptr<MxJob>> mx_inflight_;
  absl::flat_hash_map<RrKey, RrAnswerPtr> rr_cache_;
  absl::flat_hash_map<RrKey, std::unique_ptr<RrLookup>> rr_inflight_;
  std::vector<std::unique_ptr<RrLookup>> chases_;  // CNAME chases that could not join a lookup
};

}  // namespace

absl::Status CheckDnsServer(absl::string_view spec) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("DNS server '", spec, "': ", why));
  };
  if (spec.empty()) return bad("empty");
  absl::string_view host = spec;
  absl::string_view port;
  bool has_port = false;
  if (spec.front() == '[') {
    const size_t close = spec.find(']');
    if (close == absl::string_view::npos) return bad("unterminated '['");
    host = spec.substr(1, close - 1);
    absl::string_view rest = spec.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return bad("expected ':PORT' after ']'");
      port = rest.substr(1);
      has_port = true;
    }
  } else if (std::count(spec.begin(), spec.end(), ':') == 1) {
    const size_t colon = spec.find(':');
    host = spec.substr(0, colon);
    port = spec.substr(colon + 1);
    has_port = true;
  }
  const std::string h(host);
  in_addr a4;
  in6_addr a6;
  const bool v6 = inet_pton(AF_INET6, h.c_str(), &a6) == 1;
  if (inet_pton(AF_INET, h.c_str(), &a4) != 1 && !v6) {
    return bad("not an IP address (write the resolver's address, e.g. 127.0.0.1:53)");
  }
  if (spec.front() == '[' && !v6) return bad("only IPv6 addresses go in brackets");
  if (has_port) {
    uint32_t p = 0;
    if (port.empty() || !std::all_of(port.begin(), port.end(), absl::ascii_isdigit) ||
        !absl::SimpleAtoi(port, &p) || p == 0 || p > 65535) {
      return bad(absl::StrCat("port '", port, "' is not in 1..65535"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Resolver>> Resolver::Create(const Options& opts, WatchFn watch) {
  // Process-wide, once; a function-local static is initialised thread-safely.
  static const int init_rc = ares_library_init(ARES_LIB_INIT_ALL);
  if (init_rc != ARES_SUCCESS) {
    return absl::InternalError(absl::StrCat("ares_library_init: ", ares_strerror(init_rc)));
  }
  auto r = std::make_unique<ResolverImpl>(opts, std::move(watch));
  absl::Status s = r->Init();
  if (!s.ok()) return s;
  return std::unique_ptr<Resolver>(std::move(r));
}

}  // namespace mxb
