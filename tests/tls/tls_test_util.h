// Helpers shared by the tls/ tests: certificates, CA files and an in-memory client<->server pump.
#pragma once

#include <unistd.h>

#include <gtest/gtest.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "tls/tls_session.h"

namespace mxb::testing_tls {

inline GeneratedCert MakeCert(const std::string& cn, const std::vector<std::string>& names) {
  absl::StatusOr<GeneratedCert> cert = GenerateSelfSignedCert(cn, names);
  EXPECT_TRUE(cert.ok()) << cert.status();
  return cert.ok() ? *cert : GeneratedCert{};
}

// Writes `pem` to a file under the test's temp dir and returns its path. The name carries the
// pid: ctest runs the tests of one binary as parallel processes, each with its own certificates.
inline std::string WriteTempFile(const std::string& name, const std::string& pem) {
  const std::string path =
      ::testing::TempDir() + "/" + std::to_string(getpid()) + "_" + name;
  std::ofstream(path, std::ios::binary | std::ios::trunc) << pem;
  return path;
}

// GCC 12 -Wextra warns on designated initializers that omit fields: options are built by
// assignment.
inline TlsServerOptions ServerOpts(const std::string& cert_pem, const std::string& key_pem,
                                   bool tls12_only = false) {
  TlsServerOptions opts;
  opts.cert_pem = cert_pem;
  opts.key_pem = key_pem;
  opts.tls12_only = tls12_only;
  return opts;
}

inline TlsClientOptions ClientOpts(bool verify_peer, const std::string& ca_file = "",
                                   bool tls13_only = false, const std::string& cipher_list = "") {
  TlsClientOptions opts;
  opts.verify_peer = verify_peer;
  opts.ca_file = ca_file;
  opts.tls13_only = tls13_only;
  opts.cipher_list = cipher_list;
  return opts;
}

inline std::unique_ptr<TlsContext> ServerCtx(const GeneratedCert& cert, bool tls12_only = false) {
  auto ctx = TlsContext::NewServer(ServerOpts(cert.cert_pem, cert.key_pem, tls12_only));
  EXPECT_TRUE(ctx.ok()) << ctx.status();
  return ctx.ok() ? *std::move(ctx) : nullptr;
}

inline std::unique_ptr<TlsContext> ClientCtx(const TlsClientOptions& opts = {}) {
  auto ctx = TlsContext::NewClient(opts);
  EXPECT_TRUE(ctx.ok()) << ctx.status();
  return ctx.ok() ? *std::move(ctx) : nullptr;
}

struct PumpResult {
  TlsStatus client;
  TlsStatus server;
};

// Drives both handshakes by moving ciphertext between the sessions, `chunk` bytes per feed
// (0 = everything at once), until both finish, one fails, or no progress is possible.
inline PumpResult PumpHandshake(TlsSession* client, TlsSession* server, size_t chunk = 0) {
  PumpResult r{client->Handshake(), server->Handshake()};
  for (int round = 0; round < 100000; ++round) {
    if (r.client == TlsStatus::kError || r.server == TlsStatus::kError) break;
    const bool c_out = client->has_ciphertext_out();
    const bool s_out = server->has_ciphertext_out();
    if (!c_out && !s_out) break;
    if (c_out) {
      const std::string bytes = client->TakeCiphertext();
      for (size_t i = 0; i < bytes.size();) {
        const size_t n = chunk == 0 ? bytes.size() : std::min(chunk, bytes.size() - i);
        server->FeedCiphertext(absl::string_view(bytes).substr(i, n));
        i += n;
        r.server = server->Handshake();
        if (r.server == TlsStatus::kError) return r;
      }
    }
    if (s_out) {
      const std::string bytes = server->TakeCiphertext();
      for (size_t i = 0; i < bytes.size();) {
        const size_t n = chunk == 0 ? bytes.size() : std::min(chunk, bytes.size() - i);
        client->FeedCiphertext(absl::string_view(bytes).substr(i, n));
        i += n;
        r.client = client->Handshake();
        if (r.client == TlsStatus::kError) return r;
      }
    }
  }
  return r;
}

// Moves everything `from` has queued into `to` and decrypts it, `chunk` bytes per feed.
inline TlsStatus Transfer(TlsSession* from, TlsSession* to, std::string* plain, size_t chunk = 0) {
  const std::string bytes = from->TakeCiphertext();
  TlsStatus st = TlsStatus::kWantIo;
  for (size_t i = 0; i < bytes.size() || i == 0;) {
    const size_t n = chunk == 0 ? bytes.size() : std::min(chunk, bytes.size() - i);
    to->FeedCiphertext(absl::string_view(bytes).substr(i, n));
    i += n;
    st = to->ReadPlaintext(plain);
    if (st != TlsStatus::kWantIo || n == 0) break;
  }
  return st;
}

}  // namespace mxb::testing_tls
