// SmtpSession dialogs against golden transcripts in tests/data/smtp_session/*.txt.
//
// Transcript format, one event per line:
//   # ...                 comment (kept)
//   O: key=value ...      session options: helo=, tls=disabled|opportunistic|required,
//                         pipelining=on|off, max_rcpts=N, chunking=on|off, chunk=N (largest
//                         BDAT chunk), implicit_tls=on, auth=plain|login (user "mx@esp.example",
//                         password "s3cret") (before the first event)
//   S: <reply line>       server line, fed (with CRLF) through a ReplyParser; every reply it
//                         completes goes to OnReply()
//   S| <reply line>       more of the same read as the S: line before (one Feed call)
//   E: txn id=N from=<addr> to=<a>,<b> [8bit] body=<C-escaped text, rest of the line>
//                         StartTransaction (body is run through AppendDataWire)
//   E: tls-ready | tls-failed <why> | timeout | lost <why> | quit
// and the session's output, which the test regenerates and compares:
//   C: <command line>     bytes sent (one line each)
//   D: <line>             message body sent after 354 (wire form, one line each), or a BDAT
//                         chunk's data (no dot-stuffing); "D+ <text>" is a chunk's last,
//                         unfinished line, continued by the next chunk
//   A: starttls | need-transaction | close [failure code=N reason="..." [auth-failed]] |
//      parser-error ...
//   R: txn=N rcpt=I <class> <code> <enhanced> <text>   one per recipient result
// Inputs are echoed in order, so a transcript matches iff every output line is where it is.
// MXB_UPDATE_GOLDEN=1 rewrites the files from the current behaviour (review the diff!).
#include "engine/smtp_session.h"

#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "engine/smtp_data.h"
#include "engine/smtp_reply.h"
#include "gtest/gtest.h"

namespace mxb {
namespace {

const char kGoldenDir[] = MXB_TEST_DATA_DIR "/smtp_session";

class TranscriptRunner {
 public:
  // Returns the regenerated transcript, or an error message starting with "!".
  std::string Run(const std::string& golden) {
    for (absl::string_view line : absl::StrSplit(golden, '\n')) {
      if (line.empty() && out_.empty()) continue;
      if (absl::StartsWith(line, "C: ") || absl::StartsWith(line, "D: ") ||
          absl::StartsWith(line, "D+ ") ||
          absl::StartsWith(line, "A: ") || absl::StartsWith(line, "R: ") || line == "C:" ||
          line == "D:") {
        continue;  // expected output: regenerated below
      }
      if (absl::ConsumePrefix(&line, "S| ")) {  // same read as the S: line before
        Echo(absl::StrCat("S| ", line));
        absl::StrAppend(&chunk_, line, "\r\n");
        continue;
      }
      FlushChunk();
      Echo(line);
      if (line.empty() || line[0] == '#') continue;
      if (absl::ConsumePrefix(&line, "O: ")) {
        if (!SetOptions(line)) return absl::StrCat("! bad options: ", line);
      } else if (absl::ConsumePrefix(&line, "S: ")) {
        chunk_ = absl::StrCat(line, "\r\n");
      } else if (line == "S:") {
        chunk_ = "\r\n";
      } else if (absl::ConsumePrefix(&line, "E: ")) {
        if (!Event(line)) return absl::StrCat("! bad event: ", line);
      } else {
        return absl::StrCat("! unknown line: ", line);
      }
    }
    FlushChunk();
    // Trailing newline normalisation: one at the end.
    while (absl::EndsWith(out_, "\n\n")) out_.pop_back();
    return out_;
  }

 private:
  void Echo(absl::string_view line) { absl::StrAppend(&out_, line, "\n"); }

  SmtpSession& session() {
    if (session_ == nullptr) session_ = std::make_unique<SmtpSession>(opts_);
    return *session_;
  }

