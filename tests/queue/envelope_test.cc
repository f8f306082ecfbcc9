// ParseEnvelope / DomainOf / SerializeEnvelope: table-driven good and malformed pickup files.
#include "queue/envelope.h"

#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gtest/gtest.h"

namespace mxb {
namespace {

using namespace std::string_literals;

constexpr absl::string_view kBody =
    "From: a@esp.example\nTo: b@dest.example\nSubject: hi\n\nhello\n";

struct GoodCase {
  std::string name;
  std::string file;
  std::string sender;
  std::vector<std::string> recipients;
  std::string envid;
  std::string job;
  bool require_tls;
  int priority;
  std::string body;  // expected file.substr(body_offset)
};

std::vector<GoodCase> GoodCases() {
  const std::string body(kBody);
  const std::string crlf_body = absl::StrReplaceAll(body, {{"\n", "\r\n"}});
  return {
      {"MinimalLf", absl::StrCat("x-sender: <s@esp.example>\nx-receiver: <r@dest.example>\n", body),
       "s@esp.example", {"r@dest.example"}, "", "", false, 0, body},
      {"MinimalCrlf",
       absl::StrCat("x-sender: <s@esp.example>\r\nx-receiver: <r@dest.example>\r\n", crlf_body),
       "s@esp.example", {"r@dest.example"}, "", "", false, 0, crlf_body},
      {"NullSender", absl::StrCat("x-sender: <>\nx-receiver: <r@dest.example>\n", body), "",
       {"r@dest.example"}, "", "", false, 0, body},
      {"BareAddresses", absl::StrCat("x-sender: s@esp.example\nx-receiver: r@dest.example\n", body),
       "s@esp.example", {"r@dest.example"}, "", "", false, 0, body},
      {"SeveralReceiversDomainLowered",
       absl::StrCat("x-sender: <Bounce@ESP.Example>\n"
                    "x-receiver: <One@Dest.EXAMPLE>\n"
                    "x-receiver: two@dest.example\n"
                    "x-receiver: <three@other.example>\n",
                    body),
       "Bounce@esp.example", {"One@dest.example", "two@dest.example", "three@other.example"}, "", "",
       false, 0, body},
      {"OptionalFieldsAnyOrderAnyCase",
       absl::StrCat("X-Job: spring-sale 2024\n"
                    "X-RECEIVER:<r@dest.example>\n"
                    "x-envid: ENV-123+abc\n"
                    "x-requiretls: YES\n"
                    "x-priority: -3\n"
                    "X-Sender:   <s@esp.example>  \t\n",
                    body),
       "s@esp.example", {"r@dest.example"}, "ENV-123+abc", "spring-sale 2024", true, -3, body},
      {"RequireTlsNo",
       absl::StrCat("x-sender: <s@esp.example>\nx-receiver: <r@dest.example>\nx-requiretls: no\n",
                    body),
       "s@esp.example", {"r@dest.example"}, "", "", false, 0, body},
      {"SpaceBeforeColon",
       absl::StrCat("x-sender : <s@esp.example>\nx-receiver\t: <r@dest.example>\n", body),
       "s@esp.example", {"r@dest.example"}, "", "", false, 0, body},
      // Unknown x- lines end the envelope: they are the message's own headers.
      {"UnknownXHeaderStartsMessage",
       "x-sender: <s@esp.example>\nx-receiver: <r@dest.example>\nX-Mailer: foo\nx-job: j\n\nhi\n",
       "s@esp.example", {"r@dest.example"}, "", "", false, 0, "X-Mailer: foo\nx-job: j\n\nhi\n"},
      {"Utf8LocalPartAndDomainLiteral",
       absl::StrCat("x-sender: <s@esp.example>\nx-receiver: <j\xc3\xb6rg@[192.0.2.1]>\n", body),
       "s@esp.example", {"j\xc3\xb6rg@[192.0.2.1]"}, "", "", false, 0, body},
      {"QuotedLocalPartWithAt",
       absl::StrCat("x-sender: <s@esp.example>\nx-receiver: <\"a@b\"@Dest.Example>\n", body),
       "s@esp.example", {"\"a@b\"@dest.example"}, "", "", false, 0, body},
      {"BodyWithoutFinalNewline",
       "x-sender: <s@esp.example>\nx-receiver: <r@dest.example>\nSubject: x",
       "s@esp.example", {"r@dest.example"}, "", "", false, 0, "Subject: x"},
  };
}

// gtest prints GetParam() in listings and failures: the row name is what a reader needs.
void PrintTo(const GoodCase& c, std::ostream* os) { *os << c.name; }

class EnvelopeGoodTest : public testing::TestWithParam<GoodCase> {};

TEST_P(EnvelopeGoodTest, Parses) {
  const GoodCase& c = GetParam();
  absl::StatusOr<Envelope> env = ParseEnvelope(c.file);
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->sender, c.sender);
  EXPECT_EQ(env->recipients, c.recipients);
  EXPECT_EQ(env->envid, c.envid);
  EXPECT_EQ(env->job, c.job);
  EXPECT_EQ(env->require_tls, c.require_tls);
  EXPECT_EQ(env->priority, c.priority);
  EXPECT_EQ(absl::string_view(c.file).substr(env->body_offset), c.body);
}

TEST_P(EnvelopeGoodTest, SerializeRoundTrips) {
  const GoodCase& c = GetParam();
  absl::StatusOr<Envelope> env = ParseEnvelope(c.file);
  ASSERT_TRUE(env.ok()) << env.status();
  const std::string body(absl::string_view(c.file).substr(env->body_offset));
  const std::string again = SerializeEnvelope(*env, body);
  absl::StatusOr<Envelope> env2 = ParseEnvelope(again);
  ASSERT_TRUE(env2.ok()) << env2.status() << "\n" << again;
  EXPECT_EQ(env2->sender, env->sender);
  EXPECT_EQ(env2->recipients, env->recipients);
  EXPECT_EQ(env2->envid, env->envid);
  EXPECT_EQ(env2->job, env->job);
  EXPECT_EQ(env2->require_tls, env->require_tls);
  EXPECT_EQ(env2->priority, env->priority);
  EXPECT_EQ(again.substr(env2->body_offset), body);
}

INSTANTIATE_TEST_SUITE_P(Envelope, EnvelopeGoodTest, testing::ValuesIn(GoodCases()),
                         [](const testing::TestParamInfo<GoodCase>& info) {
                           return info.param.name;
                         });

struct BadCase {
  std::string name;
  std::string file;
  std::string error;  // substring of the status message, line number included
};

std::vector<BadCase> BadCases() {
  const std::string body(kBody);
  const std::string s = "x-sender: <s@esp.example>\n";
  const std::string r = "x-receiver: <r@dest.example>\n";
  const std::string long_local(kMaxAddressOctets, 'a');
  std::string many_rcpts = s;
  for (size_t i = 0; i <= kMaxRecipients; ++i) absl::StrAppend(&many_rcpts, "x-receiver: <u", i, "@d.example>\n");
  many_rcpts += body;
  std::string huge_envelope = s;
  while (huge_envelope.size() <= kMaxEnvelopeOctets) {
    absl::StrAppend(&huge_envelope, "x-receiver: <", std::string(300, 'x'), "@d.example>\n");
  }
  huge_envelope += body;
  return {
      {"EmptyFile", "", "line 1: file is empty"},
      {"NoSender", r + body, "line 2: no x-sender line"},
      {"NoReceiver", s + body, "line 2: no x-receiver line"},
      {"ReceiverWithoutAt", s + "x-receiver: <rcpt.dest.example>\n" + body,
       "line 2: x-receiver without '@'"},
      {"SenderWithoutAt", "x-sender: bounce\n" + r + body, "line 1: x-sender without '@'"},
      {"SpaceInAddress", s + "x-receiver: <r cpt@dest.example>\n" + body,
       "line 2: x-receiver address contains a space"},
      {"BareAddressWithSpace", s + "x-receiver: r@dest.example junk\n" + body,
       "line 2: x-receiver address contains a space"},
      {"ControlInAddress", s + "x-receiver: <r\x01@dest.example>\n" + body,
       "line 2: x-receiver address contains a control character"},
      {"NulInAddress", s + "x-receiver: <r\0@dest.example>\n"s + body,
       "line 2: x-receiver address contains a control character"},
      {"UnclosedBracket", s + "x-receiver: <r@dest.example\n" + body,
       "line 2: x-receiver has '<' without closing '>'"},
      {"NullReceiver", s + "x-receiver: <>\n" + body, "line 2: x-receiver is the null address"},
      {"EmptySender", "x-sender:\n" + r + body, "line 1: x-sender is empty"},
      {"EmptyLocalPart", s + "x-receiver: <@dest.example>\n" + body,
       "line 2: x-receiver has an empty local part"},
      {"EmptyDomain", s + "x-receiver: <r@>\n" + body, "line 2: x-receiver has an empty domain"},
      {"EmptyDomainLabel", s + "x-receiver: <r@dest..example>\n" + body,
       "line 2: x-receiver has an empty domain label"},
      {"EmptyBody", s + r, "line 2: empty message after the envelope"},
      {"OnlyBlankLinesAfterEnvelope", s + r + "\r\n\n", "line 3: message after the envelope has only empty lines"},
      {"DuplicateSender", s + r + "X-Sender: <t@esp.example>\n" + body,
       "line 3: duplicate x-sender (first on line 1)"},
      {"DuplicateJob", s + r + "x-job: a\nx-job: b\n" + body, "line 4: duplicate x-job"},
      {"OverlongAddress", s + "x-receiver: <" + long_local + "@d.example>\n" + body,
       "line 2: x-receiver address is 330 octets (max 320)"},
      {"TooManyRecipients", many_rcpts, "line 10002: more than 10000 x-receiver lines"},
      {"EnvelopeTooLarge", huge_envelope, "envelope exceeds 1048576 octets"},
      {"BinaryJunk", "\x7f" "ELF\x02\x01\x01\0\0\0junk\n"s + body,
       "line 1: no x-sender line"},
      {"BadRequireTls", s + r + "x-requiretls: maybe\n" + body,
       "line 3: x-requiretls must be yes or no"},
      {"BadPriority", s + r + "x-priority: 3 (Normal)\n" + body,
       "line 3: x-priority is not a decimal integer"},
      {"EnvidWithSpace", s + r + "x-envid: a b\n" + body, "line 3: x-envid is not printable"},
      {"EnvidTooLong", s + r + "x-envid: " + std::string(101, 'e') + "\n" + body,
       "line 3: x-envid must be 1..100 octets"},
      {"JobWithControl", s + r + "x-job: a\x1b[31m\n" + body,
       "line 3: x-job contains a control character"},
      // Issue 10 item 11: engine-written fields are range-checked when read. 4294967295 fits a
      // uint32_t, and recovery's +1 wrapped it to 0 (generation 0 again).
      {"AttemptsAtUint32Max", s + r + "x-attempts: 4294967295\n" + body,
       "line 3: x-attempts out of range (at most 1000000000)"},
      {"AttemptsOverUint32", s + r + "x-attempts: 4294967296\n" + body,
       "line 3: x-attempts is not a decimal integer"},
      {"FirstAttemptPastYear9999", s + r + "x-first-attempt: 9223372036854775807\n" + body,
       "line 3: x-first-attempt out of range"},
      {"NextAttemptPastYear9999", s + r + "x-next-attempt: 253402300800\n" + body,
       "line 3: x-next-attempt out of range"},
      {"NegativeAttempts", s + r + "x-attempts: -1\n" + body,
       "line 3: x-attempts is not a decimal integer >= 0"},
  };
}

void PrintTo(const BadCase& c, std::ostream* os) { *os << c.name; }

class EnvelopeBadTest : public testing::TestWithParam<BadCase> {};

TEST_P(EnvelopeBadTest, Rejects) {
  const BadCase& c = GetParam();
  absl::StatusOr<Envelope> env = ParseEnvelope(c.file);
  ASSERT_FALSE(env.ok());
  EXPECT_EQ(env.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(env.status().message().find(c.error), absl::string_view::npos)
      << "got: " << env.status().message() << "\nwant: " << c.error;
  // Error messages stay short even for megabytes of input.
  EXPECT_LT(env.status().message().size(), 400u);
}

INSTANTIATE_TEST_SUITE_P(Envelope, EnvelopeBadTest, testing::ValuesIn(BadCases()),
                         [](const testing::TestParamInfo<BadCase>& info) {
                           return info.param.name;
                         });

TEST(EnvelopeTest, ErrorQuotesOffendingValueEscaped) {
  absl::StatusOr<Envelope> env =
      ParseEnvelope("x-sender: <s@e.example>\nx-receiver: <a\tb@d.example>\nhi\n");
  ASSERT_FALSE(env.ok());
  EXPECT_NE(env.status().message().find("\"a\\tb@d.example\""), absl::string_view::npos)
      << env.status().message();
}

TEST(EnvelopeTest, RetryFieldsAtTheirBoundsAccepted) {
  absl::StatusOr<Envelope> env = ParseEnvelope(
      "x-sender: <s@e.example>\nx-receiver: <r@d.example>\nx-attempts: 1000000000\n"
      "x-first-attempt: 253402300799\nx-next-attempt: 253402300799\nSubject: x\n\nbody\n");
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->attempts, kMaxAttempts);
  EXPECT_EQ(env->next_attempt, kMaxUnixSeconds);
}

TEST(EnvelopeTest, MaxRecipientsAccepted) {
  std::string file = "x-sender: <>\n";
  for (size_t i = 0; i < kMaxRecipients; ++i) absl::StrAppend(&file, "x-receiver: u", i, "@d.example\n");
  file.append(kBody.data(), kBody.size());
  absl::StatusOr<Envelope> env = ParseEnvelope(file);
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->recipients.size(), kMaxRecipients);
}

