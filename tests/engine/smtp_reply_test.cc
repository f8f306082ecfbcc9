#include "engine/smtp_reply.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"

namespace mxb {
namespace {

// One reply rendered for comparison: "code|enhanced|text" (text lines joined with '\n').
std::string Render(const SmtpReply& r) {
  return absl::StrCat(r.code, "|", r.enhanced, "|", r.text, r.truncated ? "|truncated" : "");
}

std::vector<std::string> RenderAll(const std::vector<SmtpReply>& replies) {
  std::vector<std::string> out;
  for (const SmtpReply& r : replies) out.push_back(Render(r));
  return out;
}

struct Case {
  const char* name;
  std::string input;
  std::vector<std::string> expected;  // replies
  bool error = false;                 // Feed fails (after producing `expected`)
};

std::vector<Case> Cases() {
  return {
      {"single_line", "250 ok\r\n", {"250||ok"}},
      {"bare_code", "250\r\n", {"250||"}},
      {"empty_text", "250 \r\n", {"250||"}},
      {"multi_line", "250-mx.example\r\n250-PIPELINING\r\n250 SIZE 1000\r\n",
       {"250||mx.example\nPIPELINING\nSIZE 1000"}},
      {"bare_lf", "220 hi\n250-a\n250 b\n", {"220||hi", "250||a\nb"}},
      {"mixed_line_ends", "250-a\r\n250 b\n", {"250||a\nb"}},
      {"several_replies", "250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n",
       {"250|2.1.0|2.1.0 ok", "250|2.1.5|2.1.5 ok", "354||go"}},
      {"incomplete_stays_buffered", "250-a\r\n250 b", {}},
      // Enhanced status codes (RFC 3463, RFC 2034).
      {"enhanced_451", "451 4.7.1 greylisted\r\n", {"451|4.7.1|4.7.1 greylisted"}},
      {"enhanced_class_mismatch", "250 5.1.1 odd\r\n", {"250||5.1.1 odd"}},
      {"enhanced_three_digits", "550 5.123.456 x\r\n", {"550|5.123.456|5.123.456 x"}},
      {"enhanced_too_many_digits", "550 5.1234.1 x\r\n", {"550||5.1234.1 x"}},
      {"enhanced_only", "550 5.1.1\r\n", {"550|5.1.1|5.1.1"}},
      {"enhanced_glued", "550 5.1.1x\r\n", {"550||5.1.1x"}},
      {"enhanced_missing_detail", "550 5.1 x\r\n", {"550||5.1 x"}},
      {"enhanced_first_line_only", "550-no code here\r\n550 5.1.1 later\r\n",
       {"550||no code here\n5.1.1 later"}},
      {"enhanced_class_3_never", "354 3.0.0 go\r\n", {"354||3.0.0 go"}},
      // Strict about codes.
      {"letters", "abc\r\n", {}, true},
      {"two_digits", "99 \r\n", {}, true},
      {"code_600", "600 x\r\n", {}, true},
      {"code_199", "199 x\r\n", {}, true},
      {"four_digits", "2500 x\r\n", {}, true},
      {"bad_separator", "250:x\r\n", {}, true},
      {"empty_line", "\r\n", {}, true},
      {"mismatched_continuation", "250-a\r\n251 b\r\n", {}, true},
      {"partial_after_reply", "220 hi\r\n25", {"220||hi"}},
      {"error_after_good_reply_2", "220 hi\r\nxyz\r\n", {"220||hi"}, true},
  };
}

TEST(ReplyParser, Table) {
  for (const Case& c : Cases()) {
    SCOPED_TRACE(c.name);
    ReplyParser p;
    std::vector<SmtpReply> out;
    absl::Status s = p.Feed(c.input, &out);
    EXPECT_EQ(!s.ok(), c.error) << s;
    EXPECT_EQ(RenderAll(out), c.expected);
  }
}

// Every case, split into two Feed calls at every byte position (and byte by byte), gives the
// same replies as one Feed.
TEST(ReplyParser, SplitAtEveryPosition) {
  for (const Case& c : Cases()) {
    for (size_t cut = 0; cut <= c.input.size(); ++cut) {
      SCOPED_TRACE(absl::StrCat(c.name, " cut at ", cut));
      ReplyParser p;
      std::vector<SmtpReply> out;
      absl::Status s = p.Feed(absl::string_view(c.input).substr(0, cut), &out);
      if (s.ok()) s = p.Feed(absl::string_view(c.input).substr(cut), &out);
      EXPECT_EQ(!s.ok(), c.error) << s;
      EXPECT_EQ(RenderAll(out), c.expected);
    }
    SCOPED_TRACE(absl::StrCat(c.name, " byte by byte"));
    ReplyParser p;
    std::vector<SmtpReply> out;
    absl::Status s;
    for (char ch : c.input) {
      s = p.Feed(absl::string_view(&ch, 1), &out);
      if (!s.ok()) break;
    }
    EXPECT_EQ(!s.ok(), c.error) << s;
    EXPECT_EQ(RenderAll(out), c.expected);
  }
}

TEST(ReplyParser, LineLengthLimit) {
  // Exactly the limit (CRLF included) is fine, one more octet is an error — whether the line
  // arrives at once or in pieces.
  const std::string fits = "250 " + std::string(kMaxReplyLineOctets - 6, 'x') + "\r\n";
  ASSERT_EQ(fits.size(), kMaxReplyLineOctets);
  const std::string too_long = "250 " + std::string(kMaxReplyLineOctets - 5, 'x') + "\r\n";
  for (size_t chunk : {size_t{1}, size_t{7}, size_t{4096}}) {
    SCOPED_TRACE(chunk);
    {
      ReplyParser p;
      std::vector<SmtpReply> out;
      absl::Status s;
      for (size_t i = 0; i < fits.size() && s.ok(); i += chunk) {
        s = p.Feed(absl::string_view(fits).substr(i, chunk), &out);
      }
      EXPECT_TRUE(s.ok()) << s;
      ASSERT_EQ(out.size(), 1u);
      EXPECT_EQ(out[0].text.size(), kMaxReplyLineOctets - 6);
    }
    {
      ReplyParser p;
      std::vector<SmtpReply> out;
      absl::Status s;
      for (size_t i = 0; i < too_long.size() && s.ok(); i += chunk) {
        s = p.Feed(absl::string_view(too_long).substr(i, chunk), &out);
      }
      EXPECT_FALSE(s.ok());
      EXPECT_TRUE(out.empty());
      // A server that never sends LF cannot make us buffer more than one line.
      EXPECT_LT(p.buffered(), kMaxReplyLineOctets);
    }
  }
}

TEST(ReplyParser, EndlessLineWithoutLf) {
  ReplyParser p;
  std::vector<SmtpReply> out;
  absl::Status s;
  const std::string chunk(1000, 'x');
  int fed = 0;
  while (s.ok() && fed < 10) {
    s = p.Feed(chunk, &out);
    ++fed;
  }
  EXPECT_FALSE(s.ok());
  EXPECT_LE(fed, 3);
}

TEST(ReplyParser, LineCountLimit) {
  std::string ok_reply;
  for (size_t i = 0; i + 1 < kMaxReplyLines; ++i) ok_reply += "250-x\r\n";
  ok_reply += "250 x\r\n";
  {
    ReplyParser p;
    std::vector<SmtpReply> out;
    EXPECT_TRUE(p.Feed(ok_reply, &out).ok());
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].lines.size(), kMaxReplyLines);
  }
  {
    ReplyParser p;
    std::vector<SmtpReply> out;
    EXPECT_FALSE(p.Feed("250-x\r\n" + ok_reply, &out).ok());
    EXPECT_TRUE(out.empty());
  }
}

