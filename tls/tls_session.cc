// TlsContext / TlsSession: wolfSSL driven through custom I/O callbacks on caller-owned memory.
//
// wolfSSL never sees a socket. RecvCb hands it bytes from in_ (what the engine fed) and answers
// WANT_READ when in_ is drained; SendCb appends every record to out_ and never blocks, so a
// wolfSSL_write() never has to be retried with the same buffer (see NOTES.md).
#include "tls/tls_session.h"

// options.h must come first: it carries the configure flags the Debian build was made with.
#include <wolfssl/options.h>
#include <wolfssl/error-ssl.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfio.h>

#include <arpa/inet.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace mxb {
namespace {

// Consumed input is erased once this much of in_ is dead, so a long-lived session's buffer does
// not grow with the connection's lifetime; below it the copy is not worth making.
constexpr size_t kInputCompactThreshold = 16 * 1024;
// Maximum TLS plaintext record (RFC 8446 §5.1).
constexpr int kMaxRecordPlaintext = 16 * 1024;
// Per-record expansion upper bound for the AEAD suites we offer: 5-byte header, 16-byte tag,
// 8-byte explicit nonce (TLS 1.2 GCM), 1-byte inner content type (TLS 1.3).
constexpr size_t kRecordOverhead = 32;

// Cipher order by the wolfSSL build (TlsPrefersAesGcm): Debian's wolfSSL has no AES-NI, where
// ChaCha20-Poly1305 is ~2.7x faster than AES-GCM (NOTES.md); the bundled build
// (MXB_WOLFSSL=bundled) has AES-NI/AVX2 assembly, where AES-128-GCM is ~2.6x faster than
// ChaCha20 (bench/README.md). TLS 1.3 suites, then ECDHE AEAD suites for TLS 1.2.
// Opportunistic STARTTLS (RFC 7435) prefers any encryption to plaintext, so the client's tail
// keeps the CBC and static-RSA suites that old MTAs still offer; strict policies can override.
#define MXB_CLIENT_TAIL                                                                     \
  "DHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:"         \
  "ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384:"           \
  "ECDHE-RSA-AES256-SHA384:ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:"                   \
  "ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA:"                                           \
  "AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-SHA256:AES256-SHA256:AES128-SHA:AES256-SHA"
#define MXB_AEAD_CHACHA_FIRST                                                               \
  "TLS13-CHACHA20-POLY1305-SHA256:TLS13-AES128-GCM-SHA256:TLS13-AES256-GCM-SHA384:"        \
  "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"                             \
  "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                             \
  "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384"
#define MXB_AEAD_AES_FIRST                                                                  \
  "TLS13-AES128-GCM-SHA256:TLS13-CHACHA20-POLY1305-SHA256:TLS13-AES256-GCM-SHA384:"        \
  "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                             \
  "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"                             \
  "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384"
constexpr char kClientCipherListChaCha[] = MXB_AEAD_CHACHA_FIRST ":" MXB_CLIENT_TAIL;
constexpr char kClientCipherListAes[] = MXB_AEAD_AES_FIRST ":" MXB_CLIENT_TAIL;
// The sink serves our own engine and test clients: AEAD only, same order.
constexpr char kServerCipherListChaCha[] = MXB_AEAD_CHACHA_FIRST;
constexpr char kServerCipherListAes[] = MXB_AEAD_AES_FIRST;
#undef MXB_CLIENT_TAIL
#undef MXB_AEAD_CHACHA_FIRST
#undef MXB_AEAD_AES_FIRST

const char* DefaultClientCipherList() {
  return TlsPrefersAesGcm() ? kClientCipherListAes : kClientCipherListChaCha;
}
const char* DefaultServerCipherList() {
  return TlsPrefersAesGcm() ? kServerCipherListAes : kServerCipherListChaCha;
}

// X25519 first (0.27 ms vs 0.63 ms for P-256 per client handshake, NOTES.md); wolfSSL sends
// its single TLS 1.3 key share for the first group, a P-256-only server answers with a
// HelloRetryRequest.
int kGroups[] = {WOLFSSL_ECC_X25519, WOLFSSL_ECC_SECP256R1, WOLFSSL_ECC_SECP384R1};

std::string WolfErrorText(int err) {
  char buf[WOLFSSL_MAX_ERROR_SZ] = {};
  wolfSSL_ERR_error_string_n(static_cast<unsigned long>(err), buf, sizeof(buf));
  return absl::StrCat("wolfSSL error ", err, ": ", buf);
}

bool IsIpLiteral(const std::string& name) {
  unsigned char addr[16];
  return inet_pton(AF_INET, name.c_str(), addr) == 1 ||
         inet_pton(AF_INET6, name.c_str(), addr) == 1;
}

// Applies what client and server contexts share. Returns a message naming the failing step.
absl::Status ConfigureCommon(WOLFSSL_CTX* ctx, const std::string& cipher_list,
                             const char* default_cipher_list, bool tls13_capable) {
  if (wolfSSL_CTX_SetMinVersion(ctx, WOLFSSL_TLSV1_2) != WOLFSSL_SUCCESS) {
    return absl::InternalError("tls: cannot set minimum version TLS 1.2");
  }
  const char* list = cipher_list.empty() ? default_cipher_list : cipher_list.c_str();
  if (wolfSSL_CTX_set_cipher_list(ctx, list) != WOLFSSL_SUCCESS) {
    return absl::InvalidArgumentError(
        absl::StrCat("tls: no usable cipher in cipher list \"", list, "\""));
  }
  // wolfSSL_CTX_set_groups() is TLS 1.3 only (it picks the key share); a TLS 1.2-only context
  // keeps wolfSSL's default curve list.
  if (tls13_capable &&
      wolfSSL_CTX_set_groups(ctx, kGroups, sizeof(kGroups) / sizeof(kGroups[0])) !=
          WOLFSSL_SUCCESS) {
    return absl::InternalError("tls: cannot set key exchange groups X25519:P-256:P-384");
  }
  return absl::OkStatus();
}

// RFC 5280 §4.2.1.6: subjectAltName (OID 2.5.29.17; wolfSSL's NID for it is its internal OID
// sum ALT_NAMES_OID) and the GeneralName CHOICE tag of dNSName, [2].
constexpr int kNidSubjectAltName = 131;
constexpr int kGeneralNameDns = 2;

// The dNSName entries of the certificate's subjectAltName (empty when there is none).
std::vector<std::string> CertificateDnsNames(WOLFSSL_X509* cert) {
  std::vector<std::string> names;
  if (cert == nullptr) return names;
  auto* sans = static_cast<WOLFSSL_GENERAL_NAMES*>(
      wolfSSL_X509_get_ext_d2i(cert, kNidSubjectAltName, nullptr, nullptr));
  if (sans == nullptr) return names;
  const int n = wolfSSL_sk_GENERAL_NAME_num(sans);
  for (int i = 0; i < n; ++i) {
    WOLFSSL_GENERAL_NAME* gn = wolfSSL_sk_GENERAL_NAME_value(sans, i);
    if (gn == nullptr || gn->type != kGeneralNameDns || gn->d.dNSName == nullptr) continue;
    const unsigned char* data = wolfSSL_ASN1_STRING_data(gn->d.dNSName);
    const int len = wolfSSL_ASN1_STRING_length(gn->d.dNSName);
    if (data == nullptr || len <= 0) continue;
    names.emplace_back(reinterpret_cast<const char*>(data), static_cast<size_t>(len));
  }
  wolfSSL_GENERAL_NAMES_free(sans);
  return names;
}

// The verify callback's store->error is an OpenSSL-style X509_V_ERR code; wolfSSL 5.5.4 maps
// ASN_BEFORE_DATE_E / ASN_AFTER_DATE_E to 13 / 14 (ERROR_IN_CERT_NOT_{BEFORE,AFTER}_FIELD)
// rather than 9 / 10. Accept all of them, and the raw wolfCrypt codes.
bool IsDateError(int err) {
  return err == X509_V_ERR_CERT_NOT_YET_VALID || err == X509_V_ERR_CERT_HAS_EXPIRED ||
         err == X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD ||
         err == X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD || err == ASN_AFTER_DATE_E ||
         err == ASN_BEFORE_DATE_E;
}

// Maps a wolfSSL/wolfCrypt error from a failed handshake to the policy failure class.
TlsFailure ClassifyHandshakeError(int err) {
  switch (err) {
    case ASN_AFTER_DATE_E:
    case ASN_BEFORE_DATE_E:
      return TlsFailure::kCertificateExpired;
    case DOMAIN_NAME_MISMATCH:
    case IPADDR_MISMATCH:
      return TlsFailure::kCertificateHostMismatch;
    case ASN_NO_SIGNER_E:
    case ASN_SELF_SIGNED_E:
    case ASN_SIG_OID_E:
    case ASN_SIG_CONFIRM_E:
    case ASN_SIG_HASH_E:
    case ASN_SIG_KEY_E:
    case SIG_VERIFY_E:
    case ASN_CRIT_EXT_E:
    case ASN_PATHLEN_SIZE_E:
    case ASN_PATHLEN_INV_E:
    case ASN_NAME_INVALID_E:
    case VERIFY_CERT_ERROR:
    case OCSP_CERT_REVOKED:
    case CRL_CERT_REVOKED:
      return TlsFailure::kValidationFailure;
    default:
      return TlsFailure::kHandshakeFailed;
  }
}

std::string StripOneTrailingDot(absl::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  return absl::AsciiStrToLower(name);
}

// LDH-ish sanity for the host we match: ASCII, no empty label, no wildcard of its own.
bool IsMatchableHost(absl::string_view host) {
  if (host.empty() || host.front() == '.') return false;
  if (absl::StrContains(host, "..")) return false;
  for (char c : host) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f || c == '*') return false;
  }
  return true;
}

