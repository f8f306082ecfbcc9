// DKIM signing cost per message (dkim/signer.h, libopendkim): what the scanner spends once per
// message when a [[dkim]] entry applies — RSA-2048, Ed25519, and both (dual signing) — on the
// 20 KB body the e2e bench sends, relaxed/relaxed. Keys come from the openssl tool, made once.
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "dkim/signer.h"
#include "engine/smtp_data.h"
#include "tests/dkim/dkim_keys.h"

namespace mxb {
namespace {

std::string Message20K() {
  std::string m =
      "From: News <news@bench.example>\r\nTo: a@dest.example\r\nSubject: weekly\r\n"
      "Date: Wed, 02 Dec 2026 00:00:00 +0000\r\nMessage-ID: <1@bench.example>\r\n"
      "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n";
  while (m.size() < 20 * 1024) m += "The quick brown fox jumps over the lazy dog, again.  \r\n";
  return m;
}

// 0: rsa-sha256 (2048 bits), 1: ed25519-sha256, 2: both.
std::unique_ptr<dkim::Signer> MakeSigner(int which) {
  static std::string* dir = [] {
    char tmpl[] = "/tmp/mxb-dkim-bench-XXXXXX";
    return new std::string(mkdtemp(tmpl));
  }();
  std::vector<dkim::SigningKey> keys;
  for (dkim::Algorithm a : {dkim::Algorithm::kRsaSha256, dkim::Algorithm::kEd25519Sha256}) {
    const bool rsa = a == dkim::Algorithm::kRsaSha256;
    if (which != 2 && (which == 0) != rsa) continue;
    absl::StatusOr<std::string> pem =
        testing::MakeDkimKey(*dir, rsa ? "rsa" : "ed", a, 2048);
    if (!pem.ok()) return nullptr;
    dkim::SigningKey k;
    k.domain = "bench.example";
    k.selector = rsa ? "rsa" : "ed";
    k.key_file = *pem;
    k.algorithm = a;
    keys.push_back(k);
  }
  absl::StatusOr<std::unique_ptr<dkim::Signer>> s = dkim::Signer::Load(keys, "bench");
  return s.ok() ? *std::move(s) : nullptr;
}

void BM_DkimSign20K(benchmark::State& state) {
  std::unique_ptr<dkim::Signer> signer = MakeSigner(static_cast<int>(state.range(0)));
  if (signer == nullptr) {
    state.SkipWithError("no key (openssl genpkey failed)");
    return;
  }
  const std::string message = Message20K();
  for (auto _ : state) {
    absl::StatusOr<std::string> f = signer->Sign("bench.example", "", message, "bench");
    benchmark::DoNotOptimize(f);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.SetLabel(state.range(0) == 0 ? "rsa-sha256 2048" : state.range(0) == 1 ? "ed25519-sha256"
                                                                               : "rsa+ed25519");
}
BENCHMARK(BM_DkimSign20K)->Arg(0)->Arg(1)->Arg(2)->ArgName("key")->Unit(benchmark::kMicrosecond);

// What the engine adds per signed message besides Sign(): the CRLF-normalised copy it signs.
void BM_DkimNormalizedCopy20K(benchmark::State& state) {
  const std::string message = Message20K();
  for (auto _ : state) {
    std::string copy = NormalizeLineEndings(message);
    benchmark::DoNotOptimize(copy.data());
  }
}
BENCHMARK(BM_DkimNormalizedCopy20K)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace mxb