  bool SetOptions(absl::string_view line) {
    for (absl::string_view kv : absl::StrSplit(line, ' ', absl::SkipEmpty())) {
      std::pair<absl::string_view, absl::string_view> p = absl::StrSplit(kv, '=');
      if (p.first == "helo") {
        opts_.helo_name = std::string(p.second);
      } else if (p.first == "tls") {
        if (p.second == "disabled") {
          opts_.tls = TlsMode::kDisabled;
        } else if (p.second == "opportunistic") {
          opts_.tls = TlsMode::kOpportunistic;
        } else if (p.second == "required") {
          opts_.tls = TlsMode::kRequired;
        } else {
          return false;
        }
      } else if (p.first == "pipelining") {
        opts_.use_pipelining = p.second == "on";
      } else if (p.first == "max_rcpts") {
        if (!absl::SimpleAtoi(p.second, &opts_.max_rcpts_per_transaction)) return false;
      } else if (p.first == "chunking") {
        opts_.use_chunking = p.second == "on";
      } else if (p.first == "chunk") {
        if (!absl::SimpleAtoi(p.second, &opts_.bdat_chunk_size)) return false;
      } else if (p.first == "implicit_tls") {
        opts_.implicit_tls = p.second == "on";
      } else if (p.first == "auth") {
        if (p.second != "plain" && p.second != "login") return false;
        credentials_.relay = "smarthost";
        credentials_.mechanism =
            p.second == "plain" ? AuthMechanism::kPlain : AuthMechanism::kLogin;
        credentials_.username = "mx@esp.example";
        credentials_.password = "s3cret";
        opts_.auth = &credentials_;
      } else {
        return false;
      }
    }
    return session_ == nullptr;
  }

  // One read from the server: feed it, hand each completed reply to the session in order —
  // and, as the engine must, drop the rest of the read after kStartTls (RFC 3207 §5) or kClose.
  void FlushChunk() {
    if (chunk_.empty()) return;
    std::string bytes;
    bytes.swap(chunk_);
    std::vector<SmtpReply> replies;
    absl::Status s = parser_.Feed(bytes, &replies);
    for (const SmtpReply& r : replies) {
      const Action::Kind k = Apply(session().OnReply(r));
      if (k == Action::Kind::kStartTls || k == Action::Kind::kClose) return;
    }
    if (!s.ok()) {
      Echo(absl::StrCat("A: parser-error ", s.message()));
      Apply(session().OnConnectionLost(s.message()));
    }
  }

  bool Event(absl::string_view e) {
    if (e == "tls-ready") {
      Apply(session().OnTlsReady());
    } else if (absl::ConsumePrefix(&e, "tls-failed ")) {
      Apply(session().OnTlsFailed(e));
    } else if (e == "timeout") {
      Apply(session().OnTimeout());
    } else if (absl::ConsumePrefix(&e, "lost ")) {
      Apply(session().OnConnectionLost(e));
    } else if (e == "quit") {
      Apply(session().Quit());
    } else if (absl::ConsumePrefix(&e, "txn ")) {
      Transaction t;
      std::string body;
      while (!e.empty()) {
        if (absl::ConsumePrefix(&e, "body=")) {
          std::string err;
          if (!absl::CUnescape(e, &body, &err)) return false;
          break;
        }
        absl::string_view word = e.substr(0, e.find(' '));
        e.remove_prefix(std::min(e.size(), word.size() + 1));
        if (absl::ConsumePrefix(&word, "id=")) {
          if (!absl::SimpleAtoi(word, &t.id)) return false;
        } else if (absl::ConsumePrefix(&word, "from=")) {
          t.sender = std::string(word);
        } else if (absl::ConsumePrefix(&word, "to=")) {
          t.recipients = absl::StrSplit(word, ',');
        } else if (word == "8bit") {
          t.eight_bit = true;
        } else {
          return false;
        }
      }
      std::string& wire = bodies_.emplace_back();
      std::vector<uint32_t>& dots = dots_.emplace_back();
      AppendDataWire(body, &wire, &dots);
      t.wire_body = wire;
      t.stuffed_dots = &dots;
      Apply(session().StartTransaction(std::move(t)));
    } else {
      return false;
    }
    return true;
  }

