// SMTP server dialog of mxburst-sink (see smtp_server_session.h).
#include "tools/sink/smtp_server_session.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace mxb::sink {
namespace {

// Hard cap on recipients when --max-rcpts is 0, so a client cannot grow the envelope forever.
constexpr size_t kHardMaxRcpts = 100000;
// Body capacity reserved at DATA when storing: one allocation covers a typical message.
constexpr size_t kBodyReserve = 32 * 1024;

// Splits "VERB rest" at the first space.
void SplitVerb(absl::string_view line, absl::string_view* verb, absl::string_view* arg) {
  size_t sp = line.find(' ');
  if (sp == absl::string_view::npos) {
    *verb = line;
    *arg = absl::string_view();
  } else {
    *verb = line.substr(0, sp);
    *arg = absl::StripAsciiWhitespace(line.substr(sp + 1));
  }
}

// Parses `FROM:<addr> params` / `TO:<addr> params` (RFC 5321 §4.1.1.2-3; a space after the colon
// is tolerated, as most servers do). False on a syntax error.
bool ParsePath(absl::string_view arg, absl::string_view keyword, std::string* address,
               std::string* params) {
  if (arg.size() < keyword.size() || !absl::EqualsIgnoreCase(arg.substr(0, keyword.size()), keyword)) {
    return false;
  }
  arg.remove_prefix(keyword.size());
  arg = absl::StripLeadingAsciiWhitespace(arg);
  if (arg.empty() || arg[0] != '<') return false;
  size_t close = arg.find('>');
  if (close == absl::string_view::npos) return false;
  absl::string_view addr = arg.substr(1, close - 1);
  absl::string_view rest = arg.substr(close + 1);
  if (!rest.empty() && rest[0] != ' ') return false;
  if (addr.find_first_of(" <\t") != absl::string_view::npos) return false;
  *address = std::string(addr);
  *params = std::string(absl::StripAsciiWhitespace(rest));
  return true;
}

}  // namespace

const char* ToString(SessionEvent e) {
  switch (e) {
    case SessionEvent::kNone: return "none";
    case SessionEvent::kStartTls: return "starttls";
    case SessionEvent::kClose: return "close";
  }
  return "?";
}

SmtpServerSession::SmtpServerSession(const SessionConfig* config, MessageStore* store,
                                     SinkStats* stats, bool in_tls)
    : config_(config), store_(store), stats_(stats), in_tls_(in_tls) {}

void SmtpServerSession::Start(std::string* replies) {
  absl::StrAppend(replies, "220 ", config_->hostname, " ESMTP mxburst-sink",
                  config_->banner.empty() ? "" : " ", config_->banner, "\r\n");
}

void SmtpServerSession::ProtocolError(std::string* replies, absl::string_view reply) {
  ++stats_->protocol_errors;
  absl::StrAppend(replies, reply, "\r\n");
}

void SmtpServerSession::ResetTransaction() {
  has_mail_ = false;
  bdat_started_ = false;
  via_bdat_ = false;
  bdat_error_.clear();
  mail_from_.clear();
  mail_params_.clear();
  rcpts_.clear();
  if (rcpts_.capacity() > 64) std::vector<std::string>().swap(rcpts_);
}

FeedResult SmtpServerSession::Feed(absl::string_view input, std::string* replies) {
  FeedResult result;
  while (!input.empty()) {
    switch (phase_) {
      case Phase::kDone:
        result.discarded += input.size();
        return result;
      case Phase::kData: {
        size_t used = 0;
        bool end = FeedData(input, &used);
        input.remove_prefix(used);
        if (end) FinishData(replies);
        break;
      }
      case Phase::kBdat: {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(input.size(), bdat_remaining_));
        if (bdat_error_.empty()) EmitBody(input.data(), n);
        input.remove_prefix(n);
        bdat_remaining_ -= n;
        if (bdat_remaining_ == 0) FinishBdatChunk(replies);
        break;
      }
      case Phase::kDiscardLine: {
        size_t nl = input.find('\n');
        if (nl == absl::string_view::npos) return result;
        input.remove_prefix(nl + 1);
        phase_ = Phase::kCommand;
        break;
      }
      case Phase::kCommand: {
        size_t nl = input.find('\n');
        if (nl == absl::string_view::npos) {
          // +1: the CR of the CRLF may already be here.
          if (line_.size() + input.size() > kMaxCommandLine + 1) {
            ProtocolError(replies, "500 5.5.6 Line too long");
            line_.clear();
            phase_ = Phase::kDiscardLine;
            input = absl::string_view();
          } else {
            line_.append(input.data(), input.size());
            return result;
          }
          break;
        }
        absl::string_view line;
        if (line_.empty()) {
          line = input.substr(0, nl);
        } else {
          line_.append(input.data(), nl);
          line = line_;
        }
        input.remove_prefix(nl + 1);
        SessionEvent ev = OnLine(line, replies);
        line_.clear();
        if (line_.capacity() > 256) std::string().swap(line_);
        if (ev != SessionEvent::kNone) {
          result.event = ev;
          result.discarded = input.size();
          return result;
        }
        break;
      }
    }
  }
  return result;
}

