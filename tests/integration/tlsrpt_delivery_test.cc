// TLS-RPT (RFC 8460) end to end, issue 13 test 7 (and the MTA-STS fetch failures of test 5):
// the real engine against a real unbound (with _mta-sts and _smtp._tls TXT records),
// mxburst-sink (127.0.0.2: STARTTLS with a certificate from the test CA; 127.0.0.3: no STARTTLS,
// the stripped-STARTTLS case) and the Python https server (policies, and the reports' https rua).
// A run with successes and failures, kill -9, a restart, `mxburstctl tlsrpt --send-now`: each
// policy domain's report arrives at the sink as a multipart/report mail and at the https rua as
// a gzip POST, both parsing as the §4.4 JSON with the counts of the first run.
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <set>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "engine/tlsrpt_message.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "queue/spool.h"
#include "tests/dns/dns_test_util.h"
#include "tests/integration/fixture.h"
#include "tests/integration/sts_policy_server.h"

namespace mxb {
namespace {

using Json = nlohmann::json;
using testing::Bin;
using testing::FreePort;
using testing::ReadFileOrDie;
using testing::ReadJsonLines;
using testing::RunCommand;
using testing::SinkProcess;
using testing::Subprocess;
using testing::UnboundServer;
using testing::WaitFor;
using testing::WriteFileOrDie;

// Every policy domain publishes both report destinations (rua): mail to the sink's domain and
// https to the policy server.
std::string Zones(int https_port) {
  const std::string rua = absl::StrCat(
      "\"v=TLSRPTv1; rua=mailto:reports@rua.rptdeliv,https://reports.rptdeliv:", https_port,
      "/tlsrpt\"");
  std::string z = R"(
  local-zone: "rptdeliv." static
  local-data: "rptdeliv. 3600 IN SOA ns.rptdeliv. host.rptdeliv. 1 3600 600 86400 60"
  local-data: "ok.rptdeliv. 60 IN MX 10 mx1.ok.rptdeliv."
  local-data: "mx1.ok.rptdeliv. 60 IN A 127.0.0.2"
  local-data: '_mta-sts.ok.rptdeliv. 60 IN TXT "v=STSv1; id=ok1;"'
  local-data: "mta-sts.ok.rptdeliv. 60 IN A 127.0.0.1"
  local-data: "strip.rptdeliv. 60 IN MX 10 mx.plain.rptdeliv."
  local-data: '_mta-sts.strip.rptdeliv. 60 IN TXT "v=STSv1; id=s1;"'
  local-data: "mta-sts.strip.rptdeliv. 60 IN A 127.0.0.1"
  local-data: "mx.plain.rptdeliv. 60 IN A 127.0.0.3"
  local-data: "fetchfail.rptdeliv. 60 IN MX 10 mx.shared.rptdeliv."
  local-data: '_mta-sts.fetchfail.rptdeliv. 60 IN TXT "v=STSv1; id=f1;"'
  local-data: "mta-sts.fetchfail.rptdeliv. 60 IN A 127.0.0.9"
  local-data: "webpki.rptdeliv. 60 IN MX 10 mx.shared.rptdeliv."
  local-data: '_mta-sts.webpki.rptdeliv. 60 IN TXT "v=STSv1; id=w1;"'
  local-data: "mta-sts.webpki.rptdeliv. 60 IN A 127.0.0.1"
  local-data: "mx.shared.rptdeliv. 60 IN A 127.0.0.2"
  local-data: "rua.rptdeliv. 60 IN MX 10 mx.shared.rptdeliv."
  local-data: "reports.rptdeliv. 60 IN A 127.0.0.1"
)";
  for (const char* d : {"ok", "strip", "fetchfail", "webpki"}) {
    absl::StrAppend(&z, "  local-data: '_smtp._tls.", d, ".rptdeliv. 60 IN TXT ", rua, "'\n");
  }
  return z;
}

// The gzip report part of a multipart/report mail (RFC 8460 §5.3), decoded; "" if missing.
std::string ReportFromMail(const std::string& mail) {
  const size_t part = mail.find("Content-Type: application/tlsrpt+gzip");
  if (part == std::string::npos) return "";
  const size_t body = mail.find("\r\n\r\n", part);
  const size_t end = mail.find("\r\n--", body + 4);
  if (body == std::string::npos || end == std::string::npos) return "";
  std::string b64 = mail.substr(body + 4, end - body - 4);
  b64.erase(std::remove_if(b64.begin(), b64.end(), [](char c) { return c == '\r' || c == '\n'; }),
            b64.end());
  std::string gz;
  if (!absl::Base64Unescape(b64, &gz)) return "";
  absl::StatusOr<std::string> json = GunzipTlsRptReport(gz);
  return json.ok() ? *json : "";
}

std::string DomainOfReport(const Json& r) {
  return r["policies"].empty() ? "" : r["policies"][0]["policy"].value("policy-domain", "");
}

// §4.4: every required field is there with the right type.
void ExpectSection44(const Json& r) {
  ASSERT_TRUE(r.is_object()) << r.dump();
  EXPECT_EQ(r["organization-name"], "Example ESP") << r.dump();
  EXPECT_EQ(r["contact-info"], "tlsrpt@esp.example") << r.dump();
  EXPECT_TRUE(r["report-id"].is_string() && !r["report-id"].get<std::string>().empty());
  EXPECT_TRUE(absl::EndsWith(r["date-range"]["start-datetime"].get<std::string>(), "T00:00:00Z"));
  EXPECT_TRUE(absl::EndsWith(r["date-range"]["end-datetime"].get<std::string>(), "Z"));
  ASSERT_TRUE(r["policies"].is_array() && !r["policies"].empty()) << r.dump();
  for (const Json& p : r["policies"]) {
    EXPECT_TRUE(p["policy"]["policy-type"].is_string()) << p.dump();
    EXPECT_TRUE(p["policy"]["policy-domain"].is_string()) << p.dump();
    EXPECT_TRUE(p["summary"]["total-successful-session-count"].is_number_unsigned()) << p.dump();
    EXPECT_TRUE(p["summary"]["total-failure-session-count"].is_number_unsigned()) << p.dump();
    ASSERT_TRUE(p["failure-details"].is_array()) << p.dump();
    for (const Json& f : p["failure-details"]) {
      EXPECT_TRUE(f["result-type"].is_string()) << f.dump();
      EXPECT_FALSE(f.value("sending-mta-ip", "").empty()) << f.dump();
      EXPECT_FALSE(f.value("receiving-mx-hostname", "").empty()) << f.dump();
      EXPECT_TRUE(f["failed-session-count"].is_number_unsigned()) << f.dump();
    }
  }
}

// What each domain's report must say after the first run (one session each: one connection per
// destination, see the config).
void ExpectCounts(const Json& r) {
  const std::string d = DomainOfReport(r);
  ASSERT_EQ(r["policies"].size(), 1u) << r.dump();
  const Json& p = r["policies"][0];
  EXPECT_EQ(p["policy"]["policy-type"], "sts") << r.dump();
  const auto ok = p["summary"]["total-successful-session-count"].get<uint64_t>();
  const auto failed = p["summary"]["total-failure-session-count"].get<uint64_t>();
  auto only_failure = [&](const char* type, const char* mx) {
    EXPECT_EQ(ok, 0u) << r.dump();
    EXPECT_EQ(failed, 1u) << r.dump();
    ASSERT_EQ(p["failure-details"].size(), 1u) << r.dump();
    EXPECT_EQ(p["failure-details"][0]["result-type"], type) << r.dump();
    EXPECT_EQ(p["failure-details"][0]["receiving-mx-hostname"], mx) << r.dump();
  };
  if (d == "ok.rptdeliv") {
    EXPECT_EQ(ok, 1u) << r.dump();
    EXPECT_EQ(failed, 0u) << r.dump();
    EXPECT_EQ(p["policy"]["policy-string"][1], "mode: enforce") << r.dump();
    EXPECT_EQ(p["policy"]["mx-host"][0], "*.ok.rptdeliv") << r.dump();
  } else if (d == "strip.rptdeliv") {
    only_failure("starttls-not-supported", "mx.plain.rptdeliv");
    EXPECT_EQ(p["failure-details"][0].value("receiving-ip", ""), "127.0.0.3") << r.dump();
  } else if (d == "fetchfail.rptdeliv") {
    only_failure("sts-policy-fetch-error", "mx.shared.rptdeliv");  // issue 13 test 5
  } else if (d == "webpki.rptdeliv") {
    only_failure("sts-webpki-invalid", "mx.shared.rptdeliv");  // issue 13 test 5
  } else {
    ADD_FAILURE() << "report for an unexpected domain: " << r.dump();
  }
}

class TlsRptDeliveryTest : public testing::SpoolWorld {
 protected:
  TlsRptDeliveryTest() : SpoolWorld("rptdeliv", "acct.jsonl") {}

