// dns/ benchmarks.
//
// Micro costs (always run): a ResolveMx cache hit (with and without equal preferences to
// shuffle), an RRset-level hit through ResolveTlsa, name normalisation (ASCII / IDN). The cache
// is filled from a tiny in-process UDP responder on 127.0.0.1, so no server is needed.
//
// Bulk (opt-in, needs /usr/sbin/unbound): resolves N distinct new domains against a local
// unbound it starts itself, with a bounded number of ResolveMx calls outstanding, and reports
// queries/s, domains/s and the peak number of DNS queries in flight:
//
//   MXB_DNS_BULK=100000 build/release/bench/mxb_micro_bench --benchmark_filter=DnsBulk
//
// Two zones: "shared" (every domain's MX is one shared host: 1 MX query per domain, the
// address answer comes from the RRset cache — big providers' case) and "implicit" (no MX: the
// domain's own A and AAAA — 3 queries per domain). MXB_DNS_BULK_WINDOW sets the number of
// ResolveMx calls outstanding (default 1000), MXB_DNS_BULK_MAX_IN_FLIGHT sets
// Resolver::Options::max_in_flight (default 256).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <functional>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "benchmark/benchmark.h"
#include "dns/dns_wire.h"
#include "dns/resolver.h"

namespace mxb {
namespace {

// --- the poll() loop the engine's ring replaces ---------------------------------------------------

struct Loop {
  std::map<int, std::pair<bool, bool>> fds;
  int extra_fd = -1;
  std::function<void()> on_extra;