SessionEvent SmtpServerSession::OnLine(absl::string_view line, std::string* replies) {
  if (absl::EndsWith(line, "\r")) {
    line.remove_suffix(1);
  } else {
    // RFC 5321 §2.3.8: lines end in CRLF. Still processed, but the client is wrong.
    ++stats_->protocol_errors;
  }
  if (line.size() > kMaxCommandLine) {
    ProtocolError(replies, "500 5.5.6 Line too long");
    return SessionEvent::kNone;
  }
  absl::string_view verb;
  absl::string_view arg;
  SplitVerb(line, &verb, &arg);
  auto is = [&](absl::string_view name) { return absl::EqualsIgnoreCase(verb, name); };

  if (is("EHLO")) {
    OnEhlo(arg, true, replies);
  } else if (is("HELO")) {
    OnEhlo(arg, false, replies);
  } else if (is("MAIL")) {
    OnMail(arg, replies);
  } else if (is("RCPT")) {
    if (OnRcpt(arg, replies)) {
      phase_ = Phase::kDone;  // RFC 5321 §3.8: 421, then the server closes the channel
      return SessionEvent::kClose;
    }
  } else if (is("DATA")) {
    OnData(arg, replies);
  } else if (is("BDAT") && config_->offer_chunking && !config_->chunking_broken) {
    OnBdat(arg, replies);
    if (phase_ == Phase::kBdat && bdat_remaining_ == 0) FinishBdatChunk(replies);  // BDAT 0
  } else if (is("RSET")) {
    ResetTransaction();
    absl::StrAppend(replies, "250 2.0.0 Ok\r\n");
  } else if (is("NOOP")) {
    absl::StrAppend(replies, "250 2.0.0 Ok\r\n");
  } else if (is("QUIT")) {
    absl::StrAppend(replies, "221 2.0.0 Bye\r\n");
    phase_ = Phase::kDone;
    return SessionEvent::kClose;
  } else if (is("STARTTLS")) {
    return OnStartTls(arg, replies);
  } else {
    ProtocolError(replies, "502 5.5.2 Error: command not recognized");
  }
  return SessionEvent::kNone;
}

void SmtpServerSession::OnEhlo(absl::string_view arg, bool extended, std::string* replies) {
  if (arg.empty()) {
    ProtocolError(replies, extended ? "501 5.5.4 Syntax: EHLO hostname"
                                    : "501 5.5.4 Syntax: HELO hostname");
    return;
  }
  // RFC 5321 §4.1.4: EHLO/HELO in the middle of a transaction resets it.
  ResetTransaction();
  greeted_ = true;
  helo_ = std::string(arg);
  if (!extended) {
    absl::StrAppend(replies, "250 ", config_->hostname, "\r\n");
    return;
  }
  absl::StrAppend(replies, "250-", config_->hostname,
                  "\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 52428800\r\n"
                  "250-ENHANCEDSTATUSCODES\r\n");
  if (config_->offer_starttls && !in_tls_) absl::StrAppend(replies, "250-STARTTLS\r\n");
  if (config_->offer_chunking) absl::StrAppend(replies, "250-CHUNKING\r\n");
  if (config_->offer_requiretls && in_tls_) absl::StrAppend(replies, "250-REQUIRETLS\r\n");
  absl::StrAppend(replies, "250 SMTPUTF8\r\n");
}

