#include "engine/smtp_session.h"

#include <algorithm>
#include <cstddef>
#include <iterator>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace mxb {
namespace {

// One row per SmtpState, in enum order: its log name, the phrase for "timeout in ...", and the
// RFC 5321 §4.5.3.2 reply timeout in seconds (-1: no reply is awaited).
struct StateRow {
  SmtpState state;
  const char* name;
  const char* phase;
  int timeout_s;
};
constexpr StateRow kStateTable[] = {
    {SmtpState::kGreeting, "greeting", "greeting", 300},     // §4.5.3.2.1: 5 minutes
    {SmtpState::kEhlo, "ehlo", "EHLO", 300},                 // no RFC value: as MAIL
    {SmtpState::kHelo, "helo", "HELO", 300},
    {SmtpState::kStartTls, "starttls", "STARTTLS", 300},
    {SmtpState::kTlsHandshake, "tls-handshake", "TLS handshake", 300},  // engine's own deadline
    {SmtpState::kEhloTls, "ehlo-tls", "EHLO after STARTTLS", 300},
    {SmtpState::kAuth, "auth", "AUTH", 300},                 // RFC 4954 sets none: as EHLO
    {SmtpState::kIdle, "idle", "idle", -1},
    {SmtpState::kMail, "mail", "MAIL/RCPT/DATA", 300},       // §4.5.3.2.2/.3: MAIL, RCPT 5 min
    {SmtpState::kDataBody, "data-body", "end of data", 600},  // §4.5.3.2.6: 10 minutes
    {SmtpState::kRset, "rset", "RSET", 300},
    {SmtpState::kQuit, "quit", "QUIT", 300},
    {SmtpState::kClosed, "closed", "closed", -1},
};
constexpr bool TableInEnumOrder() {
  for (size_t i = 0; i < std::size(kStateTable); ++i) {
    if (static_cast<size_t>(kStateTable[i].state) != i) return false;
  }
  return std::size(kStateTable) == static_cast<size_t>(SmtpState::kClosed) + 1;
}
static_assert(TableInEnumOrder(), "kStateTable must list every SmtpState in enum order");

const StateRow& Row(SmtpState s) {
  const size_t i = static_cast<size_t>(s);
  return i < std::size(kStateTable) ? kStateTable[i] : kStateTable[std::size(kStateTable) - 1];
}

constexpr absl::Duration kDataInitiationTimeout = absl::Minutes(2);  // §4.5.3.2.3

// RFC 5321 §4.3.2 lists the success replies of each command; only those count. A 2xx the RFC
// does not allow (a 250 to DATA, a 251 to the final ".") is the server breaking the protocol,
// and the client must not guess what it meant — a message is never taken as delivered on one.
bool IsPositive(const SmtpReply& r) { return r.code == 250; }          // EHLO HELO MAIL RSET "."
bool IsRcptPositive(const SmtpReply& r) { return r.code == 250 || r.code == 251; }  // RCPT

// "421 4.3.2 busy" — the first line, for failure reasons.
std::string Summary(const SmtpReply& r) {
  absl::string_view first = r.lines.empty() ? absl::string_view() : r.lines.front();
  return first.empty() ? absl::StrCat(r.code) : absl::StrCat(r.code, " ", first);
}

// Addresses go between angle brackets on a command line we compose: anything that could end
// the line or the bracket is refused here rather than sent (command injection).
bool SafeAddress(absl::string_view a) {
  for (unsigned char c : a) {
    if (c < 0x20 || c == 0x7f || c == '<' || c == '>') return false;
  }
  return true;
}

bool HasNonAscii(absl::string_view a) {
  for (unsigned char c : a) {
    if (c >= 0x80) return true;
  }
  return false;
}

// RFC 3463 §3.1 generic codes when the server gave none (or one of another class).
std::string EnhancedFor(DeliveryClass klass, const SmtpReply& r) {
  const char want = klass == DeliveryClass::kDelivered ? '2'
                    : klass == DeliveryClass::kBounced ? '5'
                                                       : '4';
  if (!r.enhanced.empty() && r.enhanced[0] == want) return r.enhanced;
  switch (klass) {
    case DeliveryClass::kDelivered:
      return "2.0.0";
    case DeliveryClass::kBounced:
      return "5.0.0";
    case DeliveryClass::kDeferred:
      // A 4xx is a plain temporary failure; anything else here (a 2xx/3xx where it makes no
      // sense) is the server breaking the protocol: X.5.0.
      return r.klass() == 4 ? "4.0.0" : "4.5.0";
  }
  return "4.0.0";
}

// RFC 5321 §4.5.3.1.10: "452 too many recipients" to a RCPT means "send these to me in another
// transaction", not "try later". RFC 3463 X.5.3 names it ("Too many recipients"); an old server
// without enhanced codes says a bare 452 — or, following RFC 821's mistake, 552, which §4.5.3.1.10
// tells clients to treat as temporary. Any other 452 (4.3.1 insufficient storage, ...) is a plain
// temporary failure, and any other 552 (5.2.2 mailbox full) a bounce.
bool IsTooManyRecipients(const SmtpReply& r) {
  if (r.klass() != 4 && r.klass() != 5) return false;
  if (r.enhanced.size() > 1 && r.enhanced.substr(1) == ".5.3") return true;
  if (!r.enhanced.empty()) return false;
  if (r.code == 452) return true;
  return r.code == 552 && absl::StrContains(absl::AsciiStrToLower(r.text), "too many recipients");
}

// The verdict a reply gives a recipient: delivered only by the final reply's 250, 5xx bounced,
// anything else deferred — a 4xx as the server meant it, a reply the RFC does not allow for the
// command (a 2xx to DATA, a 3xx to RCPT, a 251 to the final ".") as a protocol error.
DeliveryClass ClassOf(const SmtpReply& r, bool final_reply) {
  if (final_reply && r.code == 250) return DeliveryClass::kDelivered;
  if (r.klass() == 5) return DeliveryClass::kBounced;
  return DeliveryClass::kDeferred;
}

}  // namespace