  void SetUp() override {
    SpoolWorld::SetUp();
    if (HasFatalFailure()) return;
    // mta-sts.webpki.rptdeliv is not on the certificate: that fetch fails PKIX.
    server_ = StsPolicyServer::Start(dir_, {"mta-sts.ok.rptdeliv", "mta-sts.strip.rptdeliv",
                                            "reports.rptdeliv"});
    ASSERT_TRUE(server_->ready()) << server_->error();
    server_->SetPolicy("mta-sts.ok.rptdeliv",
                       "version: STSv1\nmode: enforce\nmx: *.ok.rptdeliv\nmax_age: 86400\n");
    server_->SetPolicy("mta-sts.strip.rptdeliv",
                       "version: STSv1\nmode: enforce\nmx: mx.plain.rptdeliv\nmax_age: 86400\n");
    server_->SetPolicy("mta-sts.webpki.rptdeliv",
                       "version: STSv1\nmode: enforce\nmx: mx.shared.rptdeliv\nmax_age: 86400\n");
    absl::StatusOr<std::unique_ptr<UnboundServer>> u =
        UnboundServer::Start(Zones(server_->port()), "");
    ASSERT_TRUE(u.ok()) << u.status();
    dns_ = *std::move(u);
    absl::StatusOr<GeneratedCert> cert =
        server_->IssueLeaf({"mx1.ok.rptdeliv", "mx.shared.rptdeliv", "mx.plain.rptdeliv"});
    ASSERT_TRUE(cert.ok()) << cert.status();
    WriteFileOrDie(dir_ + "/mx.pem", cert->cert_pem);
    WriteFileOrDie(dir_ + "/mx.key", cert->key_pem);
    port_ = FreePort("127.0.0.2");
    sink_ = std::make_unique<SinkProcess>(
        dir_, std::vector<std::string>{
                  "--listen", absl::StrCat("127.0.0.2:", port_, ",127.0.0.3:", port_, "/no-starttls"),
                  "--cert", dir_ + "/mx.pem", "--key", dir_ + "/mx.key", "--out-dir",
                  dir_ + "/received"});
    ASSERT_TRUE(sink_->ready()) << sink_->error_text();
    // One connection per destination, so each domain's session count is exact.
    WriteFileOrDie(dir_ + "/mxburst.toml",
                   absl::StrCat("[mta_sts]\nhttps_port = ", server_->port(),
                                "\nwait = 30\n[limits]\nmax_connections = 1\n[tlsrpt]\n"
                                "enabled = true\norganization_name = \"Example ESP\"\n"
                                "contact_info = \"tlsrpt@esp.example\"\n"
                                "submitter = \"esp.example\"\nfrom = \"tlsrpt@esp.example\"\n"));
  }
  void TearDown() override {
    if (sink_) sink_->Stop();
  }