struct CtxDeleter {
  void operator()(WOLFSSL_CTX* ctx) const { wolfSSL_CTX_free(ctx); }
};
using CtxPtr = std::unique_ptr<WOLFSSL_CTX, CtxDeleter>;

}  // namespace

const char* ToString(TlsStatus s) {
  switch (s) {
    case TlsStatus::kOk:
      return "ok";
    case TlsStatus::kWantIo:
      return "want-io";
    case TlsStatus::kClosed:
      return "closed";
    case TlsStatus::kError:
      return "error";
  }
  return "unknown";
}

bool TlsPrefersAesGcm() {
#if defined(WOLFSSL_AESNI) && defined(__x86_64__)
  // wolfSSL picks its AES-NI code at run time (CPUID); without AES-NI + PCLMULQDQ it falls back
  // to table-driven C, where ChaCha20 wins again.
  static const bool prefer = __builtin_cpu_supports("aes") && __builtin_cpu_supports("pclmul");
  return prefer;
#else
  return false;
#endif
}

void TlsGlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { wolfSSL_Init(); });
}

// ---------------------------------------------------------------------------------------------
// TlsContext

absl::StatusOr<std::unique_ptr<TlsContext>> TlsContext::NewClient(const TlsClientOptions& opts) {
  return NewClientImpl(opts, /*load_trust_anchors=*/true);
}

