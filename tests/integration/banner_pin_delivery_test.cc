// The banner "strict-tls" pin end to end (issue 13 test 8; tls/banner_pin.h): the real engine
// with --banner-pins learn against mxburst-sink --banner, and the MITM proxy that strips
// STARTTLS (tests/integration/mitm_proxy.h). Static routes NAME@127.0.0.1 keep the MX name that
// the certificate is checked against. Every engine run is a restart: what the pin needs in the
// next run comes from SPOOL/policy/banner-pins.json.
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "queue/spool.h"
#include "tests/integration/fixture.h"
#include "tests/integration/mitm_proxy.h"
#include "tls/banner_pin.h"

namespace mxb {
namespace {

using testing::Bin;
using testing::CountSpool;
using testing::FreePort;
using testing::ReadFileOrDie;
using testing::ReadJsonLines;
using testing::RunCommand;
using testing::RunEngine;
using testing::SinkProcess;

constexpr char kMx[] = "mx.pin.example";
constexpr char kPin[] = "strict-tls=mx.pin.example; max-age=3600";

class BannerPinDeliveryTest : public testing::SpoolWorld {
 protected:
  BannerPinDeliveryTest() : SpoolWorld("bannerpin") {}

  void SetUp() override {
    SpoolWorld::SetUp();
    if (HasFatalFailure()) return;
    ca_ = dir_ + "/ca.pem";
    port_ = FreePort("127.0.0.1");
  }

  // (Hides SpoolWorld::StartSink.) The sink for kMx (a certificate for `names`, written to ca_) greeting with `banner`.
  void StartSink(const std::string& banner, const std::string& names = kMx,
                 std::vector<std::string> extra = {}) {
    if (sink_) sink_->Stop();
    std::vector<std::string> args = {"--listen", absl::StrCat("127.0.0.1:", port_),
                                     "--cert-names", names, "--write-cert", ca_,
                                     "--banner", banner};
    args.insert(args.end(), extra.begin(), extra.end());
    sink_ = std::make_unique<SinkProcess>(dir_, args);
    ASSERT_TRUE(sink_->ready()) << sink_->error_text();
  }

  // The STARTTLS-stripping man in the middle in front of the sink.
  std::unique_ptr<testing::MitmProxy> StartStrip() {
    testing::MitmOptions o;
    o.upstream_port = static_cast<uint16_t>(port_);
    o.mode = testing::MitmMode::kStripStartTls;
    absl::StatusOr<std::unique_ptr<testing::MitmProxy>> p = testing::MitmProxy::Start(o);
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? *std::move(p) : nullptr;
  }

  void Inject(const std::string& domain, int count) {
    ASSERT_EQ(RunCommand({Bin("tools/mxburst-inject"), "--spool", spool_, "--count",
                          std::to_string(count), "--domain-list", domain, "--no-fsync",
                          "--size", "2000"},
                         dir_ + "/inject.out"),
              0);
  }

  // One engine run to the end (--drain) with its own log `name`.jsonl; `port` is where kMx's
  // SMTP is (the sink, or a proxy in front of it).
  std::vector<nlohmann::json> Run(const std::string& name, int port,
                                  std::vector<std::string> extra = {}) {
    const std::string log = absl::StrCat(dir_, "/", name, ".jsonl");
    std::vector<std::string> args = {
        "--spool", spool_, "--drain", "--log", log,
        "--workers", "1", "--helo", "test.mxburst.example", "--ca-file", ca_,
        "--banner-pins", "learn", "--smtp-port", std::to_string(port),
        "--route", absl::StrCat("pin.example=", kMx, "@127.0.0.1")};
    args.insert(args.end(), extra.begin(), extra.end());
    const std::string out = absl::StrCat(dir_, "/", name, ".out");
    EXPECT_EQ(RunEngine(args, out, absl::Minutes(3)), 0) << ReadFileOrDie(out + ".err");
    stderr_ = ReadFileOrDie(out + ".err");
    return ReadJsonLines(log);
  }

  std::vector<BannerPin> Pins() {
    absl::StatusOr<std::vector<BannerPin>> p = BannerPinStore::ReadFile(spool_ + "/policy");
    return p.ok() ? *p : std::vector<BannerPin>();
  }