const char* ToString(SmtpState s) { return Row(s).name; }
const char* PhaseName(SmtpState s) { return Row(s).phase; }

absl::Duration DefaultReplyTimeout(SmtpState s) {
  const int t = Row(s).timeout_s;
  return t < 0 ? absl::InfiniteDuration() : absl::Seconds(t);
}

const char* ToString(TlsMode m) {
  switch (m) {
    case TlsMode::kDisabled:
      return "disabled";
    case TlsMode::kOpportunistic:
      return "opportunistic";
    case TlsMode::kRequired:
      return "required";
  }
  return "unknown";
}

const char* ToString(DeliveryClass c) {
  switch (c) {
    case DeliveryClass::kDelivered:
      return "delivered";
    case DeliveryClass::kDeferred:
      return "deferred";
    case DeliveryClass::kBounced:
      return "bounced";
  }
  return "unknown";
}

SmtpSession::SmtpSession(SessionOptions opts)
    : opts_(std::move(opts)), tls_active_(opts_.implicit_tls) {}

std::vector<RecipientResult> SmtpSession::TakeResults() {
  std::vector<RecipientResult> out;
  out.swap(results_);
  return out;
}

absl::Duration SmtpSession::reply_timeout() const {
  if (state_ == SmtpState::kMail && answered_ < sent_ &&
      commands_[answered_].cmd == Command::kData) {
    return kDataInitiationTimeout;
  }
  // RFC 3030 sets no BDAT timeout; a chunk is data the server may be storing, so it gets the
  // end-of-data one (RFC 5321 §4.5.3.2.6, as Postfix's smtp_data_done_timeout).
  if (answered_ < sent_ && commands_[answered_].cmd == Command::kBdat) {
    return DefaultReplyTimeout(SmtpState::kDataBody);
  }
  return DefaultReplyTimeout(state_);
}