absl::StatusOr<std::unique_ptr<TlsContext>> TlsContext::NewClientImpl(
    const TlsClientOptions& opts, bool load_trust_anchors) {
  TlsGlobalInit();
  WOLFSSL_METHOD* method = opts.tls13_only ? wolfTLSv1_3_client_method() : wolfTLS_client_method();
  CtxPtr ctx(wolfSSL_CTX_new(method));
  if (ctx == nullptr) return absl::ResourceExhaustedError("tls: wolfSSL_CTX_new failed (client)");
  if (absl::Status st =
          ConfigureCommon(ctx.get(), opts.cipher_list, DefaultClientCipherList(), true);
      !st.ok()) {
    return st;
  }
  // Verification is chosen per session (NewSession); the context default verifies nothing. Set
  // before the trust anchors load: wolfSSL parses CA files with the context's verify setting,
  // and with VERIFY it rejects an expired anchor at load time (a pinned self-signed certificate
  // that expired must load and then fail the handshake as certificate-expired). Debian's build
  // (OPENSSL_COMPATIBLE_DEFAULTS) starts with VERIFY_NONE; the bundled build does not.
  wolfSSL_CTX_set_verify(ctx.get(), WOLFSSL_VERIFY_NONE, nullptr);
  // Trust anchors are loaded whatever verify_peer says: any session may be strict
  // (SessionParams::verify), and the CA table must not change once sessions share the context.
  std::string trust_anchor_error;
  if (!load_trust_anchors) {
    trust_anchor_error = "no trust anchors loaded (self-test context)";
  } else if (!opts.ca_file.empty()) {
    // wolfSSL reports a missing or unreadable file as "-4: unknown error number": ask the
    // file system first so the operator reads the real reason.
    if (FILE* f = std::fopen(opts.ca_file.c_str(), "rb"); f == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("tls: cannot read CA file ", opts.ca_file,
                                                     ": ", std::strerror(errno)));
    } else {
      std::fclose(f);
    }
    const int ret = wolfSSL_CTX_load_verify_locations(ctx.get(), opts.ca_file.c_str(), nullptr);
    if (ret != WOLFSSL_SUCCESS) {
      return absl::InvalidArgumentError(
          absl::StrCat("tls: cannot load CA certificates from ", opts.ca_file, ": ",
                       WolfErrorText(ret), " (not a PEM file of certificates?)"));
    }
  } else {
    std::string source = "system CA store";
    int ret = wolfSSL_CTX_load_system_CA_certs(ctx.get());
    if (ret != WOLFSSL_SUCCESS) {
      source = "/etc/ssl/certs/ca-certificates.crt";
      ret = wolfSSL_CTX_load_verify_locations(ctx.get(), source.c_str(), nullptr);
    }
    if (ret != WOLFSSL_SUCCESS) {
      trust_anchor_error =
          absl::StrCat("cannot load CA certificates from ", source, ": ", WolfErrorText(ret));
      // Only fatal when every session is meant to verify.
      if (opts.verify_peer) return absl::InvalidArgumentError("tls: " + trust_anchor_error);
    }
  }
  wolfSSL_CTX_SetIORecv(ctx.get(), &TlsSession::RecvCb);
  wolfSSL_CTX_SetIOSend(ctx.get(), &TlsSession::SendCb);
  std::unique_ptr<TlsContext> client(new TlsContext(ctx.release(), false, opts.verify_peer));
  client->trust_anchor_error_ = std::move(trust_anchor_error);
  return client;
}

