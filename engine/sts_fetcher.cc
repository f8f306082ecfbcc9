// StsFetcher (engine/sts_fetcher.h): the fetcher thread's loop — c-ares and curl multi polled
// together by curl_multi_poll().
#include "engine/sts_fetcher.h"

#include <curl/curl.h>
#include <poll.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "dns/resolver.h"

namespace mxb {
namespace {

// RFC 8460 §4.3.2 result types for a policy that could not be used.
constexpr const char* kFetchError = "sts-policy-fetch-error";
constexpr const char* kPolicyInvalid = "sts-policy-invalid";
constexpr const char* kWebPkiInvalid = "sts-webpki-invalid";

std::string AddressText(const sockaddr_storage& a) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (a.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(a).sin_addr, buf, sizeof buf);
    return buf;
  }
  inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(a).sin6_addr, buf, sizeof buf);
  return absl::StrCat("[", buf, "]");
}

// §3.3: "Content-Type: text/plain" — parameters such as charset are allowed.
bool IsTextPlain(const char* content_type) {
  if (content_type == nullptr) return false;
  absl::string_view t = content_type;
  const size_t semi = t.find(';');
  if (semi != absl::string_view::npos) t = t.substr(0, semi);
  return absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(t), "text/plain");
}

}  // namespace

// Everything the fetcher thread owns; only that thread touches it.
class StsFetcher::Loop {
 public:
  explicit Loop(StsFetcher* f) : f_(f) {}
  ~Loop() {
    for (auto& [easy, t] : transfers_) {
      curl_multi_remove_handle(multi_, easy);
      curl_easy_cleanup(easy);
      curl_slist_free_all(t->resolve);
      curl_slist_free_all(t->headers);
    }
    resolver_.reset();
    if (multi_ != nullptr) curl_multi_cleanup(multi_);
  }

  absl::Status Init() {
    multi_ = curl_multi_init();
    if (multi_ == nullptr) return absl::InternalError("MTA-STS: curl_multi_init failed");
    Resolver::Options ro;
    ro.servers = f_->opts_.dns_servers;
    // A policy check must see a changed TXT id soon (§5.1), not after a day-long TTL.
    ro.ttl_ceiling = std::min(ro.ttl_ceiling, f_->opts_.recheck);
    ro.ttl_floor = std::min(ro.ttl_floor, ro.ttl_ceiling);
    absl::StatusOr<std::unique_ptr<Resolver>> r =
        Resolver::Create(ro, [this](int fd, bool rd, bool wr) {
          if (!rd && !wr) {
            watched_.erase(fd);
          } else {
            watched_[fd] = static_cast<short>((rd ? POLLIN : 0) | (wr ? POLLOUT : 0));
          }
        });
    if (!r.ok()) return r.status();
    resolver_ = *std::move(r);
    return absl::OkStatus();
  }

  void Wake() { curl_multi_wakeup(multi_); }

  void Run() {
    absl::Time next_refresh_scan = absl::InfinitePast();
    while (!f_->stop_.load(std::memory_order_acquire)) {
      StartRequests();
      if (const absl::Time now = absl::Now(); now >= next_refresh_scan) {
        for (std::string& d : f_->DueRefreshes(now)) CheckTxt(std::move(d));
        next_refresh_scan = now + absl::Seconds(1);  // the poll below wakes at least this often
      }
      std::vector<curl_waitfd> extra;
      for (const auto& [fd, ev] : watched_) {
        curl_waitfd w{};
        w.fd = fd;
        w.events = ev;
        extra.push_back(w);
      }
      int timeout_ms = 1000;
      const absl::Duration dns = resolver_->NextTimeout();
      if (dns != absl::InfiniteDuration()) {
        timeout_ms = std::clamp<int>(static_cast<int>(absl::ToInt64Milliseconds(dns)) + 1, 1,
                                     timeout_ms);
      }
      int numfds = 0;
      curl_multi_poll(multi_, extra.data(), static_cast<unsigned>(extra.size()), timeout_ms,
                      &numfds);
      for (const curl_waitfd& w : extra) {
        if (w.revents & (POLLIN | POLLERR | POLLHUP)) resolver_->OnReadable(w.fd);
        if ((w.revents & POLLOUT) && watched_.contains(w.fd)) resolver_->OnWritable(w.fd);
      }
      resolver_->ProcessTimeouts();
      int running = 0;
      curl_multi_perform(multi_, &running);
      int left = 0;
      while (CURLMsg* m = curl_multi_info_read(multi_, &left)) {
        if (m->msg == CURLMSG_DONE) Done(m->easy_handle, m->data.result);
      }
    }
  }