  Action::Kind Apply(const Action& a) {
    switch (a.kind) {
      case Action::Kind::kWait:
        break;
      case Action::Kind::kSend:
        EmitLines("C", a.bytes);
        EmitLines("D", a.body);
        EmitBdat(a.parts);
        break;
      case Action::Kind::kStartTls:
        Echo("A: starttls");
        // RFC 3207 §5: the engine discards whatever was read after the 220.
        parser_.Reset();
        break;
      case Action::Kind::kNeedTransaction:
        Echo("A: need-transaction");
        break;
      case Action::Kind::kClose: {
        const SessionFailure& f = session().failure();
        if (f.failed) {
          Echo(absl::StrCat("A: close failure code=", f.code, " reason=\"", f.reason, "\"",
                            f.reply.empty() ? "" : absl::StrCat(" reply=\"", f.reply, "\""),
                            f.auth_failed ? " auth-failed" : ""));
        } else {
          Echo("A: close");
        }
        break;
      }
    }
    for (const RecipientResult& r : session().TakeResults()) {
      Echo(absl::StrCat("R: txn=", r.txn_id, " rcpt=", r.rcpt_index, " ", ToString(r.klass), " ",
                        r.code, " ", r.enhanced, " ", r.text));
    }
    return a.kind;
  }

  // Every send must be whole CRLF lines; a line that is not is shown with its escapes.
  void EmitLines(const char* tag, absl::string_view bytes) {
    while (!bytes.empty()) {
      size_t crlf = bytes.find("\r\n");
      if (crlf == absl::string_view::npos) {
        Echo(absl::StrCat(tag, ": !unterminated \"", absl::CHexEscape(bytes), "\""));
        return;
      }
      absl::string_view line = bytes.substr(0, crlf);
      if (line.find_first_of("\r\n") != absl::string_view::npos) {
        Echo(absl::StrCat(tag, ": !bare CR/LF \"", absl::CHexEscape(line), "\""));
      } else {
        Echo(line.empty() ? std::string(tag) + ":" : absl::StrCat(tag, ": ", line));
      }
      bytes.remove_prefix(crlf + 2);
    }
  }

  // BDAT parts: "BDAT n[ LAST]" lines, each followed by n octets of data over any number of
  // parts. Anything else is shown escaped, so a wrong count cannot pass unnoticed.
  void EmitBdat(const std::vector<absl::string_view>& parts) {
    std::string all;
    for (absl::string_view p : parts) all.append(p.data(), p.size());
    absl::string_view rest = all;
    while (!rest.empty()) {
      const size_t crlf = rest.find("\r\n");
      absl::string_view line = rest.substr(0, crlf);
      uint64_t n = 0;
      absl::string_view count = line;
      if (crlf == absl::string_view::npos || !absl::ConsumePrefix(&count, "BDAT ") ||
          !absl::SimpleAtoi(count.substr(0, count.find(' ')), &n) ||
          crlf + 2 + n > rest.size()) {
        Echo(absl::StrCat("C: !bad BDAT \"", absl::CHexEscape(rest), "\""));
        return;
      }
      Echo(absl::StrCat("C: ", line));
      absl::string_view data = rest.substr(crlf + 2, n);
      rest.remove_prefix(crlf + 2 + n);
      while (!data.empty()) {
        const size_t end = data.find("\r\n");
        if (end == absl::string_view::npos) {
          Echo(absl::StrCat("D+ ", absl::CHexEscape(data)));
          break;
        }
        absl::string_view l = data.substr(0, end);
        Echo(l.empty() ? std::string("D:") : absl::StrCat("D: ", absl::CHexEscape(l)));
        data.remove_prefix(end + 2);
      }
    }
  }