absl::StatusOr<std::unique_ptr<TlsContext>> TlsContext::NewServer(const TlsServerOptions& opts) {
  TlsGlobalInit();
  CtxPtr ctx(wolfSSL_CTX_new(opts.tls12_only ? wolfTLSv1_2_server_method()
                                              : wolfTLS_server_method()));
  if (ctx == nullptr) return absl::ResourceExhaustedError("tls: wolfSSL_CTX_new failed (server)");
  if (absl::Status st = ConfigureCommon(ctx.get(), opts.cipher_list, DefaultServerCipherList(),
                                        !opts.tls12_only); !st.ok()) {
    return st;
  }
  int ret = wolfSSL_CTX_use_certificate_chain_buffer_format(
      ctx.get(), reinterpret_cast<const unsigned char*>(opts.cert_pem.data()),
      static_cast<long>(opts.cert_pem.size()), WOLFSSL_FILETYPE_PEM);
  if (ret != WOLFSSL_SUCCESS) {
    return absl::InvalidArgumentError(
        absl::StrCat("tls: cannot load server certificate chain (PEM): ", WolfErrorText(ret)));
  }
  ret = wolfSSL_CTX_use_PrivateKey_buffer(
      ctx.get(), reinterpret_cast<const unsigned char*>(opts.key_pem.data()),
      static_cast<long>(opts.key_pem.size()), WOLFSSL_FILETYPE_PEM);
  if (ret != WOLFSSL_SUCCESS) {
    return absl::InvalidArgumentError(
        absl::StrCat("tls: cannot load server private key (PEM): ", WolfErrorText(ret)));
  }
  if (wolfSSL_CTX_check_private_key(ctx.get()) != WOLFSSL_SUCCESS) {
    return absl::InvalidArgumentError("tls: server private key does not match the certificate");
  }
  wolfSSL_CTX_set_verify(ctx.get(), WOLFSSL_VERIFY_NONE, nullptr);
  // Resumption: TLS 1.3 tickets (wolfSSL's default ticket key callback, HAVE_SESSION_TICKET,
  // keys per context) and TLS 1.2 session ids in wolfSSL's session cache, which is one static
  // table per process: a TLS 1.2 session made on one server context can resume on another
  // context of the same process (5.5.4 does not check the session id context there).
  wolfSSL_CTX_SetIORecv(ctx.get(), &TlsSession::RecvCb);
  wolfSSL_CTX_SetIOSend(ctx.get(), &TlsSession::SendCb);
  std::unique_ptr<TlsContext> server(new TlsContext(ctx.release(), true, false));
  // wolfSSL_CTX_check_private_key() in 5.5.4 accepts an ECC key that does not belong to the
  // certificate; one in-memory handshake (~1 ms, once at start-up) proves the pair signs.
  if (absl::Status st = SelfTest(*server, opts.cipher_list); !st.ok()) return st;
  return server;
}

absl::Status TlsContext::SelfTest(TlsContext& server, const std::string& cipher_list) {
  TlsClientOptions client_opts;
  client_opts.cipher_list = cipher_list.empty() ? DefaultServerCipherList() : cipher_list;
  absl::StatusOr<std::unique_ptr<TlsContext>> client_ctx =
      NewClientImpl(client_opts, /*load_trust_anchors=*/false);
  if (!client_ctx.ok()) return client_ctx.status();
  std::unique_ptr<TlsSession> client = (*client_ctx)->NewSession();
  std::unique_ptr<TlsSession> peer = server.NewSession();
  if (client == nullptr || peer == nullptr) {
    return absl::ResourceExhaustedError("tls: wolfSSL_new failed (server self-test)");
  }
  TlsStatus c = client->Handshake();
  TlsStatus s = TlsStatus::kWantIo;
  // A full handshake takes at most 4 flights; a few more rounds cover HelloRetryRequest.
  for (int round = 0; round < 8 && c != TlsStatus::kError && s != TlsStatus::kError; ++round) {
    if (c == TlsStatus::kOk && s == TlsStatus::kOk) return absl::OkStatus();
    peer->FeedCiphertext(client->TakeCiphertext());
    s = peer->Handshake();
    client->FeedCiphertext(peer->TakeCiphertext());
    c = client->Handshake();
  }
  if (c == TlsStatus::kOk && s == TlsStatus::kOk) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "tls: server certificate/key self-test handshake failed (does the key match the "
      "certificate?): client: ",
      client->last_error().empty() ? ToString(c) : client->last_error(),
      "; server: ", peer->last_error().empty() ? ToString(s) : peer->last_error()));
}

TlsContext::~TlsContext() { wolfSSL_CTX_free(ctx_); }