void SmtpServerSession::OnMail(absl::string_view arg, std::string* replies) {
  if (!greeted_) return ProtocolError(replies, "503 5.5.1 Error: send HELO/EHLO first");
  if (has_mail_) return ProtocolError(replies, "503 5.5.1 Error: nested MAIL command");
  std::string address;
  std::string params;
  if (!ParsePath(arg, "FROM:", &address, &params)) {
    return ProtocolError(replies, "501 5.5.4 Syntax: MAIL FROM:<address>");
  }
  // RFC 1870 §6.3: refuse an announced size above the limit at MAIL time.
  for (absl::string_view p : absl::StrSplit(params, ' ', absl::SkipEmpty())) {
    uint64_t size = 0;
    if (absl::StartsWithIgnoreCase(p, "SIZE=") && absl::SimpleAtoi(p.substr(5), &size) &&
        size > kMaxMessageSize) {
      absl::StrAppend(replies, "552 5.3.4 Message size exceeds fixed limit\r\n");
      return;
    }
  }
  has_mail_ = true;
  mail_from_ = std::move(address);
  mail_params_ = std::move(params);
  absl::StrAppend(replies, "250 2.1.0 Ok\r\n");
}

bool SmtpServerSession::OnRcpt(absl::string_view arg, std::string* replies) {
  if (!has_mail_) {
    ProtocolError(replies, "503 5.5.1 Error: need MAIL command");
    return false;
  }
  std::string address;
  std::string params;
  if (!ParsePath(arg, "TO:", &address, &params) || address.empty()) {
    ProtocolError(replies, "501 5.5.4 Syntax: RCPT TO:<address>");
    return false;
  }
  if (!config_->shutdown_rcpt.empty() && absl::StrContains(address, config_->shutdown_rcpt)) {
    absl::StrAppend(replies, "421 4.3.2 Service shutting down, closing transmission channel\r\n");
    return true;
  }
  size_t limit = config_->max_rcpts != 0 ? config_->max_rcpts : kHardMaxRcpts;
  if (rcpts_.size() >= limit) {
    absl::StrAppend(replies, "452 4.5.3 Error: too many recipients\r\n");
    return false;
  }
  if (!config_->reject_rcpt.empty() && absl::StrContains(address, config_->reject_rcpt)) {
    ++stats_->rejected_rcpts;
    absl::StrAppend(replies, "550 5.1.1 <", address, ">: No such user\r\n");
    return false;
  }
  if (!config_->tempfail_rcpt.empty() && absl::StrContains(address, config_->tempfail_rcpt)) {
    ++stats_->tempfailed_rcpts;
    absl::StrAppend(replies, "451 4.7.1 <", address, ">: Try again later\r\n");
    return false;
  }
  rcpts_.push_back(std::move(address));
  absl::StrAppend(replies, "250 2.1.5 Ok\r\n");
  return false;
}

void SmtpServerSession::OnData(absl::string_view arg, std::string* replies) {
  if (!arg.empty()) return ProtocolError(replies, "501 5.5.4 Syntax: DATA");
  if (!has_mail_) return ProtocolError(replies, "503 5.5.1 Error: need MAIL command");
  // RFC 3030 §2: BDAT and DATA cannot be mixed in one transaction.
  if (bdat_started_) return ProtocolError(replies, "503 5.5.1 Error: BDAT in progress");
  // RFC 5321 §3.3: DATA with no accepted recipient gets 503 or 554. With PIPELINING the client
  // sends DATA anyway after its RCPTs failed (RFC 2920 §3.1), so this is not a protocol error.
  if (rcpts_.empty()) {
    absl::StrAppend(replies, "554 5.5.1 Error: no valid recipients\r\n");
    return;
  }
  if (!config_->refuse_data_from.empty() &&
      absl::StrContains(mail_from_, config_->refuse_data_from)) {
    absl::StrAppend(replies, "554 5.7.1 Error: transaction refused by policy\r\n");
    return;
  }
  phase_ = Phase::kData;
  data_state_ = DataState::kLineStart;  // the DATA line's CRLF counts as the preceding CRLF
  StartBody();
  absl::StrAppend(replies, "354 End data with <CR><LF>.<CR><LF>\r\n");
}

