#include "dkim/signer.h"

#include <sys/stat.h>

#include <openssl/evp.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "dkim/key_cache.h"

// libopendkim's header uses C99 _Bool in its prototypes (same ABI as bool).
#define _Bool bool
#include <opendkim/dkim.h>
#undef _Bool

namespace mxb::dkim {
namespace {

constexpr size_t kMaxKeyFile = 64 << 10;
// RFC 8301 §3.2: signers MUST use RSA keys of at least 1024 bits (and SHOULD use 2048);
// verifiers MUST handle up to 4096 — a larger key may not verify anywhere.
constexpr int kMinRsaBits = 1024;
constexpr int kMaxRsaBits = 4096;

// What Load() signs once per entry, so that a key libopendkim cannot use stops start-up instead
// of every message.
constexpr char kProbeMessage[] =
    "From: probe@example.invalid\r\nSubject: key check\r\n\r\nkey check\r\n";

bool ValidHeaderName(absl::string_view name) {
  // RFC 5322 §3.6.8 allows any printable ASCII but ':'; libopendkim turns the list into a
  // regular expression, so only the letters, digits and '-' real field names use pass.
  if (name.empty()) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
  }
  return true;
}

bool Contains(const std::vector<std::string>& list, absl::string_view name) {
  for (const std::string& s : list) {
    if (absl::EqualsIgnoreCase(s, name)) return true;
  }
  return false;
}

}  // namespace

const char* ToString(Algorithm a) {
  return a == Algorithm::kRsaSha256 ? "rsa-sha256" : "ed25519-sha256";
}

const char* ToString(Canonicalization c) {
  return c == Canonicalization::kSimple ? "simple" : "relaxed";
}

bool ParseAlgorithm(absl::string_view text, Algorithm* out) {
  if (text == "rsa-sha256") *out = Algorithm::kRsaSha256;
  else if (text == "ed25519-sha256") *out = Algorithm::kEd25519Sha256;
  else return false;
  return true;
}

bool ParseCanonicalization(absl::string_view text, Canonicalization* header,
                           Canonicalization* body) {
  auto one = [](absl::string_view w, Canonicalization* c) {
    if (w == "simple") *c = Canonicalization::kSimple;
    else if (w == "relaxed") *c = Canonicalization::kRelaxed;
    else return false;
    return true;
  };
  const size_t slash = text.find('/');
  if (slash == absl::string_view::npos) {
    *body = Canonicalization::kSimple;  // RFC 6376 §3.5: "c=relaxed" means relaxed/simple
    return one(text, header);
  }
  return one(text.substr(0, slash), header) && one(text.substr(slash + 1), body);
}

const std::vector<std::string>& DefaultSignedHeaders() {
  static const std::vector<std::string>* list = new std::vector<std::string>{
      // RFC 6376 §5.4.1
      "From", "Reply-To", "Subject", "Date", "To", "Cc", "Resent-Date", "Resent-From",
      "Resent-To", "Resent-Cc", "In-Reply-To", "References", "List-Id", "List-Help",
      "List-Unsubscribe", "List-Subscribe", "List-Post", "List-Owner", "List-Archive",
      // the body's meaning and the message's identity
      "Message-ID", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
      "List-Unsubscribe-Post"};
  return *list;
}

// One entry: its configuration, the key text (PEM, NUL-terminated: libopendkim takes it as a C
// string and parses it per signature) and its own library handle, because the signed-header and
// over-sign lists are library options.
struct Signer::Entry {
  SigningKey key;
  std::string pem;
  DKIM_LIB* lib = nullptr;
  std::vector<std::string> names;  // storage behind the option arrays
  std::vector<const char*> sign_list;
  std::vector<const char*> oversign_list;

  ~Entry() {
    if (lib != nullptr) dkim_close(lib);
  }

  bool Applies(absl::string_view sender_domain, absl::string_view job) const {
    if (!key.job.empty() && key.job == job) return true;
    if (key.sender_domain == "*") return true;
    const std::string& want = key.sender_domain.empty() && key.job.empty() ? key.domain
                                                                           : key.sender_domain;
    return !want.empty() && absl::EqualsIgnoreCase(want, sender_domain);
  }

