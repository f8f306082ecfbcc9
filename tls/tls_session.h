// TLS over caller-owned buffers (wolfSSL with custom I/O callbacks on memory).
//
// tls/ never touches a socket: the engine (or the sink) reads ciphertext from the socket and hands
// it to FeedCiphertext(), and takes the ciphertext that must be written out of
// TakeCiphertext()/ciphertext_out(). A TlsSession belongs to one thread (the worker that owns the
// connection); a TlsContext is created once at start-up and shared read-only by all threads.
//
//   mxb::TlsGlobalInit();
//   mxb::TlsClientOptions opts;  // GCC 12 -Wextra rejects designated inits that omit fields
//   auto ctx = mxb::TlsContext::NewClient(opts);
//   auto tls = (*ctx)->NewSession("mx.example.com");       // SNI + name for verification
//   tls->FeedCiphertext(bytes_from_socket);
//   switch (tls->Handshake()) {
//     case TlsStatus::kOk: ...                                // established
//     case TlsStatus::kWantIo: ...                            // send ciphertext_out(), recv more
//     case TlsStatus::kError: ... tls->last_error()
//   }
//   tls->Write("EHLO x\r\n");        // appends encrypted records to ciphertext_out()
//   std::string plain; tls->ReadPlaintext(&plain);          // decrypts everything fed so far
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

struct WOLFSSL_CTX;
struct WOLFSSL;

namespace mxb {

enum class TlsStatus {
  kOk,      // operation complete
  kWantIo,  // needs more ciphertext from the peer (and/or flush ciphertext_out())
  kClosed,  // peer sent close_notify
  kError,   // fatal; see last_error()
};
const char* ToString(TlsStatus s);

struct TlsClientOptions {
  bool verify_peer = false;     // PKIX chain check + host name (used by strict policies later)
  std::string ca_file;          // PEM bundle; empty = system store when verify_peer
  bool tls13_only = false;
  // Cipher preference: ChaCha20-Poly1305 first (Debian's wolfSSL has no AES-NI; see NOTES.md).
  std::string cipher_list;      // empty = library default order with CHACHA20 first
};

struct TlsServerOptions {
  std::string cert_pem;  // PEM text (certificate chain)
  std::string key_pem;   // PEM text (private key)
  std::string cipher_list;  // empty = AEAD suites, CHACHA20 first
  bool tls12_only = false;  // cap at TLS 1.2 (interop tests, peers that break on TLS 1.3)
};

// A self-signed ECDSA P-256 certificate (PEM) for `common_name` with the given SAN dNSNames,
// valid from now-1h for `days`. Generated with wolfCrypt (WOLFSSL_CERT_GEN); used by
// mxburst-sink when no certificate is given, and by tests. The certificate has CA:TRUE so a client
// can load it as its own trust anchor (ca_file); empty `dns_names` = SAN {common_name}.
struct GeneratedCert {
  std::string cert_pem;
  std::string key_pem;
};
[[nodiscard]] absl::StatusOr<GeneratedCert> GenerateSelfSignedCert(
    const std::string& common_name, const std::vector<std::string>& dns_names, int days = 365);

class TlsSession;

class TlsContext {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<TlsContext>> NewClient(
      const TlsClientOptions& opts);
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<TlsContext>> NewServer(
      const TlsServerOptions& opts);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  // `server_name`: SNI for clients (not sent when empty or an IP literal) and, with verify_peer,
  // the name the certificate must carry (SAN dNSName, or CN — wolfSSL_check_domain_name; empty =
  // chain check only). Ignored for servers. nullptr only if wolfSSL_new fails (out of memory).
  // Thread-safe: any worker may create sessions from a shared context.
  [[nodiscard]] std::unique_ptr<TlsSession> NewSession(const std::string& server_name = "");

  bool is_server() const { return is_server_; }

 private:
  // One in-memory handshake against `server`: catches a key that does not match the certificate.
  static absl::Status SelfTest(TlsContext& server, const std::string& cipher_list);
  TlsContext(WOLFSSL_CTX* ctx, bool is_server, bool verify_peer)
      : ctx_(ctx), is_server_(is_server), verify_peer_(verify_peer) {}
  WOLFSSL_CTX* ctx_;
  bool is_server_;
  bool verify_peer_;  // client only: also check the host name given to NewSession()
};

class TlsSession {
 public:
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  // Ciphertext received from the peer. Copied into an internal buffer consumed by wolfSSL.
  void FeedCiphertext(absl::string_view bytes);
  // Ciphertext that must be sent to the peer. The caller sends it and calls ConsumeCiphertext(n)
  // for the bytes the kernel took (or takes the whole string with TakeCiphertext()).
  // ciphertext_out() always starts at the first unsent byte. Write()/Handshake()/Shutdown() append
  // to it and may reallocate it: a send still in flight in the kernel must own its bytes, so hand
  // the kernel the string returned by TakeCiphertext(), not ciphertext_out().data().
  const std::string& ciphertext_out() const { return out_; }
  void ConsumeCiphertext(size_t n);
  std::string TakeCiphertext();
  bool has_ciphertext_out() const { return !out_.empty(); }

  // Drives the handshake (client connect or server accept). After kWantIo: send
  // ciphertext_out(), feed what the peer answers, call again. Errors are sticky: after kError
  // every call returns kError (ciphertext_out() may still hold an alert worth sending).
  [[nodiscard]] TlsStatus Handshake();
  bool handshake_done() const { return handshake_done_; }

  // Encrypts all of `plaintext` into ciphertext_out() (records of at most 16 KiB).
  // kError on failure or before the handshake completed.
  [[nodiscard]] TlsStatus Write(absl::string_view plaintext);
  // Decrypts everything decryptable from the fed ciphertext and appends it to *out.
  // kWantIo when all input was consumed (the normal case), kClosed on close_notify (plaintext
  // that preceded it is still appended). Finishes the handshake first if it is not done yet.
  [[nodiscard]] TlsStatus ReadPlaintext(std::string* out);
  // Queues a close_notify alert into ciphertext_out().
  void Shutdown();

  // "TLSv1.3", "TLS_CHACHA20_POLY1305_SHA256"; empty before the handshake completes.
  std::string version() const;
  std::string cipher() const;
  // Key exchange group, e.g. "X25519" or "SECP256R1"; empty before the handshake completes.
  std::string group() const;
  // Human-readable description of the last failure (wolfSSL error string + code).
  const std::string& last_error() const { return last_error_; }
  // Whether the session was resumed (false until session resumption lands).
  bool resumed() const;

 private:
  friend class TlsContext;
  TlsSession(WOLFSSL* ssl, bool is_server) : ssl_(ssl), is_server_(is_server) {}
  static int RecvCb(WOLFSSL* ssl, char* buf, int sz, void* ctx);
  static int SendCb(WOLFSSL* ssl, char* buf, int sz, void* ctx);
  // Records a fatal wolfSSL failure for `ret` (return value of the call named by `what`).
  TlsStatus Fail(const char* what, int ret);
  void TrimInput();

  WOLFSSL* ssl_;
  std::string in_;       // ciphertext from the peer; [in_pos_, size) not yet consumed by wolfSSL
  size_t in_pos_ = 0;
  std::string out_;      // ciphertext to send, starting with the first unsent byte
  bool is_server_;
  bool handshake_done_ = false;
  bool failed_ = false;  // a fatal error happened; every later call reports kError
  std::string last_error_;
};

// Call once per process before any other tls/ function (wolfSSL_Init); idempotent, thread-safe.
void TlsGlobalInit();

}  // namespace mxb