TEST(ReplyParser, StoredTextIsCapped) {
  // 100 lines of 100 octets: 10 KB of text, more than kMaxStoredReplyText.
  std::string input;
  const std::string body(100, 'y');
  for (int i = 0; i < 99; ++i) input += "250-" + body + "\r\n";
  input += "250 " + body + "\r\n";
  ReplyParser p;
  std::vector<SmtpReply> out;
  ASSERT_TRUE(p.Feed(input, &out).ok());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(out[0].truncated);
  EXPECT_EQ(out[0].text.size(), kMaxStoredReplyText);
  size_t kept = 0;
  for (const std::string& l : out[0].lines) {
    EXPECT_EQ(l, body);  // whole lines only
    kept += l.size() + 1;
  }
  EXPECT_LE(kept - 1, kMaxStoredReplyText);
  EXPECT_EQ(out[0].lines.size(), (kMaxStoredReplyText + 1) / (body.size() + 1));

  // The next reply starts fresh.
  ASSERT_TRUE(p.Feed("250 short\r\n", &out).ok());
  ASSERT_EQ(out.size(), 2u);
  EXPECT_FALSE(out[1].truncated);
  EXPECT_EQ(out[1].text, "short");
}

TEST(ReplyParser, NoFeedAfterErrorUntilReset) {
  ReplyParser p;
  std::vector<SmtpReply> out;
  EXPECT_FALSE(p.Feed("xyz\r\n", &out).ok());
  EXPECT_FALSE(p.Feed("250 ok\r\n", &out).ok());
  EXPECT_TRUE(out.empty());
  p.Reset();
  EXPECT_TRUE(p.Feed("250 ok\r\n", &out).ok());
  EXPECT_EQ(out.size(), 1u);
}

