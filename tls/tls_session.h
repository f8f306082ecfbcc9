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
//   // Per-session strictness and resumption with one shared client context:
//   mxb::SessionParams params;
//   params.verify = policy.verify;            // PKIX + RFC 6125 name check for this MX
//   params.log_only = policy.log_only;        // verify and report via failure(), never abort
//   params.resume = entry.session.get();      // newest ticket for this MX, or nullptr
//   auto strict = (*ctx)->NewSession("mx.example.com", params);
//   // DANE (RFC 7672): authenticated by the TLSA records only, no CA store involved.
//   mxb::SessionParams dane;
//   dane.dane = mxb::DaneAuthority::Make(tlsa_rrset, {"mx.example.com"});
//   auto d = (*ctx)->NewSession("mx.example.com", dane);   // d->dane_match().record: "3 1 1"
//   tls->FeedCiphertext(bytes_from_socket);
//   switch (tls->Handshake()) {
//     case TlsStatus::kOk: ...                                // established
//     case TlsStatus::kWantIo: ...                            // send ciphertext_out(), recv more
//     case TlsStatus::kError: ... tls->last_error()
//   }
//   tls->Write("EHLO x\r\n");        // appends encrypted records to ciphertext_out()
//   std::string plain; tls->ReadPlaintext(&plain);          // decrypts everything fed so far
//   // After the first reply read over TLS (TLS 1.3 tickets arrive after the handshake):
//   if (auto t = tls->SaveSession()) entry.session = std::move(t);
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "tls/dane.h"
#include "tls/policy.h"

struct WOLFSSL_CTX;
struct WOLFSSL;
struct WOLFSSL_SESSION;
struct WOLFSSL_X509_STORE_CTX;

namespace mxb {

enum class TlsStatus {
  kOk,      // operation complete
  kWantIo,  // needs more ciphertext from the peer (and/or flush ciphertext_out())
  kClosed,  // peer sent close_notify
  kError,   // fatal; see last_error()
};
const char* ToString(TlsStatus s);

struct TlsClientOptions {
  // Default for NewSession(name) without SessionParams: verify every session. Sessions created
  // with SessionParams decide per session, whatever this says.
  bool verify_peer = false;
  // Trust anchors for verifying sessions (PEM bundle); loaded at creation whatever verify_peer
  // says, a load failure is an error. Empty = the system store (wolfSSL_CTX_load_system_CA_certs,
  // then /etc/ssl/certs/ca-certificates.crt); if that cannot be loaded the context still works
  // for opportunistic sessions when !verify_peer, and verifying sessions fail with
  // kValidationFailure ("no trust anchors").
  std::string ca_file;
  bool tls13_only = false;
  // Cipher preference: empty = AEAD suites first, the faster of ChaCha20-Poly1305 and
  // AES-128-GCM for this wolfSSL build first (TlsPrefersAesGcm), then CBC/static-RSA suites.
  std::string cipher_list;
};

// Whether the default cipher lists put AES-128-GCM before ChaCha20-Poly1305: true when wolfSSL
// was built with AES-NI assembly (MXB_WOLFSSL=bundled) and the CPU has AES-NI + PCLMULQDQ;
// false for Debian's wolfSSL (no AES-NI), where ChaCha20 is the fast one.
bool TlsPrefersAesGcm();

struct TlsServerOptions {
  std::string cert_pem;  // PEM text (certificate chain)
  std::string key_pem;   // PEM text (private key)
  std::string cipher_list;  // empty = AEAD suites, the faster one first (TlsPrefersAesGcm)
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

// Full control for tests: validity window (also in the past: expired certificates), SAN list,
// and an issuer to sign with (a CA made by this function) instead of self-signing.
struct CertOptions {
  std::string common_name;
  std::vector<std::string> dns_names;          // empty = {common_name} unless no_san
  absl::Time not_before = absl::InfinitePast();  // InfinitePast = now - 1 h
  absl::Time not_after = absl::InfinitePast();   // InfinitePast = not_before + 365 days
  bool no_san = false;   // no subjectAltName extension at all (CN-only certificate)
  bool is_ca = true;     // basicConstraints CA:TRUE (needed to load it as a trust anchor)
  const GeneratedCert* issuer = nullptr;  // sign with this CA's key; nullptr = self-signed
};
[[nodiscard]] absl::StatusOr<GeneratedCert> GenerateSelfSignedCert(const CertOptions& opts);

// The TLS session state (ticket or session id + secret) of one finished client handshake, for
// resuming later connections to the same MX (wolfSSL_set_session). Owns a WOLFSSL_SESSION copy,
// freed in the destructor. Immutable after creation: may be shared between connections of one
// worker (PolicyEntry::session); not for concurrent use from several threads.
// RFC 8446 §C.4: a TLS 1.3 ticket should be used once — keep only the newest per MX. A server
// that resumes without re-issuing (OpenSSL, so Postfix) leaves the old ticket as the newest:
// SaveSession() then returns nullptr and the old ticket is offered again, as OpenSSL clients do.
class TlsSessionTicket {
 public:
  ~TlsSessionTicket();
  TlsSessionTicket(const TlsSessionTicket&) = delete;
  TlsSessionTicket& operator=(const TlsSessionTicket&) = delete;

