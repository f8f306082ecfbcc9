// SmtpSession: the SMTP client dialog of one connection as an explicit, sans-IO state machine.
//
// It never touches a socket, the ring, TLS or the clock: the engine feeds it events
// (OnGreetingReady is implicit — the first reply is the greeting) and carries out the Action it
// returns. One session lives on one worker thread. Several transactions run over one session,
// one at a time; PIPELINING (RFC 2920) is used when offered: MAIL, all RCPTs and DATA go in one
// send, and the replies are matched to a FIFO of commands awaiting replies. CHUNKING (RFC 3030)
// replaces DATA when offered: "BDAT n LAST" and the message without dot-stuffing (views into the
// same wire buffer, engine/smtp_bdat.h), in the same send as MAIL and RCPT when pipelining.
//
//   SmtpSession s({.helo_name = "mx.out.example", .tls = TlsMode::kOpportunistic});
//   Action a = s.OnReply(greeting);          // -> kSend "EHLO ..."
//   ... OnReply(...) for each reply, carry out each Action ...
//   a.kind == kStartTls  -> engine drops buffered input, handshakes, then calls OnTlsReady()
//   a.kind == kNeedTransaction -> engine calls StartTransaction(txn) or Quit()
//   after a transaction ends: TakeResults() gives one RecipientResult per recipient
//   a.kind == kClose     -> engine closes; failure() says why if the session failed
//
// Driving rules:
//   - Feed every reply the parser completes, in order. Stop handing replies of the same read
//     to the session after kStartTls (they are unprotected: drop them and Reset() the parser)
//     and after kClose.
//   - Results appear when a transaction ends, which may be on a kSend (RSET after a failed
//     transaction), kNeedTransaction or kClose. Call TakeResults() after every action (or at
//     least on kNeedTransaction and kClose — no result is ever dropped by the session).
//   - Every recipient of every transaction gets exactly one result, also when the session
//     fails, times out or is misused (StartTransaction when not idle defers that transaction's
//     recipients and closes).
//   - reply_timeout() is DefaultReplyTimeout(state()) refined for DATA (2 min).
//   - RSET is sent after a transaction that ended before the final "." reply (MAIL refused,
//     nobody accepted, DATA refused, the RFC 2920 lone "."). After a final reply of any class
//     the server has already reset (RFC 5321 §4.1.1.4), so the next MAIL follows directly.
//   - One Transaction (one message) may take several SMTP transactions on the wire (RFC 5321
//     §3.3, §4.5.3.1.10): recipients past max_rcpts_per_transaction, and recipients a server
//     refuses with "452 4.5.3 too many recipients" (or RFC 821's 552 for the same), go in a
//     new MAIL transaction right after a final 2xx, until all are sent. A transaction that
//     delivered nobody ends the series (the waiting recipients are deferred with their 452),
//     so a server answering 452 to every first RCPT cannot make the session loop. The number
//     the server accepted before its first 452 caps the RCPTs of every later transaction of
//     the session. The Transaction stays in_transaction() and its results appear once, when
//     the last of its SMTP transactions ends.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "engine/smtp_auth.h"
#include "engine/smtp_bdat.h"
#include "engine/smtp_reply.h"

