// DANE TLSA matching (RFC 7672 §3, RFC 7671 §5, RFC 6698 §2.1): record usability, digests over
// DER, the DANE-TA(2) path check with a throw-away wolfSSL certificate store.
#include "tls/dane.h"

// options.h must come first: it carries the configure flags wolfSSL was built with.
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/hash.h>

#include <algorithm>
#include <memory>
#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tls/tls_session.h"

namespace mxb {
namespace {

// One DER TLV at the front of `in` (X.690 §8.1): tag, definite length up to 4 octets. On
// success `content` is the value and `in` advances past the TLV; `whole` is the complete TLV.
bool ReadTlv(absl::string_view* in, uint8_t* tag, absl::string_view* content,
             absl::string_view* whole = nullptr) {
  const absl::string_view start = *in;
  if (in->size() < 2) return false;
  *tag = static_cast<uint8_t>((*in)[0]);
  if ((*tag & 0x1f) == 0x1f) return false;  // high tag numbers never occur in a certificate
  size_t len = static_cast<uint8_t>((*in)[1]);
  size_t header = 2;
  if (len & 0x80) {
    const size_t n = len & 0x7f;
    if (n == 0 || n > 4 || in->size() < 2 + n) return false;  // indefinite form is not DER
    len = 0;
    for (size_t i = 0; i < n; ++i) len = (len << 8) | static_cast<uint8_t>((*in)[2 + i]);
    header += n;
  }
  if (in->size() - header < len) return false;
  *content = in->substr(header, len);
  if (whole != nullptr) *whole = start.substr(0, header + len);
  in->remove_prefix(header + len);
  return true;
}

constexpr uint8_t kSequence = 0x30;
constexpr uint8_t kInteger = 0x02;
constexpr uint8_t kExplicitVersion = 0xa0;  // [0] EXPLICIT Version

std::string Sha(absl::string_view data, uint8_t matching_type) {
  const auto* p = reinterpret_cast<const byte*>(data.data());
  const auto n = static_cast<word32>(data.size());
  if (matching_type == kTlsaMatchSha256) {
    std::string out(WC_SHA256_DIGEST_SIZE, '\0');
    if (wc_Sha256Hash(p, n, reinterpret_cast<byte*>(out.data())) != 0) return std::string();
    return out;
  }
  std::string out(WC_SHA512_DIGEST_SIZE, '\0');
  if (wc_Sha512Hash(p, n, reinterpret_cast<byte*>(out.data())) != 0) return std::string();
  return out;
}

bool Matches(const DaneRecord& r, absl::string_view cert) {
  const std::string data = TlsaAssociationData(cert, r.selector, r.matching_type);
  return !data.empty() && data == r.data;
}

// The subjectAltName dNSNames of a DER certificate (wolfCrypt's parser, no verification).
std::vector<std::string> DnsNames(absl::string_view cert) {
  std::vector<std::string> names;
  DecodedCert dc;
  wc_InitDecodedCert(&dc, reinterpret_cast<const byte*>(cert.data()),
                     static_cast<word32>(cert.size()), nullptr);
  if (wc_ParseCert(&dc, CERT_TYPE, NO_VERIFY, nullptr) == 0) {
    for (const DNS_entry* e = dc.altNames; e != nullptr; e = e->next) {
      if (e->type == ASN_DNS_TYPE && e->name != nullptr && e->len > 0) {
        names.emplace_back(e->name, static_cast<size_t>(e->len));
      }
    }
  }
  wc_FreeDecodedCert(&dc);
  return names;
}

struct CtxFree {
  void operator()(WOLFSSL_CTX* c) const { wolfSSL_CTX_free(c); }
};

std::string CryptText(int err) {
  char buf[WOLFSSL_MAX_ERROR_SZ] = {};
  wolfSSL_ERR_error_string_n(static_cast<unsigned long>(err), buf, sizeof(buf));
  return absl::StrCat(buf, " (", err, ")");
}

// RFC 7671 §5.2.2 / RFC 5280 §6.1: chain[0] must be issued, through chain[1..ta-1], by the
// trust anchor chain[ta]. The anchor is loaded without a date check (RFC 5280 §6.1.1(d): a
// trust anchor is a name and a key); everything below it is verified with dates. Returns an
// empty string on success, else what failed.
std::string CheckPathToAnchor(const std::vector<absl::string_view>& chain, size_t ta) {
  TlsGlobalInit();
  std::unique_ptr<WOLFSSL_CTX, CtxFree> ctx(wolfSSL_CTX_new(wolfTLS_client_method()));
  if (ctx == nullptr) return "out of memory (wolfSSL_CTX_new)";
  wolfSSL_CTX_set_verify(ctx.get(), WOLFSSL_VERIFY_NONE, nullptr);
  auto load = [&](absl::string_view der, int flags) {
    return wolfSSL_CTX_load_verify_buffer_ex(
        ctx.get(), reinterpret_cast<const unsigned char*>(der.data()),
        static_cast<long>(der.size()), WOLFSSL_FILETYPE_ASN1, 0, flags);
  };
  int ret = load(chain[ta], WOLFSSL_LOAD_FLAG_DATE_ERR_OKAY);
  if (ret != WOLFSSL_SUCCESS) {
    return absl::StrCat("trust anchor at depth ", ta, " is not usable as a CA: ", CryptText(ret));
  }
  WOLFSSL_CERT_MANAGER* cm = wolfSSL_CTX_GetCertManager(ctx.get());
  for (size_t i = ta; i-- > 0;) {
    ret = wolfSSL_CertManagerVerifyBuffer(cm, reinterpret_cast<const unsigned char*>(chain[i].data()),
                                          static_cast<long>(chain[i].size()),
                                          WOLFSSL_FILETYPE_ASN1);
    if (ret != WOLFSSL_SUCCESS) {
      return absl::StrCat("certificate at depth ", i, " does not chain to the trust anchor at depth ",
                          ta, ": ", CryptText(ret));
    }
    if (i > 0 && (ret = load(chain[i], 0)) != WOLFSSL_SUCCESS) {
      return absl::StrCat("certificate at depth ", i, " is not a CA: ", CryptText(ret));
    }
  }
  return std::string();
}

}  // namespace

std::string DaneRecord::Params() const {
  return absl::StrCat(usage, " ", selector, " ", matching_type);
}

bool IsUsableForSmtp(const DaneRecord& r) {
  if (r.usage != kTlsaUsageDaneEe && r.usage != kTlsaUsageDaneTa) return false;
  if (r.selector != kTlsaSelectorCert && r.selector != kTlsaSelectorSpki) return false;
  switch (r.matching_type) {
    case kTlsaMatchFull:
      return !r.data.empty();
    case kTlsaMatchSha256:
      return r.data.size() == WC_SHA256_DIGEST_SIZE;
    case kTlsaMatchSha512:
      return r.data.size() == WC_SHA512_DIGEST_SIZE;
    default:
      return false;
  }
}

std::shared_ptr<const DaneAuthority> DaneAuthority::Make(const std::vector<DaneRecord>& rrset,
                                                         std::vector<std::string> names) {
  auto auth = std::make_shared<DaneAuthority>();
  for (const DaneRecord& r : rrset) {
    if (IsUsableForSmtp(r)) {
      auth->usable.push_back(r);
    } else {
      ++auth->unusable;
    }
  }
  // An RRset is a set: the binding must not depend on the order the resolver returned.
  std::sort(auth->usable.begin(), auth->usable.end(), [](const DaneRecord& a, const DaneRecord& b) {
    return std::tie(a.usage, a.selector, a.matching_type, a.data) <
           std::tie(b.usage, b.selector, b.matching_type, b.data);
  });
  for (std::string& n : names) {
    if (!n.empty() && n.back() == '.') n.pop_back();
    n = absl::AsciiStrToLower(n);
  }
  names.erase(std::remove(names.begin(), names.end(), std::string()), names.end());
  auth->names = std::move(names);
  std::string blob;
  for (const DaneRecord& r : auth->usable) {
    absl::StrAppend(&blob, r.Params(), " ", absl::BytesToHexString(r.data), "\n");
  }
  absl::StrAppend(&blob, absl::StrJoin(auth->names, " "));
  auth->binding = absl::BytesToHexString(Sha(blob, kTlsaMatchSha256));
  return auth;
}

absl::string_view CertificateSpki(absl::string_view cert) {
  uint8_t tag = 0;
  absl::string_view certificate, tbs;
  if (!ReadTlv(&cert, &tag, &certificate) || tag != kSequence) return {};
  if (!ReadTlv(&certificate, &tag, &tbs) || tag != kSequence) return {};
  // TBSCertificate (RFC 5280 §4.1): [0] version OPTIONAL, serialNumber, signature, issuer,
  // validity, subject, subjectPublicKeyInfo, ...
  absl::string_view field, whole;
  if (!tbs.empty() && static_cast<uint8_t>(tbs[0]) == kExplicitVersion &&
      !ReadTlv(&tbs, &tag, &field)) {
    return {};
  }
  if (!ReadTlv(&tbs, &tag, &field) || tag != kInteger) return {};
  for (int i = 0; i < 4; ++i) {  // signature, issuer, validity, subject
    if (!ReadTlv(&tbs, &tag, &field) || tag != kSequence) return {};
  }
  if (!ReadTlv(&tbs, &tag, &field, &whole) || tag != kSequence) return {};
  return whole;
}

std::string TlsaAssociationData(absl::string_view cert, uint8_t selector,
                                uint8_t matching_type) {
  absl::string_view subject;
  if (selector == kTlsaSelectorCert) {
    // Only a well-formed certificate is hashed: the SPKI walk doubles as the syntax check.
    if (CertificateSpki(cert).empty()) return std::string();
    subject = cert;
  } else if (selector == kTlsaSelectorSpki) {
    subject = CertificateSpki(cert);
  }
  if (subject.empty()) return std::string();
  switch (matching_type) {
    case kTlsaMatchFull:
      return std::string(subject);
    case kTlsaMatchSha256:
    case kTlsaMatchSha512:
      return Sha(subject, matching_type);
    default:
      return std::string();
  }
}

DaneMatch MatchDane(const DaneAuthority& auth, const std::vector<absl::string_view>& chain) {
  DaneMatch m;
  if (auth.usable.empty()) {
    m.reason = "tlsa-unusable";
    m.detail = absl::StrCat("none of the ", auth.unusable, " TLSA records is usable for SMTP");
    return m;
  }
  m.reason = "tlsa-mismatch";
  if (chain.empty()) {
    m.detail = "the server sent no certificate";
    return m;
  }
  // DANE-EE(3): the server's own certificate or key; names and dates do not matter (§3.1.1).
  for (const DaneRecord& r : auth.usable) {
    if (r.usage == kTlsaUsageDaneEe && Matches(r, chain[0])) {
      m.matched = true;
      m.record = r.Params();
      m.depth = 0;
      m.reason.clear();
      return m;
    }
  }
  // DANE-TA(2): an issuer in the chain, then the path from the leaf and the leaf's name.
  std::vector<std::string> problems;
  bool any_ta = false;
  for (size_t i = 1; i < chain.size(); ++i) {
    for (const DaneRecord& r : auth.usable) {
      if (r.usage != kTlsaUsageDaneTa || !Matches(r, chain[i])) continue;
      any_ta = true;
      if (std::string why = CheckPathToAnchor(chain, i); !why.empty()) {
        problems.push_back(absl::StrCat(r.Params(), ": ", why));
        break;  // another record for the same certificate cannot fix its path
      }
      const std::vector<std::string> names = DnsNames(chain[0]);
      bool named = false;
      for (const std::string& ref : auth.names) named = named || MatchesAnyCertificateName(names, ref);
      if (!named) {
        problems.push_back(absl::StrCat(
            r.Params(), ": certificate names [", absl::StrJoin(names, ", "),
            "] match none of [", absl::StrJoin(auth.names, ", "), "] (RFC 7672 §3.2.3)"));
        break;
      }
      m.matched = true;
      m.record = r.Params();
      m.depth = static_cast<int>(i);
      m.reason.clear();
      return m;
    }
  }
  if (!any_ta) {
    std::vector<std::string> params;
    for (const DaneRecord& r : auth.usable) params.push_back(r.Params());
    m.detail = absl::StrCat("no certificate of the chain (", chain.size(),
                            ") matches the TLSA records [", absl::StrJoin(params, ", "), "]");
  } else {
    m.detail = absl::StrJoin(problems, "; ");
  }
  return m;
}

std::vector<std::string> PemCertificatesToDer(absl::string_view pem) {
  static constexpr absl::string_view kBegin = "-----BEGIN CERTIFICATE-----";
  static constexpr absl::string_view kEnd = "-----END CERTIFICATE-----";
  std::vector<std::string> out;
  for (size_t pos = pem.find(kBegin); pos != absl::string_view::npos; pos = pem.find(kBegin, pos)) {
    const size_t end = pem.find(kEnd, pos);
    if (end == absl::string_view::npos) return {};
    const absl::string_view block = pem.substr(pos, end + kEnd.size() - pos);
    std::string der(block.size(), '\0');
    const int n = wc_CertPemToDer(reinterpret_cast<const unsigned char*>(block.data()),
                                  static_cast<int>(block.size()),
                                  reinterpret_cast<unsigned char*>(der.data()),
                                  static_cast<int>(der.size()), CERT_TYPE);
    if (n <= 0) return {};
    der.resize(static_cast<size_t>(n));
    out.push_back(std::move(der));
    pos = end + kEnd.size();
  }
  return out;
}

}  // namespace mxb