  SessionOptions opts_;
  SmtpCredentials credentials_;
  std::unique_ptr<SmtpSession> session_;
  ReplyParser parser_;
  std::deque<std::string> bodies_;  // wire bodies the session points into
  std::deque<std::vector<uint32_t>> dots_;  // their stuffed dots
  std::string chunk_;  // the current server read (S: plus any S| lines)
  std::string out_;
};

std::vector<std::string> GoldenNames() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(kGoldenDir, ec)) {
    if (entry.path().extension() == ".txt") names.push_back(entry.path().stem().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

class SmtpSessionGolden : public testing::TestWithParam<std::string> {};

TEST_P(SmtpSessionGolden, Transcript) {
  const std::string path = absl::StrCat(kGoldenDir, "/", GetParam(), ".txt");
  std::ifstream in(path, std::ios::binary);
  ASSERT_TRUE(in) << path;
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string golden = ss.str();

  TranscriptRunner runner;
  const std::string actual = runner.Run(golden);
  ASSERT_FALSE(absl::StartsWith(actual, "!")) << path << ": " << actual;

  const char* update = std::getenv("MXB_UPDATE_GOLDEN");
  if (update != nullptr && std::string(update) == "1") {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << actual;
    GTEST_SKIP() << "rewrote " << path;
  }
  EXPECT_EQ(golden, actual) << "transcript differs: " << path
                            << " (MXB_UPDATE_GOLDEN=1 rewrites it; review the diff)";
}

INSTANTIATE_TEST_SUITE_P(Dialogs, SmtpSessionGolden, testing::ValuesIn(GoldenNames()),
                         [](const testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

TEST(SmtpSessionGoldenFiles, Present) { EXPECT_GE(GoldenNames().size(), 12u) << kGoldenDir; }

// ---- Direct checks of what transcripts do not show -------------------------------------------

SmtpReply Reply(absl::string_view text) {
  ReplyParser p;
  std::vector<SmtpReply> out;
  absl::Status s = p.Feed(text, &out);
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(out.size(), 1u) << text;
  return out.empty() ? SmtpReply() : out.front();
}

// A session that has greeted and is idle, with the given EHLO keywords (comma-separated).
SmtpSession Ready(SessionOptions opts, absl::string_view ehlo_keywords) {
  SmtpSession s(std::move(opts));
  EXPECT_EQ(s.OnReply(Reply("220 mx ESMTP\r\n")).kind, Action::Kind::kSend);
  std::string ehlo = "250-mx\r\n";
  for (absl::string_view k : absl::StrSplit(ehlo_keywords, ',', absl::SkipEmpty())) {
    absl::StrAppend(&ehlo, "250-", k, "\r\n");
  }
  ehlo += "250 HELP\r\n";
  EXPECT_EQ(s.OnReply(Reply(ehlo)).kind, Action::Kind::kNeedTransaction);
  return s;
}

TEST(SmtpSession, StartTransactionWhenNotIdleClosesWithoutCrashing) {
  SmtpSession s({.helo_name = "out.example", .tls = TlsMode::kDisabled});
  Transaction t;
  t.id = 7;
  t.recipients = {"a@x", "b@x"};
  t.wire_body = "\r\n.\r\n";
  Action a = s.StartTransaction(t);  // still waiting for the greeting
  EXPECT_EQ(a.kind, Action::Kind::kClose);
  EXPECT_TRUE(s.failure().failed);
  EXPECT_TRUE(absl::StartsWith(s.failure().reason, "internal:")) << s.failure().reason;
  std::vector<RecipientResult> r = s.TakeResults();
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].klass, DeliveryClass::kDeferred);
  EXPECT_EQ(r[1].txn_id, 7u);
}

TEST(SmtpSession, SecondStartTransactionDefersBoth) {
  SmtpSession s = Ready({.tls = TlsMode::kDisabled}, "PIPELINING");
  const std::string wire = "x\r\n.\r\n";
  Transaction t1{.id = 1, .sender = "s@x", .recipients = {"a@x"}, .wire_body = wire};
  Transaction t2{.id = 2, .sender = "s@x", .recipients = {"b@x"}, .wire_body = wire};
  EXPECT_EQ(s.StartTransaction(t1).kind, Action::Kind::kSend);
  EXPECT_EQ(s.StartTransaction(t2).kind, Action::Kind::kClose);
  std::vector<RecipientResult> r = s.TakeResults();
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].txn_id, 2u);
  EXPECT_EQ(r[1].txn_id, 1u);
  EXPECT_EQ(r[1].klass, DeliveryClass::kDeferred);
  EXPECT_FALSE(s.in_transaction());
}

TEST(SmtpSession, RejectsUnsafeAddressesWithoutSendingThem) {
  SmtpSession s = Ready({.tls = TlsMode::kDisabled}, "PIPELINING");
  const std::string wire = "x\r\n.\r\n";
  Transaction t{.id = 3,
                .sender = "s@x",
                .recipients = {"ok@x", "evil@x>\r\nRCPT TO:<other@y", "", "in<jected@x"},
                .wire_body = wire};
  Action a = s.StartTransaction(t);
  ASSERT_EQ(a.kind, Action::Kind::kSend);
  EXPECT_EQ(a.bytes, "MAIL FROM:<s@x>\r\nRCPT TO:<ok@x>\r\nDATA\r\n");
  Transaction bad_sender{
      .id = 4, .sender = "s@x\r\nQUIT", .recipients = {"a@x"}, .wire_body = wire};
  // (first transaction still running: finish it)
  EXPECT_EQ(s.OnReply(Reply("250 ok\r\n")).kind, Action::Kind::kWait);
  EXPECT_EQ(s.OnReply(Reply("250 ok\r\n")).kind, Action::Kind::kWait);
  a = s.OnReply(Reply("354 go\r\n"));
  EXPECT_EQ(a.body, wire);
  EXPECT_EQ(s.OnReply(Reply("250 2.0.0 queued\r\n")).kind, Action::Kind::kNeedTransaction);
  std::vector<RecipientResult> r = s.TakeResults();
  ASSERT_EQ(r.size(), 4u);
  EXPECT_EQ(r[0].klass, DeliveryClass::kDelivered);
  EXPECT_EQ(r[1].klass, DeliveryClass::kBounced);
  EXPECT_EQ(r[1].enhanced, "5.1.3");
  EXPECT_EQ(r[2].klass, DeliveryClass::kBounced);
  EXPECT_EQ(r[3].klass, DeliveryClass::kBounced);

  a = s.StartTransaction(bad_sender);
  EXPECT_EQ(a.kind, Action::Kind::kNeedTransaction);
  r = s.TakeResults();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].klass, DeliveryClass::kBounced);
  EXPECT_EQ(r[0].enhanced, "5.1.7");
}