  // Appends "DKIM-Signature: ...\r\n" for `message`.
  absl::Status SignInto(absl::string_view message, absl::string_view id,
                        std::string* out) const {
    const std::string ident(id.empty() ? absl::string_view("message") : id);
    DKIM_STAT st = DKIM_STAT_OK;
    DKIM* d = dkim_sign(
        lib, reinterpret_cast<const u_char*>(ident.c_str()), nullptr,
        reinterpret_cast<dkim_sigkey_t>(const_cast<char*>(pem.c_str())),
        reinterpret_cast<const u_char*>(key.selector.c_str()),
        reinterpret_cast<const u_char*>(key.domain.c_str()),
        key.header_canon == Canonicalization::kRelaxed ? DKIM_CANON_RELAXED : DKIM_CANON_SIMPLE,
        key.body_canon == Canonicalization::kRelaxed ? DKIM_CANON_RELAXED : DKIM_CANON_SIMPLE,
        key.algorithm == Algorithm::kRsaSha256 ? DKIM_SIGN_RSASHA256 : DKIM_SIGN_ED25519SHA256,
        -1, &st);
    if (d == nullptr) {
      return absl::InternalError(absl::StrCat(key.name, " (d=", key.domain, " s=", key.selector,
                                              "): dkim_sign: ", dkim_getresultstr(st)));
    }
    // libopendkim 2.11 folds the field twice: once with b= empty, which is what it hashes, and
    // once with the signature. A short b= (Ed25519's 88 characters) can move a line break, and
    // simple header canonicalization (RFC 6376 §3.4.1) hashes line breaks: the signature would
    // not verify (python3-dkim says so; tests/dkim). Unfolded, both forms agree: margin 0.
    // RSA keys are capped at 4096 bits, so the one line stays below 998 octets (RFC 5321
    // §4.5.3.1.6). Relaxed canonicalization (the default) unfolds and keeps the folding.
    if (key.header_canon == Canonicalization::kSimple) (void)dkim_set_margin(d, 0);
    auto fail = [&](const char* step) {
      const char* why = dkim_geterror(d);
      absl::Status s = absl::InvalidArgumentError(
          absl::StrCat(key.name, " (d=", key.domain, " s=", key.selector, "): ", step, ": ",
                       why != nullptr && *why != '\0' ? why : dkim_getresultstr(st)));
      dkim_free(d);
      return s;
    };
    // dkim_chunk splits the header fields from the body itself (CRLF input, no LF fix-ups
    // needed). Its buffer is not const in the prototype: hand it a copy, not our message.
    std::string scratch(message);
    st = dkim_chunk(d, reinterpret_cast<u_char*>(scratch.data()), scratch.size());
    if (st != DKIM_STAT_OK) return fail("dkim_chunk");
    st = dkim_chunk(d, nullptr, 0);  // end of message
    if (st != DKIM_STAT_OK) return fail("dkim_chunk");
    st = dkim_eom(d, nullptr);
    if (st != DKIM_STAT_OK) return fail("dkim_eom");
    u_char* value = nullptr;
    size_t len = 0;
    constexpr absl::string_view kField = "DKIM-Signature: ";
    st = dkim_getsighdr_d(d, kField.size(), &value, &len);
    if (st != DKIM_STAT_OK || value == nullptr) return fail("dkim_getsighdr");
    out->append(kField.data(), kField.size());
    // Folded with CRLF + TAB; a bare LF (never seen from this version) would be a lone line
    // end on the wire, so it is made CRLF here.
    for (size_t i = 0; i < len; ++i) {
      const char c = static_cast<char>(value[i]);
      if (c == '\n' && (i == 0 || value[i - 1] != '\r')) out->push_back('\r');
      out->push_back(c);
    }
    out->append("\r\n");
    dkim_free(d);  // frees `value` too
    return absl::OkStatus();
  }
};

Signer::~Signer() = default;