absl::string_view SmtpSession::Phase() const {
  if (state_ == SmtpState::kMail && answered_ < commands_.size()) {
    switch (commands_[answered_].cmd) {
      case Command::kMail:
        return "MAIL";
      case Command::kRcpt:
        return "RCPT";
      case Command::kData:
        return "DATA";
      case Command::kDot:
        return "end of data";
      case Command::kBdat:
        return "BDAT";
    }
  }
  return PhaseName(state_);
}

// ---- Actions ---------------------------------------------------------------------------------

Action SmtpSession::Send(std::string bytes, SmtpState next) {
  state_ = next;
  Action a;
  a.kind = Action::Kind::kSend;
  a.bytes = std::move(bytes);
  return a;
}

Action SmtpSession::Close() {
  state_ = SmtpState::kClosed;
  Action a;
  a.kind = Action::Kind::kClose;
  return a;
}

Action SmtpSession::NeedTransaction() {
  state_ = SmtpState::kIdle;
  Action a;
  a.kind = Action::Kind::kNeedTransaction;
  return a;
}

// The session cannot go on: recipients still undecided are deferred (they may or may not have
// been delivered — RFC 5321 §6.1 prefers a duplicate to a loss), the first failure is kept.
Action SmtpSession::Fail(int code, std::string reason, std::string reply,
                         const Deferral& deferral) {
  if (txn_active_) {
    for (size_t i = 0; i < rcpts_.size(); ++i) {
      if (!rcpts_[i].final) {
        Decide(i, DeliveryClass::kDeferred, deferral.code, deferral.enhanced, deferral.text);
      }
    }
    EndTransaction();
  }
  if (!failure_.failed) {
    failure_.failed = true;
    failure_.code = code;
    failure_.reason = std::move(reason);
    failure_.reply = std::move(reply);
    failure_.enhanced = deferral.enhanced;
  }
  return Close();
}

Action SmtpSession::FailOnReply(absl::string_view phase, const SmtpReply& reply) {
  std::string summary = Summary(reply);
  Deferral d{reply.code, EnhancedFor(DeliveryClass::kDeferred, reply),
             absl::StrReplaceAll(reply.text, {{"\n", " "}})};
  return Fail(reply.code, absl::StrCat(phase, ": ", summary), summary, d);
}

// ---- Events ----------------------------------------------------------------------------------

Action SmtpSession::OnReply(const SmtpReply& reply) {
  switch (state_) {
    case SmtpState::kQuit:  // RFC 5321 §4.1.1.10: whatever the answer, we are done
    case SmtpState::kClosed:
      return Close();
    case SmtpState::kGreeting:
      // RFC 5321 §3.1: 220 or nothing; a 421/554 greeting means "not here, not now".
      if (reply.code != 220) return FailOnReply("greeting", reply);
      return Send(absl::StrCat("EHLO ", opts_.helo_name, "\r\n"), SmtpState::kEhlo);
    default:
      break;
  }
  // RFC 5321 §3.8: 421 may come in answer to anything; the server is closing the channel.
  if (reply.code == 421) return FailOnReply(Phase(), reply);

  switch (state_) {
    case SmtpState::kEhlo:
    case SmtpState::kEhloTls:
      if (IsPositive(reply)) {
        caps_ = ParseEhlo(reply);
        return AfterHello();
      }
      // RFC 5321 §4.1.4 / §3.2: a server that does not know EHLO says 5xx; HELO then.
      if (reply.klass() == 5) {
        return Send(absl::StrCat("HELO ", opts_.helo_name, "\r\n"), SmtpState::kHelo);
      }
      return FailOnReply(PhaseName(state_), reply);
    case SmtpState::kHelo:
      if (!IsPositive(reply)) return FailOnReply("HELO", reply);
      caps_ = EhloCapabilities();  // HELO: no extensions at all
      return AfterHello();
    case SmtpState::kStartTls:
      if (reply.code == 220) {
        // RFC 3207 §4.2: nothing learned before TLS survives it.
        caps_ = EhloCapabilities();
        state_ = SmtpState::kTlsHandshake;
        Action a;
        a.kind = Action::Kind::kStartTls;
        return a;
      }
      if (opts_.tls == TlsMode::kRequired) {
        std::string summary = Summary(reply);
        return Fail(reply.code, "starttls-failed", summary,
                    Deferral{reply.code, "4.7.0", summary});
      }
      // Opportunistic: carry on in plaintext with the capabilities we have (never with AUTH:
      // StartAuth refuses without TLS).
      return opts_.auth != nullptr ? StartAuth() : NeedTransaction();
    case SmtpState::kMail:
    case SmtpState::kDataBody:
      return OnTransactionReply(reply);
    case SmtpState::kRset:
      if (!IsPositive(reply)) return FailOnReply("RSET", reply);
      return NeedTransaction();
    case SmtpState::kAuth:
      return OnAuthReply(reply);
    case SmtpState::kTlsHandshake:
      return Fail(reply.code, "reply during the TLS handshake", Summary(reply),
                  Deferral{0, "4.5.0", "reply during the TLS handshake"});
    case SmtpState::kIdle:
      return FailOnReply("unexpected reply while idle", reply);
    case SmtpState::kGreeting:
    case SmtpState::kQuit:
    case SmtpState::kClosed:
      break;  // handled above
  }
  return Close();
}