TEST(SmtpSession, BodyNotInWireFormIsDeferredNotSent) {
  SmtpSession s = Ready({.tls = TlsMode::kDisabled}, "");
  Transaction t{.id = 5, .sender = "", .recipients = {"a@x"}, .wire_body = "raw body\n"};
  EXPECT_EQ(s.StartTransaction(t).kind, Action::Kind::kNeedTransaction);
  std::vector<RecipientResult> r = s.TakeResults();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].klass, DeliveryClass::kDeferred);
  EXPECT_EQ(s.transactions_done(), 1u);
}

TEST(SmtpSession, OversizeMessageBouncesBeforeMail) {
  SmtpSession s = Ready({.tls = TlsMode::kDisabled}, "SIZE 10");
  const std::string wire = "a long enough body\r\n.\r\n";
  Transaction t{.id = 6, .sender = "s@x", .recipients = {"a@x"}, .wire_body = wire};
  EXPECT_EQ(s.StartTransaction(t).kind, Action::Kind::kNeedTransaction);
  std::vector<RecipientResult> r = s.TakeResults();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].klass, DeliveryClass::kBounced);
  EXPECT_EQ(r[0].enhanced, "5.3.4");
}

TEST(SmtpSession, RecipientsBeyondTheLimitGoInTheNextTransaction) {
  SmtpSession s = Ready({.tls = TlsMode::kDisabled, .max_rcpts_per_transaction = 2}, "");
  const std::string wire = "x\r\n.\r\n";
  Transaction t{.id = 8, .sender = "s@x", .recipients = {"a@x", "b@x", "c@x"}, .wire_body = wire};
  Action a = s.StartTransaction(t);
  EXPECT_EQ(a.bytes, "MAIL FROM:<s@x>\r\n");
  EXPECT_EQ(s.OnReply(Reply("250 ok\r\n")).bytes, "RCPT TO:<a@x>\r\n");
  EXPECT_EQ(s.OnReply(Reply("250 ok\r\n")).bytes, "RCPT TO:<b@x>\r\n");
  EXPECT_EQ(s.reply_timeout(), absl::Minutes(5));
  EXPECT_EQ(s.OnReply(Reply("250 ok\r\n")).bytes, "DATA\r\n");
  EXPECT_EQ(s.reply_timeout(), absl::Minutes(2));  // RFC 5321 §4.5.3.2.3
  EXPECT_EQ(s.phase(), "DATA");
  EXPECT_EQ(s.OnReply(Reply("354 go\r\n")).body, wire);
  EXPECT_EQ(s.reply_timeout(), absl::Minutes(10));
  // The first transaction ended: c goes in a second one, same Transaction, no result yet.
  a = s.OnReply(Reply("250 ok\r\n"));
  EXPECT_EQ(a.kind, Action::Kind::kSend);
  EXPECT_EQ(a.bytes, "MAIL FROM:<s@x>\r\n");
  EXPECT_TRUE(s.in_transaction());
  EXPECT_FALSE(s.has_results());
  EXPECT_EQ(s.transactions_done(), 1u);
  EXPECT_EQ(s.OnReply(Reply("250 ok\r\n")).bytes, "RCPT TO:<c@x>\r\n");
  EXPECT_EQ(s.OnReply(Reply("250 ok\r\n")).bytes, "DATA\r\n");
  EXPECT_EQ(s.OnReply(Reply("354 go\r\n")).body, wire);
  EXPECT_EQ(s.OnReply(Reply("250 ok\r\n")).kind, Action::Kind::kNeedTransaction);
  EXPECT_EQ(s.transactions_done(), 2u);
  std::vector<RecipientResult> r = s.TakeResults();
  ASSERT_EQ(r.size(), 3u);
  for (const RecipientResult& x : r) {
    EXPECT_EQ(x.klass, DeliveryClass::kDelivered) << x.rcpt_index;
    EXPECT_EQ(x.txn_id, 8u);
  }
}

