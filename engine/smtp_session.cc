// SmtpSession (engine/smtp_session.h): the per-state table (log names, RFC 5321 §4.5.3.2
// timeouts), the dialog around the transactions — greeting, EHLO/HELO, STARTTLS, TLS events,
// timeouts, QUIT — and how a session fails. The mail transaction: smtp_transaction.cc; BDAT:
// smtp_bdat.cc; AUTH: smtp_auth.cc.
#include "engine/smtp_session.h"

#include <cstddef>
#include <iterator>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "engine/smtp_verdict.h"

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

using smtp_verdict::EnhancedFor;
using smtp_verdict::IsPositive;
using smtp_verdict::Summary;

}  // namespace

namespace smtp_verdict {

// "421 4.3.2 busy" — the first line, for failure reasons.
std::string Summary(const SmtpReply& r) {
  absl::string_view first = r.lines.empty() ? absl::string_view() : r.lines.front();
  return first.empty() ? absl::StrCat(r.code) : absl::StrCat(r.code, " ", first);
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

}  // namespace smtp_verdict

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

// The mail transaction (StartTransaction and the replies of MAIL, RCPT, DATA):
// engine/smtp_transaction.cc.

}  // namespace mxb