  // The server name (lower case) of the session that produced it.
  const std::string& server_name() const { return server_name_; }
  // Whether the original full handshake verified the certificate (PKIX + name, or DANE) for
  // server_name(). A verifying session resumes only from a verified ticket for the same name:
  // a resumed handshake shows no certificate, so an unverified ticket would skip the check.
  bool verified() const { return verified_; }
  // The authentication that produced the ticket: "" (none), "pkix", or "dane:<binding>" with
  // DaneAuthority::binding. A session resumes only a ticket of the authentication it requires
  // (SessionParams): an opportunistic ticket never serves a DANE or PKIX session, a PKIX one
  // never a DANE session, a DANE one only under the same TLSA records and names.
  const std::string& authentication() const { return authentication_; }
  // The TLSA record that authenticated the original handshake ("3 1 1"), DANE tickets only.
  const std::string& dane_record() const { return dane_record_; }
  const std::string& version() const { return version_; }  // "TLSv1.3" / "TLSv1.2"

 private:
  friend class TlsSession;
  friend class TlsContext;
  TlsSessionTicket(WOLFSSL_SESSION* session, std::string server_name, bool verified,
                   std::string version)
      : session_(session),
        server_name_(std::move(server_name)),
        verified_(verified),
        version_(std::move(version)) {}
  WOLFSSL_SESSION* session_;
  std::string server_name_;
  bool verified_;
  std::string version_;
  std::string authentication_;
  std::string dane_record_;
};

// Per-session choices on a shared client context.
struct SessionParams {
  // PKIX chain to a trust anchor of the context (ca_file / system store) AND an RFC 6125
  // dNSName match of server_name (see TlsSession::failure()). Empty server_name = chain only.
  bool verify = false;
  // With verify: check and record the result in failure(), but never fail the handshake
  // (prefix_signals = log-only).
  bool log_only = false;
  // Resume from this ticket if it fits (same server name; verified if `verify`); otherwise a
  // full handshake. Only read during NewSession(): the session keeps its own reference.
  const TlsSessionTicket* resume = nullptr;
  // Server sessions only: send TLS 1.3 NewSessionTickets (wolfSSL sends one after a resumed
  // handshake). false = none on this session, the way OpenSSL-based receivers such as Postfix
  // 3.7 resume without re-issuing (their ticket key callback renews only after a key rotation).
  bool issue_tickets = true;
  // DANE mode (RFC 7672 §3): the chain is authenticated by these TLSA records alone (MatchDane
  // from the verify callback; `verify` and the context's trust anchors are not used). SNI is
  // server_name, the MX host. With log_only the result is recorded, never enforced. A resumed
  // session needs a ticket made under the same authority (TlsSessionTicket::authentication).
  std::shared_ptr<const DaneAuthority> dane;
};

// RFC 6125 §6.4 host name check against a certificate's dNSName list, done by us (wolfSSL's
// wolfSSL_check_domain_name also accepts the subject CN). Case-insensitive ASCII; one trailing
// dot on either side is ignored; a wildcard is accepted only as the complete left-most label
// ("*.example.com" matches "a.example.com", not "a.b.example.com", "example.com" or
// ".example.com"), never as a partial label ("f*.example.com"), and never with fewer than two
// labels after it ("*.com"). Internationalized names are compared as A-labels ("xn--…"); a
// wildcard never matches an A-label. The subject CN is never consulted, with or without a SAN
// extension: public CAs have put every name in the SAN since the CA/B Baseline Requirements
// (2012), and the CN fallback is what lets a CN-only certificate pass for a name its issuer
// never validated as a dNSName.
bool MatchesCertificateName(absl::string_view pattern, absl::string_view host);
bool MatchesAnyCertificateName(const std::vector<std::string>& dns_names, absl::string_view host);

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
  // Client sessions with their own verification and resumption settings (see SessionParams).
  // Thread-safe like the one above. For a server context only `issue_tickets` is read.
  [[nodiscard]] std::unique_ptr<TlsSession> NewSession(const std::string& server_name,
                                                       const SessionParams& params);

  bool is_server() const { return is_server_; }

