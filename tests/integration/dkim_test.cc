// DKIM end to end (issue 16): mxburst signs with [[dkim]] keys, delivers to mxburst-sink, and
// an independent verifier (Debian's python3-dkim, tests/dkim/dkim_verify.py) checks what the
// sink stored against the public keys served from a DNSSEC-signed test zone
// (<selector>._domainkey.esp.dkim TXT in zone "dkim." — not under "test.", which unbound
// answers NXDOMAIN by default (RFC 6761) — unbound + ldns, tests/dns/dane_zone.h). So the
// signature is checked on exactly the bytes that arrived: envelope lines gone, line ends
// normalised, long lines re-cut, dot-stuffing undone by the receiver.
//
// One engine run per suite: the messages of every case go through it together, each to two
// recipients — one at a sink taking DATA (dot-stuffed on the wire), one at a sink offering
// CHUNKING (BDAT, RFC 3030: no stuffing) — and both copies must carry the same signature fields
// (signed once per message, not per recipient or transaction) and verify.
#include <sys/stat.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "queue/spool.h"
#include "tests/dkim/dkim_keys.h"
#include "tests/dns/dane_zone.h"
#include "tests/integration/fixture.h"

namespace mxb {
namespace {

using dkim::Algorithm;
using testing::Bin;
using testing::ListDir;
using testing::MakeTempDir;
using testing::ReadFileOrDie;
using testing::RunCommand;
using testing::SinkProcess;
using testing::WriteFileOrDie;

// The messages of the run: id -> (pickup file, the a= values its signatures must have).
struct Case {
  std::string id;
  std::string file;
  std::vector<std::string> algorithms;  // empty: must arrive unsigned
};

std::string Pickup(const std::string& sender, const std::string& job, const std::string& id,
                   const std::string& headers, const std::string& body,
                   const std::string& eol = "\n") {
  std::string m = absl::StrCat("x-sender: <", sender, ">", eol, "x-receiver: <rcpt@dest.test>",
                               eol, "x-receiver: <rcpt@bdat.test>", eol);
  if (!job.empty()) absl::StrAppend(&m, "x-job: ", job, eol);
  absl::StrAppend(&m, headers, "Message-ID: <", id, "@esp.dkim>", eol, "Subject: case ", id,
                  eol, "To: rcpt@dest.test", eol, eol, body);
  return m;
}

std::vector<Case> Cases() {
  const std::string from = "From: News <news@esp.dkim>\n";
  const std::string dual_alg = "rsa-sha256,ed25519-sha256";
  std::vector<Case> c = {
      {"plain", Pickup("bounce@esp.dkim", "", "plain", from, "hello\n"), {}},
      {"trailing-blank", Pickup("bounce@esp.dkim", "", "trailing-blank", from,
                                "hello\n\n\n\n\n"), {}},
      // 2,500 octets: the encoder re-cuts it after 998 (RFC 5321 §4.5.3.1.6) and the signature
      // covers the re-cut form; a 1,200-octet header line is folded at whitespace.
      {"long-lines", Pickup("bounce@esp.dkim", "", "long-lines",
                            from + "X-Long: " + std::string(600, 'h') + " " +
                                std::string(600, 'i') + "\n",
                            std::string(2500, 'x') + "\nshort\n"), {}},
      {"eight-bit", Pickup("bounce@esp.dkim", "", "eight-bit",
                           from + "Content-Type: text/plain; charset=utf-8\n"
                                  "Content-Transfer-Encoding: 8bit\n",
                           "Gr\xc3\xbc\xc3\x9f" "e \xe6\x97\xa5\xe6\x9c\xac\n\xff raw\n"), {}},
      // Lines the wire dot-stuffs (RFC 5321 §4.5.2); the receiver removes the dots again.
      {"dot-lines", Pickup("bounce@esp.dkim", "", "dot-lines", from,
                           ".\n..two\n.leading\n.\r\nend\n"), {}},
      // CRLF, bare CR and bare LF mixed: all become CRLF before signing.
      {"mixed-eol", Pickup("bounce@esp.dkim", "", "mixed-eol", from,
                           "crlf\r\nbare cr\rbare lf\nend", "\r\n"), {}},
      // Another sender's domain: only the job's entry applies (Ed25519, simple/simple).
      {"job-simple", Pickup("bounce@other.example", "ed-only", "job-simple", from,
                            "  spaced  \n.dot\n\n\n"), {"ed25519-sha256"}},
      // No entry applies: sent as it is.
      {"unsigned", Pickup("bounce@nobody.example", "", "unsigned", from, "plain\n"), {}},
  };
  for (Case& k : c) {
    if (k.id == "unsigned" || k.id == "job-simple") continue;
    k.algorithms = absl::StrSplit(dual_alg, ',');
  }
  return c;
}

class DkimDeliveryTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(MakeTempDir("dkim"));
    auto rsa = testing::MakeDkimKey(*dir_, "rsa", Algorithm::kRsaSha256);
    auto ed = testing::MakeDkimKey(*dir_, "ed", Algorithm::kEd25519Sha256);
    if (!rsa.ok() || !ed.ok()) {
      error_ = new std::string(!rsa.ok() ? rsa.status().ToString() : ed.status().ToString());
      return;
    }
    rsa_ = new std::string(*rsa);
    ed_ = new std::string(*ed);
    auto rsa_txt = testing::DkimKeyRecord(*rsa_, Algorithm::kRsaSha256);
    auto ed_txt = testing::DkimKeyRecord(*ed_, Algorithm::kEd25519Sha256);
    testing::DaneZoneSpec spec;
    spec.zone = "dkim.";
    // RFC 6376 §3.6.2.1: the key of selector S for domain D is TXT at S._domainkey.D.
    spec.records = absl::StrCat("rsa._domainkey.esp.dkim. IN TXT ", testing::ZoneTxt(*rsa_txt),
                                "\ned._domainkey.esp.dkim. IN TXT ", testing::ZoneTxt(*ed_txt),
                                "\n");
    auto dns = testing::StartDaneUnbound(spec);
    if (!dns.ok()) {
      error_ = new std::string(dns.status().ToString());
      return;
    }
    dns_ = dns->release();
    port_ = testing::FreePort("127.0.0.2");
    sink_ = new SinkProcess(*dir_, {"--listen", absl::StrCat("127.0.0.2:", port_), "--out-dir",
                                    *dir_ + "/received"});
    if (!sink_->ready()) {
      error_ = new std::string("sink: " + sink_->error_text());
      return;
    }
    bdat_port_ = testing::FreePort("127.0.0.3");
    std::filesystem::create_directories(*dir_ + "/bdat");
    bdat_sink_ = new SinkProcess(*dir_ + "/bdat", {"--listen", absl::StrCat("127.0.0.3:", bdat_port_),
                                                   "--chunking", "--out-dir", *dir_ + "/received-bdat"});
    if (!bdat_sink_->ready()) {
      error_ = new std::string("chunking sink: " + bdat_sink_->error_text());
      return;
    }
    spool_ = new std::string(*dir_ + "/spool");
    if (!Spool::Open(*spool_).ok()) return;
    for (const Case& c : Cases()) {
      if (!InjectFile(*spool_, c.id + ".eml", c.file, false).ok()) return;
    }
    // Signing failure: no From field -> bad/ with the reason, never sent unsigned.
    if (!InjectFile(*spool_, "no-from.eml",
                    "x-sender: <bounce@esp.dkim>\nx-receiver: <rcpt@dest.test>\n"
                    "Subject: no from\n\nbody\n",
                    false)
             .ok())
      return;
    WriteFileOrDie(*dir_ + "/mxburst.toml",
                   absl::StrCat("[[dkim]]\ndomain = \"esp.dkim\"\nselector = \"rsa\"\n"
                                "key_file = \"", *rsa_, "\"\nalgorithm = \"rsa-sha256\"\n"
                                "[[dkim]]\ndomain = \"esp.dkim\"\nselector = \"ed\"\n"
                                "key_file = \"", *ed_, "\"\nalgorithm = \"ed25519-sha256\"\n"
                                "sender_domain = \"esp.dkim\"\n"
                                "[[dkim]]\ndomain = \"esp.dkim\"\nselector = \"ed\"\n"
                                "key_file = \"", *ed_, "\"\nalgorithm = \"ed25519-sha256\"\n"
                                "job = \"ed-only\"\ncanonicalization = \"simple/simple\"\n"));
    engine_rc_ = RunCommand({Bin("engine/mxburst"), "--allow-root", "--config",
                             *dir_ + "/mxburst.toml", "--spool", *spool_, "--drain", "--quiet",
                             "--log", *dir_ + "/acct.jsonl", "--workers", "1", "--route",
                             absl::StrCat("bdat.test=127.0.0.3:", bdat_port_), "--route",
                             absl::StrCat("*=127.0.0.2:", port_)},
                            *dir_ + "/engine.out", absl::Minutes(2));
    ran_ = true;
  }
  static void TearDownTestSuite() {
    if (sink_ != nullptr) sink_->Stop();
    if (bdat_sink_ != nullptr) bdat_sink_->Stop();
    delete sink_;
    delete bdat_sink_;
    bdat_sink_ = nullptr;
    delete dns_;
    sink_ = nullptr;
    dns_ = nullptr;
  }