  std::string ca_, stderr_;
};

TEST_F(BannerPinDeliveryTest, LearnedOverVerifiedTlsSurvivesARestartAndDefersAStrippedConnection) {
  StartSink(kPin);
  Inject("pin.example", 3);
  for (const nlohmann::json& r : Run("learn", port_)) {
    EXPECT_EQ(r["status"], "delivered") << r.dump();
    EXPECT_EQ(r["tls"], "TLSv1.3") << r.dump();
  }
  EXPECT_TRUE(absl::StrContains(stderr_, "banner pin learned from mx.pin.example over verified "
                                         "TLS: strict-tls=mx.pin.example; max-age=3600"))
      << stderr_;
  std::vector<BannerPin> pins = Pins();
  ASSERT_EQ(pins.size(), 1u);
  EXPECT_EQ(pins[0].rule.pattern, kMx);
  EXPECT_EQ(pins[0].learned_from, kMx);
  EXPECT_EQ(pins[0].rule.max_age_s, 3600);
  // mxburstctl policy lists it.
  ASSERT_EQ(RunCommand({Bin("tools/mxburstctl"), "policy", "--spool", spool_}, dir_ + "/ctl.out"),
            0);
  const std::string listed = ReadFileOrDie(dir_ + "/ctl.out");
  EXPECT_TRUE(absl::StrContains(listed, "\"source\":\"banner-pin\"")) << listed;
  EXPECT_TRUE(absl::StrContains(listed, "\"pattern\":\"mx.pin.example\"")) << listed;

  // A restart, and STARTTLS stripped on the way: the pin holds, nothing goes in plaintext.
  std::unique_ptr<testing::MitmProxy> strip = StartStrip();
  ASSERT_NE(strip, nullptr);
  Inject("pin.example", 2);
  std::vector<nlohmann::json> stripped = Run("stripped", strip->port());
  ASSERT_EQ(stripped.size(), 2u);
  for (const nlohmann::json& r : stripped) {
    EXPECT_EQ(r["status"], "deferred") << r.dump();
    EXPECT_EQ(r["policy"], "banner-pin") << r.dump();
    EXPECT_EQ(r["policy_source"], "banner-pin") << r.dump();
    EXPECT_TRUE(absl::StrContains(r["text"].get<std::string>(), "starttls-not-offered"))
        << r.dump();
  }
  EXPECT_GT(strip->starttls_stripped(), 0);
  EXPECT_EQ(CountSpool(spool_, "deferred"), 2u);

  // Without the attacker: delivered under the pin, verified.
  Inject("pin.example", 2);
  std::vector<nlohmann::json> direct = Run("direct", port_);
  size_t pinned = 0;
  for (const nlohmann::json& r : direct) {
    if (r["status"] != "delivered") continue;  // the two deferred ones are not due yet
    EXPECT_EQ(r["policy_source"], "banner-pin") << r.dump();
    EXPECT_EQ(r["tls"], "TLSv1.3") << r.dump();
    ++pinned;
  }
  EXPECT_EQ(pinned, 2u);
}

TEST_F(BannerPinDeliveryTest, APinAnnouncedWithoutVerifiedTlsIsNotStored) {
  // The certificate names another host: the handshake completes (opportunistic), the check fails.
  StartSink(kPin, "other.example");
  Inject("pin.example", 2);
  for (const nlohmann::json& r : Run("unverified", port_)) {
    EXPECT_EQ(r["status"], "delivered") << r.dump();
    EXPECT_EQ(r["policy_source"], "opportunistic") << r.dump();
  }
  EXPECT_TRUE(absl::StrContains(stderr_, "not recorded: certificate not verified for "
                                         "mx.pin.example"))
      << stderr_;
  EXPECT_TRUE(Pins().empty());

  // Announced in plaintext only (no STARTTLS at all): not stored either.
  std::unique_ptr<testing::MitmProxy> strip = StartStrip();
  ASSERT_NE(strip, nullptr);
  StartSink(kPin);
  Inject("pin.example", 2);
  for (const nlohmann::json& r : Run("plaintext", strip->port())) {
    EXPECT_EQ(r["status"], "delivered") << r.dump();
    EXPECT_EQ(r["tls"], "none") << r.dump();
  }
  EXPECT_TRUE(absl::StrContains(stderr_, "not recorded: no TLS on this connection")) << stderr_;
  EXPECT_TRUE(Pins().empty());
}

TEST_F(BannerPinDeliveryTest, MaxAgeZeroRemovesThePinOnlyOverVerifiedTls) {
  StartSink(kPin);
  Inject("pin.example", 1);
  Run("learn", port_);
  ASSERT_EQ(Pins().size(), 1u) << stderr_;

  // max-age=0 in a banner that arrives over a stripped (plaintext) session changes nothing.
  StartSink("strict-tls=mx.pin.example; max-age=0");
  std::unique_ptr<testing::MitmProxy> strip = StartStrip();
  ASSERT_NE(strip, nullptr);
  Inject("pin.example", 1);
  for (const nlohmann::json& r : Run("stripped", strip->port())) {
    EXPECT_EQ(r["status"], "deferred") << r.dump();
  }
  ASSERT_EQ(Pins().size(), 1u) << "a plaintext banner never removes a pin";

  // The same banner over verified TLS removes it (HSTS's max-age=0).
  Inject("pin.example", 1);
  Run("removed", port_);
  EXPECT_TRUE(absl::StrContains(stderr_, "banner pin mx.pin.example removed")) << stderr_;
  EXPECT_TRUE(Pins().empty());

  // So a stripped session is plain opportunistic again.
  Inject("pin.example", 1);
  std::vector<nlohmann::json> after = Run("after", strip->port());
  size_t plain = 0;
  for (const nlohmann::json& r : after) {
    if (r["status"] == "delivered" && r["tls"] == "none") ++plain;
  }
  EXPECT_EQ(plain, 1u);
}

// The MX pool (engine/mx_pool.h): b.example's connection to mx2.pin.example (plaintext, slow)
// opened before mx1.pin.example's verified greeting pinned *.pin.example. From then on it must
// carry nothing: it closes, and the next connection, opened under the pin, finds no STARTTLS.
TEST_F(BannerPinDeliveryTest, AConnectionOpenedBeforeThePinCarriesNoMoreMailWithoutVerifiedTls) {
  // mx1: verified, slow to get there (each reply 400 ms), announces the pin for *.pin.example.
  StartSink("strict-tls=*.pin.example; max-age=3600", "mx1.pin.example",
            {"--reply-delay-ms", "400"});
  // mx2: no STARTTLS, 20 ms per reply: 150 messages take several seconds on one connection.
  const std::string dir2 = dir_ + "/mx2";
  std::filesystem::create_directories(dir2);
  const int port2 = FreePort("127.0.0.1");
  SinkProcess plain(dir2, {"--listen", absl::StrCat("127.0.0.1:", port2, "/no-starttls"),
                           "--reply-delay-ms", "20"});
  ASSERT_TRUE(plain.ready()) << plain.error_text();
  Inject("b.example", 150);
  Inject("a.example", 1);
  std::vector<nlohmann::json> records =
      Run("pool", port_,
          {"--route", absl::StrCat("a.example=mx1.pin.example@127.0.0.1:", port_), "--route",
           absl::StrCat("b.example=mx2.pin.example@127.0.0.1:", port2), "--max-connections",
           "1", "--max-connections-per-mx", "1"});
  plain.Stop();
  size_t b_plain = 0, b_deferred = 0, a_ok = 0;
  for (const nlohmann::json& r : records) {
    if (r["domain"] == "a.example") {
      a_ok += r["status"] == "delivered";
      continue;
    }
    if (r["status"] == "delivered") {
      EXPECT_EQ(r["tls"], "none") << r.dump();
      EXPECT_EQ(r["policy_source"], "opportunistic") << r.dump();
      ++b_plain;
    } else {
      EXPECT_EQ(r["status"], "deferred") << r.dump();
      EXPECT_EQ(r["policy"], "banner-pin") << r.dump();
      ++b_deferred;
    }
  }
  EXPECT_EQ(a_ok, 1u);
  ASSERT_EQ(b_plain + b_deferred, 150u);
  EXPECT_GE(b_plain, 1u) << "the old connection was ready before the pin (the case under test)";
  EXPECT_GE(b_deferred, 1u) << "after the pin the unverified connection carried on";
  EXPECT_TRUE(absl::StrContains(stderr_, "mx2.pin.example is pinned")) << stderr_;
}

}  // namespace
}  // namespace mxb