void SmtpServerSession::StartBody() {
  body_size_ = 0;
  bare_in_message_ = 0;
  too_big_ = false;
  if (store_->storing()) body_.reserve(kBodyReserve);
}

// RFC 3030 §2: bdat-cmd = "BDAT" SP chunk-size [SP end-marker], end-marker = "LAST". The chunk's
// octets follow the command line and are read whatever the verdict (the client may pipeline
// them); a failure is answered once they have been read.
void SmtpServerSession::OnBdat(absl::string_view arg, std::string* replies) {
  const size_t sp = arg.find(' ');
  absl::string_view size_text = arg.substr(0, sp);
  absl::string_view marker = sp == absl::string_view::npos ? "" : arg.substr(sp + 1);
  uint64_t size = 0;
  if (!absl::SimpleAtoi(size_text, &size) || size_text.empty() || size_text[0] == '+' ||
      (!marker.empty() && !absl::EqualsIgnoreCase(marker, "LAST"))) {
    // The size is unknown, so the octets after the line are read as commands (as any server).
    return ProtocolError(replies, "501 5.5.4 Syntax: BDAT chunk-size [LAST]");
  }
  phase_ = Phase::kBdat;
  bdat_remaining_ = size;
  bdat_last_ = !marker.empty();
  if (!bdat_error_.empty()) return;  // an earlier chunk failed: this one is discarded as well
  if (!has_mail_) {
    ++stats_->protocol_errors;
    bdat_error_ = "503 5.5.1 Error: need MAIL command";
  } else if (rcpts_.empty()) {
    bdat_error_ = "554 5.5.1 Error: no valid recipients";
  } else if (!bdat_started_) {
    bdat_started_ = true;
    via_bdat_ = true;
    StartBody();
  }
}

void SmtpServerSession::FinishBdatChunk(std::string* replies) {
  phase_ = Phase::kCommand;
  if (!bdat_error_.empty()) {
    absl::StrAppend(replies, bdat_error_, "\r\n");
    // After the LAST chunk the failed transaction is over; before it the chunks still in the
    // client's pipeline are discarded with the same reply (RFC 3030 §2).
    if (bdat_last_) {
      std::string().swap(body_);
      ResetTransaction();
    }
    return;
  }
  if (!bdat_last_) {
    absl::StrAppend(replies, "250 2.0.0 Ok: chunk received\r\n");
    return;
  }
  FinishData(replies);
}

SessionEvent SmtpServerSession::OnStartTls(absl::string_view arg, std::string* replies) {
  if (!config_->offer_starttls) {
    ProtocolError(replies, "502 5.5.2 Error: command not recognized");
    return SessionEvent::kNone;
  }
  if (in_tls_) {
    ProtocolError(replies, "503 5.5.1 Error: TLS already active");
    return SessionEvent::kNone;
  }
  if (!arg.empty()) {
    ProtocolError(replies, "501 5.5.4 Syntax: STARTTLS");
    return SessionEvent::kNone;
  }
  absl::StrAppend(replies, "220 2.0.0 Ready to start TLS\r\n");
  // RFC 3207 §4.2: discard all knowledge obtained from the client before TLS; the client must
  // EHLO again. Input until the handshake is the connection's to discard (CVE-2011-0411).
  ResetTransaction();
  greeted_ = false;
  helo_.clear();
  in_tls_ = true;
  return SessionEvent::kStartTls;
}

void SmtpServerSession::EmitBody(const char* p, size_t n) {
  body_size_ += n;
  if (!store_->storing() || too_big_) return;
  if (body_size_ > kMaxMessageSize) {
    too_big_ = true;
    std::string().swap(body_);
    return;
  }
  body_.append(p, n);
}

