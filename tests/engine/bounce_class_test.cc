// engine/bounce_class: the built-in rules against real replies (RFC 3463 codes and the texts
// large receivers send), the order code -> text -> generic code, user rules before built-in
// ones, and one-line errors for bad rules files.
#include "engine/bounce_class.h"

#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace mxb {
namespace {

struct Case {
  int code;
  const char* enhanced;
  const char* text;
  const char* want;
};

TEST(BounceClassTest, BuiltinRules) {
  absl::StatusOr<BounceClassifier> c = BounceClassifier::Load("");
  ASSERT_TRUE(c.ok()) << c.status();
  const Case cases[] = {
      {550, "5.1.1", "5.1.1 The email account that you tried to reach does not exist.", "invalid-recipient"},
      {550, "5.1.1", "5.1.1 <a@b>: Recipient address rejected: blocked by spamhaus", "invalid-recipient"},
      {550, "5.0.0", "Requested action not taken: mailbox unavailable", "invalid-recipient"},
      {552, "5.2.2", "5.2.2 The email account that you tried to reach is over quota.", "mailbox-full"},
      {452, "4.2.2", "4.2.2 The email account that you tried to reach is over quota.", "mailbox-full"},
      {552, "5.0.0", "Mailbox full", "mailbox-full"},
      {550, "5.7.1", "5.7.1 Service unavailable; client [192.0.2.1] blocked using Spamhaus", "spam-block"},
      {554, "5.7.1", "5.7.1 Message rejected as spam by Content Filtering", "spam-block"},
      {550, "5.7.1", "5.7.1 Delivery not authorized, message refused", "policy"},
      {550, "5.7.26", "5.7.26 Unauthenticated email from example.com is not accepted due to DMARC", "policy"},
      {550, "5.7.1", "5.7.1 Relaying denied", "policy"},
      {421, "4.7.0", "4.7.0 [192.0.2.1] Our system has detected an unusual rate of unsolicited "
                     "mail originating from your IP address. To protect our users from spam, mail "
                     "sent from your IP address has been temporarily rate limited.", "spam-block"},
      {421, "4.7.0", "4.7.0 Try again later, closing connection.", "rate-limit"},
      {550, "5.7.0", "5.7.0 Message rejected", "policy"},
      {421, "4.7.28", "4.7.28 Gmail has detected an unusual rate of mail", "rate-limit"},
      {421, "4.0.0", "Too many concurrent SMTP connections from this IP address", "rate-limit"},
      {450, "4.0.0", "Requested mail action not taken: try again later", "rate-limit"},
      {421, "4.0.0", "Service not available, closing transmission channel", "rate-limit"},
      {0, "4.4.5", "not tried: domain d1.example paused 60s after 421 (back-off 2)", "rate-limit"},
      {0, "4.7.5", "certificate-host-mismatch: mx.example", "tls"},
      {0, "4.7.4", "starttls-not-offered", "tls"},
      {451, "4.7.0", "MTA-STS policy of a.example not known yet (fetch in progress)", "tls"},
      {0, "5.7.30", "REQUIRETLS: no DNSSEC-validated MX", "tls"},
      {451, "4.4.3", "DNS SERVFAIL for a.example from 127.0.0.1:53", "dns"},
      {556, "5.1.10", "recipient domain a.example has a null MX (RFC 7505)", "dns"},
      {0, "4.4.1", "connect to 192.0.2.1:25: connection refused", "server-error"},
      {0, "4.4.2", "conversation timed out in DATA", "server-error"},
      {451, "4.3.0", "4.3.0 Temporary system failure", "server-error"},
      {554, "5.5.0", "protocol error", "server-error"},
      {550, "5.0.0", "campaign cancelled", "other"},
      {0, "4.4.7", "gave up after 96h; last error: 452 4.2.2 mailbox full", "mailbox-full"},
      {0, "4.4.7", "gave up after 96h; last error: 451 4.0.0 please hold", "other"},
      {451, "4.0.0", "please hold", "other"},
  };
  for (const Case& k : cases) {
    EXPECT_STREQ(ToString(c->Classify(k.code, k.enhanced, k.text)), k.want)
        << k.code << " " << k.enhanced << " " << k.text;
  }
}

TEST(BounceClassTest, UserRulesComeFirst) {
  BounceClassifier c;
  ASSERT_TRUE(c.AddRules("[[text]]\ncontains = [\"Greylisted\"]\nclass = \"rate-limit\"\n"
                         "[[code]]\nenhanced = \"5.1.1\"\nclass = \"other\"\n",
                         "mine.toml")
                  .ok());
  ASSERT_TRUE(c.AddRules(BuiltinBounceRules(), "built-in").ok());
  EXPECT_EQ(c.Classify(451, "4.7.1", "greylisted, see http://x"), BounceClass::kRateLimit);
  EXPECT_EQ(c.Classify(550, "5.1.1", "user unknown"), BounceClass::kOther);
  EXPECT_EQ(c.Classify(550, "4.1.1", "user unknown"), BounceClass::kInvalidRecipient);
}

TEST(BounceClassTest, BadRulesAreOneLineNamingTheRule) {
  struct Bad {
    const char* toml;
    const char* message;
  };
  const Bad bad[] = {
      {"[[text]]\ncontains = [\"x\"]\nclass = \"spammy\"\n", "r.toml: text[0].class: expected one of invalid-recipient"},
      {"[[code]]\nenhanced = \"6.1.1\"\nclass = \"dns\"\n", "r.toml: code[0].enhanced: expected a code"},
      {"[[code]]\nclass = \"dns\"\n", "r.toml: code[0]: needs enhanced or reply"},
      {"[[code]]\nreply = 250\nclass = \"dns\"\n", "r.toml: code[0].reply: expected a 4xx or 5xx"},
      {"[[text]]\ncontains = []\nclass = \"dns\"\n", "r.toml: text[0].contains: expected a non-empty"},
      {"[[text]]\nmatch = [\"x\"]\nclass = \"dns\"\n", "r.toml: text[0].match: unknown key"},
      {"[rules]\n", "r.toml: rules: unknown key"},
      {"[[text]]\ncontains = [\"caf\xc3\xa9\"]\nclass = \"dns\"\n", "r.toml:2: non-ASCII"},
  };
  for (const Bad& b : bad) {
    BounceClassifier c;
    absl::Status s = c.AddRules(b.toml, "r.toml");
    EXPECT_FALSE(s.ok()) << b.toml;
    EXPECT_EQ(std::string(s.message()).rfind(b.message, 0), 0u) << s.message();
    EXPECT_EQ(std::string(s.message()).find('\n'), std::string::npos);
  }
}

TEST(BounceClassTest, MissingFileIsAnError) {
  absl::StatusOr<BounceClassifier> c = BounceClassifier::Load("/nonexistent/rules.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(std::string(c.status().message()), "/nonexistent/rules.toml: cannot open: No such file or directory");
}

// The example rules file that `cmake --install` puts in /etc/mxburst parses.
TEST(BounceClassTest, ShippedExampleLoads) {
  absl::StatusOr<BounceClassifier> c =
      BounceClassifier::Load(std::string(MXB_DIST_DIR) + "/bounce-classes.toml");
  ASSERT_TRUE(c.ok()) << c.status();
}

}  // namespace
}  // namespace mxb