TEST(ReplyParser, ResetDropsBufferedInput) {
  // RFC 3207 §5: whatever follows "220 go ahead" in the same read was injected before TLS.
  ReplyParser p;
  std::vector<SmtpReply> out;
  ASSERT_TRUE(p.Feed("220 go ahead\r\n250-injected\r\n250 PIPELI", &out).ok());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_GT(p.buffered(), 0u);
  p.Reset();
  EXPECT_EQ(p.buffered(), 0u);
  out.clear();
  ASSERT_TRUE(p.Feed("250 fresh\r\n", &out).ok());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].text, "fresh");
}

TEST(ParseEhlo, Keywords) {
  ReplyParser p;
  std::vector<SmtpReply> out;
  ASSERT_TRUE(p.Feed("250-mx.example Hello [192.0.2.1]\r\n"
                     "250-pipelining\r\n"
                     "250-SIZE 52428800\r\n"
                     "250-8BITMIME\r\n"
                     "250-StartTLS\r\n"
                     "250-ENHANCEDSTATUSCODES\r\n"
                     "250-SMTPUTF8\r\n"
                     "250-CHUNKING\r\n"
                     "250-AUTH PLAIN LOGIN\r\n"
                     "250 REQUIRETLS\r\n",
                     &out)
                  .ok());
  ASSERT_EQ(out.size(), 1u);
  EhloCapabilities c = ParseEhlo(out[0]);
  EXPECT_TRUE(c.pipelining);
  EXPECT_TRUE(c.starttls);
  EXPECT_TRUE(c.eightbitmime);
  EXPECT_TRUE(c.enhancedstatuscodes);
  EXPECT_TRUE(c.smtputf8);
  EXPECT_TRUE(c.chunking);
  EXPECT_TRUE(c.requiretls);
  EXPECT_EQ(c.size, 52428800u);
}

TEST(ParseEhlo, Table) {
  struct EhloCase {
    std::string input;
    bool starttls;
    bool pipelining;
    uint64_t size;
  };
  const EhloCase cases[] = {
      {"250 mx.example\r\n", false, false, 0},
      // The greeting line is not a keyword, even if it looks like one.
      {"250 STARTTLS\r\n", false, false, 0},
      {"250-mx\r\n250 SIZE\r\n", false, false, 0},
      {"250-mx\r\n250 SIZE 0\r\n", false, false, 0},
      {"250-mx\r\n250 SIZE junk\r\n", false, false, 0},
      {"250-mx\r\n250 size 1000 \r\n", false, false, 1000},
      {"250-mx\r\n250-STARTTLSX\r\n250 XPIPELINING\r\n", false, false, 0},
      {"250-mx\r\n250-starttls\r\n250 Pipelining\r\n", true, true, 0},
      {"250-mx\n250-STARTTLS\n250 PIPELINING\n", true, true, 0},
      // Not a positive reply: no capabilities.
      {"550-mx\r\n550 STARTTLS\r\n", false, false, 0},
  };
  for (const EhloCase& c : cases) {
    SCOPED_TRACE(c.input);
    ReplyParser p;
    std::vector<SmtpReply> out;
    ASSERT_TRUE(p.Feed(c.input, &out).ok());
    ASSERT_EQ(out.size(), 1u);
    EhloCapabilities caps = ParseEhlo(out[0]);
    EXPECT_EQ(caps.starttls, c.starttls);
    EXPECT_EQ(caps.pipelining, c.pipelining);
    EXPECT_EQ(caps.size, c.size);
  }
}

}  // namespace
}  // namespace mxb