// RFC 5321 §4.5.2: a leading '.' is removed from every line; "." alone on a line (after CRLF)
// ends the data. Only CRLF is a line end (§2.3.8): a bare CR or LF is counted and kept as data,
// so a smuggled "\n.\n" never ends the message here either.
bool SmtpServerSession::FeedData(absl::string_view input, size_t* used) {
  const char* p = input.data();
  const char* const end = p + input.size();
  while (p < end) {
    switch (data_state_) {
      case DataState::kLineStart:
        if (*p == '.') {
          ++p;
          data_state_ = DataState::kDot;
        } else {
          data_state_ = DataState::kMid;
        }
        break;
      case DataState::kMid: {
        const char* nl = static_cast<const char*>(memchr(p, '\n', end - p));
        const char* stop = nl != nullptr ? nl : end;
        const char* cr = static_cast<const char*>(memchr(p, '\r', stop - p));
        if (cr == nullptr) {
          EmitBody(p, stop - p);
          p = stop;
          if (nl != nullptr) {
            ++bare_in_message_;
            EmitBody("\n", 1);
            ++p;
          }
        } else if (cr + 1 == nl) {
          EmitBody(p, nl + 1 - p);  // the common case: a whole line with its CRLF
          p = nl + 1;
          data_state_ = DataState::kLineStart;
        } else {
          EmitBody(p, cr - p);
          p = cr + 1;
          data_state_ = DataState::kMidCr;
        }
        break;
      }
      case DataState::kMidCr:
        if (*p == '\n') {
          EmitBody("\r\n", 2);
          ++p;
          data_state_ = DataState::kLineStart;
        } else {
          ++bare_in_message_;
          EmitBody("\r", 1);
          data_state_ = DataState::kMid;  // *p is examined again as line content
        }
        break;
      case DataState::kDot:
        if (*p == '\r') {
          ++p;
          data_state_ = DataState::kDotCr;
        } else {
          data_state_ = DataState::kMid;  // the stuffed dot is dropped
        }
        break;
      case DataState::kDotCr:
        if (*p == '\n') {
          ++p;
          *used = static_cast<size_t>(p - input.data());
          return true;
        }
        ++bare_in_message_;
        EmitBody("\r", 1);
        data_state_ = DataState::kMid;
        break;
    }
  }
  *used = input.size();
  return false;
}

std::string SmtpServerSession::EnvelopeText() const {
  std::string env = absl::StrCat("mail-from: ", mail_from_, "\n");
  if (!mail_params_.empty()) absl::StrAppend(&env, "mail-params: ", mail_params_, "\n");
  for (const std::string& r : rcpts_) absl::StrAppend(&env, "rcpt-to: ", r, "\n");
  absl::StrAppend(&env, "tls: ", tls_description_.empty() ? "none" : tls_description_, "\n",
                  "peer: ", peer_, "\n", "local: ", local_, "\n", "helo: ", helo_, "\n");
  if (via_bdat_) env.append("transfer: bdat\n");
  return env;
}

void SmtpServerSession::FinishData(std::string* replies) {
  phase_ = Phase::kCommand;
  if (bare_in_message_ != 0) {
    stats_->bare_lf_in_data += bare_in_message_;
    ++stats_->protocol_errors;
  }
  if (too_big_ || body_size_ > kMaxMessageSize) {
    absl::StrAppend(replies, "552 5.3.4 Error: message size exceeds fixed limit\r\n");
  } else if (!config_->reject_data_from.empty() &&
             absl::StrContains(mail_from_, config_->reject_data_from)) {
    absl::StrAppend(replies, "552 5.3.4 Error: message content rejected\r\n");
  } else if (store_->NextDataTempfails()) {
    ++stats_->tempfailed_data;
    absl::StrAppend(replies, "451 4.3.0 Error: try again later\r\n");
  } else {
    uint64_t seq = store_->NextSeq();
    absl::Status st;
    if (store_->storing()) st = store_->Store(seq, body_, EnvelopeText());
    if (!st.ok()) {
      ++stats_->store_errors;
      if (!config_->quiet) fprintf(stderr, "mxburst-sink: %s\n", st.ToString().c_str());
      absl::StrAppend(replies, "451 4.3.0 Error: local storage error\r\n");
    } else {
      ++stats_->messages;
      if (via_bdat_) ++stats_->bdat_messages;
      stats_->recipients += rcpts_.size();
      stats_->bytes += body_size_;
      absl::StrAppend(replies, "250 2.0.0 Ok: queued as ", seq, "\r\n");
    }
  }
  std::string().swap(body_);  // an idle session pins no body memory
  ResetTransaction();
}

}  // namespace mxb::sink