namespace mxb {

enum class SmtpState {
  kGreeting,      // waiting for 220
  kEhlo,          // EHLO sent
  kHelo,          // EHLO refused with 5xx, HELO sent
  kStartTls,      // STARTTLS sent, waiting for 220
  kTlsHandshake,  // engine is doing the handshake
  kEhloTls,       // EHLO sent again inside TLS
  kAuth,          // AUTH (RFC 4954) sent, waiting for 334/235
  kIdle,          // ready for a transaction
  kMail,          // transaction commands sent, replies pending (MAIL/RCPT/DATA)
  kDataBody,      // message sent, waiting for the final reply
  kRset,          // RSET sent after a failed transaction
  kQuit,          // QUIT sent
  kClosed,
};
const char* ToString(SmtpState s);

// RFC 5321 §4.5.3.2 timeouts for the reply awaited in `state` (greeting 5 min, MAIL 5 min,
// RCPT 5 min, DATA initiation 2 min, data block 3 min, DATA termination 10 min) — the engine
// may scale them with configured values.
// kIdle and kClosed await no reply: absl::InfiniteDuration().
absl::Duration DefaultReplyTimeout(SmtpState s);
// A short phrase for logs ("greeting", "EHLO", "MAIL/RCPT/DATA", "end of data", ...).
const char* PhaseName(SmtpState s);

enum class TlsMode { kDisabled, kOpportunistic, kRequired };
const char* ToString(TlsMode m);

enum class DeliveryClass { kDelivered, kDeferred, kBounced };
const char* ToString(DeliveryClass c);

struct SessionOptions {
  std::string helo_name = "localhost";
  TlsMode tls = TlsMode::kOpportunistic;
  bool use_pipelining = true;
  size_t max_rcpts_per_transaction = 100;
  // The engine did the TLS handshake right after connect (implicit TLS, the smtps- port): the
  // greeting arrives inside TLS, STARTTLS is neither needed nor expected.
  bool implicit_tls = false;
  // RFC 3030: send the message with BDAT when the server offers CHUNKING (`[smtp] chunking`).
  bool use_chunking = true;
  // Largest BDAT chunk; a bigger message goes as several "BDAT n" and a last "BDAT n LAST".
  uint64_t bdat_chunk_size = uint64_t{1} << 20;
  // RFC 4954 AUTH after the EHLO inside TLS, before the first transaction (engine/smtp_auth.h).
  // Never used without TLS. Null: no AUTH. Must outlive the session.
  const SmtpCredentials* auth = nullptr;
};

// One message to one or more recipients of the same destination.
struct Transaction {
  uint64_t id = 0;                      // caller's handle, echoed in results
  std::string sender;                   // "" = null sender "<>"
  std::vector<std::string> recipients;  // more than max_rcpts_per_transaction: several MAILs
  absl::string_view wire_body;          // AppendDataWire() output; caller keeps it alive
  bool eight_bit = false;               // add BODY=8BITMIME when offered
  // Offsets of the dots AppendDataWire stuffed into wire_body (for BDAT); null: found by a scan.
  const std::vector<uint32_t>* stuffed_dots = nullptr;
  bool require_tls = false;             // RFC 8689 §4.1: MAIL FROM:<...> REQUIRETLS
};

struct RecipientResult {
  uint64_t txn_id = 0;
  size_t rcpt_index = 0;                // index into Transaction::recipients
  DeliveryClass klass = DeliveryClass::kDeferred;
  int code = 0;                         // SMTP code, 0 when no reply (connection lost, timeout)
  std::string enhanced;                 // "2.0.0", "4.4.2", ...
  std::string text;                     // server text or our own reason
};

struct Action {
  enum class Kind {
    kWait,             // nothing to send; wait for the next reply (arm DefaultReplyTimeout(state()))
    kSend,             // send `bytes` then `body` (either may be empty), then wait for a reply
    kStartTls,         // discard any buffered input, run the TLS handshake, then OnTlsReady()
    kNeedTransaction,  // idle: call StartTransaction() or Quit()
    kClose,            // close the connection
  };
  Kind kind = Kind::kWait;
  std::string bytes;
  absl::string_view body;
  // kSend, after `bytes` and `body`, in order: BDAT command lines and the message pieces of
  // each chunk. Views into the session and into the caller's wire body, valid until the next
  // call into the session — copy (or encrypt) them before that.
  std::vector<absl::string_view> parts;
};

// Why a session ended without (or before finishing) its work.
struct SessionFailure {
  bool failed = false;
  int code = 0;          // the server's reply code if the failure was a reply
  std::string reason;    // e.g. "greeting: 421 4.3.2 busy", "starttls-not-offered", "timeout in RCPT"
  std::string reply;     // the server's reply ("454 4.7.0 TLS not available") when one caused it
  std::string enhanced;  // RFC 3463 code the undecided recipients got ("4.7.5", "4.4.2", ...)
  // The relay refused our AUTH (5xx) or does not offer our mechanism: an operator error.
  bool auth_failed = false;
};

class SmtpSession {
 public:
  explicit SmtpSession(SessionOptions opts);

  [[nodiscard]] Action OnReply(const SmtpReply& reply);
  [[nodiscard]] Action OnTlsReady();
  // `reason` starts with its label ("handshake-failed: ...", "certificate-expired: ...").
  [[nodiscard]] Action OnTlsFailed(absl::string_view reason);
  // The reply deadline passed: in-flight recipients deferred, kClose.
  [[nodiscard]] Action OnTimeout();
  // EOF, reset, or a protocol error from the reply parser: in-flight recipients deferred.
  [[nodiscard]] Action OnConnectionLost(absl::string_view reason);

  [[nodiscard]] Action StartTransaction(Transaction txn);
  [[nodiscard]] Action Quit();

  // Results of finished (or aborted) transactions since the last call.
  std::vector<RecipientResult> TakeResults();
  bool has_results() const { return !results_.empty(); }

  SmtpState state() const { return state_; }
  // The reply deadline for what is awaited now: DefaultReplyTimeout(state()), refined inside a
  // transaction (2 minutes when the awaited reply is DATA's, RFC 5321 §4.5.3.2.3).
  absl::Duration reply_timeout() const;
  // What the session is waiting for, for logs: "greeting", "RCPT", "end of data", ...
  absl::string_view phase() const { return Phase(); }
  const EhloCapabilities& capabilities() const { return caps_; }
  bool tls_active() const { return tls_active_; }
  const SessionFailure& failure() const { return failure_; }
  // The transaction in progress, if any (its id), for the engine's bookkeeping.
  bool in_transaction() const { return txn_active_; }
  // SMTP transactions ended on the wire (a Transaction split by 452 counts each part).
  uint64_t transactions_done() const { return transactions_done_; }