  void SetUp() override {
    if (error_ != nullptr) GTEST_SKIP() << *error_;
    ASSERT_TRUE(ran_);
    ASSERT_EQ(engine_rc_, 0) << ReadFileOrDie(*dir_ + "/engine.out.err");
  }

  // The file a sink stored for Message-ID <id@esp.dkim> ("" if none): the DATA sink's, or the
  // CHUNKING sink's with `bdat`.
  static std::string Received(const std::string& id, bool bdat = false) {
    const std::string dir = *dir_ + (bdat ? "/received-bdat" : "/received");
    const std::string want = absl::StrCat("Message-ID: <", id, "@esp.dkim>");
    for (const std::string& name : ListDir(dir)) {
      if (!absl::EndsWith(name, ".eml")) continue;
      if (absl::StrContains(ReadFileOrDie(dir + "/" + name), want)) return dir + "/" + name;
    }
    return "";
  }

  static std::string* dir_;
  static std::string* error_;
  static std::string* rsa_;
  static std::string* ed_;
  static std::string* spool_;
  static testing::DaneUnbound* dns_;
  static SinkProcess* sink_;
  static SinkProcess* bdat_sink_;
  static int port_;
  static int bdat_port_;
  static int engine_rc_;
  static bool ran_;
};
std::string* DkimDeliveryTest::dir_ = nullptr;
std::string* DkimDeliveryTest::error_ = nullptr;
std::string* DkimDeliveryTest::rsa_ = nullptr;
std::string* DkimDeliveryTest::ed_ = nullptr;
std::string* DkimDeliveryTest::spool_ = nullptr;
testing::DaneUnbound* DkimDeliveryTest::dns_ = nullptr;
SinkProcess* DkimDeliveryTest::sink_ = nullptr;
SinkProcess* DkimDeliveryTest::bdat_sink_ = nullptr;
int DkimDeliveryTest::port_ = 0;
int DkimDeliveryTest::bdat_port_ = 0;
int DkimDeliveryTest::engine_rc_ = -1;
bool DkimDeliveryTest::ran_ = false;

