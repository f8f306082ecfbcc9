// GenerateSelfSignedCert: an ECDSA P-256 key and a self-signed X.509 v3 certificate made with
// wolfCrypt's certificate generator (WOLFSSL_CERT_GEN), both returned as PEM.
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/random.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tls/tls_session.h"

namespace mxb {
namespace {

// DER length octets (X.690 §8.1.3): short form below 128, else long form.
void AppendDerLength(std::string* der, size_t len) {
  if (len < 0x80) {
    der->push_back(static_cast<char>(len));
    return;
  }
  char bytes[sizeof(size_t)];
  int n = 0;
  for (size_t v = len; v != 0; v >>= 8) bytes[n++] = static_cast<char>(v & 0xff);
  der->push_back(static_cast<char>(0x80 | n));
  while (n > 0) der->push_back(bytes[--n]);
}

// RFC 5280 §4.2.1.6: GeneralNames ::= SEQUENCE OF GeneralName; dNSName is [2] IA5String,
// context-specific primitive tag 0x82.
std::string EncodeDnsAltNames(const std::vector<std::string>& names) {
  std::string body;
  for (const std::string& name : names) {
    body.push_back(static_cast<char>(0x82));
    AppendDerLength(&body, name.size());
    body.append(name);
  }
  std::string der(1, static_cast<char>(0x30));
  AppendDerLength(&der, body.size());
  der.append(body);
  return der;
}

// RFC 5280 §4.1.2.5.1: UTCTime "YYMMDDHHMMSSZ" for years 1950-2049, GeneralizedTime after.
// Returned with tag and length, as wolfCrypt copies Cert::beforeDate/afterDate verbatim.
std::string EncodeX509Time(time_t t) {
  struct tm tm;
  gmtime_r(&t, &tm);
  char text[16];
  const bool utc = tm.tm_year + 1900 < 2050;
  const size_t n = std::strftime(text, sizeof(text), utc ? "%y%m%d%H%M%SZ" : "%Y%m%d%H%M%SZ", &tm);
  std::string der(1, static_cast<char>(utc ? 0x17 : 0x18));
  AppendDerLength(&der, n);
  der.append(text, n);
  return der;
}

bool IsValidDnsName(const std::string& name) {
  if (name.empty() || name.size() > 253) return false;
  for (char c : name) {
    if (c <= 0x20 || c >= 0x7f) return false;  // IA5String, no spaces or controls
  }
  return true;
}

std::string CryptError(const char* what, int ret) {
  return absl::StrCat("tls: self-signed certificate: ", what, " failed: wolfCrypt error ", ret,
                      ": ", wc_GetErrorString(ret));
}

absl::StatusOr<std::string> DerToPem(const unsigned char* der, int der_size, int type) {
  const int pem_size = wc_DerToPem(der, static_cast<word32>(der_size), nullptr, 0, type);
  if (pem_size <= 0) return absl::InternalError(CryptError("wc_DerToPem (size)", pem_size));
  std::string pem(static_cast<size_t>(pem_size), '\0');
  const int ret = wc_DerToPem(der, static_cast<word32>(der_size),
                              reinterpret_cast<unsigned char*>(pem.data()),
                              static_cast<word32>(pem.size()), type);
  if (ret <= 0) return absl::InternalError(CryptError("wc_DerToPem", ret));
  pem.resize(static_cast<size_t>(ret));
  return pem;
}

// RAII owners for the wolfCrypt objects; each is only destroyed if its init succeeded.
struct Rng {
  WC_RNG rng;
  bool ok = false;
  ~Rng() {
    if (ok) wc_FreeRng(&rng);
  }
};
struct EccKey {
  ecc_key key;
  bool ok = false;
  ~EccKey() {
    if (ok) wc_ecc_free(&key);
  }
};
struct CertDeleter {
  void operator()(Cert* c) const { wc_CertFree(c); }
};

}  // namespace

absl::StatusOr<GeneratedCert> GenerateSelfSignedCert(const std::string& common_name,
                                                     const std::vector<std::string>& dns_names,
                                                     int days) {
  if (days <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("tls: self-signed certificate: days must be positive, got ", days));
  }
  CertOptions opts;
  opts.common_name = common_name;
  opts.dns_names = dns_names;
  // notBefore = now - 1 h tolerates peers whose clocks lag a little.
  opts.not_before = absl::Now() - absl::Hours(1);
  opts.not_after = opts.not_before + absl::Hours(24) * days;
  return GenerateSelfSignedCert(opts);
}