Action SmtpSession::AfterHello() {
  if (!tls_active_ && opts_.tls != TlsMode::kDisabled) {
    if (caps_.starttls) return Send("STARTTLS\r\n", SmtpState::kStartTls);
    if (opts_.tls == TlsMode::kRequired) {
      // RFC 3463 X.7.4: security features not supported (Postfix says the same).
      return Fail(0, "starttls-not-offered", "", Deferral{0, "4.7.4", "starttls-not-offered"});
    }
  }
  if (opts_.auth != nullptr) return StartAuth();
  return NeedTransaction();
}

Action SmtpSession::OnTlsReady() {
  if (state_ != SmtpState::kTlsHandshake) {
    return Fail(0, absl::StrCat("internal: OnTlsReady in state ", ToString(state_)), "",
                Deferral{0, "4.3.0", "internal error"});
  }
  tls_active_ = true;
  caps_ = EhloCapabilities();  // RFC 3207 §4.2
  return Send(absl::StrCat("EHLO ", opts_.helo_name, "\r\n"), SmtpState::kEhloTls);
}

Action SmtpSession::OnTlsFailed(absl::string_view reason) {
  if (state_ == SmtpState::kClosed) return Close();
  // `reason` carries its own label ("validation-failure: ...", "handshake-failed: ..."): the
  // session adds none (it once said "handshake-failed: validation-failure: validation-failure:").
  // RFC 3463 X.7.5: cryptographic failure, as Postfix reports a failed TLS handshake or check.
  std::string why(reason.empty() ? absl::string_view("handshake-failed") : reason);
  return Fail(0, why, "", Deferral{0, "4.7.5", why});
}

Action SmtpSession::OnTimeout() {
  if (state_ == SmtpState::kQuit || state_ == SmtpState::kClosed) return Close();
  // RFC 3463 X.4.2: "established, but unable to complete the transaction, either because of
  // time-out, or inadequate connection quality".
  std::string why = absl::StrCat("timeout in ", Phase());
  return Fail(0, why, "", Deferral{0, "4.4.2", absl::StrCat("conversation timed out in ", Phase())});
}

Action SmtpSession::OnConnectionLost(absl::string_view reason) {
  if (state_ == SmtpState::kQuit || state_ == SmtpState::kClosed) return Close();
  std::string why = absl::StrCat("lost connection in ", Phase(), ": ", reason);
  return Fail(0, why, "", Deferral{0, "4.4.2", why});
}