TEST(EnvelopeTest, AddressAtLimitAccepted) {
  const std::string addr = std::string(kMaxAddressOctets - 10, 'a') + "@d.example";
  ASSERT_EQ(addr.size(), kMaxAddressOctets);
  absl::StatusOr<Envelope> env =
      ParseEnvelope(absl::StrCat("x-sender: <>\nx-receiver: <", addr, ">\n", kBody));
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->recipients[0], addr);
}

TEST(DomainOfTest, Cases) {
  EXPECT_EQ(DomainOf("a@Example.COM"), "example.com");
  EXPECT_EQ(DomainOf("\"x@y\"@Dest.Example"), "dest.example");
  EXPECT_EQ(DomainOf("no-at-sign"), "");
  EXPECT_EQ(DomainOf(""), "");
  EXPECT_EQ(DomainOf("a@"), "");
}

TEST(SerializeEnvelopeTest, ExactFormat) {
  Envelope env;
  env.sender = "s@esp.example";
  env.recipients = {"a@d.example", "b@d.example"};
  env.envid = "E1";
  env.job = "job 7";
  env.require_tls = true;
  env.priority = 5;
  EXPECT_EQ(SerializeEnvelope(env, "Subject: x\n\nhi\n"),
            "x-sender: <s@esp.example>\n"
            "x-receiver: <a@d.example>\n"
            "x-receiver: <b@d.example>\n"
            "x-envid: E1\n"
            "x-job: job 7\n"
            "x-requiretls: yes\n"
            "x-priority: 5\n"
            "Subject: x\n\nhi\n");
}

TEST(SerializeEnvelopeTest, NullSenderAndCrlfFollowsBody) {
  Envelope env;
  env.recipients = {"a@d.example"};
  EXPECT_EQ(SerializeEnvelope(env, "Subject: x\r\n\r\nhi\r\n"),
            "x-sender: <>\r\nx-receiver: <a@d.example>\r\nSubject: x\r\n\r\nhi\r\n");
}

}  // namespace
}  // namespace mxb
