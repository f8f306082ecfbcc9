// dkim/signer.h: keys checked at load (one-line errors naming the entry and the file), which
// entries apply, and signatures that an independent verifier (python3-dkim) accepts — and
// rejects once the message changes.
#include "dkim/signer.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "dkim/key_cache.h"
#include "gtest/gtest.h"
#include "tests/dkim/dkim_keys.h"

namespace mxb::dkim {
namespace {

class SignerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/mxb-dkim-XXXXXX";
    dir_ = new std::string(mkdtemp(tmpl));
    auto rsa = mxb::testing::MakeDkimKey(*dir_, "rsa", Algorithm::kRsaSha256);
    auto ed = mxb::testing::MakeDkimKey(*dir_, "ed", Algorithm::kEd25519Sha256);
    ASSERT_TRUE(rsa.ok()) << rsa.status();
    ASSERT_TRUE(ed.ok()) << ed.status();
    rsa_ = new std::string(*rsa);
    ed_ = new std::string(*ed);
  }
  static void TearDownTestSuite() {
    if (dir_ != nullptr) std::system(absl::StrCat("rm -rf '", *dir_, "'").c_str());
  }

  static SigningKey Key(Algorithm a, const std::string& selector = "") {
    SigningKey k;
    k.domain = "sign.example";
    k.selector = selector.empty() ? (a == Algorithm::kRsaSha256 ? "rsa" : "ed") : selector;
    k.key_file = a == Algorithm::kRsaSha256 ? *rsa_ : *ed_;
    k.algorithm = a;
    return k;
  }

  // --record arguments for both test keys under sign.example.
  static std::vector<std::string> Records() {
    std::vector<std::string> args;
    for (auto [sel, path, alg] : {std::tuple{"rsa", rsa_, Algorithm::kRsaSha256},
                                  std::tuple{"ed", ed_, Algorithm::kEd25519Sha256}}) {
      auto rec = mxb::testing::DkimKeyRecord(*path, alg);
      EXPECT_TRUE(rec.ok()) << rec.status();
      args.push_back("--record");
      args.push_back(absl::StrCat(sel, "._domainkey.sign.example=", rec.ok() ? *rec : ""));
    }
    return args;
  }

  // Writes fields + message to a file and runs the independent verifier on it.
  static int Verify(const std::string& signed_message, std::string* out) {
    static int n = 0;
    const std::string path = absl::StrCat(*dir_, "/msg", n++, ".eml");
    std::ofstream(path, std::ios::binary) << signed_message;
    return mxb::testing::RunDkimVerify(Records(), {path}, out);
  }

  static std::string* dir_;
  static std::string* rsa_;
  static std::string* ed_;
};
std::string* SignerTest::dir_ = nullptr;
std::string* SignerTest::rsa_ = nullptr;
std::string* SignerTest::ed_ = nullptr;

constexpr char kHead[] =
    "From: News <news@sign.example>\r\nTo: a@dest.example\r\nSubject: test\r\n"
    "Date: Wed, 02 Dec 2026 00:00:00 +0000\r\nMessage-ID: <1@sign.example>\r\n"
    "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n\r\n";

// Bodies as they leave the encoder (CRLF, no dot-stuffing): RFC 6376 §3.4.3/§3.4.4 edge cases.
struct BodyCase {
  const char* name;
  std::string body;
};
std::vector<BodyCase> Bodies() {
  return {
      {"plain", "hello\r\n"},
      {"trailing_blank_lines", "hello\r\n\r\n\r\n\r\n"},  // §3.4.3: ignored by both canons
      {"empty_body", ""},
      {"whitespace", "a  \t b \r\n \t\r\n"},  // relaxed reduces WSP runs, drops trailing WSP
      {"long_line", std::string(997, 'x') + "\r\n " + std::string(400, 'y') + "\r\n"},
      {"eight_bit", "Gr\xc3\xbc\xc3\x9f" "e, \xe6\x97\xa5\xe6\x9c\xac\r\n\xff\xfe raw\r\n"},
      {"dot_lines", ".\r\n..two\r\n.leading dot\r\nend\r\n"},
  };
}