 private:
  struct Transfer {
    std::string domain, id;
    curl_slist* resolve = nullptr;
    curl_slist* headers = nullptr;
    std::string body;
    std::string post;  // a TLS-RPT report being POSTed (curl reads it in place)
    PostDone post_done;
    bool oversize = false;
    char error[CURL_ERROR_SIZE] = {};
  };

 public:
  // TLS-RPT: the rua lookup (RFC 8460 §3) through this thread's resolver.
  void RunLookupTxt(const std::string& name, TlsRptNetwork::TxtDone done) {
    resolver_->ResolveTxt(name, [done = std::move(done)](const TxtResult& r) {
      done(r.status == DnsStatus::kOk, r.status == DnsStatus::kNxDomain ||
                                           r.status == DnsStatus::kNoData,
           r.records, r.error.empty() ? std::string(ToString(r.status)) : r.error);
    });
  }

  // TLS-RPT §5.2: POST the gzip report to an https: rua. Its host is resolved through the
  // engine's DNS and pinned with CURLOPT_RESOLVE, as the policy fetches are.
  void RunPost(std::string url, std::string body, std::string content_type, PostDone done) {
    absl::string_view rest = url;
    if (!absl::ConsumePrefix(&rest, "https://")) {
      done(absl::StrCat("not an https URL: ", url));
      return;
    }
    absl::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
    std::string host(authority);
    uint16_t port = 443;
    if (size_t colon = authority.rfind(':'); colon != absl::string_view::npos) {
      host = std::string(authority.substr(0, colon));
      int p = 0;
      if (!absl::SimpleAtoi(authority.substr(colon + 1), &p) || p <= 0 || p > 65535) {
        done(absl::StrCat("bad port in ", url));
        return;
      }
      port = static_cast<uint16_t>(p);
    }
    resolver_->ResolveMx(host, [this, url = std::move(url), body = std::move(body),
                                content_type = std::move(content_type), done = std::move(done),
                                host, port](const MxResult& mx) mutable {
      const sockaddr_storage* addr = nullptr;
      for (const MxHost& h : mx.hosts) {
        if (absl::EqualsIgnoreCase(h.name, host) && !h.addresses.empty()) {
          addr = &h.addresses.front();
          break;
        }
      }
      if (mx.status != DnsStatus::kOk || addr == nullptr) {
        done(absl::StrCat("no address for ", host, " (", ToString(mx.status), ")"));
        return;
      }
      CURL* easy = curl_easy_init();
      if (easy == nullptr) {
        done("curl_easy_init failed");
        return;
      }
      auto t = std::make_unique<Transfer>();
      t->post = std::move(body);
      t->post_done = std::move(done);
      t->resolve = curl_slist_append(
          nullptr, absl::StrCat(host, ":", port, ":", AddressText(*addr)).c_str());
      t->headers = curl_slist_append(nullptr, absl::StrCat("Content-Type: ", content_type).c_str());
      SetCommon(easy, t.get(), url);
      curl_easy_setopt(easy, CURLOPT_POST, 1L);
      curl_easy_setopt(easy, CURLOPT_POSTFIELDS, t->post.data());
      curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(t->post.size()));
      curl_easy_setopt(easy, CURLOPT_HTTPHEADER, t->headers);
      curl_easy_setopt(easy, CURLOPT_USERAGENT, "mxburst-tlsrpt");
      curl_multi_add_handle(multi_, easy);
      transfers_[easy] = std::move(t);
    });
  }

 private:
  // What every request of this thread shares: the pinned address, https only, PKIX against the
  // configured CA file, no redirects, no proxy, the timeouts, the body cap.
  void SetCommon(CURL* easy, Transfer* t, const std::string& url) {
    const Options& o = f_->opts_;
    curl_easy_setopt(easy, CURLOPT_URL, url.c_str());
    curl_easy_setopt(easy, CURLOPT_RESOLVE, t->resolve);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);  // §3.3: redirects MUST NOT be followed
    curl_easy_setopt(easy, CURLOPT_PROXY, "");           // never an environment proxy
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);  // §3.3: PKIX-valid for the host name
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
    if (!o.ca_file.empty()) curl_easy_setopt(easy, CURLOPT_CAINFO, o.ca_file.c_str());
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(absl::ToInt64Milliseconds(o.connect_timeout)));
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS,
                     static_cast<long>(absl::ToInt64Milliseconds(o.total_timeout)));
    curl_easy_setopt(easy, CURLOPT_MAXFILESIZE, static_cast<long>(kStsMaxPolicyBytes));
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &Loop::OnBody);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, t->error);
  }

  void StartRequests() {
    std::deque<std::string> batch;
    std::deque<std::function<void(Loop*)>> tasks;
    {
      std::lock_guard<std::mutex> lock(f_->mu_);
      batch.swap(f_->requests_);
      tasks.swap(f_->tasks_);
    }
    for (std::string& d : batch) CheckTxt(std::move(d));
    for (auto& task : tasks) task(this);
  }

  // §3.1: the TXT record says whether the domain has a policy and which version (id).
  void CheckTxt(std::string domain) {
    resolver_->ResolveTxt(absl::StrCat("_mta-sts.", domain), [this, domain](const TxtResult& r) {
      std::optional<std::string> id;
      if (r.status == DnsStatus::kOk) id = StsIdFromTxtRecords(r.records);
      std::shared_ptr<const StsPolicy> cached = f_->store_->Get(domain);
      switch (DecideStsAction(cached.get(), id, absl::Now())) {
        case StsCacheAction::kNoPolicy:
        case StsCacheAction::kUseCached:
          f_->Finish(domain, "", false, true);
          return;
        case StsCacheAction::kUseCachedRefresh:
        case StsCacheAction::kFetch:
          ResolveHost(domain, *id);
          return;
      }
    });
  }

  // The policy host is resolved through the engine's DNS (the same servers the workers use),
  // then pinned in curl with CURLOPT_RESOLVE so curl's own resolver never runs. The resolver
  // has no plain address lookup: an MX query of a name without MX gives its A/AAAA as the
  // implicit MX (RFC 5321 §5.1).
  void ResolveHost(const std::string& domain, const std::string& id) {
    const std::string host = absl::StrCat("mta-sts.", domain);
    resolver_->ResolveMx(host, [this, domain, id, host](const MxResult& mx) {
      const sockaddr_storage* addr = nullptr;
      if (mx.status == DnsStatus::kOk) {
        for (const MxHost& h : mx.hosts) {
          if (absl::EqualsIgnoreCase(h.name, host) && !h.addresses.empty()) {
            addr = &h.addresses.front();
            break;
          }
        }
      }
      if (addr == nullptr) {
        f_->Finish(domain,
                   absl::StrCat(kFetchError, ": no address for ", host, " (", ToString(mx.status),
                                mx.error.empty() ? "" : ": ", mx.error, ")"),
                   true, false);
        return;
      }
      StartFetch(domain, id, host, *addr);
    });
  }

  static size_t OnBody(char* data, size_t size, size_t n, void* user) {
    auto* t = static_cast<Transfer*>(user);
    const size_t len = size * n;
    if (t->body.size() + len > kStsMaxPolicyBytes) {
      t->oversize = true;
      return 0;  // aborts the transfer (CURLE_WRITE_ERROR)
    }
    t->body.append(data, len);
    return len;
  }

  void StartFetch(const std::string& domain, const std::string& id, const std::string& host,
                  const sockaddr_storage& addr) {
    const Options& o = f_->opts_;
    CURL* easy = curl_easy_init();
    if (easy == nullptr) {
      f_->Finish(domain, absl::StrCat(kFetchError, ": curl_easy_init failed"), true, false);
      return;
    }
    auto t = std::make_unique<Transfer>();
    t->domain = domain;
    t->id = id;
    t->resolve = curl_slist_append(
        nullptr, absl::StrCat(host, ":", o.https_port, ":", AddressText(addr)).c_str());
    const std::string url =
        absl::StrCat("https://", host, ":", o.https_port, "/.well-known/mta-sts.txt");
    SetCommon(easy, t.get(), url);
    curl_easy_setopt(easy, CURLOPT_USERAGENT, "mxburst-mta-sts");
    curl_multi_add_handle(multi_, easy);
    transfers_[easy] = std::move(t);
  }

  void Done(CURL* easy, CURLcode rc) {
    auto it = transfers_.find(easy);
    std::unique_ptr<Transfer> t = std::move(it->second);
    transfers_.erase(it);
    long status = 0;
    char* content_type = nullptr;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(easy, CURLINFO_CONTENT_TYPE, &content_type);
    const bool text_plain = IsTextPlain(content_type);
    const std::string type = content_type != nullptr ? content_type : "";
    curl_multi_remove_handle(multi_, easy);
    curl_easy_cleanup(easy);
    curl_slist_free_all(t->resolve);
    curl_slist_free_all(t->headers);
    if (t->post_done) {
      // RFC 8460 §5.2: a 2xx means the report was accepted.
      t->post_done(rc != CURLE_OK ? std::string(t->error[0] ? t->error : curl_easy_strerror(rc))
                   : status / 100 != 2 ? absl::StrCat("HTTP status ", status)
                                       : std::string());
      return;
    }

    std::string failure;
    if (rc == CURLE_PEER_FAILED_VERIFICATION) {
      failure = absl::StrCat(kWebPkiInvalid, ": ", t->error);
    } else if (t->oversize || rc == CURLE_FILESIZE_EXCEEDED) {
      failure = absl::StrCat(kFetchError, ": policy larger than ", kStsMaxPolicyBytes, " bytes");
    } else if (rc != CURLE_OK) {
      failure = absl::StrCat(kFetchError, ": ", t->error[0] ? t->error : curl_easy_strerror(rc));
    } else if (status != 200) {
      // §3.3: only 200 counts; a 3xx is a failure, not something to follow.
      failure = absl::StrCat(kFetchError, ": HTTP status ", status);
    } else if (!text_plain) {
      failure = absl::StrCat(kFetchError, ": Content-Type \"", type, "\" is not text/plain");
    }
    if (!failure.empty()) {
      f_->Finish(t->domain, std::move(failure), true, false);
      return;
    }
    absl::StatusOr<StsPolicy> p = ParseStsPolicy(t->body);
    if (!p.ok()) {
      f_->Finish(t->domain, absl::StrCat(kPolicyInvalid, ": ", p.status().message()), true, false);
      return;
    }
    p->id = t->id;
    p->fetched = absl::Now();
    if (absl::Status s = f_->store_->Put(t->domain, *std::move(p)); !s.ok()) {
      f_->Finish(t->domain, absl::StrCat(kFetchError, ": cannot store: ", s.message()), true,
                 false);
      return;
    }
    f_->Finish(t->domain, "", true, true);
  }

  StsFetcher* const f_;
  CURLM* multi_ = nullptr;
  std::unique_ptr<Resolver> resolver_;
  absl::flat_hash_map<int, short> watched_;
  absl::flat_hash_map<CURL*, std::unique_ptr<Transfer>> transfers_;
};