// A server answering 452 to every first RCPT: however many recipients wait, the session sends
// a bounded number of commands and ends idle with all of them deferred (no loop).
TEST(SmtpSession, TooManyToEveryFirstRcptNeverLoops) {
  for (bool pipelining : {false, true}) {
    SmtpSession s = Ready({.tls = TlsMode::kDisabled, .max_rcpts_per_transaction = 3},
                          pipelining ? "PIPELINING,ENHANCEDSTATUSCODES" : "ENHANCEDSTATUSCODES");
    const std::string wire = "x\r\n.\r\n";
    Transaction t{.id = 9, .sender = "s@x", .recipients = {}, .wire_body = wire};
    for (int i = 0; i < 50; ++i) t.recipients.push_back(absl::StrCat("r", i, "@x"));
    Action a = s.StartTransaction(t);
    int sends = 0;
    while (a.kind == Action::Kind::kSend || a.kind == Action::Kind::kWait) {
      ASSERT_LT(++sends, 20) << "looping";
      absl::string_view cmd = a.bytes;
      if (a.kind == Action::Kind::kWait) {
        a = s.OnReply(Reply("452 4.5.3 too many recipients\r\n"));
      } else if (absl::StartsWith(cmd, "MAIL") || absl::StartsWith(cmd, "RSET")) {
        a = s.OnReply(Reply("250 2.0.0 ok\r\n"));
      } else if (absl::StartsWith(cmd, "RCPT")) {
        a = s.OnReply(Reply("452 4.5.3 too many recipients\r\n"));
      } else {
        a = s.OnReply(Reply("554 5.5.1 no valid recipients\r\n"));
      }
    }
    EXPECT_EQ(a.kind, Action::Kind::kNeedTransaction) << pipelining;
    std::vector<RecipientResult> r = s.TakeResults();
    ASSERT_EQ(r.size(), 50u);
    for (const RecipientResult& x : r) {
      EXPECT_EQ(x.klass, DeliveryClass::kDeferred);
      EXPECT_EQ(x.enhanced, "4.5.3");
    }
  }
}

TEST(SmtpSession, UnsolicitedIdle421Closes) {
  SmtpSession s = Ready({.tls = TlsMode::kDisabled}, "");
  Action a = s.OnReply(Reply("421 4.4.2 idle timeout\r\n"));
  EXPECT_EQ(a.kind, Action::Kind::kClose);
  EXPECT_TRUE(s.failure().failed);
  EXPECT_EQ(s.failure().code, 421);
  EXPECT_FALSE(s.has_results());
}