TEST_F(SignerTest, BothAlgorithmsAndCanonicalizationsVerifyWithPythonDkim) {
  std::vector<std::string> files;
  std::vector<std::string> labels;
  for (Algorithm a : {Algorithm::kRsaSha256, Algorithm::kEd25519Sha256}) {
    for (auto [hc, bc] : {std::pair{Canonicalization::kRelaxed, Canonicalization::kRelaxed},
                          std::pair{Canonicalization::kSimple, Canonicalization::kSimple}}) {
      SigningKey k = Key(a);
      k.header_canon = hc;
      k.body_canon = bc;
      auto signer = Signer::Load({k}, "t.toml");
      ASSERT_TRUE(signer.ok()) << signer.status();
      for (const BodyCase& c : Bodies()) {
        const std::string message = std::string(kHead) + c.body;
        absl::StatusOr<std::string> fields = (*signer)->Sign("sign.example", "", message, c.name);
        ASSERT_TRUE(fields.ok()) << fields.status();
        ASSERT_TRUE(absl::StartsWith(*fields, "DKIM-Signature: v=1; a=")) << *fields;
        EXPECT_TRUE(absl::StrContains(*fields, absl::StrCat("a=", ToString(a), ";")));
        EXPECT_TRUE(absl::StrContains(
            *fields, absl::StrCat("c=", ToString(hc), "/", ToString(bc), ";")));
        for (absl::string_view line : absl::StrSplit(*fields, "\r\n")) {
          // relaxed: folded at 75 columns; simple: one line (see signer.cc), below 998
          EXPECT_LE(line.size(), hc == Canonicalization::kRelaxed ? 80u : 998u);
          EXPECT_EQ(line.find('\n'), absl::string_view::npos);
        }
        files.push_back(absl::StrCat(*dir_, "/", ToString(a), "-", ToString(hc), "-", c.name,
                                     ".eml"));
        labels.push_back(absl::StrCat(ToString(a), " ", ToString(hc), " ", c.name));
        std::ofstream(files.back(), std::ios::binary) << *fields << message;
      }
    }
  }
  // One verifier run for all 28 messages; one JSON line each, in order.
  std::string out;
  EXPECT_EQ(mxb::testing::RunDkimVerify(Records(), files, &out), 0) << out;
  std::vector<std::string> lines;
  for (absl::string_view l : absl::StrSplit(out, '\n')) {
    if (absl::StartsWith(l, "{")) lines.emplace_back(l);
  }
  ASSERT_EQ(lines.size(), files.size()) << out;
  for (size_t i = 0; i < files.size(); ++i) {
    EXPECT_TRUE(absl::StrContains(lines[i], "\"ok\": true")) << labels[i] << ": " << lines[i];
  }
}

TEST_F(SignerTest, AlteredAfterSigningFailsVerification) {
  auto signer = Signer::Load({Key(Algorithm::kRsaSha256), Key(Algorithm::kEd25519Sha256)}, "t");
  ASSERT_TRUE(signer.ok()) << signer.status();
  const std::string message = std::string(kHead) + "pay 10 EUR\r\n";
  absl::StatusOr<std::string> fields = (*signer)->Sign("sign.example", "", message, "m");
  ASSERT_TRUE(fields.ok()) << fields.status();
  std::string out;
  ASSERT_EQ(Verify(*fields + message, &out), 0) << out;  // the unaltered one passes
  const std::vector<std::string> altered = {
      absl::StrReplaceAll(message, {{"10 EUR", "90 EUR"}}),         // body
      absl::StrReplaceAll(message, {{"Subject: test", "Subject: tost"}}),  // signed header
      // a second From added on top: over-signing (RFC 6376 §8.15) makes this fail
      "From: evil@attacker.example\r\n" + message,
  };
  for (const std::string& m : altered) {
    EXPECT_EQ(Verify(*fields + m, &out), 1) << out;
    EXPECT_TRUE(absl::StrContains(out, "\"ok\": false")) << out;
  }
}

TEST_F(SignerTest, WhichEntriesApplyAndDualSigning) {
  SigningKey by_domain = Key(Algorithm::kRsaSha256);  // neither key: sender domain == domain
  SigningKey by_job = Key(Algorithm::kEd25519Sha256);
  by_job.job = "campaign-7";
  SigningKey every = Key(Algorithm::kEd25519Sha256);
  every.sender_domain = "other.example";
  auto signer = Signer::Load({by_domain, by_job, every}, "t");
  ASSERT_TRUE(signer.ok()) << signer.status();
  EXPECT_TRUE((*signer)->Applies("sign.example", ""));
  EXPECT_TRUE((*signer)->Applies("SIGN.example", ""));
  EXPECT_TRUE((*signer)->Applies("x.example", "campaign-7"));
  EXPECT_TRUE((*signer)->Applies("other.example", ""));
  EXPECT_FALSE((*signer)->Applies("x.example", "campaign-8"));
  EXPECT_FALSE((*signer)->Applies("", ""));  // the null sender

  const std::string message = std::string(kHead) + "hi\r\n";
  absl::StatusOr<std::string> none = (*signer)->Sign("x.example", "", message, "m");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, "");
  // Sender domain and job both match: RSA (entry 0) then Ed25519 (entry 1), both verify.
  absl::StatusOr<std::string> dual = (*signer)->Sign("sign.example", "campaign-7", message, "m");
  ASSERT_TRUE(dual.ok()) << dual.status();
  const size_t rsa_at = dual->find("a=rsa-sha256");
  const size_t ed_at = dual->find("a=ed25519-sha256");
  ASSERT_NE(rsa_at, std::string::npos) << *dual;
  ASSERT_NE(ed_at, std::string::npos) << *dual;
  EXPECT_LT(rsa_at, ed_at);
  std::string out;
  EXPECT_EQ(Verify(*dual + message, &out), 0) << out;
  EXPECT_TRUE(absl::StrContains(out, "\"a\": \"rsa-sha256\", \"ok\": true")) << out;
  EXPECT_TRUE(absl::StrContains(out, "\"a\": \"ed25519-sha256\", \"ok\": true")) << out;

  SigningKey all = Key(Algorithm::kRsaSha256);
  all.sender_domain = "*";
  auto star = Signer::Load({all}, "t");
  ASSERT_TRUE(star.ok());
  EXPECT_TRUE((*star)->Applies("", ""));
  EXPECT_TRUE((*star)->Applies("anything.example", "j"));
}