absl::StatusOr<GeneratedCert> GenerateSelfSignedCert(const CertOptions& opts) {
  const std::string& common_name = opts.common_name;
  if (common_name.empty() || common_name.size() >= CTC_NAME_SIZE) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tls: self-signed certificate: common name \"", common_name, "\" must have 1..",
        CTC_NAME_SIZE - 1, " characters"));
  }
  const absl::Time not_before_t =
      opts.not_before == absl::InfinitePast() ? absl::Now() - absl::Hours(1) : opts.not_before;
  const absl::Time not_after_t = opts.not_after == absl::InfinitePast()
                                     ? not_before_t + absl::Hours(24 * 365)
                                     : opts.not_after;
  if (not_after_t <= not_before_t) {
    return absl::InvalidArgumentError("tls: self-signed certificate: not_after <= not_before");
  }
  // Without SAN entries RFC 6125 clients have nothing to match: default to the CN.
  std::vector<std::string> san;
  if (!opts.no_san) {
    san = opts.dns_names.empty() ? std::vector<std::string>{common_name} : opts.dns_names;
  }
  for (const std::string& name : san) {
    if (!IsValidDnsName(name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("tls: self-signed certificate: invalid DNS name \"", name, "\""));
    }
  }
  const std::string alt_names = san.empty() ? std::string() : EncodeDnsAltNames(san);
  if (alt_names.size() > CTC_MAX_ALT_SIZE) {
    return absl::InvalidArgumentError(absl::StrCat("tls: self-signed certificate: ", san.size(),
                                                   " SAN names exceed ", CTC_MAX_ALT_SIZE,
                                                   " bytes"));
  }

  Rng rng;
  int ret = wc_InitRng(&rng.rng);
  if (ret != 0) return absl::InternalError(CryptError("wc_InitRng", ret));
  rng.ok = true;

  EccKey key;
  ret = wc_ecc_init(&key.key);
  if (ret != 0) return absl::InternalError(CryptError("wc_ecc_init", ret));
  key.ok = true;
  ret = wc_ecc_make_key_ex(&rng.rng, 32, &key.key, ECC_SECP256R1);
  if (ret != 0) return absl::InternalError(CryptError("wc_ecc_make_key_ex(P-256)", ret));

  // The issuer's certificate (DER) and key when signing with a CA instead of self-signing.
  std::string issuer_der;
  EccKey issuer_key;
  if (opts.issuer != nullptr) {
    const GeneratedCert& issuer = *opts.issuer;
    issuer_der.resize(issuer.cert_pem.size());
    ret = wc_CertPemToDer(reinterpret_cast<const unsigned char*>(issuer.cert_pem.data()),
                          static_cast<int>(issuer.cert_pem.size()),
                          reinterpret_cast<unsigned char*>(issuer_der.data()),
                          static_cast<int>(issuer_der.size()), CERT_TYPE);
    if (ret <= 0) return absl::InvalidArgumentError(CryptError("wc_CertPemToDer(issuer)", ret));
    issuer_der.resize(static_cast<size_t>(ret));
    std::string key_der(issuer.key_pem.size(), '\0');
    ret = wc_KeyPemToDer(reinterpret_cast<const unsigned char*>(issuer.key_pem.data()),
                         static_cast<int>(issuer.key_pem.size()),
                         reinterpret_cast<unsigned char*>(key_der.data()),
                         static_cast<int>(key_der.size()), nullptr);
    if (ret <= 0) return absl::InvalidArgumentError(CryptError("wc_KeyPemToDer(issuer)", ret));
    const word32 key_der_size = static_cast<word32>(ret);
    ret = wc_ecc_init(&issuer_key.key);
    if (ret != 0) return absl::InternalError(CryptError("wc_ecc_init(issuer)", ret));
    issuer_key.ok = true;
    word32 idx = 0;
    ret = wc_EccPrivateKeyDecode(reinterpret_cast<const byte*>(key_der.data()), &idx,
                                 &issuer_key.key, key_der_size);
    std::fill(key_der.begin(), key_der.end(), '\0');
    if (ret != 0) {
      return absl::InvalidArgumentError(CryptError("wc_EccPrivateKeyDecode(issuer)", ret));
    }
  }

  // Cert carries 16 KiB of altNames and more: keep it off the stack.
  std::unique_ptr<Cert, CertDeleter> cert(wc_CertNew(nullptr));
  if (cert == nullptr) return absl::ResourceExhaustedError("tls: wc_CertNew failed");
  ret = wc_InitCert(cert.get());
  if (ret != 0) return absl::InternalError(CryptError("wc_InitCert", ret));

  std::memcpy(cert->subject.commonName, common_name.c_str(), common_name.size() + 1);
  cert->sigType = CTC_SHA256wECDSA;
  cert->selfSigned = opts.issuer == nullptr ? 1 : 0;
  // CA:TRUE so that the certificate can be loaded as a trust anchor (wolfSSL refuses to add a
  // non-CA certificate as a CA), the way `openssl req -x509` makes self-signed certificates.
  cert->isCA = opts.is_ca ? 1 : 0;
  const int64_t seconds = absl::ToInt64Seconds(not_after_t - not_before_t);
  cert->daysValid = static_cast<int>(std::max<int64_t>(1, seconds / 86400));
  // Explicit dates: wolfCrypt copies beforeDate/afterDate verbatim when their sizes are set.
  const std::string not_before = EncodeX509Time(absl::ToTimeT(not_before_t));
  const std::string not_after = EncodeX509Time(absl::ToTimeT(not_after_t));
  if (not_before.size() > CTC_DATE_SIZE || not_after.size() > CTC_DATE_SIZE) {
    return absl::InternalError("tls: self-signed certificate: validity date too long");
  }
  std::memcpy(cert->beforeDate, not_before.data(), not_before.size());
  cert->beforeDateSz = static_cast<int>(not_before.size());
  std::memcpy(cert->afterDate, not_after.data(), not_after.size());
  cert->afterDateSz = static_cast<int>(not_after.size());

  if (!alt_names.empty()) {
    std::memcpy(cert->altNames, alt_names.data(), alt_names.size());
    cert->altNamesSz = static_cast<int>(alt_names.size());
  }

  if (opts.issuer != nullptr) {
    ret = wc_SetIssuerBuffer(cert.get(), reinterpret_cast<const byte*>(issuer_der.data()),
                             static_cast<int>(issuer_der.size()));
    if (ret != 0) return absl::InvalidArgumentError(CryptError("wc_SetIssuerBuffer", ret));
  }
  ret = wc_SetSubjectKeyIdFromPublicKey_ex(cert.get(), ECC_TYPE, &key.key);
  if (ret != 0) return absl::InternalError(CryptError("wc_SetSubjectKeyIdFromPublicKey_ex", ret));
  ecc_key* signer = opts.issuer != nullptr ? &issuer_key.key : &key.key;
  ret = wc_SetAuthKeyIdFromPublicKey_ex(cert.get(), ECC_TYPE, signer);
  if (ret != 0) return absl::InternalError(CryptError("wc_SetAuthKeyIdFromPublicKey_ex", ret));
  ret = wc_SetKeyUsage(cert.get(), opts.is_ca ? "digitalSignature,keyCertSign"
                                              : "digitalSignature");
  if (ret != 0) return absl::InternalError(CryptError("wc_SetKeyUsage", ret));

  // Certificate body + signature; the SAN list dominates the size.
  const size_t der_cap = 4096 + alt_names.size();
  std::unique_ptr<unsigned char[]> der(new unsigned char[der_cap]);
  ret = wc_MakeCert(cert.get(), der.get(), static_cast<word32>(der_cap), nullptr, &key.key,
                    &rng.rng);
  if (ret < 0) return absl::InternalError(CryptError("wc_MakeCert", ret));
  ret = wc_SignCert(cert->bodySz, cert->sigType, der.get(), static_cast<word32>(der_cap), nullptr,
                    signer, &rng.rng);
  if (ret < 0) return absl::InternalError(CryptError("wc_SignCert", ret));
  absl::StatusOr<std::string> cert_pem = DerToPem(der.get(), ret, CERT_TYPE);
  if (!cert_pem.ok()) return cert_pem.status();

  unsigned char key_der[256];
  ret = wc_EccKeyToDer(&key.key, key_der, sizeof(key_der));
  if (ret < 0) return absl::InternalError(CryptError("wc_EccKeyToDer", ret));
  absl::StatusOr<std::string> key_pem = DerToPem(key_der, ret, ECC_PRIVATEKEY_TYPE);
  std::memset(key_der, 0, sizeof(key_der));
  if (!key_pem.ok()) return key_pem.status();

  GeneratedCert out;
  out.cert_pem = *std::move(cert_pem);
  out.key_pem = *std::move(key_pem);
  return out;
}

}  // namespace mxb