 private:
  // Transaction commands in protocol order; kDot stands for "message sent, final reply awaited".
  enum class Command : uint8_t { kMail, kRcpt, kData, kDot, kBdat };
  struct Pending {
    Command cmd;
    uint32_t rcpt;  // index into txn_.recipients for kRcpt, into chunks_ for kBdat
  };
  struct RcptState {
    bool final = false;     // result decided
    bool accepted = false;  // RCPT got 2xx, waiting for DATA's verdict
    // Waiting for the next transaction of this message (452 too many recipients, or past
    // max_rcpts_per_transaction); `result` holds the deferral it gets if none comes.
    bool carried = false;
    RecipientResult result;
  };
  // What unfinished recipients get when the session ends under them.
  struct Deferral {
    int code = 0;
    std::string enhanced;
    std::string text;
  };

  Action Send(std::string bytes, SmtpState next);
  Action Close();
  Action NeedTransaction();
  Action Fail(int code, std::string reason, std::string reply, const Deferral& deferral);
  Action FailOnReply(absl::string_view phase, const SmtpReply& reply);
  Action AfterHello();
  Action StartAuth();  // smtp_auth.cc
  Action OnAuthReply(const SmtpReply& reply);
  Action OnTransactionReply(const SmtpReply& reply);
  Action SendNextCommands();
  Action EndTransactionWithRset();
  // The server answered `phase` with a code RFC 5321 §4.3.2 does not allow there (decided
  // already as a deferral): end the transaction and the session.
  Action FailAfterProtocolError(absl::string_view phase, const SmtpReply& reply);
  void AppendCommand(const Pending& p, std::string* out) const;
  void AppendNext(Action* a);
  // The final reply was a success (or a failure of this round): another round for recipients
  // refused with "too many", or the end of the transaction.
  Action AfterFinalReply(const SmtpReply& reply);
  // CHUNKING (smtp_bdat.cc): the chunks and command lines of this message, one chunk's output,
  // and the verdict of a reply to BDAT.
  void PrepareBdat();
  void AppendBdat(uint32_t chunk, Action* a) const;
  Action OnBdatReply(uint32_t chunk, const SmtpReply& reply);
  // Octets the body takes on the wire of this transaction (SIZE=, the size limit check).
  uint64_t MessageSize() const;
  // Fills commands_ with MAIL, the next carried recipients (at most max_rcpts_per_transaction)
  // and DATA; false when nobody is left to send to.
  bool BuildRound();
  bool HasCarried() const;
  void Carry(size_t rcpt, const SmtpReply& reply);
  void Carry(size_t rcpt, int code, std::string enhanced, std::string text);
  void CarryRemainingRcpts(const SmtpReply& reply);
  // The verdict of `reply` to the command named `phase`; only a 250 that is the final reply
  // (`final_reply`: the answer to the end of data) delivers.
  void Decide(size_t rcpt, absl::string_view phase, const SmtpReply& reply,
              bool final_reply = false);
  void Decide(size_t rcpt, DeliveryClass klass, int code, std::string enhanced, std::string text);
  void EndTransaction();
  absl::string_view Phase() const;

  SessionOptions opts_;
  SmtpState state_ = SmtpState::kGreeting;
  EhloCapabilities caps_;
  bool tls_active_ = false;
  SessionFailure failure_;
  bool txn_active_ = false;
  uint64_t transactions_done_ = 0;
  std::vector<RecipientResult> results_;

  // The transaction in progress. Two cursors over commands_ (as Postfix's smtp_proto.c):
  // commands_[0, sent_) are on the wire, commands_[0, answered_) have had their reply.
  // Without pipelining sent_ - answered_ <= 1; with it, MAIL..DATA go out together.
  Transaction txn_;
  std::vector<RcptState> rcpts_;
  std::vector<Pending> commands_;
  size_t sent_ = 0;
  size_t answered_ = 0;
  size_t accepted_ = 0;          // recipients with a 2xx to RCPT
  bool pipelining_ = false;      // decided at StartTransaction from caps_ and opts_
  bool mail_rejected_ = false;   // MAIL got a non-2xx: every recipient has MAIL's verdict
  bool dot_only_ = false;        // 354 with nobody accepted: "." sent, its reply decides nothing
  // CHUNKING: decided at StartTransaction; the message's chunks; their "BDAT n[ LAST]" lines
  // (bdat_lines_[bdat_line_end_[i-1], bdat_line_end_[i]) is chunk i's); a BDAT of this round
  // failed, so the replies to the chunks still in the pipeline decide nothing.
  bool chunking_ = false;
  std::vector<BdatChunk> chunks_;
  std::string bdat_lines_;
  std::vector<size_t> bdat_line_end_;
  bool bdat_failed_ = false;
  int auth_step_ = 0;  // AUTH LOGIN: answers sent (user name, password)
  // Recipients the server accepted in a transaction before its first "too many" (0: never
  // said): no transaction of this session sends more RCPTs than that.
  size_t server_rcpt_limit_ = 0;
};

}  // namespace mxb