TEST_F(SignerTest, HeaderListAndOversigning) {
  SigningKey k = Key(Algorithm::kEd25519Sha256);
  k.headers = {"From", "Subject", "To"};
  k.oversign = {"From", "Subject"};
  auto signer = Signer::Load({k}, "t");
  ASSERT_TRUE(signer.ok()) << signer.status();
  absl::StatusOr<std::string> f =
      (*signer)->Sign("sign.example", "", std::string(kHead) + "x\r\n", "m");
  ASSERT_TRUE(f.ok()) << f.status();
  auto unfolded = [](std::string h) {
    h.erase(std::remove_if(h.begin(), h.end(), [](char c) { return c == '\r' || c == '\n' || c == '\t' || c == ' '; }), h.end());
    return h;
  };
  std::string h = unfolded(*f);
  // Present fields once each, then the over-signed ones once more (RFC 6376 §5.4.2).
  EXPECT_TRUE(absl::StrContains(h, "h=From:To:Subject:From:Subject;")) << h;

  auto defaults = Signer::Load({Key(Algorithm::kRsaSha256)}, "t");
  ASSERT_TRUE(defaults.ok());
  f = (*defaults)->Sign("sign.example", "", std::string(kHead) + "x\r\n", "m");
  ASSERT_TRUE(f.ok());
  h = unfolded(*f);
  EXPECT_TRUE(absl::StrContains(
      h, "h=From:To:Subject:Date:Message-ID:MIME-Version:Content-Type:"
         "Content-Transfer-Encoding:From;"))
      << h;
}

// libopendkim reads the PEM key for every signature; those reads are answered from the key
// parsed at Load() (dkim/key_cache.h) instead of OpenSSL 3.0's ~0.9 ms decoder. Fails if the
// interposition is not in effect (e.g. the symbol is not exported to libopendkim).
TEST_F(SignerTest, KeysAreParsedOnceNotPerSignature) {
  auto signer = Signer::Load({Key(Algorithm::kRsaSha256), Key(Algorithm::kEd25519Sha256)}, "t");
  ASSERT_TRUE(signer.ok()) << signer.status();
  const uint64_t before = KeyCacheHits();
  const std::string message = std::string(kHead) + "x\r\n";
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<std::string> f = (*signer)->Sign("sign.example", "", message, "m");
    ASSERT_TRUE(f.ok()) << f.status();
  }
  EXPECT_EQ(KeyCacheHits() - before, 6u);  // 3 messages x 2 signatures
}

TEST_F(SignerTest, MessageWithoutFromIsAnErrorNamingTheEntry) {
  auto signer = Signer::Load({Key(Algorithm::kRsaSha256)}, "t");
  ASSERT_TRUE(signer.ok());
  absl::StatusOr<std::string> f =
      (*signer)->Sign("sign.example", "", "Subject: no from\r\n\r\nbody\r\n", "m.eml");
  ASSERT_FALSE(f.ok());
  EXPECT_TRUE(absl::StrContains(f.status().message(), "dkim[0] (d=sign.example s=rsa)"))
      << f.status();
}

