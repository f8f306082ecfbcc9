// SmtpSession (engine/smtp_session.h), the mail transaction: MAIL, RCPT and DATA built from a
// Transaction (what can be decided before anything is sent, the client's recipient limit), sent
// in one group with PIPELINING (RFC 2920) or one at a time, their replies per command, the
// verdict per recipient, "too many recipients" carried into the next transaction on the same
// connection (RFC 5321 §3.3, §4.5.3.1.10), RSET after a failed one. BDAT: smtp_bdat.cc; the
// greeting, EHLO, STARTTLS and the session's end: smtp_session.cc.
#include <algorithm>
#include <cstddef>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "engine/smtp_session.h"
#include "engine/smtp_verdict.h"

namespace mxb {
namespace {

using smtp_verdict::EnhancedFor;
using smtp_verdict::IsPositive;
using smtp_verdict::IsRcptPositive;
using smtp_verdict::Summary;

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