TEST(SmtpSession, QuitThenAnyEndIsClean) {
  for (int how = 0; how < 3; ++how) {
    SmtpSession s = Ready({.tls = TlsMode::kDisabled}, "");
    Action a = s.Quit();
    EXPECT_EQ(a.bytes, "QUIT\r\n");
    a = how == 0 ? s.OnReply(Reply("221 bye\r\n"))
        : how == 1 ? s.OnTimeout()
                   : s.OnConnectionLost("EOF");
    EXPECT_EQ(a.kind, Action::Kind::kClose);
    EXPECT_FALSE(s.failure().failed);
    EXPECT_EQ(s.state(), SmtpState::kClosed);
  }
}

TEST(SmtpSession, EventsAfterCloseStayClosed) {
  SmtpSession s({.tls = TlsMode::kDisabled});
  EXPECT_EQ(s.OnReply(Reply("554 no\r\n")).kind, Action::Kind::kClose);
  EXPECT_EQ(s.OnReply(Reply("220 hi\r\n")).kind, Action::Kind::kClose);
  EXPECT_EQ(s.OnTimeout().kind, Action::Kind::kClose);
  EXPECT_EQ(s.OnTlsReady().kind, Action::Kind::kClose);
  EXPECT_EQ(s.Quit().kind, Action::Kind::kClose);
  EXPECT_EQ(s.failure().reason, "greeting: 554 no");
}

TEST(SmtpSession, TimeoutTableFollowsRfc5321) {
  EXPECT_EQ(DefaultReplyTimeout(SmtpState::kGreeting), absl::Minutes(5));
  EXPECT_EQ(DefaultReplyTimeout(SmtpState::kMail), absl::Minutes(5));
  EXPECT_EQ(DefaultReplyTimeout(SmtpState::kDataBody), absl::Minutes(10));
  EXPECT_EQ(DefaultReplyTimeout(SmtpState::kIdle), absl::InfiniteDuration());
  EXPECT_STREQ(ToString(SmtpState::kDataBody), "data-body");
  EXPECT_STREQ(PhaseName(SmtpState::kDataBody), "end of data");
  EXPECT_STREQ(ToString(TlsMode::kRequired), "required");
  EXPECT_STREQ(ToString(DeliveryClass::kBounced), "bounced");
}

}  // namespace
}  // namespace mxb

namespace mxb {
namespace {

// Implicit TLS (the smtps- port): the engine handshook before the greeting, so a session that
// requires TLS must not ask for STARTTLS nor fail with starttls-not-offered.
TEST(SmtpSession, ImplicitTlsSessionNeedsNoStartTls) {
  SessionOptions opts;
  opts.tls = TlsMode::kRequired;
  opts.implicit_tls = true;
  SmtpSession s(opts);
  EXPECT_TRUE(s.tls_active());
  Action a = s.OnReply(Reply("220 mx ESMTP\r\n"));
  ASSERT_EQ(a.kind, Action::Kind::kSend);
  EXPECT_TRUE(absl::StartsWith(a.bytes, "EHLO ")) << a.bytes;
  a = s.OnReply(Reply("250-mx\r\n250 PIPELINING\r\n"));
  EXPECT_EQ(a.kind, Action::Kind::kNeedTransaction);
  EXPECT_FALSE(s.failure().failed);
}

// The same server without implicit TLS and with TLS required is refused.
TEST(SmtpSession, RequiredTlsWithoutStartTlsFailsWhenNotImplicit) {
  SessionOptions opts;
  opts.tls = TlsMode::kRequired;
  SmtpSession s(opts);
  (void)s.OnReply(Reply("220 mx ESMTP\r\n"));
  Action a = s.OnReply(Reply("250-mx\r\n250 PIPELINING\r\n"));
  EXPECT_EQ(a.kind, Action::Kind::kClose);
  EXPECT_EQ(s.failure().reason, "starttls-not-offered");
}

}  // namespace
}  // namespace mxb
