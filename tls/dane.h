// DANE TLSA authentication for SMTP (RFC 7672, with RFC 7671 and RFC 6698 for the records):
// which records of a TLSA RRset are usable, and whether a server's certificate chain matches
// one of them. Pure functions over DER bytes; the TLS handshake (tls/tls_session.h, DANE mode)
// calls MatchDane() from its verify callback with the chain the server sent.
//
// Owns nothing shared: a DaneAuthority is immutable once built and may be shared (shared_ptr)
// by every connection of one worker to the same MX host; any thread may call these functions.
//
//   std::vector<mxb::DaneRecord> rrset = ...;          // from the DNSSEC-validated TLSA answer
//   auto auth = mxb::DaneAuthority::Make(rrset, {"mx.example.com", "example.com"});
//   if (auth->usable.empty()) ...                      // RFC 7672 §2.2: TLS, unauthenticated
//   mxb::DaneMatch m = mxb::MatchDane(*auth, chain_der);   // chain_der[0] = server certificate
//   if (m.matched) log(m.record);                      // "3 1 1"
//   else log(m.reason);                                // "tlsa-mismatch"
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace mxb {

// One TLSA RR (RFC 6698 §2.1): certificate usage, selector, matching type, association data.
struct DaneRecord {
  uint8_t usage = 0;
  uint8_t selector = 0;
  uint8_t matching_type = 0;
  std::string data;  // raw bytes (a digest, or a full certificate / SubjectPublicKeyInfo)

  // "3 1 1": the parameters as the log shows them (RFC 7218 numbers).
  std::string Params() const;
};

// RFC 7218 names of the parameters we act on.
inline constexpr uint8_t kTlsaUsagePkixTa = 0;
inline constexpr uint8_t kTlsaUsagePkixEe = 1;
inline constexpr uint8_t kTlsaUsageDaneTa = 2;
inline constexpr uint8_t kTlsaUsageDaneEe = 3;
inline constexpr uint8_t kTlsaSelectorCert = 0;
inline constexpr uint8_t kTlsaSelectorSpki = 1;
inline constexpr uint8_t kTlsaMatchFull = 0;
inline constexpr uint8_t kTlsaMatchSha256 = 1;
inline constexpr uint8_t kTlsaMatchSha512 = 2;

// Whether SMTP can use the record (RFC 7672 §3.1): DANE-EE(3) and DANE-TA(2) with selector
// Cert(0)/SPKI(1) and matching type Full(0)/SHA2-256(1)/SHA2-512(2), the digest of the right
// length (32/64 bytes) and full data not empty. PKIX-TA(0)/PKIX-EE(1) are unusable for SMTP
// (§3.1.3), and so is every parameter value we do not know (RFC 6698 §4.1, RFC 7671 §4).
bool IsUsableForSmtp(const DaneRecord& r);

// What a client session authenticates against: the usable records of one validated TLSA RRset
// and the reference identifiers a DANE-TA(2) chain's leaf must carry (RFC 7672 §3.2.2: the MX
// host name after secure CNAME expansion, optionally the next-hop domain as well).
struct DaneAuthority {
  std::vector<DaneRecord> usable;
  size_t unusable = 0;              // records of the RRset that were skipped
  std::vector<std::string> names;   // lower case, no trailing dot
  // A stable digest of `usable` and `names`: a resumption ticket is bound to it, so a ticket
  // is only resumed under the same TLSA records and names that authenticated it.
  std::string binding;

  static std::shared_ptr<const DaneAuthority> Make(const std::vector<DaneRecord>& rrset,
                                                   std::vector<std::string> names);
};

// The outcome of matching one chain. Exactly one of matched / !reason.empty().
struct DaneMatch {
  bool matched = false;
  std::string record;  // the matching record's parameters: "3 1 1", "2 0 1"
  int depth = -1;      // chain position of the matching certificate (0 = server certificate)
  // Why nothing matched, as logged: "tlsa-unusable" (no usable record) or "tlsa-mismatch".
  std::string reason;
  std::string detail;  // human text: what was tried and why it failed
};

// Matches `chain` (DER certificates in handshake order, chain[0] = the server's own) against
// the usable records:
//   - DANE-EE(3): chain[0] (selector 0) or its SubjectPublicKeyInfo (selector 1) matches; names
//     and validity dates are not checked (RFC 7672 §3.1.1).
//   - DANE-TA(2): some chain[i], i >= 1, or its SPKI matches; then chain[0] must chain to it
//     through chain[1..i-1] (signatures, CA flags, validity of everything below the trust
//     anchor — a trust anchor's own dates are not part of path validation, RFC 5280 §6.1.1(d))
//     and carry one of `names` as a subjectAltName dNSName, a wildcard covering one left-most
//     label (RFC 7672 §3.2.3, RFC 6125 §6.4.3; the subject CN is never used). The trust anchor
//     must be in the chain the server sent (RFC 7672 §3.1.2 asks servers to include it).
// DANE-EE is tried first: it is cheaper and needs no chain.
DaneMatch MatchDane(const DaneAuthority& auth, const std::vector<absl::string_view>& chain);

// The DER SubjectPublicKeyInfo of a DER X.509 certificate (RFC 5280 §4.1), empty when `cert`
// is not a well-formed certificate. A view into `cert`.
absl::string_view CertificateSpki(absl::string_view cert);

// The association data a record with (selector, matching_type) would carry for `cert`: the
// certificate or its SPKI, raw or hashed. Empty for unknown parameters or a malformed
// certificate. Used by the matcher and by tests and tools that publish records.
std::string TlsaAssociationData(absl::string_view cert, uint8_t selector, uint8_t matching_type);

// PEM certificate(s) -> DER, in order (for tests and tools); empty on malformed input.
std::vector<std::string> PemCertificatesToDer(absl::string_view pem);

}  // namespace mxb