StsFetcher::StsFetcher(const Options& opts, std::unique_ptr<StsPolicyStore> store)
    : opts_(opts), store_(std::move(store)) {}

absl::StatusOr<std::unique_ptr<StsFetcher>> StsFetcher::Create(const Options& opts,
                                                               std::string store_dir) {
  // Thread-safe in libcurl >= 7.84 (Debian 12: 7.88); called once per process in practice.
  static const CURLcode init = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (init != CURLE_OK) {
    return absl::InternalError(absl::StrCat("MTA-STS: curl_global_init: ", curl_easy_strerror(init)));
  }
  std::vector<std::string> skipped;
  absl::StatusOr<std::unique_ptr<StsPolicyStore>> store =
      StsPolicyStore::Open(std::move(store_dir), &skipped);
  if (!store.ok()) return store.status();
  for (const std::string& s : skipped) {
    std::fprintf(stderr, "mxburst: MTA-STS: ignoring unreadable cached policy %s/%s\n",
                 (*store)->dir().c_str(), s.c_str());
  }
  std::unique_ptr<StsFetcher> f(new StsFetcher(opts, *std::move(store)));
  f->loop_ = std::make_unique<Loop>(f.get());
  if (absl::Status s = f->loop_->Init(); !s.ok()) return s;
  f->thread_ = std::thread([p = f.get()] { p->loop_->Run(); });
  return f;
}