Action SmtpSession::Quit() {
  switch (state_) {
    case SmtpState::kIdle:
      return Send("QUIT\r\n", SmtpState::kQuit);
    case SmtpState::kQuit: {
      Action a;  // QUIT already sent
      return a;
    }
    case SmtpState::kClosed:
      return Close();
    default: {
      // Mid-dialog: nothing can be said cleanly any more; hang up and defer what was pending.
      std::string why = absl::StrCat("closed by the engine in ", Phase());
      return Fail(0, why, "", Deferral{0, "4.3.0", why});
    }
  }
}

// ---- Transactions ----------------------------------------------------------------------------

Action SmtpSession::StartTransaction(Transaction txn) {
  if (state_ != SmtpState::kIdle || txn_active_) {
    // The engine's mistake, never the server's: refuse this transaction (its recipients are
    // deferred so nothing is lost) and end the session without crashing.
    std::string why = absl::StrCat("internal: StartTransaction in state ", ToString(state_));
    for (size_t i = 0; i < txn.recipients.size(); ++i) {
      results_.push_back(RecipientResult{txn.id, i, DeliveryClass::kDeferred, 0, "4.3.0", why});
    }
    return Fail(0, why, "", Deferral{0, "4.3.0", why});
  }

  txn_ = std::move(txn);
  txn_active_ = true;
  rcpts_.assign(txn_.recipients.size(), RcptState());
  commands_.clear();
  sent_ = answered_ = accepted_ = 0;
  mail_rejected_ = false;
  dot_only_ = false;
  pipelining_ = opts_.use_pipelining && caps_.pipelining;
  chunking_ = opts_.use_chunking && caps_.chunking &&
              absl::EndsWith(txn_.wire_body, "\r\n.\r\n");
  if (chunking_) PrepareBdat();

  // Problems we can see before saying anything: decided here, never sent.
  auto decide_all = [this](DeliveryClass k, const char* enhanced, const std::string& text) {
    for (size_t i = 0; i < rcpts_.size(); ++i) Decide(i, k, 0, enhanced, text);
  };
  if (!absl::EndsWith(txn_.wire_body, "\r\n.\r\n")) {
    decide_all(DeliveryClass::kDeferred, "4.3.0", "internal: body is not in DATA wire form");
  } else if (!SafeAddress(txn_.sender)) {
    decide_all(DeliveryClass::kBounced, "5.1.7", "bad sender address syntax");
  } else if (caps_.size > 0 && MessageSize() > caps_.size) {
    // RFC 1870 §6.1: do not send what the server announced it will refuse.
    decide_all(DeliveryClass::kBounced, "5.3.4",
               absl::StrCat("message size ", MessageSize(),
                            " exceeds size limit ", caps_.size, " of server"));
  } else {
    // Recipients past the client's own limit wait for the next transaction of this message,
    // exactly like the ones a server refuses with 452 (RFC 5321 §3.3 allows a client to split).
    const std::string over_limit = absl::StrCat("too many recipients for one transaction (max ",
                                                opts_.max_rcpts_per_transaction, ")");
    for (size_t i = 0; i < txn_.recipients.size(); ++i) {
      if (txn_.recipients[i].empty() || !SafeAddress(txn_.recipients[i])) {
        Decide(i, DeliveryClass::kBounced, 0, "5.1.3", "bad recipient address syntax");
      } else {
        Carry(i, 0, "4.5.3", over_limit);
      }
    }
  }
  if (!BuildRound()) {
    EndTransaction();
    return NeedTransaction();
  }
  return SendNextCommands();
}

bool SmtpSession::BuildRound() {
  commands_.clear();
  sent_ = answered_ = accepted_ = 0;
  mail_rejected_ = false;
  dot_only_ = false;
  size_t limit = std::max<size_t>(1, opts_.max_rcpts_per_transaction);
  if (server_rcpt_limit_ > 0) limit = std::min(limit, server_rcpt_limit_);
  commands_.reserve(std::min(rcpts_.size(), limit) + 3);
  commands_.push_back({Command::kMail, 0});
  for (size_t i = 0; i < rcpts_.size() && commands_.size() <= limit; ++i) {
    RcptState& r = rcpts_[i];
    if (r.final || !r.carried) continue;
    r.carried = false;
    commands_.push_back({Command::kRcpt, static_cast<uint32_t>(i)});
  }
  if (commands_.size() == 1) {  // nobody to send to
    commands_.clear();
    return false;
  }
  if (chunking_) {
    bdat_failed_ = false;
    for (size_t c = 0; c < chunks_.size(); ++c) {
      commands_.push_back({Command::kBdat, static_cast<uint32_t>(c)});
    }
  } else {
    commands_.push_back({Command::kData, 0});
    commands_.push_back({Command::kDot, 0});
  }
  state_ = SmtpState::kMail;
  return true;
}