 private:
  // One in-memory handshake against `server`: catches a key that does not match the certificate.
  static absl::Status SelfTest(TlsContext& server, const std::string& cipher_list);
  static absl::StatusOr<std::unique_ptr<TlsContext>> NewClientImpl(const TlsClientOptions& opts,
                                                                   bool load_trust_anchors);
  TlsContext(WOLFSSL_CTX* ctx, bool is_server, bool verify_peer)
      : ctx_(ctx), is_server_(is_server), verify_peer_(verify_peer) {}
  WOLFSSL_CTX* ctx_;
  bool is_server_;
  bool verify_peer_;  // client only: default of SessionParams::verify for NewSession(name)
  std::string trust_anchor_error_;  // client: why no CA could be loaded (empty = loaded)
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
  // An empty buffer for the next ciphertext to be written into, when its capacity is larger
  // than ciphertext_out()'s: a sender that keeps its drained buffers (engine/send_buffer_pool.h)
  // saves an allocation per flight. Ignored while ciphertext_out() holds bytes.
  void ProvideOutputBuffer(std::string&& buf);

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
  // Whether the handshake resumed a session given in SessionParams::resume.
  bool resumed() const;

  // Why the handshake failed (kHandshakeFailed … kValidationFailure; kNone while it has not
  // failed). In log-only mode (SessionParams::log_only) the handshake goes on and failure()
  // reports what verification found. Expired/not-yet-valid certificate -> kCertificateExpired;
  // name mismatch (ours or wolfSSL's) -> kCertificateHostMismatch; unknown issuer, bad
  // signature, broken chain, no trust anchors -> kValidationFailure; anything else ->
  // kHandshakeFailed.
  TlsFailure failure() const { return failure_; }
  // The certificate was verified (PKIX + name, DANE, or resumed from a ticket of the same
  // authentication).
  bool verified() const;
  // DANE mode: what the verify callback found (matched record or reason); a resumed session
  // reports the ticket's record. Empty (matched false, reason "") before the check ran.
  const DaneMatch& dane_match() const { return dane_match_; }

  // The session for resuming a later connection to the same server, or nullptr when there is
  // none yet. Client only, after the handshake. TLS 1.2 tickets come inside the handshake; a
  // TLS 1.3 NewSessionTicket comes after it, so call this after ReadPlaintext() decrypted the
  // server's first reply (the 250 to EHLO); nullptr until the ticket was processed. Each call
  // returns a fresh copy (of the newest ticket). A resumed TLS 1.3 connection on which the
  // server sent no new ticket (Postfix/OpenSSL do not re-issue) returns nullptr: keep the ticket
  // it resumed with, which stays valid; what wolfSSL holds then is unusable (see TicketCb).
  [[nodiscard]] std::shared_ptr<TlsSessionTicket> SaveSession();

 private:
  friend class TlsContext;
  TlsSession(WOLFSSL* ssl, bool is_server) : ssl_(ssl), is_server_(is_server) {}
  static int RecvCb(WOLFSSL* ssl, char* buf, int sz, void* ctx);
  static int SendCb(WOLFSSL* ssl, char* buf, int sz, void* ctx);
  static int VerifyCb(int preverify, WOLFSSL_X509_STORE_CTX* store);
  // Client: a NewSessionTicket arrived on this connection (wolfSSL_set_SessionTicket_cb).
  static int TicketCb(WOLFSSL* ssl, const unsigned char* ticket, int len, void* ctx);
  // VerifyCb in DANE mode: the whole chain is judged once, at the server certificate.
  int DaneVerify(WOLFSSL_X509_STORE_CTX* store);
  // The authentication this session requires of a ticket / gives the tickets it saves.
  std::string Authentication() const;
  // Records the first verification problem (kept: the first is the cause).
  void NoteVerifyFailure(TlsFailure f, std::string detail);
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
  // Client verification state.
  std::string server_name_;  // lower case, as given to NewSession
  bool verify_ = false;
  bool log_only_ = false;
  bool resume_from_verified_ = false;  // the ticket we offered came from a verified session
  bool leaf_checked_ = false;          // the verify callback saw the server certificate
  int tickets_received_ = 0;           // NewSessionTickets seen on this connection
  TlsFailure failure_ = TlsFailure::kNone;
  std::string verify_detail_;  // what the verify callback found
  std::shared_ptr<const DaneAuthority> dane_;  // DANE mode when set
  DaneMatch dane_match_;
  std::string resume_dane_record_;  // the offered ticket's TlsSessionTicket::dane_record()
};

// Call once per process before any other tls/ function (wolfSSL_Init); idempotent, thread-safe.
void TlsGlobalInit();

}  // namespace mxb
