#include "engine/smtp_data.h"

#include <random>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace mxb {
namespace {

using namespace std::string_literals;  // "a\0b"s keeps the NUL

std::string Wire(absl::string_view body) {
  std::string out;
  AppendDataWire(body, &out);
  return out;
}

// The properties every wire form must have, whatever the input:
//  - every CR is followed by LF and every LF preceded by CR (no bare CR/LF reaches the wire);
//  - no NUL;
//  - CRLF "." CRLF occurs exactly once, at the very end, and no line is a lone "." before it;
//  - decoding gives back the normalised body.
void ExpectWireInvariants(absl::string_view body, absl::string_view wire) {
  SCOPED_TRACE(absl::StrCat("body=\"", absl::CHexEscape(body), "\" wire=\"",
                            absl::CHexEscape(wire), "\""));
  for (size_t i = 0; i < wire.size(); ++i) {
    if (wire[i] == '\r') {
      ASSERT_TRUE(i + 1 < wire.size() && wire[i + 1] == '\n') << "bare CR at " << i;
    }
    if (wire[i] == '\n') {
      ASSERT_TRUE(i > 0 && wire[i - 1] == '\r') << "bare LF at " << i;
    }
    ASSERT_NE(wire[i], '\0') << "NUL at " << i;
  }
  // RFC 5321 §4.5.3.1.6: no line over 1,000 octets including its CRLF.
  for (size_t start = 0; start < wire.size();) {
    size_t lf = wire.find('\n', start);
    ASSERT_NE(lf, absl::string_view::npos);
    ASSERT_LE(lf + 1 - start, 1000u) << "line at " << start;
    start = lf + 1;
  }
  ASSERT_TRUE(absl::EndsWith(wire, "\r\n.\r\n"));
  EXPECT_EQ(wire.find("\r\n.\r\n"), wire.size() - 5);
  EXPECT_FALSE(absl::StartsWith(wire, ".\r\n")) << "terminator as the first line";
  EXPECT_EQ(DecodeDataWire(wire), NormalizeLineEndings(body));
}

struct Case {
  const char* name;
  std::string body;
  std::string wire;  // expected AppendDataWire output
};

std::vector<Case> Cases() {
  return {
      {"crlf", "a\r\nb\r\n", "a\r\nb\r\n.\r\n"},
      {"lf", "a\nb\n", "a\r\nb\r\n.\r\n"},
      {"bare_cr", "a\rb\r", "a\r\nb\r\n.\r\n"},
      {"cr_cr_lf", "a\r\r\nb", "a\r\n\r\nb\r\n.\r\n"},
      {"lf_cr", "a\n\rb", "a\r\n\r\nb\r\n.\r\n"},
      {"no_final_newline", "a\r\nb", "a\r\nb\r\n.\r\n"},
      {"empty", "", "\r\n.\r\n"},
      {"only_nul", "\0\0"s, "\r\n.\r\n"},
      {"nul_dropped", "a\0b\r\n\0"s, "ab\r\n.\r\n"},
      {"nul_between_cr_lf", "a\r\0\nb"s, "a\r\n\r\nb\r\n.\r\n"},
      {"nul_hides_dot", "x\r\n\0.\r\n"s, "x\r\n..\r\n.\r\n"},
      {"lone_dot_line", "a\r\n.\r\nb\r\n", "a\r\n..\r\nb\r\n.\r\n"},
      {"dot_dot_line", "..\r\n", "...\r\n.\r\n"},
      {"dot_first_line", ".hidden\r\n", "..hidden\r\n.\r\n"},
      {"dot_only_body", ".", "..\r\n.\r\n"},
      {"dot_mid_line", "a.b\r\n", "a.b\r\n.\r\n"},
      {"empty_lines", "\r\n\r\n", "\r\n\r\n.\r\n"},
      // RFC 5321 §4.5.3.1.6: lines are cut to 998 octets + CRLF, the way Postfix does it.
      {"body_line_of_998_kept", "h: v\n\n" + std::string(998, 'x'),
       "h: v\r\n\r\n" + std::string(998, 'x') + "\r\n.\r\n"},
      {"body_line_broken_with_space", "h: v\n\n" + std::string(2000, 'x'),
       "h: v\r\n\r\n" + std::string(998, 'x') + "\r\n " + std::string(997, 'x') +
           "\r\n " + std::string(5, 'x') + "\r\n.\r\n"},
      {"body_line_with_spaces_is_not_folded", "h: v\n\n" + std::string(990, 'x') + " yyyyyyyyyyy",
       "h: v\r\n\r\n" + std::string(990, 'x') + " yyyyyyy\r\n yyyy\r\n.\r\n"},
      {"dot_line_counts_the_stuffed_dot", "\n." + std::string(998, 'x'),
       "\r\n.." + std::string(996, 'x') + "\r\n xx\r\n.\r\n"},
      {"header_folded_at_last_space", "Subject: " + std::string(985, 'a') + " bb cc\n\nbody",
       "Subject: " + std::string(985, 'a') + " bb\r\n cc\r\n\r\nbody\r\n.\r\n"},
      {"header_folded_at_tab", "X: " + std::string(990, 'a') + "\t" + std::string(10, 'b') + "\n",
       "X: " + std::string(990, 'a') + "\r\n\t" + std::string(10, 'b') + "\r\n.\r\n"},
      {"header_without_space_broken", "X:" + std::string(1000, 'a') + "\n\nb",
       "X:" + std::string(996, 'a') + "\r\n " + std::string(4, 'a') + "\r\n\r\nb\r\n.\r\n"},
      // Folding never leaves a whitespace-only line (it could end the header section).
      {"header_trailing_spaces_not_folded_alone", "X:" + std::string(996, 'a') + std::string(10, ' '),
       "X:" + std::string(996, 'a') + "\r\n.\r\n"},
      // UTF-8 (SMTPUTF8): the break moves back to the start of the sequence.
      {"utf8_not_split", "\n" + std::string(997, 'x') + "\xc3\xbc" + "z",
       "\r\n" + std::string(997, 'x') + "\r\n \xc3\xbcz\r\n.\r\n"},
      // SMTP smuggling: each of these is an end-of-data that some receiver accepts. Every one
      // must come out as an ordinary, dot-stuffed line.
      {"smuggle_lf_dot_lf", "a\n.\nMAIL FROM:<x>\n", "a\r\n..\r\nMAIL FROM:<x>\r\n.\r\n"},
      {"smuggle_cr_dot_cr", "a\r.\rMAIL FROM:<x>\r", "a\r\n..\r\nMAIL FROM:<x>\r\n.\r\n"},
      {"smuggle_lf_dot_crlf", "a\n.\r\nRSET\r\n", "a\r\n..\r\nRSET\r\n.\r\n"},
      {"smuggle_crlf_dot_cr", "a\r\n.\rRSET\r\n", "a\r\n..\r\nRSET\r\n.\r\n"},
      {"smuggle_crlf_dot_lf", "a\r\n.\nRSET\r\n", "a\r\n..\r\nRSET\r\n.\r\n"},
      {"smuggle_cr_dot_crlf", "a\r.\r\nRSET\r\n", "a\r\n..\r\nRSET\r\n.\r\n"},
      {"smuggle_lf_dot_cr", "a\n.\rRSET", "a\r\n..\r\nRSET\r\n.\r\n"},
      {"smuggle_cr_dot_lf", "a\r.\nRSET", "a\r\n..\r\nRSET\r\n.\r\n"},
      {"smuggle_dot_crlf_at_start", ".\r\nRSET\r\n", "..\r\nRSET\r\n.\r\n"},
      {"smuggle_dot_lf_at_start", ".\nRSET\n", "..\r\nRSET\r\n.\r\n"},
      {"smuggle_dot_cr_at_start", ".\rRSET\r", "..\r\nRSET\r\n.\r\n"},
      {"smuggle_crlf_dot_crlf_at_end", "a\r\n.\r\n", "a\r\n..\r\n.\r\n"},
      {"smuggle_nul_dot", "a\r\n\0.\0\r\n"s, "a\r\n..\r\n.\r\n"},
      {"smuggle_dot_nul_crlf", "a\r\n.\0\r\nb"s, "a\r\n..\r\nb\r\n.\r\n"},
      {"smuggle_cr_cr_dot", "a\r\r.\r\r", "a\r\n\r\n..\r\n\r\n.\r\n"},
      {"smuggle_dot_cr_cr_lf", "a\r\n.\r\r\nb", "a\r\n..\r\n\r\nb\r\n.\r\n"},
  };
}

TEST(SmtpData, Table) {
  for (const Case& c : Cases()) {
    SCOPED_TRACE(c.name);
    const std::string wire = Wire(c.body);
    EXPECT_EQ(absl::CHexEscape(wire), absl::CHexEscape(c.wire));
    ExpectWireInvariants(c.body, wire);
  }
}

TEST(SmtpData, AppendsToExistingOutput) {
  std::string out = "prefix";
  AppendDataWire(".x", &out);
  EXPECT_EQ(out, "prefix..x\r\n.\r\n");
}

TEST(SmtpData, NormalizeLineEndings) {
  EXPECT_EQ(NormalizeLineEndings("a\nb\rc\r\nd"), "a\r\nb\r\nc\r\nd\r\n");
  EXPECT_EQ(NormalizeLineEndings(".x\n"), ".x\r\n");  // no dot-stuffing
  EXPECT_EQ(NormalizeLineEndings(""), "\r\n");
  EXPECT_EQ(NormalizeLineEndings("a\r\r\n"), "a\r\n\r\n");
}

TEST(SmtpData, DecodeDataWire) {
  EXPECT_EQ(DecodeDataWire("..x\r\n.\r\n"), ".x\r\n");
  EXPECT_EQ(DecodeDataWire("a\r\n.\r\nafter\r\n"), "a\r\n");  // stops at the terminator
  EXPECT_EQ(DecodeDataWire(".\r\n"), "");
  EXPECT_EQ(DecodeDataWire("a\r\n..\r\n"), "a\r\n.\r\n");  // no terminator: all decoded
}

// The 10 MiB header line of issue 10: folded into lines of at most 1,000 octets, and unfolding
// (RFC 5322 §2.2.3: remove each CRLF that precedes WSP) gives the original line back.
TEST(SmtpData, HugeHeaderLineFoldsAndUnfolds) {
  std::string value;
  while (value.size() < (size_t{10} << 20)) absl::StrAppend(&value, " word", value.size() % 97);
  const std::string body = absl::StrCat("Subject:", value, "\r\nFrom: a@b\r\n\r\nhi\r\n");
  const std::string wire = Wire(body);
  ExpectWireInvariants(body, wire);
  std::string header = DecodeDataWire(wire);
  header.resize(header.find("\r\nFrom:"));
  std::string unfolded;
  for (size_t i = 0; i < header.size(); ++i) {
    if (header.compare(i, 2, "\r\n") == 0 && i + 2 < header.size() &&
        (header[i + 2] == ' ' || header[i + 2] == '\t')) {
      ++i;
      continue;
    }
    unfolded.push_back(header[i]);
  }
  EXPECT_EQ(unfolded, absl::StrCat("Subject:", value));
}

// Random bodies with long lines (spaces, tabs, dots, UTF-8, NULs) keep every invariant.
TEST(SmtpData, RandomisedLongLines) {
  std::mt19937 rng(20261201);
  const std::string alphabet[] = {"a", " ", "\t", ".", "\xc3\xbc", "\0"s, "\r\n", "\n", "\r"};
  std::uniform_int_distribution<int> pick(0, 8);
  std::uniform_int_distribution<int> length(900, 4000);
  for (int iter = 0; iter < 300; ++iter) {
    std::string body;
    const int n = length(rng);
    for (int i = 0; i < n; ++i) {
      const int k = pick(rng);
      // Line ends are rare, so most lines are long.
      body += (k >= 6 && rng() % 64 != 0) ? alphabet[0] : alphabet[k];
    }
    ExpectWireInvariants(body, Wire(body));
    if (HasFatalFailure() || HasFailure()) return;
  }
}

// Random bodies over the octets that matter for framing.
TEST(SmtpData, RandomisedProperty) {
  std::mt19937 rng(20240229);
  const char alphabet[] = {'\r', '\n', '.', 'a', '\0'};
  std::uniform_int_distribution<int> pick(0, 4);
  std::uniform_int_distribution<int> length(0, 40);
  for (int iter = 0; iter < 20000; ++iter) {
    std::string body;
    const int n = length(rng);
    for (int i = 0; i < n; ++i) body.push_back(alphabet[pick(rng)]);
    ExpectWireInvariants(body, Wire(body));
    if (HasFatalFailure() || HasFailure()) return;
  }
}

// Exhaustive over all strings up to length 7 of the framing alphabet (5^7 = 78125).
TEST(SmtpData, ExhaustiveShortBodies) {
  const char alphabet[] = {'\r', '\n', '.', 'a', '\0'};
  std::string body;
  for (int len = 0; len <= 7; ++len) {
    int total = 1;
    for (int i = 0; i < len; ++i) total *= 5;
    for (int k = 0; k < total; ++k) {
      body.clear();
      for (int i = 0, v = k; i < len; ++i, v /= 5) body.push_back(alphabet[v % 5]);
      ExpectWireInvariants(body, Wire(body));
      if (HasFailure()) return;
    }
  }
}

// The fast path's precondition, said the slow way: the normaliser leaves the body as it is and
// no line starts with '.' (so dot-stuffing adds nothing either).
bool WireFormByDefinition(absl::string_view body) {
  if (NormalizeLineEndings(body) != body) return false;
  if (absl::StartsWith(body, ".")) return false;
  return !absl::StrContains(body, "\n.");
}

std::string Repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

TEST(SmtpData, IsDataWireFormTable) {
  const std::string long_line(998, 'a');
  struct Row {
    const char* name;
    std::string body;
    bool wire_form;
  };
  const Row rows[] = {
      {"crlf lines", "a\r\nb\r\n", true},
      {"empty lines", "a\r\n\r\nb\r\n", true},
      {"one empty line", "\r\n", true},
      {"empty body", "", false},
      {"no final line end", "a\r\nb", false},
      {"final bare LF", "a\r\nb\n", false},
      {"bare LF inside", "a\nb\r\n", false},
      {"bare CR inside", "a\rb\r\n", false},
      {"CR CR LF", "a\r\r\n", false},
      {"NUL", "a\0b\r\n"s, false},
      {"leading dot", ".a\r\n", false},
      {"dot line", "a\r\n.\r\nb\r\n", false},
      {"dot inside a line", "a.b\r\n", true},
      {"998 octets", long_line + "\r\n", true},
      {"999 octets", long_line + "a\r\n", false},
      {"998 then 999", long_line + "\r\n" + long_line + "a\r\n", false},
      // Block edges: a CRLF split at octet 63/64, a dot line starting at octet 64.
      {"CRLF across a block", std::string(62, 'a') + "\r\n" + "b\r\n", true},
      {"CR ends a block, no LF", std::string(63, 'a') + "\rb\r\n", false},
      {"dot at a block start", std::string(62, 'a') + "\r\n.b\r\n", false},
      {"NUL in the tail", std::string(64, 'a') + "\r\nb\0\r\n"s, false},
      // Runs of 16 blocks (1,024 octets) are classified per call: the same at their edges.
      {"clean over several runs", Repeat(std::string(62, 'a') + "\r\n", 40), true},
      {"dot at a run start", Repeat(std::string(62, 'a') + "\r\n", 16) + ".b\r\n", false},
      {"CRLF across runs", Repeat(std::string(62, 'a') + "\r\n", 15) + std::string(63, 'a') +
                               "\r\nb\r\n", true},
      {"bare CR ends a run", Repeat(std::string(62, 'a') + "\r\n", 15) + std::string(63, 'a') +
                                 "\rb\r\n", false},
  };
  for (const Row& r : rows) {
    SCOPED_TRACE(r.name);
    EXPECT_EQ(IsDataWireForm(r.body), r.wire_form);
    EXPECT_EQ(IsDataWireFormPortable(r.body), r.wire_form);
    EXPECT_EQ(WireFormByDefinition(r.body) && !r.body.empty(), r.wire_form);
    if (r.wire_form) {
      EXPECT_EQ(Wire(r.body), r.body + ".\r\n");
    }
  }
}

// Wire-form bodies (CRLF lines of 0-1,000 octets) with at most one defect put anywhere — so
// defects land on every position within and across the 64-octet blocks: the fast check agrees
// with the definition, and the wire form is the same whichever path made it.
TEST(SmtpData, IsDataWireFormRandomised) {
  std::mt19937 rng(20261202);
  const std::string defects[] = {"\r", "\n", "\0"s, ".", "\r\n.", "\n.", "\r\r\n"};
  size_t fast = 0;
  for (int iter = 0; iter < 4000; ++iter) {
    std::string body;
    const int lines = 1 + static_cast<int>(rng() % 12);
    for (int i = 0; i < lines; ++i) {
      const size_t len = rng() % 8 == 0 ? 990 + rng() % 11 : rng() % 90;
      body.append(len, 'a');
      body.append("\r\n");
    }
    switch (rng() % 4) {
      case 0:
        break;  // clean, unless a long line made it too long
      case 1:
        body.insert(rng() % (body.size() + 1), defects[rng() % std::size(defects)]);
        break;
      case 2:
        body.resize(body.size() - 1 - rng() % 2);  // no final CRLF
        break;
      case 3:
        body.insert(rng() % (body.size() + 1), std::string(rng() % 1000, 'b'));
        break;
    }
    SCOPED_TRACE(absl::StrCat("iter ", iter, " size ", body.size()));
    const bool want = !body.empty() && WireFormByDefinition(body);
    ASSERT_EQ(IsDataWireForm(body), want);
    ASSERT_EQ(IsDataWireFormPortable(body), want);
    std::vector<uint32_t> dots;
    std::string wire;
    AppendDataWire(body, &wire, &dots);
    ExpectWireInvariants(body, wire);
    if (want) {
      ++fast;
      EXPECT_EQ(wire, body + ".\r\n");
      EXPECT_TRUE(dots.empty());
    }
  }
  EXPECT_GT(fast, 500u);  // the clean case was exercised, not just the defects
}

}  // namespace
}  // namespace mxb
