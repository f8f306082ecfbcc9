// Test keys for DKIM (dkim/signer.h): generated with the openssl command-line tool (Debian
// `openssl`), and their public-key TXT records (RFC 6376 §3.6.1; Ed25519: RFC 8463 §4.2, p= is
// the raw 32-byte key). Shared by tests/dkim, the integration test and bench/dkim_bench.cc.
//
// Test threads only. Example:
//   absl::StatusOr<std::string> pem = mxb::testing::MakeDkimKey(dir, "rsa", Algorithm::kRsaSha256);
//   absl::StatusOr<std::string> txt = mxb::testing::DkimKeyRecord(*pem, Algorithm::kRsaSha256);
//   // "v=DKIM1; k=rsa; p=MIIBIjANBg..." -> s1._domainkey.example.test TXT
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "dkim/signer.h"

namespace mxb::testing {

// DIR/NAME.pem, mode 0600. RSA keys have `rsa_bits` bits.
absl::StatusOr<std::string> MakeDkimKey(const std::string& dir, const std::string& name,
                                        dkim::Algorithm algorithm, int rsa_bits = 2048);

// "v=DKIM1; k=rsa|ed25519; p=<base64>" for the private key in `pem_path`.
absl::StatusOr<std::string> DkimKeyRecord(const std::string& pem_path, dkim::Algorithm algorithm);

// A TXT record's presentation form for a zone file: `text` in quoted strings of at most 255
// octets each (RFC 1035 §3.3.14; RFC 6376 §3.6.2.2 joins them back).
std::string ZoneTxt(const std::string& text);

// Runs tests/dkim/dkim_verify.py (python3-dkim) on `files` with `args` (--dns HOST:PORT or
// --record NAME=TXT ...). Returns its exit code (0: every signature of every file verified,
// 1: some did not, 3: python3-dkim/dnspython/nacl missing); its JSON lines go to *out.
int RunDkimVerify(const std::vector<std::string>& args, const std::vector<std::string>& files,
                  std::string* out);

}  // namespace mxb::testing