  Resolver::WatchFn Watcher() {
    return [this](int fd, bool r, bool w) {
      if (!r && !w) {
        fds.erase(fd);
      } else {
        fds[fd] = {r, w};
      }
    };
  }
  void Step(Resolver& r) {
    std::vector<pollfd> p;
    for (auto& [fd, rw] : fds) {
      p.push_back({fd, static_cast<short>((rw.first ? POLLIN : 0) | (rw.second ? POLLOUT : 0)), 0});
    }
    if (extra_fd >= 0) p.push_back({extra_fd, POLLIN, 0});
    absl::Duration t = std::min(r.NextTimeout(), absl::Milliseconds(50));
    poll(p.data(), p.size(), static_cast<int>(absl::ToInt64Milliseconds(t)) + 1);
    for (const pollfd& x : p) {
      if (x.revents == 0) continue;
      if (x.fd == extra_fd) {
        on_extra();
        continue;
      }
      if (fds.count(x.fd) && (x.revents & (POLLIN | POLLERR | POLLHUP))) r.OnReadable(x.fd);
      if (fds.count(x.fd) && (x.revents & POLLOUT)) r.OnWritable(x.fd);
    }
    r.ProcessTimeouts();
  }
};

// --- a tiny responder for the micro benchmarks: MX -> 10 mx1 / 10 mx2 (or one host), A -> 127.0.0.9

int StartResponder(uint16_t* port) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

void Respond(int fd) {
  for (;;) {
    uint8_t q[512];
    sockaddr_storage from{};
    socklen_t fl = sizeof(from);
    ssize_t n = recvfrom(fd, q, sizeof(q), 0, reinterpret_cast<sockaddr*>(&from), &fl);
    if (n < 17) return;
    size_t p = 12;
    bool ties = false;
    while (p < static_cast<size_t>(n) && q[p] != 0) {
      ties = ties || (q[p] == 4 && std::string(reinterpret_cast<char*>(q + p + 1), 4) == "ties");
      p += 1 + q[p];
    }
    if (p + 5 > static_cast<size_t>(n)) return;
    uint16_t type = static_cast<uint16_t>((q[p + 1] << 8) | q[p + 2]);
    std::vector<uint8_t> a(q, q + p + 5);
    a[2] = 0x81;
    a[3] = 0x80;
    a[6] = 0;
    a[7] = 0;
    a[8] = a[9] = a[10] = a[11] = 0;
    auto rr = [&a](uint16_t t, std::vector<uint8_t> rd) {
      ++a[7];
      a.insert(a.end(), {0xC0, 12, static_cast<uint8_t>(t >> 8), static_cast<uint8_t>(t), 0, 1,
                         0, 0, 0x0E, 0x10, static_cast<uint8_t>(rd.size() >> 8),
                         static_cast<uint8_t>(rd.size())});
      a.insert(a.end(), rd.begin(), rd.end());
    };
    if (type == dns_wire::kTypeMx) {
      rr(type, {0, 10, 3, 'm', 'x', '1', 0xC0, 12});
      if (ties) rr(type, {0, 10, 3, 'm', 'x', '2', 0xC0, 12});
      rr(type, {0, 20, 3, 'm', 'x', '3', 0xC0, 12});
    } else if (type == dns_wire::kTypeA) {
      rr(type, {127, 0, 0, 9});
    } else if (type == dns_wire::kTypeTlsa) {
      rr(type, {3, 1, 1, 0xAA, 0xBB, 0xCC, 0xDD});
    }
    sendto(fd, a.data(), a.size(), 0, reinterpret_cast<sockaddr*>(&from), fl);
  }
}

struct Filled {
  Loop loop;
  int responder = -1;
  std::unique_ptr<Resolver> resolver;
};

std::unique_ptr<Filled> FillCache(const std::vector<std::string>& domains) {
  auto f = std::make_unique<Filled>();
  uint16_t port = 0;
  f->responder = StartResponder(&port);
  f->loop.extra_fd = f->responder;
  int fd = f->responder;
  f->loop.on_extra = [fd] { Respond(fd); };
  Resolver::Options o;
  o.servers = {absl::StrCat("127.0.0.1:", port)};
  f->resolver = *Resolver::Create(o, f->loop.Watcher());
  size_t done = 0;
  for (const std::string& d : domains) {
    f->resolver->ResolveMx(d, [&done](const MxResult&) { ++done; });
  }
  f->resolver->ResolveTlsa("mx1.plain.bench", 25, [&done](const TlsaResult&) { ++done; });
  absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (done < domains.size() + 1 && absl::Now() < deadline) f->loop.Step(*f->resolver);
  return f;
}

void BM_MxCacheHit(benchmark::State& state) {
  const bool ties = state.range(0) != 0;
  const std::string domain = ties ? "ties.bench" : "plain.bench";
  std::unique_ptr<Filled> f = FillCache({domain});
  size_t hosts = 0;
  for (auto _ : state) {
    f->resolver->ResolveMx(domain, [&hosts](const MxResult& m) { hosts += m.hosts.size(); });
  }
  benchmark::DoNotOptimize(hosts);
  if (f->resolver->stats().cache_hits < static_cast<uint64_t>(state.iterations())) state.SkipWithError("not cached");
  state.SetLabel(ties ? "equal preferences (copy + shuffle)" : "distinct preferences");
  close(f->responder);
}
BENCHMARK(BM_MxCacheHit)->Arg(0)->Arg(1);

void BM_TlsaCacheHit(benchmark::State& state) {
  std::unique_ptr<Filled> f = FillCache({});
  size_t n = 0;
  for (auto _ : state) {
    f->resolver->ResolveTlsa("mx1.plain.bench", 25, [&n](const TlsaResult& t) {
      n += t.records.size();
    });
  }
  benchmark::DoNotOptimize(n);
  close(f->responder);
}
BENCHMARK(BM_TlsaCacheHit);

void BM_NormalizeName(benchmark::State& state) {
  const char* name = state.range(0) ? "b\xC3\xBC" "cher.example" : "Mail.Example.COM";
  for (auto _ : state) benchmark::DoNotOptimize(dns_wire::NormalizeName(name));
  state.SetLabel(state.range(0) ? "IDN (libidn2)" : "ASCII");
}
BENCHMARK(BM_NormalizeName)->Arg(0)->Arg(1);

// --- bulk: N new domains against a local unbound ----------------------------------------------------

uint16_t FreePort() {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

struct Unbound {
  pid_t pid = -1;
  uint16_t port = 0;
  std::string dir;
  ~Unbound() {
    if (pid > 0) {
      kill(pid, SIGTERM);
      waitpid(pid, nullptr, 0);
    }
    if (!dir.empty()) std::filesystem::remove_all(dir);
  }
};

std::unique_ptr<Unbound> StartUnbound() {
  const char* bin = std::getenv("MXB_UNBOUND") ? std::getenv("MXB_UNBOUND") : "/usr/sbin/unbound";
  if (access(bin, X_OK) != 0) return nullptr;
  auto u = std::make_unique<Unbound>();
  char tmpl[] = "/tmp/mxb-dns-bench-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return nullptr;
  u->dir = tmpl;
  u->port = FreePort();
  // redirect zones answer every name below them with the apex data.
  std::ofstream(u->dir + "/unbound.conf") << absl::StrCat(
      "server:\n  username: \"\"\n  chroot: \"\"\n  pidfile: \"\"\n  use-syslog: no\n"
      "  directory: \"", u->dir, "\"\n  interface: 127.0.0.1@", u->port, "\n  do-ip6: no\n"
      "  num-threads: 1\n  num-queries-per-thread: 4096\n  so-rcvbuf: 4m\n  so-sndbuf: 4m\n"
      "  module-config: \"iterator\"\n  access-control: 127.0.0.0/8 allow\n"
      "  local-zone: \"shared.bench.\" redirect\n"
      "  local-data: \"shared.bench. 300 IN MX 10 mx.shared-host.bench.\"\n"
      "  local-zone: \"shared-host.bench.\" redirect\n"
      "  local-data: \"shared-host.bench. 300 IN A 127.0.0.9\"\n"
      "  local-zone: \"implicit.bench.\" redirect\n"
      "  local-data: \"implicit.bench. 300 IN A 127.0.0.10\"\n"
      "remote-control:\n  control-enable: no\n");
  const std::string conf = u->dir + "/unbound.conf";
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    dup2(devnull, 2);
    execl(bin, "unbound", "-d", "-c", conf.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  u->pid = pid;
  for (int i = 0; i < 500; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(u->port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool up = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    close(fd);
    if (up) return u;
    usleep(10000);
  }
  return nullptr;
}

void BM_DnsBulkUnbound(benchmark::State& state, const std::string& zone) {
  const size_t n = std::strtoul(std::getenv("MXB_DNS_BULK"), nullptr, 10);
  const char* w = std::getenv("MXB_DNS_BULK_WINDOW");
  const size_t window = w != nullptr ? std::strtoul(w, nullptr, 10) : 1000;
  std::unique_ptr<Unbound> ub = StartUnbound();
  if (ub == nullptr) {
    state.SkipWithError("cannot start unbound (apt-get install unbound)");
    return;
  }
  for (auto _ : state) {
    Loop loop;
    Resolver::Options o;
    o.servers = {absl::StrCat("127.0.0.1:", ub->port)};
    o.query_timeout = absl::Seconds(2);
    if (const char* m = std::getenv("MXB_DNS_BULK_MAX_IN_FLIGHT")) {
      o.max_in_flight = std::strtoul(m, nullptr, 10);
    }
    std::unique_ptr<Resolver> r = *Resolver::Create(o, loop.Watcher());
    size_t started = 0, done = 0, ok = 0;
    absl::Time t0 = absl::Now();
    while (done < n) {
      while (started < n && started - done < window) {
        r->ResolveMx(absl::StrCat("d", started++, ".", zone), [&](const MxResult& m) {
          ++done;
          ok += m.status == DnsStatus::kOk;
        });
      }
      loop.Step(*r);
    }
    double secs = absl::ToDoubleSeconds(absl::Now() - t0);
    Resolver::Stats s = r->stats();
    state.counters["domains/s"] = static_cast<double>(n) / secs;
    state.counters["queries/s"] = static_cast<double>(s.queries_sent) / secs;
    state.counters["queries"] = static_cast<double>(s.queries_sent);
    state.counters["peak_in_flight"] = static_cast<double>(s.peak_in_flight);
    state.counters["ok"] = static_cast<double>(ok);
    state.SetIterationTime(secs);
  }
}

const bool kBulkRegistered = [] {
  if (std::getenv("MXB_DNS_BULK") == nullptr) return false;
  for (const char* zone : {"shared.bench", "implicit.bench"}) {
    benchmark::RegisterBenchmark(absl::StrCat("BM_DnsBulkUnbound/", zone).c_str(),
                                 [zone](benchmark::State& s) { BM_DnsBulkUnbound(s, zone); })
        ->Iterations(1)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  }
  return true;
}();

}  // namespace
}  // namespace mxb
