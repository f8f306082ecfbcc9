// BuildDsn: parse the RFC 3464 report back into its MIME parts and check the required fields,
// headers-only original, null sender, CRLF only and line lengths; WriteDsn file placement.
#include "queue/dsn.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "queue/spool.h"

namespace mxb {
namespace {

const absl::Time kArrival = absl::FromUnixSeconds(1'700'000'000);  // Tue, 14 Nov 2023 22:13:20
const absl::Time kNow = kArrival + absl::Hours(2);

constexpr absl::string_view kOriginal =
    "From: News <news@esp.example>\n"
    "To: a@x.example\n"
    "Subject: Spring sale\n"
    "Message-ID: <abc@esp.example>\n"
    "\n"
    "SECRET BODY LINE that must not come back\n";

Envelope MakeEnvelope(std::string sender = "bounce@esp.example") {
  Envelope env;
  env.sender = std::move(sender);
  env.recipients = {"a@x.example", "b@y.example"};
  env.envid = "ENV-42";
  return env;
}

DsnReport MakeReport() {
  DsnReport r;
  r.reporting_mta = "mta.esp.example";
  r.arrival = kArrival;
  r.date = kNow;
  r.recipients.push_back({"a@x.example", DsnAction::kFailed, "5.1.1",
                          "smtp; 550 5.1.1 <a@x.example>: Recipient address rejected",
                          "mx1.x.example", kNow - absl::Minutes(1)});
  r.recipients.push_back({"b@y.example", DsnAction::kFailed, std::string(kExpiredStatus),
                          "451 4.4.1 connection timed out", "", kNow});
  return r;
}

struct Part {
  std::map<std::string, std::string> headers;  // lower-case name -> unfolded value
  std::string body;
};

// Header block (CRLF lines, folding allowed) -> map.
std::map<std::string, std::string> ParseHeaders(absl::string_view block) {
  std::map<std::string, std::string> out;
  std::string last;
  for (absl::string_view line : absl::StrSplit(block, "\r\n", absl::SkipEmpty())) {
    if (line[0] == ' ' || line[0] == '\t') {
      out[last] += absl::StrCat(" ", absl::StripAsciiWhitespace(line));
      continue;
    }
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos) continue;
    last = absl::AsciiStrToLower(line.substr(0, colon));
    out[last] = std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
  }
  return out;
}

struct ParsedDsn {
  std::map<std::string, std::string> headers;
  std::vector<Part> parts;
};

ParsedDsn ParseDsn(const std::string& msg) {
  ParsedDsn p;
  const size_t end = msg.find("\r\n\r\n");
  EXPECT_NE(end, std::string::npos);
  p.headers = ParseHeaders(absl::string_view(msg).substr(0, end + 2));
  const std::string& ct = p.headers["content-type"];
  const size_t b = ct.find("boundary=\"");
  EXPECT_NE(b, std::string::npos) << ct;
  const std::string boundary = ct.substr(b + 10, ct.find('"', b + 10) - b - 10);
  const std::string delim = "\r\n--" + boundary;
  std::string body = msg.substr(end + 2);  // keep the CRLF that precedes the first delimiter
  std::vector<std::string> chunks = absl::StrSplit(body, delim);
  EXPECT_GE(chunks.size(), 3u);
  EXPECT_TRUE(absl::StartsWith(chunks.back(), "--\r\n")) << "closing delimiter";
  for (size_t i = 1; i + 1 < chunks.size(); ++i) {
    absl::string_view c = chunks[i];
    EXPECT_TRUE(absl::ConsumePrefix(&c, "\r\n"));
    const size_t he = c.find("\r\n\r\n");
    Part part;
    part.headers = ParseHeaders(c.substr(0, he + 2));
    part.body = std::string(c.substr(he + 4));
    p.parts.push_back(std::move(part));
  }
  return p;
}

// The delivery-status body: groups separated by blank lines.
std::vector<std::map<std::string, std::string>> StatusGroups(const std::string& body) {
  std::vector<std::map<std::string, std::string>> out;
  for (absl::string_view g : absl::StrSplit(body, "\r\n\r\n", absl::SkipWhitespace())) {
    out.push_back(ParseHeaders(absl::StrCat(g, "\r\n")));
  }
  return out;
}

void ExpectWireClean(const std::string& msg) {
  size_t line_start = 0;
  for (size_t i = 0; i < msg.size(); ++i) {
    if (msg[i] == '\n') {
      ASSERT_TRUE(i > 0 && msg[i - 1] == '\r') << "bare LF at " << i;
      EXPECT_LE(i - 1 - line_start, 998u) << "line at " << line_start;
      line_start = i + 1;
    } else if (msg[i] == '\r') {
      ASSERT_TRUE(i + 1 < msg.size() && msg[i + 1] == '\n') << "bare CR at " << i;
    }
  }
  EXPECT_TRUE(absl::EndsWith(msg, "\r\n"));
}

TEST(DsnTest, StructureAndRequiredFields) {
  std::optional<std::string> dsn = BuildDsn(kOriginal, MakeEnvelope(), MakeReport());
  ASSERT_TRUE(dsn.has_value());
  ExpectWireClean(*dsn);
  ParsedDsn p = ParseDsn(*dsn);
  EXPECT_EQ(p.headers["to"], "<bounce@esp.example>");
  EXPECT_EQ(p.headers["from"], "Mail Delivery System <MAILER-DAEMON@mta.esp.example>");
  EXPECT_EQ(p.headers["subject"], "Undelivered Mail Returned to Sender");
  EXPECT_EQ(p.headers["date"], "Wed, 15 Nov 2023 00:13:20 +0000");
  EXPECT_EQ(p.headers["auto-submitted"], "auto-replied");
  EXPECT_EQ(p.headers["mime-version"], "1.0");
  EXPECT_TRUE(absl::StartsWith(p.headers["content-type"],
                               "multipart/report; report-type=delivery-status;"));
  EXPECT_FALSE(p.headers["message-id"].empty());

  ASSERT_EQ(p.parts.size(), 3u);
  EXPECT_TRUE(absl::StartsWith(p.parts[0].headers["content-type"], "text/plain"));
  EXPECT_TRUE(absl::StrContains(p.parts[0].body, "<a@x.example>: failed"));
  EXPECT_EQ(p.parts[1].headers["content-type"], "message/delivery-status");
  EXPECT_EQ(p.parts[2].headers["content-type"], "text/rfc822-headers");

  auto groups = StatusGroups(p.parts[1].body);
  ASSERT_EQ(groups.size(), 3u);  // per-message + 2 recipients
  EXPECT_EQ(groups[0]["reporting-mta"], "dns; mta.esp.example");
  EXPECT_EQ(groups[0]["original-envelope-id"], "ENV-42");
  EXPECT_EQ(groups[0]["arrival-date"], "Tue, 14 Nov 2023 22:13:20 +0000");
  EXPECT_EQ(groups[1]["final-recipient"], "rfc822; a@x.example");
  EXPECT_EQ(groups[1]["action"], "failed");
  EXPECT_EQ(groups[1]["status"], "5.1.1");
  EXPECT_EQ(groups[1]["remote-mta"], "dns; mx1.x.example");
  EXPECT_EQ(groups[1]["diagnostic-code"],
            "smtp; 550 5.1.1 <a@x.example>: Recipient address rejected");
  EXPECT_EQ(groups[1]["last-attempt-date"], "Wed, 15 Nov 2023 00:12:20 +0000");
  EXPECT_EQ(groups[2]["final-recipient"], "rfc822; b@y.example");
  EXPECT_EQ(groups[2]["status"], "4.4.7");
  EXPECT_EQ(groups[2]["diagnostic-code"], "smtp; 451 4.4.1 connection timed out");
  EXPECT_EQ(groups[2].count("remote-mta"), 0u);

  // Headers only: the original body never comes back.
  EXPECT_FALSE(absl::StrContains(*dsn, "SECRET BODY"));
  EXPECT_TRUE(absl::StrContains(p.parts[2].body, "Subject: Spring sale\r\n"));
  EXPECT_TRUE(absl::StrContains(p.parts[2].body, "Message-ID: <abc@esp.example>\r\n"));
}

TEST(DsnTest, NullSenderGetsNone) {
  EXPECT_FALSE(BuildDsn(kOriginal, MakeEnvelope(""), MakeReport()).has_value());
  DsnReport empty = MakeReport();
  empty.recipients.clear();
  EXPECT_FALSE(BuildDsn(kOriginal, MakeEnvelope(), empty).has_value());
}

TEST(DsnTest, DelayedOnlyAndNoEnvid) {
  Envelope env = MakeEnvelope();
  env.envid.clear();
  DsnReport r = MakeReport();
  r.recipients.resize(1);
  r.recipients[0].action = DsnAction::kDelayed;
  r.recipients[0].status = "4.2.2";
  r.recipients[0].will_retry_until = kArrival + absl::Hours(96);
  std::optional<std::string> dsn = BuildDsn(kOriginal, env, r);
  ASSERT_TRUE(dsn.has_value());
  ParsedDsn p = ParseDsn(*dsn);
  EXPECT_EQ(p.headers["subject"], "Delayed Mail (still being retried)");
  auto groups = StatusGroups(p.parts[1].body);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[0].count("original-envelope-id"), 0u);
  EXPECT_EQ(groups[1]["action"], "delayed");
  EXPECT_EQ(groups[1]["will-retry-until"], "Sat, 18 Nov 2023 22:13:20 +0000");
}

TEST(DsnTest, HostileDiagnosticsAndLongLinesStayOnTheWire) {
  DsnReport r = MakeReport();
  // CRLF injection attempt from a remote server, and a 3000-octet reply without spaces.
  r.recipients[0].diagnostic = "smtp; 550 no\r\nX-Injected: yes\r\n\r\n--fake";
  r.recipients[1].diagnostic = std::string(3000, 'x');
  std::string original = absl::StrCat("Subject: ", std::string(2500, 'S'), "\r\n",
                                      "X-Lf-Only: a\nX-Bare-Cr: b\rc\n\nbody\n");
  std::optional<std::string> dsn = BuildDsn(original, MakeEnvelope(), r);
  ASSERT_TRUE(dsn.has_value());
  ExpectWireClean(*dsn);
  ParsedDsn p = ParseDsn(*dsn);
  ASSERT_EQ(p.parts.size(), 3u);
  auto groups = StatusGroups(p.parts[1].body);
  ASSERT_EQ(groups.size(), 3u);
  EXPECT_EQ(groups[1].count("x-injected"), 0u);
  EXPECT_TRUE(absl::StrContains(groups[1]["diagnostic-code"], "X-Injected: yes"));
  EXPECT_TRUE(absl::StrContains(p.parts[2].body, "X-Bare-Cr: b c\r\n"));
  EXPECT_FALSE(absl::StrContains(p.parts[2].body, "body"));
}

TEST(DsnTest, HeaderSectionCrlfAndStopsAtBlankLine) {
  EXPECT_EQ(HeaderSection("A: 1\nB: 2\r\n folded\n\nbody\n"), "A: 1\r\nB: 2\r\n folded\r\n");
  EXPECT_EQ(HeaderSection("A: 1\r\n\r\nbody"), "A: 1\r\n");
  EXPECT_EQ(HeaderSection(""), "");
}

TEST(DsnTest, FileNameIsDeterministicAndBounded) {
  EXPECT_EQ(DsnFileName("m1.eml", 3), "m1.eml.g3.dsn");
  const std::string long_name(240, 'n');
  const std::string f = DsnFileName(long_name, 4294967295u);
  EXPECT_LE(f.size(), 240u);
  EXPECT_EQ(f, DsnFileName(long_name, 4294967295u));
  EXPECT_NE(f, DsnFileName(std::string(239, 'n') + "m", 4294967295u));
}

TEST(DsnTest, WriteDsnToBouncesAndIncoming) {
  std::string tmpl = absl::StrCat(testing::TempDir(), "/mxb-dsn-XXXXXX");
  ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
  const std::string root = tmpl + "/spool";
  absl::StatusOr<Spool> spool = Spool::Open(root);
  ASSERT_TRUE(spool.ok()) << spool.status();
  std::optional<std::string> dsn = BuildDsn(kOriginal, MakeEnvelope(), MakeReport());
  ASSERT_TRUE(dsn.has_value());
  const std::string name = DsnFileName("m1.eml", 0);
  ASSERT_TRUE(WriteDsn(root, name, "bounce@esp.example", *dsn).ok());
  // A second write after a crash replaces the same file.
  ASSERT_TRUE(WriteDsn(root, name, "bounce@esp.example", *dsn).ok());
  std::ifstream in(root + "/bounces/" + name, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  absl::StatusOr<Envelope> env = ParseEnvelope(ss.str());
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->sender, "");  // x-sender: <>: a DSN never bounces
  EXPECT_EQ(env->recipients, std::vector<std::string>{"bounce@esp.example"});
  EXPECT_EQ(ss.str().substr(env->body_offset), *dsn);

  ASSERT_TRUE(WriteDsn(root, name, "bounce@esp.example", *dsn, DsnDestination::kIncoming).ok());
  EXPECT_EQ(spool->ListIncoming(10), std::vector<std::string>{name});
  absl::Status s = WriteDsn(root, name, "", *dsn);
  EXPECT_FALSE(s.ok());
  absl::Status missing = WriteDsn(tmpl + "/nope", name, "s@e.example", *dsn);
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(absl::StrContains(missing.message(), tmpl + "/nope")) << missing;
  ASSERT_EQ(std::system(absl::StrCat("rm -rf '", tmpl, "'").c_str()), 0);
}

}  // namespace
}  // namespace mxb
