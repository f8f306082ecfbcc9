// TLS costs of the linked wolfSSL build (MXB_WOLFSSL=system or bundled), client and server
// TlsSession objects in one process talking over memory (no sockets):
//
//   BM_TlsIdleClientMemory  heap and RSS per idle client session: N sessions after a TLS 1.3
//                           handshake + one server reply (the NewSessionTicket processed), the
//                           server sessions freed; counters heap_B/session, rss_B/session
//   BM_TlsHandshake         full / resumed TLS 1.3 handshakes (X25519 + ECDSA P-256), with the
//                           CPU time of the client side alone (client_us) and of the server
//   BM_TlsBulk              16 KiB records client -> server (encrypt + decrypt), per cipher
//   BM_TlsAuthHandshake     full TLS 1.3 handshakes against a leaf + CA chain, by how the
//                           client authenticates: none (opportunistic), PKIX (CA file + RFC 6125
//                           name), DANE-EE 3 1 1, DANE-TA 2 0 1 (RFC 7672); client_us / server_us
//
//   build/<dir>/bench/mxb_micro_bench --benchmark_filter=BM_Tls --benchmark_repetitions=3
#include <malloc.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "tls/dane.h"
#include "tls/tls_session.h"

namespace mxb {
namespace {

// CPU time of this thread: the box is shared, wall time would count other processes' turns.
struct Clock {
  using duration = std::chrono::nanoseconds;
  using time_point = std::chrono::time_point<Clock, duration>;
  static time_point now() {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return time_point(duration(static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec));
  }
};

// Heap bytes in use (arena + mmapped chunks), glibc.
double HeapInUse() {
  const struct mallinfo2 mi = mallinfo2();
  return static_cast<double>(mi.uordblks + mi.hblkhd);
}

double RssBytes() {
  long pages_total = 0, pages_rss = 0;
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  if (std::fscanf(f, "%ld %ld", &pages_total, &pages_rss) != 2) pages_rss = 0;
  std::fclose(f);
  return static_cast<double>(pages_rss) * static_cast<double>(sysconf(_SC_PAGESIZE));
}

struct Fixture {
  std::unique_ptr<TlsContext> server;
  std::unique_ptr<TlsContext> client;
};

// One server context with a fresh ECDSA P-256 certificate and one non-verifying client context
// (the engine's opportunistic default), both made once.
Fixture& Contexts(const std::string& cipher_list = "") {
  static auto* fixtures = new std::vector<std::pair<std::string, Fixture>>();
  for (auto& [list, f] : *fixtures) {
    if (list == cipher_list) return f;
  }
  absl::StatusOr<GeneratedCert> cert = GenerateSelfSignedCert("mx.bench.example", {});
  if (!cert.ok()) std::abort();
  TlsServerOptions so;
  so.cert_pem = cert->cert_pem;
  so.key_pem = cert->key_pem;
  TlsClientOptions co;
  co.cipher_list = cipher_list;
  absl::StatusOr<std::unique_ptr<TlsContext>> s = TlsContext::NewServer(so);
  absl::StatusOr<std::unique_ptr<TlsContext>> c = TlsContext::NewClient(co);
  if (!s.ok() || !c.ok()) std::abort();
  fixtures->emplace_back(cipher_list, Fixture{*std::move(s), *std::move(c)});
  return fixtures->back().second;
}

struct SideTimes {
  Clock::duration client{};
  Clock::duration server{};
};

template <typename F>
TlsStatus Timed(Clock::duration* acc, F&& f) {
  const Clock::time_point t0 = Clock::now();
  const TlsStatus st = f();
  *acc += Clock::now() - t0;
  return st;
}

// Both handshakes to completion, whole flights at a time; false on failure.
bool Handshake(TlsSession* client, TlsSession* server, SideTimes* t) {
  TlsStatus c = Timed(&t->client, [&] { return client->Handshake(); });
  TlsStatus s = TlsStatus::kWantIo;
  for (int round = 0; round < 8; ++round) {
    if (c == TlsStatus::kError || s == TlsStatus::kError) return false;
    if (c == TlsStatus::kOk && s == TlsStatus::kOk) return true;
    server->FeedCiphertext(client->TakeCiphertext());
    s = Timed(&t->server, [&] { return server->Handshake(); });
    client->FeedCiphertext(server->TakeCiphertext());
    c = Timed(&t->client, [&] { return client->Handshake(); });
  }
  return c == TlsStatus::kOk && s == TlsStatus::kOk;
}

// The server's greeting after the handshake, as an SMTP server sends its 250 to EHLO: the
// client processes the TLS 1.3 NewSessionTicket that precedes it.
bool ServerReply(TlsSession* client, TlsSession* server) {
  if (server->Write("250 mx.bench.example ready\r\n") != TlsStatus::kOk) return false;
  client->FeedCiphertext(server->TakeCiphertext());
  std::string plain;
  return client->ReadPlaintext(&plain) == TlsStatus::kWantIo && !plain.empty();
}

void BM_TlsIdleClientMemory(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  Fixture& f = Contexts();
  for (auto _ : state) {
    std::vector<std::unique_ptr<TlsSession>> clients;
    clients.reserve(static_cast<size_t>(n));
    malloc_trim(0);
    const double heap0 = HeapInUse();
    const double rss0 = RssBytes();
    SideTimes t;
    for (int i = 0; i < n; ++i) {
      std::unique_ptr<TlsSession> client = f.client->NewSession("mx.bench.example");
      std::unique_ptr<TlsSession> server = f.server->NewSession();
      if (!Handshake(client.get(), server.get(), &t) || !ServerReply(client.get(), server.get())) {
        state.SkipWithError("handshake failed");
        return;
      }
      clients.push_back(std::move(client));
    }
    malloc_trim(0);
    state.counters["heap_B/session"] = (HeapInUse() - heap0) / n;
    state.counters["rss_B/session"] = (RssBytes() - rss0) / n;
    const double heap_idle = HeapInUse();
    // What wolfSSL_new alone costs (no handshake yet), for comparison.
    std::vector<std::unique_ptr<TlsSession>> fresh;
    fresh.reserve(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) fresh.push_back(f.client->NewSession("mx.bench.example"));
    state.counters["new_heap_B/session"] = (HeapInUse() - heap_idle) / n;
  }
}
BENCHMARK(BM_TlsIdleClientMemory)->Arg(2000)->Iterations(1)->Unit(benchmark::kMillisecond);

// range(0): 0 = full handshake, 1 = resumed from a TLS 1.3 ticket.
void BM_TlsHandshake(benchmark::State& state) {
  const bool resume = state.range(0) == 1;
  Fixture& f = Contexts();
  std::shared_ptr<TlsSessionTicket> ticket;
  if (resume) {
    std::unique_ptr<TlsSession> client = f.client->NewSession("mx.bench.example");
    std::unique_ptr<TlsSession> server = f.server->NewSession();
    SideTimes t;
    if (!Handshake(client.get(), server.get(), &t) || !ServerReply(client.get(), server.get()) ||
        (ticket = client->SaveSession()) == nullptr) {
      state.SkipWithError("no ticket");
      return;
    }
  }
  SessionParams params;
  params.resume = ticket.get();
  SideTimes t;
  int64_t resumed = 0;
  for (auto _ : state) {
    std::unique_ptr<TlsSession> client = f.client->NewSession("mx.bench.example", params);
    std::unique_ptr<TlsSession> server = f.server->NewSession();
    if (!Handshake(client.get(), server.get(), &t)) {
      state.SkipWithError("handshake failed");
      return;
    }
    resumed += client->resumed() ? 1 : 0;
  }
  const double iters = static_cast<double>(state.iterations());
  state.counters["client_us"] =
      std::chrono::duration<double, std::micro>(t.client).count() / iters;
  state.counters["server_us"] =
      std::chrono::duration<double, std::micro>(t.server).count() / iters;
  state.counters["resumed"] = static_cast<double>(resumed) / iters;
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TlsHandshake)->ArgName("resumed")->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);

// A private CA, a leaf it signed for mx.bench.example, a server presenting leaf + CA, a client
// context trusting the CA (PKIX) and one trusting nothing (opportunistic and DANE).
struct AuthFixture {
  std::unique_ptr<TlsContext> server, pkix_client, plain_client;
  std::shared_ptr<const DaneAuthority> dane_ee, dane_ta;
};
AuthFixture* MakeAuthFixture() {
  CertOptions ca_opts;
  ca_opts.common_name = "bench CA";
  ca_opts.dns_names = {"ca.invalid"};
  absl::StatusOr<GeneratedCert> ca = GenerateSelfSignedCert(ca_opts);
  if (!ca.ok()) return nullptr;
  CertOptions leaf_opts;
  leaf_opts.common_name = "mx.bench.example";
  leaf_opts.is_ca = false;
  leaf_opts.issuer = &*ca;
  absl::StatusOr<GeneratedCert> leaf = GenerateSelfSignedCert(leaf_opts);
  if (!leaf.ok()) return nullptr;
  const std::string ca_file = "/tmp/mxb_tls_bench_ca_" + std::to_string(getpid()) + ".pem";
  FILE* f = std::fopen(ca_file.c_str(), "w");
  if (f == nullptr) return nullptr;
  std::fputs(ca->cert_pem.c_str(), f);
  std::fclose(f);
  auto* fx = new AuthFixture;
  TlsServerOptions so;
  so.cert_pem = leaf->cert_pem + ca->cert_pem;
  so.key_pem = leaf->key_pem;
  TlsClientOptions pkix;
  pkix.ca_file = ca_file;
  auto s = TlsContext::NewServer(so);
  auto p = TlsContext::NewClient(pkix);
  auto c = TlsContext::NewClient(TlsClientOptions());
  unlink(ca_file.c_str());
  if (!s.ok() || !p.ok() || !c.ok()) return nullptr;
  fx->server = *std::move(s);
  fx->pkix_client = *std::move(p);
  fx->plain_client = *std::move(c);
  const std::string leaf_der = PemCertificatesToDer(leaf->cert_pem).at(0);
  const std::string ca_der = PemCertificatesToDer(ca->cert_pem).at(0);
  DaneRecord ee{kTlsaUsageDaneEe, kTlsaSelectorSpki, kTlsaMatchSha256,
                TlsaAssociationData(leaf_der, kTlsaSelectorSpki, kTlsaMatchSha256)};
  DaneRecord ta{kTlsaUsageDaneTa, kTlsaSelectorCert, kTlsaMatchSha256,
                TlsaAssociationData(ca_der, kTlsaSelectorCert, kTlsaMatchSha256)};
  fx->dane_ee = DaneAuthority::Make({ee}, {"mx.bench.example"});
  fx->dane_ta = DaneAuthority::Make({ta}, {"mx.bench.example"});
  return fx;
}

// range(0): 0 = no authentication, 1 = PKIX, 2 = DANE-EE 3 1 1, 3 = DANE-TA 2 0 1.
void BM_TlsAuthHandshake(benchmark::State& state) {
  static AuthFixture* fx = MakeAuthFixture();
  if (fx == nullptr) {
    state.SkipWithError("fixture failed");
    return;
  }
  const int mode = static_cast<int>(state.range(0));
  SessionParams params;
  params.verify = mode == 1;
  params.dane = mode == 2 ? fx->dane_ee : mode == 3 ? fx->dane_ta : nullptr;
  TlsContext& client_ctx = mode == 1 ? *fx->pkix_client : *fx->plain_client;
  SideTimes t;
  for (auto _ : state) {
    std::unique_ptr<TlsSession> client = client_ctx.NewSession("mx.bench.example", params);
    std::unique_ptr<TlsSession> server = fx->server->NewSession();
    if (!Handshake(client.get(), server.get(), &t) || (mode != 0 && !client->verified())) {
      state.SkipWithError(("handshake failed: " + client->last_error()).c_str());
      return;
    }
  }
  const double iters = static_cast<double>(state.iterations());
  state.counters["client_us"] =
      std::chrono::duration<double, std::micro>(t.client).count() / iters;
  state.counters["server_us"] =
      std::chrono::duration<double, std::micro>(t.server).count() / iters;
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TlsAuthHandshake)
    ->ArgName("auth")
    ->Arg(0)
    ->Arg(1)
    ->Arg(2)
    ->Arg(3)
    ->Unit(benchmark::kMicrosecond);

// 1 MiB per iteration in 16 KiB records, encrypted by the client and decrypted by the server.
void BM_TlsBulk(benchmark::State& state, const char* cipher) {
  Fixture& f = Contexts(cipher);
  std::unique_ptr<TlsSession> client = f.client->NewSession("mx.bench.example");
  std::unique_ptr<TlsSession> server = f.server->NewSession();
  SideTimes t;
  if (!Handshake(client.get(), server.get(), &t) || client->cipher().empty()) {
    state.SkipWithError("handshake failed");
    return;
  }
  state.SetLabel(client->cipher());
  const std::string chunk(16 * 1024, 'x');
  std::string plain;
  for (auto _ : state) {
    for (int i = 0; i < 64; ++i) {
      if (client->Write(chunk) != TlsStatus::kOk) {
        state.SkipWithError("write failed");
        return;
      }
      server->FeedCiphertext(client->TakeCiphertext());
      plain.clear();
      if (server->ReadPlaintext(&plain) != TlsStatus::kWantIo || plain.size() != chunk.size()) {
        state.SkipWithError("read failed");
        return;
      }
    }
  }
  state.SetBytesProcessed(state.iterations() * 64 * static_cast<int64_t>(chunk.size()));
}
BENCHMARK_CAPTURE(BM_TlsBulk, aes128gcm, "TLS13-AES128-GCM-SHA256");
BENCHMARK_CAPTURE(BM_TlsBulk, aes256gcm, "TLS13-AES256-GCM-SHA384");
BENCHMARK_CAPTURE(BM_TlsBulk, chacha20, "TLS13-CHACHA20-POLY1305-SHA256");

}  // namespace
}  // namespace mxb