absl::StatusOr<std::unique_ptr<Signer>> Signer::Load(std::vector<SigningKey> keys,
                                                     const std::string& config_name) {
  std::unique_ptr<Signer> signer(new Signer);
  for (size_t i = 0; i < keys.size(); ++i) {
    auto e = std::make_unique<Entry>();
    e->key = std::move(keys[i]);
    SigningKey& k = e->key;
    if (k.name.empty()) k.name = absl::StrCat("dkim[", i, "]");
    const std::string prefix = absl::StrCat(config_name, ": ", k.name, ".");
    auto error = [&](const char* field, const std::string& why) {
      return absl::InvalidArgumentError(absl::StrCat(prefix, field, ": ", why));
    };
    if (k.domain.empty()) return error("domain", "required");
    if (k.selector.empty()) return error("selector", "required");
    if (k.key_file.empty()) return error("key_file", "required");
    k.domain = absl::AsciiStrToLower(k.domain);
    k.sender_domain = absl::AsciiStrToLower(k.sender_domain);
    if (k.headers.empty()) k.headers = DefaultSignedHeaders();
    for (const std::string& h : k.headers) {
      if (!ValidHeaderName(h)) return error("headers", absl::StrCat("not a field name: '", h, "'"));
    }
    // RFC 6376 §5.4: "The From header field MUST be signed".
    if (!Contains(k.headers, "From")) return error("headers", "must contain From (RFC 6376 §5.4)");
    for (const std::string& h : k.oversign) {
      if (!ValidHeaderName(h)) {
        return error("oversign", absl::StrCat("not a field name: '", h, "'"));
      }
      if (!Contains(k.headers, h)) {
        return error("oversign", absl::StrCat("'", h, "' is not in headers"));
      }
    }

    // The key file: a regular file, not writable by others nor readable by them (opendkim's
    // RequireSafeKeys), at most 64 KiB, PEM.
    const std::string kf = absl::StrCat(k.key_file, ": ");
    struct stat st {};
    if (stat(k.key_file.c_str(), &st) != 0) return error("key_file", kf + std::strerror(errno));
    if (!S_ISREG(st.st_mode)) return error("key_file", kf + "not a regular file");
    if ((st.st_mode & (S_IROTH | S_IWOTH | S_IWGRP)) != 0) {
      return error("key_file", kf + "readable or writable by others (chmod 600, or 640 for a group)");
    }
    if (st.st_size > static_cast<off_t>(kMaxKeyFile)) return error("key_file", kf + "over 64 KiB");
    std::ifstream in(k.key_file, std::ios::binary);
    if (!in) return error("key_file", kf + std::strerror(errno));
    e->pem.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (e->pem.find('\0') != std::string::npos || !absl::StrContains(e->pem, "-----BEGIN")) {
      return error("key_file", kf + "not a PEM private key");
    }
    // Type and size, read by the same OpenSSL call libopendkim makes for PEM keys — once: the
    // key is kept parsed and libopendkim's per-message reads are answered from it (key_cache.h).
    EVP_PKEY* pkey = RememberKey(e->pem);
    if (pkey == nullptr) {
      return error("key_file", kf + "not a PEM private key (or encrypted: DKIM keys are read "
                                    "without a passphrase)");
    }
    const int type = EVP_PKEY_base_id(pkey);
    const int bits = EVP_PKEY_bits(pkey);
    const int want = k.algorithm == Algorithm::kRsaSha256 ? EVP_PKEY_RSA : EVP_PKEY_ED25519;
    if (type != want) {
      const char* got = type == EVP_PKEY_RSA       ? "an RSA key"
                        : type == EVP_PKEY_ED25519 ? "an Ed25519 key"
                                                   : "neither an RSA nor an Ed25519 key";
      return error("key_file",
                   absl::StrCat(kf, got, ", but algorithm is ", ToString(k.algorithm)));
    }
    if (type == EVP_PKEY_RSA && bits < kMinRsaBits) {
      return error("key_file", absl::StrCat(kf, "RSA key of ", bits,
                                            " bits, below 1024 (RFC 8301 §3.2; use 2048)"));
    }
    if (type == EVP_PKEY_RSA && bits > kMaxRsaBits) {
      return error("key_file", absl::StrCat(kf, "RSA key of ", bits,
                                            " bits, above 4096 (RFC 8301 §3.2: verifiers stop "
                                            "there; use 2048)"));
    }

    e->lib = dkim_init(nullptr, nullptr);
    if (e->lib == nullptr) return error("key_file", kf + "dkim_init failed");
    for (const std::string& h : k.headers) e->names.push_back(h);
    for (const std::string& h : k.oversign) e->names.push_back(h);
    for (size_t j = 0; j < e->names.size(); ++j) {
      (j < k.headers.size() ? e->sign_list : e->oversign_list).push_back(e->names[j].c_str());
    }
    e->sign_list.push_back(nullptr);
    e->oversign_list.push_back(nullptr);
    // List options take the array itself and the size of a pointer to it.
    if (dkim_options(e->lib, DKIM_OP_SETOPT, DKIM_OPTS_SIGNHDRS, e->sign_list.data(),
                     sizeof(char**)) != DKIM_STAT_OK ||
        dkim_options(e->lib, DKIM_OP_SETOPT, DKIM_OPTS_OVERSIGNHDRS, e->oversign_list.data(),
                     sizeof(char**)) != DKIM_STAT_OK) {
      return error("headers", "rejected by libopendkim");
    }
    if (k.expire_seconds > 0) {
      uint64_t ttl = static_cast<uint64_t>(k.expire_seconds);
      if (dkim_options(e->lib, DKIM_OP_SETOPT, DKIM_OPTS_SIGNATURETTL, &ttl, sizeof ttl) !=
          DKIM_STAT_OK) {
        return error("expire", "rejected by libopendkim");
      }
    }
    if (k.algorithm == Algorithm::kEd25519Sha256 &&
        !dkim_libfeature(e->lib, DKIM_FEATURE_ED25519)) {
      return error("algorithm", "this libopendkim was built without ed25519-sha256 (RFC 8463)");
    }
    std::string probe;
    if (absl::Status s = e->SignInto(kProbeMessage, "key-check", &probe); !s.ok()) {
      return error("key_file", absl::StrCat(kf, "libopendkim cannot sign with it: ", s.message()));
    }
    signer->entries_.push_back(std::move(e));
  }
  return signer;
}

bool Signer::Applies(absl::string_view sender_domain, absl::string_view job) const {
  for (const auto& e : entries_) {
    if (e->Applies(sender_domain, job)) return true;
  }
  return false;
}

absl::StatusOr<std::string> Signer::Sign(absl::string_view sender_domain, absl::string_view job,
                                         absl::string_view message,
                                         absl::string_view id) const {
  std::string fields;
  for (const auto& e : entries_) {
    if (!e->Applies(sender_domain, job)) continue;
    if (absl::Status s = e->SignInto(message, id, &fields); !s.ok()) return s;
  }
  return fields;
}

}  // namespace mxb::dkim