StsFetcher::~StsFetcher() {
  stop_.store(true, std::memory_order_release);
  if (loop_ != nullptr) loop_->Wake();
  if (thread_.joinable()) thread_.join();
}

std::vector<std::string> StsFetcher::DueRefreshes(absl::Time now) {
  std::vector<std::string> due;
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [domain, st] : states_) {
    if (st.busy || now < st.refresh_at || now >= st.expires) continue;
    if (now - st.last_lookup > st.max_age) continue;  // no longer in use: let it lapse
    if (now - st.refresh_tried < st.refresh_retry) continue;
    st.busy = true;
    st.refresh_tried = now;
    ++stats_.checks;
    ++stats_.proactive_refreshes;
    due.push_back(domain);
  }
  return due;
}

StsLookup StsFetcher::Lookup(absl::string_view domain_in, absl::Time now) {
  const std::string domain = absl::AsciiStrToLower(absl::StripSuffix(domain_in, "."));
  StsLookup out;
  if (!IsValidStsDomain(domain)) {
    out.state = StsLookup::State::kNoPolicy;
    return out;
  }
  std::shared_ptr<const StsPolicy> cached = store_->Get(domain);
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    DomainState& st = states_[domain];
    st.last_lookup = now;
    if (!st.busy && now - st.checked >= opts_.recheck) {
      st.busy = true;
      requests_.push_back(domain);
      ++stats_.checks;
      wake = true;
    }
    out.failure = st.failure;
    // §5.1: an unexpired cached policy applies, also while a recheck runs or after it failed.
    if (cached != nullptr && !cached->Expired(now)) {
      out.state = StsLookup::State::kPolicy;
      out.policy = std::move(cached);
    } else if (st.checked == absl::InfinitePast()) {
      out.state = StsLookup::State::kPending;
    } else {
      out.state = StsLookup::State::kNoPolicy;
    }
  }
  if (wake) loop_->Wake();
  return out;
}