std::unique_ptr<TlsSession> TlsContext::NewSession(const std::string& server_name) {
  SessionParams params;
  params.verify = verify_peer_;
  return NewSession(server_name, params);
}

std::unique_ptr<TlsSession> TlsContext::NewSession(const std::string& server_name,
                                                   const SessionParams& params) {
  WOLFSSL* ssl = wolfSSL_new(ctx_);
  if (ssl == nullptr) return nullptr;
  std::unique_ptr<TlsSession> session(new TlsSession(ssl, is_server_));
  wolfSSL_SetIOReadCtx(ssl, session.get());
  wolfSSL_SetIOWriteCtx(ssl, session.get());
  if (is_server_) {
    if (!params.issue_tickets) wolfSSL_no_ticket_TLSv13(ssl);
    return session;
  }

  session->server_name_ = absl::AsciiStrToLower(server_name);
  session->dane_ = params.dane;
  session->verify_ = params.verify || params.dane != nullptr;
  session->log_only_ = session->verify_ && params.log_only;
  if (!server_name.empty() && !IsIpLiteral(server_name) &&
      wolfSSL_UseSNI(ssl, WOLFSSL_SNI_HOST_NAME, server_name.data(),
                     static_cast<unsigned short>(server_name.size())) != WOLFSSL_SUCCESS) {
    // RFC 6066 §3: SNI carries DNS names only, never address literals.
    session->last_error_ = absl::StrCat("tls: cannot set SNI \"", server_name, "\"");
    session->failed_ = true;
    session->failure_ = TlsFailure::kHandshakeFailed;
    return session;
  }
  // No RFC 5077 ticket extension: TLS 1.2 resumes by session id. wolfSSL 5.5.4's client fails
  // the handshake (OUT_OF_ORDER_E) when a server rejects an offered TLS 1.2 ticket and does a
  // full handshake (fixed upstream in wolfSSL PR #8108, 5.7.4), which would turn every ticket
  // key rotation on a receiving MX into a failed connection. TLS 1.3 tickets are unaffected.
  if (session->verify_) {
    // DANE needs no trust anchors: the TLSA records are the anchors (RFC 7672 §3).
    if (session->dane_ == nullptr && !trust_anchor_error_.empty()) {
      session->failure_ = TlsFailure::kValidationFailure;
      session->last_error_ = absl::StrCat(ToString(session->failure_), ": ", trust_anchor_error_);
      if (!session->log_only_) {
        session->failed_ = true;
        return session;
      }
    }
    // The verify callback finds the session through the app data of the WOLFSSL object.
    wolfSSL_set_app_data(ssl, session.get());
    wolfSSL_set_verify(ssl, WOLFSSL_VERIFY_PEER, &TlsSession::VerifyCb);
  }
  // SaveSession() needs to know whether this connection got a ticket of its own.
  wolfSSL_set_SessionTicket_cb(ssl, &TlsSession::TicketCb, session.get());
  if (const TlsSessionTicket* t = params.resume; t != nullptr) {
    // A resumed handshake shows no certificate: a verifying session may only resume what a
    // session verified the same way (PKIX, or DANE under the same TLSA records) for the same
    // name produced — never an opportunistic ticket where authentication is required.
    const bool same_name = t->server_name() == session->server_name_;
    const bool acceptable =
        same_name && (!session->verify_ ||
                      (t->verified() && t->authentication() == session->Authentication()));
    if (acceptable && wolfSSL_set_session(ssl, t->session_) == WOLFSSL_SUCCESS) {
      session->resume_from_verified_ = t->verified();
      session->resume_dane_record_ = t->dane_record();
    }
  }
  return session;
}

// ---------------------------------------------------------------------------------------------
// TlsSessionTicket

TlsSessionTicket::~TlsSessionTicket() { wolfSSL_SESSION_free(session_); }

bool MatchesCertificateName(absl::string_view pattern_in, absl::string_view host_in) {
  const std::string host = StripOneTrailingDot(host_in);
  const std::string pattern = StripOneTrailingDot(pattern_in);
  if (!IsMatchableHost(host) || pattern.empty()) return false;
  for (char c : pattern) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) return false;  // U-labels and junk never match (A-labels only)
  }
  if (pattern.find('*') == std::string::npos) return pattern == host;
  // RFC 6125 §6.4.3: only a complete left-most label "*" (no "f*", "*x", "x*y"), nothing else
  // starred, and at least two labels after it so "*.com" cannot cover a public suffix.
  if (pattern.size() < 3 || pattern[0] != '*' || pattern[1] != '.') return false;
  const absl::string_view rest = absl::string_view(pattern).substr(2);
  if (rest.find('*') != absl::string_view::npos || !IsMatchableHost(rest)) return false;
  if (rest.find('.') == absl::string_view::npos) return false;
  const size_t dot = host.find('.');
  if (dot == std::string::npos || dot == 0) return false;  // "*" covers exactly one label
  return absl::string_view(host).substr(dot + 1) == rest;
}