// The DKIM-Signature fields at the top of a stored message.
std::string SignatureFields(const std::string& text) {
  std::string fields;
  size_t at = 0;
  while (absl::StartsWith(absl::string_view(text).substr(at), "DKIM-Signature:")) {
    size_t end = at;
    do {
      end = text.find("\r\n", end) + 2;
    } while (end < text.size() && (text[end] == '\t' || text[end] == ' '));
    fields += text.substr(at, end - at);
    at = end;
  }
  return fields;
}

TEST_F(DkimDeliveryTest, ReceivedMessagesVerifyAgainstKeysInDns) {
  std::vector<std::string> files;
  std::vector<std::string> labels;
  std::vector<Case> signed_cases;
  for (const Case& c : Cases()) {
    const std::string data_path = Received(c.id);
    const std::string bdat_path = Received(c.id, /*bdat=*/true);
    if (data_path.empty() || bdat_path.empty()) {
      ADD_FAILURE() << c.id << " was not delivered to both sinks: "
                    << ReadFileOrDie(*dir_ + "/engine.out.err");
      continue;
    }
    const std::string bdat_env = bdat_path.substr(0, bdat_path.size() - 4) + ".env";
    EXPECT_TRUE(absl::StrContains(ReadFileOrDie(bdat_env), "\ntransfer: bdat\n")) << c.id;
    const std::string text = ReadFileOrDie(data_path);
    // One signature per applying entry, made once: both transactions carry the same fields.
    const std::string fields = SignatureFields(text);
    size_t n = 0;
    for (size_t at = fields.find("DKIM-Signature:"); at != std::string::npos;
         at = fields.find("DKIM-Signature:", at + 1)) {
      ++n;
    }
    EXPECT_EQ(n, c.algorithms.size()) << c.id << ":\n" << text.substr(0, 1500);
    EXPECT_EQ(text.find("DKIM-Signature:", fields.size()), std::string::npos) << c.id;
    EXPECT_EQ(SignatureFields(ReadFileOrDie(bdat_path)), fields) << c.id;
    if (c.algorithms.empty()) continue;
    for (const std::string& path : {data_path, bdat_path}) {
      files.push_back(path);
      signed_cases.push_back(c);
      labels.push_back(absl::StrCat(c.id, path == bdat_path ? " (BDAT)" : " (DATA)"));
    }
  }
  std::string out;
  const int rc = testing::RunDkimVerify({"--dns", dns_->address()}, files, &out);
  if (rc == 3) GTEST_SKIP() << "python3-dkim/dnspython/nacl missing (tools/setup.sh): " << out;
  EXPECT_EQ(rc, 0) << out;
  std::vector<std::string> lines;
  for (absl::string_view l : absl::StrSplit(out, '\n')) {
    if (absl::StartsWith(l, "{")) lines.emplace_back(l);
  }
  ASSERT_EQ(lines.size(), files.size()) << out;
  for (size_t i = 0; i < files.size(); ++i) {
    for (const std::string& a : signed_cases[i].algorithms) {
      EXPECT_TRUE(absl::StrContains(lines[i], absl::StrCat("\"a\": \"", a, "\", \"ok\": true")))
          << labels[i] << ": " << lines[i];
    }
    EXPECT_FALSE(absl::StrContains(lines[i], "\"ok\": false")) << labels[i];
  }
}

