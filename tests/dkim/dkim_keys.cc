#include "tests/dkim/dkim_keys.h"

#include <sys/stat.h>
#include <sys/wait.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace mxb::testing {
namespace {

// Runs a shell-free command line, stdout to `out_path`; the exit code (-1 if it did not run).
int Run(const std::vector<std::string>& argv, const std::string& out_path) {
  std::string cmd;
  for (const std::string& a : argv) {
    // Single-quote every argument for /bin/sh (test paths and records contain no quote).
    absl::StrAppend(&cmd, "'", a, "' ");
  }
  absl::StrAppend(&cmd, "> '", out_path, "' 2>&1");
  const int rc = std::system(cmd.c_str());
  return rc == -1 || !WIFEXITED(rc) ? -1 : WEXITSTATUS(rc);
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

absl::StatusOr<std::string> MakeDkimKey(const std::string& dir, const std::string& name,
                                        dkim::Algorithm algorithm, int rsa_bits) {
  const std::string path = absl::StrCat(dir, "/", name, ".pem");
  std::vector<std::string> argv = {"openssl", "genpkey", "-out", path};
  if (algorithm == dkim::Algorithm::kRsaSha256) {
    argv.insert(argv.end(), {"-algorithm", "RSA", "-pkeyopt", absl::StrCat("rsa_keygen_bits:", rsa_bits)});
  } else {
    argv.insert(argv.end(), {"-algorithm", "ed25519"});
  }
  if (Run(argv, path + ".log") != 0) {
    return absl::InternalError(absl::StrCat("openssl genpkey: ", ReadAll(path + ".log")));
  }
  chmod(path.c_str(), 0600);
  return path;
}

absl::StatusOr<std::string> DkimKeyRecord(const std::string& pem_path,
                                          dkim::Algorithm algorithm) {
  const std::string der_path = pem_path + ".pub.der";
  if (Run({"openssl", "pkey", "-in", pem_path, "-pubout", "-outform", "DER", "-out", der_path},
          der_path + ".log") != 0) {
    return absl::InternalError(absl::StrCat("openssl pkey: ", ReadAll(der_path + ".log")));
  }
  std::string der = ReadAll(der_path);
  if (algorithm == dkim::Algorithm::kRsaSha256) {
    // RFC 6376 §3.6.1: p= is the base64 SubjectPublicKeyInfo for k=rsa.
    return absl::StrCat("v=DKIM1; k=rsa; p=", absl::Base64Escape(der));
  }
  // RFC 8463 §4.2: the bare 32-byte public key, the last 32 octets of its SPKI.
  if (der.size() < 32) return absl::InternalError("short Ed25519 public key");
  return absl::StrCat("v=DKIM1; k=ed25519; p=", absl::Base64Escape(der.substr(der.size() - 32)));
}

std::string ZoneTxt(const std::string& text) {
  std::vector<std::string> parts;
  for (size_t i = 0; i < text.size(); i += 255) {
    parts.push_back(absl::StrCat("\"", text.substr(i, 255), "\""));
  }
  return absl::StrJoin(parts, " ");
}

int RunDkimVerify(const std::vector<std::string>& args, const std::vector<std::string>& files,
                  std::string* out) {
  std::vector<std::string> argv = {"/usr/bin/python3",
                                   std::string(MXB_SOURCE_DIR) + "/tests/dkim/dkim_verify.py"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.insert(argv.end(), files.begin(), files.end());
  char tmpl[] = "/tmp/mxb-dkimverify-XXXXXX";
  const int fd = mkstemp(tmpl);
  if (fd >= 0) close(fd);
  const int rc = Run(argv, tmpl);
  *out = ReadAll(tmpl);
  unlink(tmpl);
  return rc;
}

}  // namespace mxb::testing