  void InjectTo(const std::string& rcpt, int n) { testing::InjectTo(spool_, rcpt, n, "rpt"); }

  std::unique_ptr<Subprocess> StartEngine(const std::string& tag) {
    return testing::StartEngine(
        {"--config", dir_ + "/mxburst.toml", "--spool", spool_, "--log", log_, "--workers", "1",
         "--helo", "rpt.esp.example", "--dns", dns_->address(), "--allow-private-mx",
         "--smtp-port", std::to_string(port_), "--ca-file", server_->ca_file(),
         "--connect-timeout", "5"},
        dir_ + "/engine-" + tag + ".out", dir_ + "/engine-" + tag + ".err");
  }

  // The engine runs on the spool: it holds SPOOL/lock (queue/spool_lock.h).
  bool EngineHoldsLock() {
    const int fd = open((spool_ + "/lock").c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    const bool held = flock(fd, LOCK_SH | LOCK_NB) != 0;
    close(fd);
    return held;
  }

  std::unique_ptr<UnboundServer> dns_;
  std::unique_ptr<StsPolicyServer> server_;
};

TEST_F(TlsRptDeliveryTest, CountsSurviveKill9AndSendNowMailsAndPostsTheReports) {
  InjectTo("a@ok.rptdeliv", 3);
  InjectTo("b@strip.rptdeliv", 2);
  InjectTo("c@fetchfail.rptdeliv", 1);
  InjectTo("d@webpki.rptdeliv", 1);
  {
    std::unique_ptr<Subprocess> engine = StartEngine("1");
    ASSERT_TRUE(WaitFor([&] { return ReadJsonLines(log_).size() >= 7; }))
        << ReadFileOrDie(dir_ + "/engine-1.err");
    // The session counts are committed with the outcomes' group commit at the latest: the
    // engine dies right after the last outcome is logged.
    engine->Signal(SIGKILL);
    engine->Wait();
  }
  std::map<std::string, int> delivered;
  for (const Json& r : ReadJsonLines(log_)) ++delivered[r.value("status", "")];
  EXPECT_EQ(delivered["delivered"], 5);  // ok x3, fetchfail, webpki (no policy: opportunistic)
  EXPECT_EQ(delivered["deferred"], 2);   // strip: enforce, STARTTLS stripped

  // mxburstctl tlsrpt reads what the killed engine left: today's counters per domain.
  ASSERT_EQ(RunCommand({Bin("tools/mxburstctl"), "tlsrpt", "--spool", spool_}, dir_ + "/ctl.out"),
            0)
      << ReadFileOrDie(dir_ + "/ctl.out.err");
  std::map<std::string, Json> today;
  for (absl::string_view line :
       absl::StrSplit(ReadFileOrDie(dir_ + "/ctl.out"), '\n', absl::SkipEmpty())) {
    Json j = Json::parse(line);
    today[j["domain"].get<std::string>()] = j;
  }
  ASSERT_EQ(today.size(), 4u) << ReadFileOrDie(dir_ + "/ctl.out");
  EXPECT_EQ(today["ok.rptdeliv"]["policies"][0]["successful"], 1) << today["ok.rptdeliv"];
  EXPECT_EQ(today["strip.rptdeliv"]["policies"][0]["failures"]["starttls-not-supported"], 1);

  // Restart; --send-now builds the four reports; each goes to both destinations.
  std::unique_ptr<Subprocess> engine = StartEngine("2");
  ASSERT_TRUE(WaitFor([&] { return EngineHoldsLock(); })) << ReadFileOrDie(dir_ + "/engine-2.err");
  ASSERT_EQ(RunCommand({Bin("tools/mxburstctl"), "tlsrpt", "--send-now", "--spool", spool_},
                       dir_ + "/send.out"),
            0)
      << ReadFileOrDie(dir_ + "/send.out.err") << ReadFileOrDie(dir_ + "/engine-2.err");
  // A POST that fails once (the Python server under a loaded CI box) is tried again after the
  // reporter's first back-off of one minute: wait past it.
  ASSERT_TRUE(WaitFor([&] { return server_->Posts().size() >= 4; }, absl::Seconds(150)))
      << ReadFileOrDie(dir_ + "/engine-2.err");
  std::map<std::string, std::string> mails;  // policy domain -> mail
  ASSERT_TRUE(WaitFor([&] {
    for (const std::string& name : testing::ListDir(dir_ + "/received")) {
      if (!absl::EndsWith(name, ".eml")) continue;
      std::string m = ReadFileOrDie(dir_ + "/received/" + name);
      const size_t h = m.find("TLS-Report-Domain: ");
      if (h == std::string::npos) continue;
      mails[m.substr(h + 19, m.find("\r\n", h) - h - 19)] = m;
    }
    return mails.size() >= 4;
  })) << ReadFileOrDie(dir_ + "/engine-2.err");
  engine->Signal(SIGTERM);
  EXPECT_EQ(engine->Wait(), 0) << ReadFileOrDie(dir_ + "/engine-2.err");

  std::vector<StsPolicyServer::Post> posts = server_->Posts();
  ASSERT_EQ(posts.size(), 4u);
  std::set<std::string> posted;
  for (const StsPolicyServer::Post& p : posts) {
    EXPECT_EQ(p.content_type, "application/tlsrpt+gzip");
    EXPECT_EQ(p.path, "/tlsrpt");
    absl::StatusOr<std::string> json = GunzipTlsRptReport(p.body);
    ASSERT_TRUE(json.ok()) << json.status();
    Json r = Json::parse(*json, nullptr, false);
    ExpectSection44(r);
    ExpectCounts(r);
    posted.insert(DomainOfReport(r));
  }
  EXPECT_EQ(posted.size(), 4u);
  for (const auto& [domain, m] : mails) {
    SCOPED_TRACE(domain);
    EXPECT_TRUE(absl::StrContains(m, "Content-Type: multipart/report; report-type=\"tlsrpt\""));
    EXPECT_TRUE(absl::StrContains(m, absl::StrCat("Subject: Report Domain: ", domain,
                                                  " Submitter: esp.example Report-ID: <")));
    EXPECT_TRUE(absl::StrContains(m, "TLS-Report-Submitter: esp.example\r\n"));
    Json r = Json::parse(ReportFromMail(m), nullptr, false);
    ExpectSection44(r);
    ExpectCounts(r);
    EXPECT_EQ(DomainOfReport(r), domain);
  }
  // Reports never trigger reports: the report mails' own sessions (to rua.rptdeliv) were not
  // counted, and the reported counts are gone.
  ASSERT_EQ(RunCommand({Bin("tools/mxburstctl"), "tlsrpt", "--spool", spool_}, dir_ + "/ctl2.out"),
            0);
  EXPECT_EQ(ReadFileOrDie(dir_ + "/ctl2.out"), "");
}

}  // namespace
}  // namespace mxb