bool SmtpSession::HasCarried() const {
  for (const RcptState& r : rcpts_) {
    if (!r.final && r.carried) return true;
  }
  return false;
}

void SmtpSession::Carry(size_t rcpt, int code, std::string enhanced, std::string text) {
  RcptState& r = rcpts_[rcpt];
  r.carried = true;
  r.accepted = false;
  r.result.txn_id = txn_.id;
  r.result.rcpt_index = rcpt;
  r.result.klass = DeliveryClass::kDeferred;
  r.result.code = code;
  r.result.enhanced = std::move(enhanced);
  r.result.text = std::move(text);
}

void SmtpSession::CarryRemainingRcpts(const SmtpReply& reply) {
  // Without pipelining the RCPTs after answered_ are not on the wire yet: a server that said
  // "too many" will say it again, so they go straight to the next transaction.
  size_t end = answered_;
  while (end < commands_.size() && commands_[end].cmd == Command::kRcpt) {
    Carry(commands_[end].rcpt, reply);
    ++end;
  }
  commands_.erase(commands_.begin() + static_cast<std::ptrdiff_t>(answered_),
                  commands_.begin() + static_cast<std::ptrdiff_t>(end));
}

void SmtpSession::AppendCommand(const Pending& p, std::string* out) const {
  switch (p.cmd) {
    case Command::kMail: {
      absl::StrAppend(out, "MAIL FROM:<", txn_.sender, ">");
      // RFC 1870: declare the size so the server can refuse before the data.
      if (caps_.size_offered) absl::StrAppend(out, " SIZE=", MessageSize());
      // RFC 6152: 8-bit content only to a server that says it takes it.
      if (txn_.eight_bit && caps_.eightbitmime) out->append(" BODY=8BITMIME");
      if (caps_.smtputf8) {
        bool utf8 = HasNonAscii(txn_.sender);
        for (const std::string& r : txn_.recipients) utf8 = utf8 || HasNonAscii(r);
        if (utf8) out->append(" SMTPUTF8");  // RFC 6531 §3.4
      }
      // RFC 8689 §4.1: the caller (engine/connection.cc) checked the hop first: verified TLS
      // and REQUIRETLS in the EHLO reply after STARTTLS.
      if (txn_.require_tls) out->append(" REQUIRETLS");
      out->append("\r\n");
      return;
    }
    case Command::kRcpt:
      absl::StrAppend(out, "RCPT TO:<", txn_.recipients[p.rcpt], ">\r\n");
      return;
    case Command::kData:
      out->append("DATA\r\n");
      return;
    case Command::kDot:
      return;  // the body; sent on 354
    case Command::kBdat:
      return;  // AppendBdat
  }
}

void SmtpSession::AppendNext(Action* a) {
  const Pending& p = commands_[sent_++];
  if (p.cmd == Command::kBdat) {
    AppendBdat(p.rcpt, a);
  } else {
    AppendCommand(p, &a->bytes);
  }
}

Action SmtpSession::SendNextCommands() {
  Action a = Send(std::string(), SmtpState::kMail);
  if (pipelining_) {
    // RFC 2920 §3.1: MAIL, all RCPTs and DATA in one group; DATA ends the group. With
    // CHUNKING the BDAT chunks join it (RFC 3030 §4.2): nothing waits for a 354.
    a.bytes.reserve(64 + 48 * rcpts_.size());
    while (sent_ < commands_.size() && commands_[sent_].cmd != Command::kDot) AppendNext(&a);
  } else if (sent_ < commands_.size()) {
    AppendNext(&a);
  }
  return a;
}