TEST_F(DkimDeliveryTest, MessageAlteredAfterSigningFailsVerification) {
  const std::string path = Received("dot-lines");
  ASSERT_FALSE(path.empty());
  std::string text = ReadFileOrDie(path);
  std::string out;
  ASSERT_EQ(testing::RunDkimVerify({"--dns", dns_->address()}, {path}, &out), 0) << out;
  // What a receiver that does not undo dot-stuffing would store: "..two" arrives as "...two".
  const size_t at = text.find("\r\n..two\r\n");
  ASSERT_NE(at, std::string::npos) << text;
  text.insert(at + 2, ".");
  const std::string altered = *dir_ + "/altered.eml";
  WriteFileOrDie(altered, text);
  EXPECT_EQ(testing::RunDkimVerify({"--dns", dns_->address()}, {altered}, &out), 1) << out;
  EXPECT_TRUE(absl::StrContains(out, "\"a\": \"rsa-sha256\", \"ok\": false")) << out;
  EXPECT_TRUE(absl::StrContains(out, "\"a\": \"ed25519-sha256\", \"ok\": false")) << out;
}

TEST_F(DkimDeliveryTest, MessageThatCannotBeSignedIsQuarantinedNotSentUnsigned) {
  EXPECT_EQ(Received("no-from"), "");
  const std::string why = *spool_ + "/bad/no-from.eml.why";
  ASSERT_TRUE(testing::WaitForFile(why, absl::Seconds(1)));
  EXPECT_TRUE(absl::StrContains(ReadFileOrDie(why), "dkim: dkim[0] (d=esp.dkim s=rsa)"))
      << ReadFileOrDie(why);
}

// A bad key stops start-up with one line naming the entry and the file; nothing is claimed.
TEST(DkimStartupTest, BadKeyStopsStartupWithOneLine) {
  const std::string dir = MakeTempDir("dkimkey");
  auto ed = testing::MakeDkimKey(dir, "ed", Algorithm::kEd25519Sha256);
  ASSERT_TRUE(ed.ok()) << ed.status();
  WriteFileOrDie(dir + "/garbage.pem", "-----BEGIN PRIVATE KEY-----\nnot base64\n");
  chmod((dir + "/garbage.pem").c_str(), 0600);
  ASSERT_TRUE(Spool::Open(dir + "/spool").ok());
  ASSERT_TRUE(InjectFile(dir + "/spool", "m.eml",
                         "x-sender: <a@esp.dkim>\nx-receiver: <b@dest.test>\nFrom: a@esp.dkim\n"
                         "\nhi\n",
                         false)
                  .ok());
  struct Row {
    std::string key_file, algorithm, want;
  };
  const std::vector<Row> rows = {
      {dir + "/garbage.pem", "rsa-sha256", dir + "/garbage.pem: not a PEM private key"},
      {*ed, "rsa-sha256", *ed + ": an Ed25519 key, but algorithm is rsa-sha256"},
      {dir + "/missing.pem", "ed25519-sha256", dir + "/missing.pem: No such file or directory"},
  };
  for (const Row& r : rows) {
    WriteFileOrDie(dir + "/bad.toml",
                   absl::StrCat("[[dkim]]\ndomain = \"esp.dkim\"\nselector = \"s\"\n"
                                "key_file = \"", r.key_file, "\"\nalgorithm = \"", r.algorithm,
                                "\"\n"));
    const int rc = RunCommand({Bin("engine/mxburst"), "--allow-root", "--config",
                               dir + "/bad.toml", "--spool", dir + "/spool", "--drain",
                               "--route", "*=127.0.0.1:9"},
                              dir + "/out", absl::Seconds(30));
    EXPECT_EQ(rc, 2);
    const std::string err = ReadFileOrDie(dir + "/out.err");
    EXPECT_TRUE(absl::StartsWith(
        err, absl::StrCat("mxburst: ", dir, "/bad.toml: dkim[0].key_file: ", r.want)))
        << err;
    EXPECT_EQ(err.find('\n'), err.size() - 1) << "one line: " << err;
    EXPECT_EQ(testing::CountSpool(dir + "/spool", "incoming"), 1u);  // nothing claimed
  }
}

}  // namespace
}  // namespace mxb