void StsFetcher::Finish(const std::string& domain, std::string failure, bool fetched, bool ok) {
  std::shared_ptr<const StsPolicy> cached = store_->Get(domain);
  std::lock_guard<std::mutex> lock(mu_);
  DomainState& st = states_[domain];
  st.busy = false;
  st.checked = absl::Now();
  st.failure = std::move(failure);
  if (cached != nullptr) {
    // The same threshold DecideStsAction() uses for kUseCachedRefresh, so the check it starts
    // does fetch (an unchanged id and a policy this old).
    st.max_age = absl::Seconds(cached->max_age_s);
    st.refresh_at = cached->fetched + std::min(st.max_age / 2, absl::Hours(24));
    st.expires = cached->expires();
    st.refresh_retry = std::clamp(st.max_age / 10, absl::Seconds(1), opts_.recheck);
  } else {
    st.refresh_at = absl::InfiniteFuture();
  }
  if (fetched) {
    ++stats_.fetches;
    ++(ok ? stats_.fetched_ok : stats_.fetch_failures);
  }
}

void StsFetcher::LookupTxt(std::string name, TxtDone done) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    tasks_.push_back([name = std::move(name), done = std::move(done)](Loop* l) mutable {
      l->RunLookupTxt(name, std::move(done));
    });
  }
  loop_->Wake();
}

void StsFetcher::PostReport(std::string url, std::string body, std::string content_type,
                            PostDone done) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    tasks_.push_back([url = std::move(url), body = std::move(body),
                      content_type = std::move(content_type),
                      done = std::move(done)](Loop* l) mutable {
      l->RunPost(std::move(url), std::move(body), std::move(content_type), std::move(done));
    });
  }
  loop_->Wake();
}

StsFetcher::Stats StsFetcher::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

}  // namespace mxb