bool MatchesAnyCertificateName(const std::vector<std::string>& dns_names, absl::string_view host) {
  for (const std::string& name : dns_names) {
    if (MatchesCertificateName(name, host)) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// TlsSession

TlsSession::~TlsSession() { wolfSSL_free(ssl_); }

int TlsSession::RecvCb(WOLFSSL* /*ssl*/, char* buf, int sz, void* ctx) {
  auto* self = static_cast<TlsSession*>(ctx);
  const size_t avail = self->in_.size() - self->in_pos_;
  if (avail == 0) return WOLFSSL_CBIO_ERR_WANT_READ;
  const size_t n = std::min(avail, static_cast<size_t>(sz));
  std::memcpy(buf, self->in_.data() + self->in_pos_, n);
  self->in_pos_ += n;
  if (self->in_pos_ == self->in_.size()) {
    self->in_.clear();
    self->in_pos_ = 0;
  }
  return static_cast<int>(n);
}

int TlsSession::SendCb(WOLFSSL* /*ssl*/, char* buf, int sz, void* ctx) {
  static_cast<TlsSession*>(ctx)->out_.append(buf, static_cast<size_t>(sz));
  return sz;
}

int TlsSession::TicketCb(WOLFSSL* /*ssl*/, const unsigned char* /*ticket*/, int /*len*/,
                         void* ctx) {
  ++static_cast<TlsSession*>(ctx)->tickets_received_;
  return 0;
}

void TlsSession::NoteVerifyFailure(TlsFailure f, std::string detail) {
  if (failure_ != TlsFailure::kNone) return;  // the first problem is the cause
  failure_ = f;
  verify_detail_ = absl::StrCat(ToString(f), ": ", detail);
  if (log_only_) last_error_ = absl::StrCat(verify_detail_, " (log-only, not enforced)");
}

// Runs for every certificate of the peer's chain (WOLFSSL_ALWAYS_VERIFY_CB,
// WOLFSSL_VERIFY_CB_ALL_CERTS), `preverify` = wolfSSL's PKIX verdict for it. Depth 0 is the
// server's own certificate: there the RFC 6125 name check runs on the SAN dNSNames.
int TlsSession::VerifyCb(int preverify, WOLFSSL_X509_STORE_CTX* store) {
  if (store == nullptr) return 0;
  auto* ssl = static_cast<WOLFSSL*>(
      wolfSSL_X509_STORE_CTX_get_ex_data(store, wolfSSL_get_ex_data_X509_STORE_CTX_idx()));
  auto* self = ssl != nullptr ? static_cast<TlsSession*>(wolfSSL_get_app_data(ssl)) : nullptr;
  if (self == nullptr) return 0;  // cannot attribute the certificate: fail closed
  if (self->dane_ != nullptr) return self->DaneVerify(store);
  const int accept = self->log_only_ ? 1 : 0;
  if (!preverify) {
    const int err = store->error;
    self->NoteVerifyFailure(
        IsDateError(err) ? TlsFailure::kCertificateExpired : TlsFailure::kValidationFailure,
        absl::StrCat("certificate at depth ", store->error_depth, ": X509_V_ERR ", err, " (",
                     wolfSSL_X509_verify_cert_error_string(err), ")"));
    return accept;
  }
  // wolfSSL 5.5.4 does not date-check a certificate that is itself a trust anchor (a
  // self-signed certificate pinned with --ca-file passes after it expired): check the validity
  // window of every certificate it accepted ourselves (RFC 5280 §6.1.3 (a)(2)).
  if (store->current_cert != nullptr) {
    const WOLFSSL_ASN1_TIME* not_after = wolfSSL_X509_get_notAfter(store->current_cert);
    const WOLFSSL_ASN1_TIME* not_before = wolfSSL_X509_get_notBefore(store->current_cert);
    if ((not_after != nullptr && wolfSSL_X509_cmp_current_time(not_after) < 0) ||
        (not_before != nullptr && wolfSSL_X509_cmp_current_time(not_before) > 0)) {
      self->NoteVerifyFailure(TlsFailure::kCertificateExpired,
                              absl::StrCat("certificate at depth ", store->error_depth,
                                           " is outside its validity period"));
      return accept;
    }
  }
  if (store->error_depth != 0) return 1;
  self->leaf_checked_ = true;
  if (self->server_name_.empty()) return 1;  // chain check only
  const std::vector<std::string> names = CertificateDnsNames(store->current_cert);
  if (MatchesAnyCertificateName(names, self->server_name_)) return 1;
  self->NoteVerifyFailure(
      TlsFailure::kCertificateHostMismatch,
      names.empty()
          ? absl::StrCat("certificate has no subjectAltName dNSName (the CN is not used), "
                         "expected \"", self->server_name_, "\"")
          : absl::StrCat("certificate names [", absl::StrJoin(names, ", "),
                         "] do not match \"", self->server_name_, "\" (RFC 6125)"));
  return accept;
}

// wolfSSL's PKIX verdict (`preverify`) does not matter here: there are no trust anchors, and
// DANE-EE ignores dates and names (RFC 7672 §3.1.1). store->certs is the chain as sent.
int TlsSession::DaneVerify(WOLFSSL_X509_STORE_CTX* store) {
  if (store->error_depth != 0) return 1;
  leaf_checked_ = true;
  std::vector<absl::string_view> chain;
  for (int i = 0; i < store->totalCerts && store->certs != nullptr; ++i) {
    chain.emplace_back(reinterpret_cast<const char*>(store->certs[i].buffer),
                       store->certs[i].length);
  }
  dane_match_ = MatchDane(*dane_, chain);
  if (dane_match_.matched) return 1;
  NoteVerifyFailure(TlsFailure::kValidationFailure,
                    absl::StrCat(dane_match_.reason, ": ", dane_match_.detail));
  return log_only_ ? 1 : 0;
}

std::string TlsSession::Authentication() const {
  if (!verify_) return std::string();
  return dane_ != nullptr ? absl::StrCat("dane:", dane_->binding) : std::string("pkix");
}

void TlsSession::FeedCiphertext(absl::string_view bytes) {
  if (in_pos_ >= kInputCompactThreshold) {
    in_.erase(0, in_pos_);
    in_pos_ = 0;
  }
  in_.append(bytes.data(), bytes.size());
}

// A drained buffer is released, not kept for the next read: an idle session (tens of thousands
// per worker, issue 17) would otherwise pin its largest burst — at the least the server's
// handshake flight, ~750 bytes each. A session that is busy pays one allocation per fed batch.
void TlsSession::TrimInput() {
  if (in_pos_ == in_.size()) {
    std::string().swap(in_);
    in_pos_ = 0;
  }
}

void TlsSession::ConsumeCiphertext(size_t n) {
  if (n >= out_.size()) {
    std::string().swap(out_);  // released like the input (TrimInput)
    return;
  }
  out_.erase(0, n);
}

void TlsSession::ProvideOutputBuffer(std::string&& buf) {
  if (!out_.empty() || buf.capacity() <= out_.capacity()) return;
  buf.clear();
  out_.swap(buf);
}

std::string TlsSession::TakeCiphertext() {
  std::string taken = std::move(out_);
  out_.clear();  // moved-from is valid but unspecified
  return taken;
}

TlsStatus TlsSession::Fail(const char* what, int ret) {
  const int err = wolfSSL_get_error(ssl_, ret);
  last_error_ = absl::StrCat(WolfErrorText(err), " in ", what);
  if (!handshake_done_) {
    if (failure_ == TlsFailure::kNone) failure_ = ClassifyHandshakeError(err);
    last_error_ = verify_detail_.empty()
                      ? absl::StrCat(ToString(failure_), ": ", last_error_)
                      : absl::StrCat(verify_detail_, "; ", last_error_);
  }
  failed_ = true;
  return TlsStatus::kError;
}

TlsStatus TlsSession::Handshake() {
  if (failed_) return TlsStatus::kError;
  if (handshake_done_) return TlsStatus::kOk;
  const int ret = is_server_ ? wolfSSL_accept(ssl_) : wolfSSL_connect(ssl_);
  if (ret == WOLFSSL_SUCCESS) {
    if (verify_ && !resumed() && !leaf_checked_) {
      // The callback did not see the server certificate at depth 0: never report a verified
      // session without the name check.
      NoteVerifyFailure(TlsFailure::kValidationFailure, "server certificate was not checked");
      if (!log_only_) {
        last_error_ = verify_detail_;
        failed_ = true;
        Shutdown();
        return TlsStatus::kError;
      }
    }
    if (dane_ != nullptr && resumed()) {
      // No certificate in a resumed handshake: the ticket's authentication stands (it was
      // accepted in NewSession only under the same TLSA records).
      dane_match_ = DaneMatch();
      dane_match_.matched = true;
      dane_match_.record = resume_dane_record_;
    }
    handshake_done_ = true;
    TrimInput();
    return TlsStatus::kOk;
  }
  const int err = wolfSSL_get_error(ssl_, ret);
  if (err == WOLFSSL_ERROR_WANT_READ || err == WOLFSSL_ERROR_WANT_WRITE) {
    TrimInput();
    return TlsStatus::kWantIo;
  }
  return Fail(is_server_ ? "handshake (accept)" : "handshake (connect)", ret);
}

TlsStatus TlsSession::Write(absl::string_view plaintext) {
  if (failed_) return TlsStatus::kError;
  if (!handshake_done_) {
    last_error_ = "tls: Write() before the handshake completed";
    return TlsStatus::kError;
  }
  if (plaintext.empty()) return TlsStatus::kOk;
  const size_t records = plaintext.size() / kMaxRecordPlaintext + 1;
  out_.reserve(out_.size() + plaintext.size() + records * kRecordOverhead);
  while (!plaintext.empty()) {
    const int chunk = static_cast<int>(std::min<size_t>(plaintext.size(), INT_MAX / 2));
    const int ret = wolfSSL_write(ssl_, plaintext.data(), chunk);
    if (ret <= 0) return Fail("write", ret);
    plaintext.remove_prefix(static_cast<size_t>(ret));
  }
  return TlsStatus::kOk;
}

TlsStatus TlsSession::ReadPlaintext(std::string* out) {
  if (failed_) return TlsStatus::kError;
  if (!handshake_done_) {
    // Handshake records and application data may arrive in the same read.
    TlsStatus st = Handshake();
    if (st != TlsStatus::kOk) return st;
  }
  char buf[kMaxRecordPlaintext];
  for (;;) {
    const int n = wolfSSL_read(ssl_, buf, sizeof(buf));
    if (n > 0) {
      out->append(buf, static_cast<size_t>(n));
      continue;
    }
    const int err = wolfSSL_get_error(ssl_, n);
    if (err == WOLFSSL_ERROR_WANT_READ || err == WOLFSSL_ERROR_WANT_WRITE) {
      TrimInput();
      return TlsStatus::kWantIo;
    }
    if (err == WOLFSSL_ERROR_ZERO_RETURN) return TlsStatus::kClosed;
    return Fail("read", n);
  }
}

void TlsSession::Shutdown() {
  if (failed_) return;
  // Queues close_notify (RFC 8446 §6.1); we do not wait for the peer's.
  (void)wolfSSL_shutdown(ssl_);
}

std::string TlsSession::version() const {
  if (!handshake_done_) return std::string();
  const char* v = wolfSSL_get_version(ssl_);
  return v != nullptr ? std::string(v) : std::string();
}

std::string TlsSession::cipher() const {
  if (!handshake_done_) return std::string();
  const int suite = wolfSSL_get_current_cipher_suite(ssl_);
  const char* name = wolfSSL_get_cipher_name_iana_from_suite(
      static_cast<unsigned char>((suite >> 8) & 0xff), static_cast<unsigned char>(suite & 0xff));
  if (name == nullptr || *name == '\0' || std::strcmp(name, "None") == 0) {
    name = wolfSSL_get_cipher_name(ssl_);
  }
  return name != nullptr ? std::string(name) : std::string();
}

std::string TlsSession::group() const {
  if (!handshake_done_) return std::string();
  const char* name = wolfSSL_get_curve_name(ssl_);
  return name != nullptr ? std::string(name) : std::string();
}

bool TlsSession::resumed() const { return wolfSSL_session_reused(ssl_) == 1; }

bool TlsSession::verified() const {
  if (!verify_ || !handshake_done_ || failure_ != TlsFailure::kNone) return false;
  return resumed() ? resume_from_verified_ : leaf_checked_;
}

std::shared_ptr<TlsSessionTicket> TlsSession::SaveSession() {
  if (is_server_ || !handshake_done_ || failed_) return nullptr;
  WOLFSSL_SESSION* current = wolfSSL_get_session(ssl_);
  if (current == nullptr) return nullptr;
  // TLS 1.3 resumes only by ticket (RFC 8446 §2.2), and the ticket comes after the handshake.
  const bool tls13 = wolfSSL_version(ssl_) == TLS1_3_VERSION;
  if (tls13 && wolfSSL_SESSION_has_ticket(current) != 1) return nullptr;
  // RFC 8446 §4.6.1: a ticket's PSK derives from the resumption_master_secret of the connection
  // that received it. When the handshake completes, wolfSSL overwrites the session's secret
  // with this connection's resumption secret but keeps the ticket it resumed with until a new
  // one arrives; servers need not send one after a resumption (OpenSSL, hence Postfix 3.7, do
  // not), and that pair yields a binder no server can verify ("binder does not verify").
  if (tls13 && tickets_received_ == 0) return nullptr;
  // Our own copy: the WOLFSSL object keeps updating its session (newer tickets) and dies with
  // the connection; the ticket must outlive both.
  WOLFSSL_SESSION* copy = wolfSSL_SESSION_dup(current);
  if (copy == nullptr) return nullptr;
  auto ticket = std::shared_ptr<TlsSessionTicket>(
      new TlsSessionTicket(copy, server_name_, verified(), version()));
  if (ticket->verified_) {
    ticket->authentication_ = Authentication();
    if (dane_ != nullptr) ticket->dane_record_ = dane_match_.record;
  }
  return ticket;
}

}  // namespace mxb
