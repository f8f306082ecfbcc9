// DKIM signing (RFC 6376) with RSA-SHA256 and Ed25519-SHA256 (RFC 8463): the `[[dkim]]`
// entries of the config, their private keys (loaded and checked once, at start-up), and the
// DKIM-Signature header fields for one message.
//
// Debian's libopendkim does the DKIM work: header selection and over-signing, simple/relaxed
// canonicalization (RFC 6376 §3.4), the body hash, the signature and the folded header field.
// Debian 12 builds it against OpenSSL 3 with DKIM_FEATURE_ED25519, so both algorithms go through
// it; nothing here canonicalizes by hand. Keys are parsed at start-up with OpenSSL's
// PEM_read_bio_PrivateKey — the call libopendkim itself makes — to check the type against the
// algorithm and the RSA size (RFC 8301 §3.2: at least 1024 bits), then signed with once.
//
// Which messages: an entry applies when the envelope sender's domain equals its
// `sender_domain` ("*" = every message), or the message's x-job equals its `job`; without
// either, when the sender domain equals `domain`. Every entry that applies signs, in config
// order (OpenDKIM's MultipleSignatures), so two entries for the same messages — one RSA, one
// Ed25519 — are dual signing (RFC 8463 §4's transition advice).
//
// Thread: Load() before the workers start (before privileges are dropped, so a key may be
// root-only); Applies()/Sign() from any thread, concurrently (the claim threads of
// engine/scanner.h): each Sign() has its own DKIM handle, and the one DKIM_LIB per entry "can
// be used by several threads at once" (libopendkim's overview.html).
//
//   std::vector<mxb::dkim::SigningKey> keys(1);
//   keys[0].domain = "esp.example"; keys[0].selector = "s2026";
//   keys[0].key_file = "/etc/mxburst/dkim/s2026.pem";
//   keys[0].algorithm = mxb::dkim::Algorithm::kRsaSha256;
//   auto signer = mxb::dkim::Signer::Load(keys, "mxburst.toml");   // error: one line
//   if ((*signer)->Applies("esp.example", "")) {
//     absl::StatusOr<std::string> fields = (*signer)->Sign("esp.example", "", message, "id");
//     wire = *fields + message;   // "DKIM-Signature: ...\r\n" lines, then the message
//   }
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mxb::dkim {

enum class Algorithm { kRsaSha256, kEd25519Sha256 };
// RFC 6376 §3.4.
enum class Canonicalization { kSimple, kRelaxed };

// "rsa-sha256" | "ed25519-sha256" (the a= tag values).
const char* ToString(Algorithm a);
const char* ToString(Canonicalization c);
[[nodiscard]] bool ParseAlgorithm(absl::string_view text, Algorithm* out);
// "relaxed/relaxed", "simple/relaxed", ...; one word alone is the header algorithm and the body
// is "simple" (RFC 6376 §3.5, c= tag).
[[nodiscard]] bool ParseCanonicalization(absl::string_view text, Canonicalization* header,
                                         Canonicalization* body);

// RFC 6376 §5.4.1's list ("SHOULD be included") plus the fields a modern message carries that
// a replay or an edit would change (Message-ID, MIME-Version, Content-*, List-Unsubscribe-Post
// which RFC 8058 §4 requires to be signed).
const std::vector<std::string>& DefaultSignedHeaders();

// One [[dkim]] entry.
struct SigningKey {
  std::string domain;    // d=
  std::string selector;  // s=: the key is published at <selector>._domainkey.<domain>
  std::string key_file;  // PEM private key (RSA: PKCS#1 or PKCS#8; Ed25519: PKCS#8)
  Algorithm algorithm = Algorithm::kRsaSha256;
  Canonicalization header_canon = Canonicalization::kRelaxed;
  Canonicalization body_canon = Canonicalization::kRelaxed;
  // Signed when present (each instance); empty = DefaultSignedHeaders(). Must contain From
  // (RFC 6376 §5.4).
  std::vector<std::string> headers;
  // Listed in h= once more than they occur, so that adding one after signing breaks the
  // signature (RFC 6376 §8.15). Each must also be in `headers`.
  std::vector<std::string> oversign = {"From"};
  int64_t expire_seconds = 0;  // x= = t= + this; 0 = no x= tag
  // Which messages (see the file comment): lower-case domain or "*", and/or an x-job value.
  std::string sender_domain;
  std::string job;
  std::string name;  // for messages: "dkim[0]"
};

class Signer {
 public:
  // Reads and checks every key; `config_name` prefixes errors: "mxburst.toml: dkim[1].key_file:
  // /etc/k.pem: an RSA key, but algorithm is ed25519-sha256".
  static absl::StatusOr<std::unique_ptr<Signer>> Load(std::vector<SigningKey> keys,
                                                      const std::string& config_name);
  ~Signer();
  Signer(const Signer&) = delete;
  Signer& operator=(const Signer&) = delete;

  // True when at least one entry applies to a message with this envelope sender domain
  // (lower-case; "" for the null sender) and x-job.
  bool Applies(absl::string_view sender_domain, absl::string_view job) const;

  // The DKIM-Signature header fields (each folded below 80 columns, ending in CRLF) of every
  // entry that applies, in config order; "" when none does. `message` is the RFC 5322 message
  // exactly as the receiver will get it: header section, empty line, body, CRLF line ends, no
  // dot-stuffing (what engine/smtp_data.h NormalizeLineEndings returns). `id` names the
  // message in errors. An error (e.g. no From field) names the entry and libopendkim's reason.
  absl::StatusOr<std::string> Sign(absl::string_view sender_domain, absl::string_view job,
                                   absl::string_view message, absl::string_view id) const;

  size_t size() const { return entries_.size(); }

 private:
  struct Entry;
  Signer() = default;
  std::vector<std::unique_ptr<Entry>> entries_;
};

}  // namespace mxb::dkim