Action SmtpSession::OnTransactionReply(const SmtpReply& reply) {
  if (answered_ >= sent_) {
    return FailOnReply(absl::StrCat("unexpected reply in ", PhaseName(state_)), reply);
  }
  const Pending cmd = commands_[answered_++];
  switch (cmd.cmd) {
    case Command::kMail:
      if (!IsPositive(reply)) {  // RFC 5321 §4.3.2: MAIL succeeds with 250 only
        // Every recipient shares MAIL's verdict; the RCPT replies that follow in a pipeline
        // (503 "need MAIL") say nothing about the recipients.
        mail_rejected_ = true;
        for (size_t i = 0; i < rcpts_.size(); ++i) {
          if (!rcpts_[i].final) Decide(i, "MAIL", reply);
        }
        if (!pipelining_) return EndTransactionWithRset();
      }
      break;
    case Command::kRcpt:
      if (mail_rejected_) break;
      if (IsRcptPositive(reply)) {
        rcpts_[cmd.rcpt].accepted = true;
        ++accepted_;
      } else if (IsTooManyRecipients(reply)) {
        // The server's limit is what it accepted before saying "too many": later transactions
        // on this connection send no more than that, instead of RCPTs it will refuse again.
        if (accepted_ > 0 && (server_rcpt_limit_ == 0 || accepted_ < server_rcpt_limit_)) {
          server_rcpt_limit_ = accepted_;
        }
        Carry(cmd.rcpt, reply);
        if (!pipelining_) CarryRemainingRcpts(reply);
      } else {
        Decide(cmd.rcpt, "RCPT", reply);
      }
      if (!pipelining_ && accepted_ == 0 && (commands_[answered_].cmd == Command::kData ||
                                             commands_[answered_].cmd == Command::kBdat)) {
        return EndTransactionWithRset();  // nobody accepted: no DATA/BDAT (RFC 5321 §3.3)
      }
      break;
    case Command::kData:
      if (reply.code == 354) {
        sent_ = answered_ + 1;  // kDot
        if (accepted_ == 0 || mail_rejected_) {
          // RFC 2920 §3.1: the server accepted DATA although nobody can receive it; "the
          // client SMTP should send a single dot". Its reply decides nothing.
          dot_only_ = true;
          return Send(".\r\n", SmtpState::kDataBody);
        }
        Action a = Send(std::string(), SmtpState::kDataBody);
        a.body = txn_.wire_body;
        return a;
      }
      // DATA refused (554 "no valid recipients", 554 5.7.1 policy, 451 ...): the accepted
      // recipients get its verdict. Those waiting for another transaction keep their deferral:
      // this one made no progress, so there is no next one on this connection.
      // RFC 5321 §4.1.1.4 / §4.3.2: 354 is the only positive reply to DATA. Any other 2xx or a
      // 3xx means the body was never sent: a failure of this transaction, never a delivery.
      for (size_t i = 0; i < rcpts_.size(); ++i) {
        if (rcpts_[i].accepted && !rcpts_[i].final) Decide(i, "DATA", reply);
      }
      // A 2xx/3xx there leaves the server's state unknown — it may be reading a message now,
      // and an RSET or the next MAIL would become its content. Hang up instead.
      if (reply.klass() != 4 && reply.klass() != 5) return FailAfterProtocolError("DATA", reply);
      return EndTransactionWithRset();
    case Command::kDot:
      if (dot_only_) return EndTransactionWithRset();
      // RFC 5321 §4.1.1.4: the final reply decides for every accepted recipient, and ends the
      // transaction either way (the server has cleared its buffers, so no RSET is needed).
      for (size_t i = 0; i < rcpts_.size(); ++i) {
        if (rcpts_[i].accepted && !rcpts_[i].final) Decide(i, "end of data", reply, true);
      }
      if (reply.code != 250 && reply.klass() != 4 && reply.klass() != 5) {
        return FailAfterProtocolError("end of data", reply);
      }
      return AfterFinalReply(reply);
    case Command::kBdat:
      return OnBdatReply(cmd.rcpt, reply);
  }
  if (pipelining_) {
    Action a;  // more replies of the group are on their way; DATA's is the last
    state_ = SmtpState::kMail;
    return a;
  }
  return SendNextCommands();
}