TEST_F(SignerTest, BadKeysStopLoadingWithOneLineNamingEntryAndFile) {
  const std::string& d = *dir_;
  auto write = [&](const std::string& name, const std::string& text, mode_t mode) {
    const std::string p = d + "/" + name;
    std::ofstream(p, std::ios::binary) << text;
    chmod(p.c_str(), mode);
    return p;
  };
  const std::string garbage = write("garbage.pem", "not a key\n", 0600);
  const std::string truncated = write(
      "trunc.pem", "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI\n-----END PRIVATE KEY-----\n",
      0600);
  std::string rsa_text;
  {
    std::ifstream in(*rsa_);
    rsa_text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  const std::string world = write("world.pem", rsa_text, 0644);
  auto small = mxb::testing::MakeDkimKey(d, "rsa512", Algorithm::kRsaSha256, 512);
  ASSERT_TRUE(small.ok()) << small.status();

  struct Case {
    const char* name;
    SigningKey key;
    std::string want;  // substring of the one-line error
  };
  auto with = [&](Algorithm a, const std::string& file) {
    SigningKey k = Key(a);
    k.key_file = file;
    return k;
  };
  SigningKey no_from = Key(Algorithm::kRsaSha256);
  no_from.headers = {"Subject", "To"};
  SigningKey bad_oversign = Key(Algorithm::kRsaSha256);
  bad_oversign.oversign = {"Reply-To", "X-Nope"};
  SigningKey bad_name = Key(Algorithm::kRsaSha256);
  bad_name.headers = {"From", "Sub ject"};
  const std::vector<Case> cases = {
      {"missing", with(Algorithm::kRsaSha256, d + "/nope.pem"),
       "t.toml: dkim[0].key_file: " + d + "/nope.pem: No such file or directory"},
      {"garbage", with(Algorithm::kRsaSha256, garbage), garbage + ": not a PEM private key"},
      {"truncated", with(Algorithm::kEd25519Sha256, truncated),
       truncated + ": not a PEM private key"},
      {"world_readable", with(Algorithm::kRsaSha256, world),
       world + ": readable or writable by others"},
      {"rsa_as_ed25519", with(Algorithm::kEd25519Sha256, *rsa_),
       *rsa_ + ": an RSA key, but algorithm is ed25519-sha256"},
      {"ed25519_as_rsa", with(Algorithm::kRsaSha256, *ed_),
       *ed_ + ": an Ed25519 key, but algorithm is rsa-sha256"},
      {"rsa_512", with(Algorithm::kRsaSha256, *small), "RSA key of 512 bits, below 1024"},
      {"directory", with(Algorithm::kRsaSha256, d), d + ": not a regular file"},
      {"headers_without_from", no_from, "dkim[0].headers: must contain From"},
      {"oversign_not_signed", bad_oversign, "dkim[0].oversign: 'X-Nope' is not in headers"},
      {"bad_header_name", bad_name, "dkim[0].headers: not a field name: 'Sub ject'"},
  };
  for (const Case& c : cases) {
    auto s = Signer::Load({c.key}, "t.toml");
    ASSERT_FALSE(s.ok()) << c.name;
    const std::string msg(s.status().message());
    EXPECT_TRUE(absl::StrContains(msg, c.want)) << c.name << ": " << msg;
    EXPECT_TRUE(absl::StartsWith(msg, "t.toml: dkim[0].")) << c.name << ": " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << c.name << ": " << msg;
  }
  // The second entry is named when it is the bad one.
  auto second = Signer::Load({Key(Algorithm::kRsaSha256), with(Algorithm::kRsaSha256, garbage)},
                             "t.toml");
  ASSERT_FALSE(second.ok());
  EXPECT_TRUE(absl::StrContains(second.status().message(), "t.toml: dkim[1].key_file: "))
      << second.status();
}

TEST(DkimNames, ParseAlgorithmAndCanonicalization) {
  Algorithm a;
  EXPECT_TRUE(ParseAlgorithm("rsa-sha256", &a));
  EXPECT_EQ(a, Algorithm::kRsaSha256);
  EXPECT_TRUE(ParseAlgorithm("ed25519-sha256", &a));
  EXPECT_EQ(a, Algorithm::kEd25519Sha256);
  EXPECT_FALSE(ParseAlgorithm("rsa-sha1", &a));  // RFC 8301 §3.1: rsa-sha1 MUST NOT be used
  Canonicalization h, b;
  EXPECT_TRUE(ParseCanonicalization("relaxed/simple", &h, &b));
  EXPECT_EQ(h, Canonicalization::kRelaxed);
  EXPECT_EQ(b, Canonicalization::kSimple);
  EXPECT_TRUE(ParseCanonicalization("relaxed", &h, &b));  // RFC 6376 §3.5: body simple
  EXPECT_EQ(h, Canonicalization::kRelaxed);
  EXPECT_EQ(b, Canonicalization::kSimple);
  EXPECT_FALSE(ParseCanonicalization("relaxed/", &h, &b));
  EXPECT_FALSE(ParseCanonicalization("nowsp/relaxed", &h, &b));
}

}  // namespace
}  // namespace mxb::dkim