Action SmtpSession::AfterFinalReply(const SmtpReply& reply) {
  // RFC 5321 §3.3: recipients refused with "too many" go in a new transaction on this
  // connection — but only after one that delivered something, so a server that refuses
  // every first RCPT (or every message) cannot keep us looping; the rest are deferred.
  if (IsPositive(reply) && accepted_ > 0 && HasCarried()) {
    ++transactions_done_;
    if (BuildRound()) return SendNextCommands();
  }
  EndTransaction();
  return NeedTransaction();
}

Action SmtpSession::FailAfterProtocolError(absl::string_view phase, const SmtpReply& reply) {
  EndTransaction();  // every recipient has its verdict already
  return Fail(reply.code, absl::StrCat("protocol error: unexpected reply to ", phase),
              Summary(reply), Deferral{});
}

Action SmtpSession::EndTransactionWithRset() {
  // The server may still hold a reverse-path or forward-paths: clear them before the next
  // transaction (RFC 5321 §4.1.1.5).
  EndTransaction();
  return Send("RSET\r\n", SmtpState::kRset);
}

void SmtpSession::Carry(size_t rcpt, const SmtpReply& reply) {
  // A 552 "too many" is temporary (RFC 5321 §4.5.3.1.10): if no transaction follows, the
  // recipient is deferred as X.5.3, never bounced.
  Carry(rcpt, reply.code,
        reply.klass() == 4 ? EnhancedFor(DeliveryClass::kDeferred, reply) : "4.5.3",
        absl::StrReplaceAll(reply.text, {{"\n", " "}}));
}

void SmtpSession::Decide(size_t rcpt, absl::string_view phase, const SmtpReply& reply,
                         bool final_reply) {
  const DeliveryClass k = ClassOf(reply, final_reply);
  std::string text = absl::StrReplaceAll(reply.text, {{"\n", " "}});
  if (k == DeliveryClass::kDeferred && reply.klass() != 4) {
    // Not the server's temporary failure but its protocol error: say so, or an operator reads
    // "deferred: 250 Ok" and cannot tell why.
    text = absl::StrCat("protocol error: unexpected reply ", reply.code, " to ", phase,
                        text.empty() ? "" : ": ", text);
  }
  Decide(rcpt, k, reply.code, EnhancedFor(k, reply), std::move(text));
}

void SmtpSession::Decide(size_t rcpt, DeliveryClass klass, int code, std::string enhanced,
                         std::string text) {
  RcptState& r = rcpts_[rcpt];
  r.final = true;
  r.result.txn_id = txn_.id;
  r.result.rcpt_index = rcpt;
  r.result.klass = klass;
  r.result.code = code;
  r.result.enhanced = std::move(enhanced);
  r.result.text = std::move(text);
}

void SmtpSession::EndTransaction() {
  for (size_t i = 0; i < rcpts_.size(); ++i) {
    if (!rcpts_[i].final && rcpts_[i].carried) {
      // Waiting for a transaction that will not come: deferred with the reason it waited.
      rcpts_[i].final = true;
    } else if (!rcpts_[i].final) {
      // Unreachable by construction; defer rather than lose a recipient.
      Decide(i, DeliveryClass::kDeferred, 0, "4.3.0", "internal: recipient left undecided");
    }
    results_.push_back(std::move(rcpts_[i].result));
  }
  rcpts_.clear();
  commands_.clear();
  sent_ = answered_ = accepted_ = 0;
  txn_active_ = false;
  txn_.wire_body = absl::string_view();
  chunks_.clear();
  ++transactions_done_;
}

}  // namespace mxb
