// SmtpSession: the SMTP client dialog of one connection as an explicit, sans-IO state machine.
//
// It never touches a socket, the ring, TLS or the clock: the engine feeds it events
// (OnGreetingReady is implicit — the first reply is the greeting) and carries out the Action it
// returns. One session lives on one worker thread. Several transactions run over one session,
// one at a time; PIPELINING (RFC 2920) is used when offered: MAIL, all RCPTs and DATA go in one
// send, and the replies are matched to a FIFO of commands awaiting replies.
//
//   SmtpSession s({.helo_name = "mx.out.example", .tls = TlsMode::kOpportunistic});
//   Action a = s.OnReply(greeting);          // -> kSend "EHLO ..."
//   ... OnReply(...) for each reply, carry out each Action ...
//   a.kind == kStartTls  -> engine drops buffered input, handshakes, then calls OnTlsReady()
//   a.kind == kNeedTransaction -> engine calls StartTransaction(txn) or Quit()
//   after a transaction ends: TakeResults() gives one RecipientResult per recipient
//   a.kind == kClose     -> engine closes; failure() says why if the session failed
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "engine/smtp_reply.h"

namespace mxb {

enum class SmtpState {
  kGreeting,      // waiting for 220
  kEhlo,          // EHLO sent
  kHelo,          // EHLO refused with 5xx, HELO sent
  kStartTls,      // STARTTLS sent, waiting for 220
  kTlsHandshake,  // engine is doing the handshake
  kEhloTls,       // EHLO sent again inside TLS
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
absl::Duration DefaultReplyTimeout(SmtpState s);

enum class TlsMode { kDisabled, kOpportunistic, kRequired };
const char* ToString(TlsMode m);

enum class DeliveryClass { kDelivered, kDeferred, kBounced };
const char* ToString(DeliveryClass c);

struct SessionOptions {
  std::string helo_name = "localhost";
  TlsMode tls = TlsMode::kOpportunistic;
  bool use_pipelining = true;
  size_t max_rcpts_per_transaction = 100;
};

// One message to one or more recipients of the same destination.
struct Transaction {
  uint64_t id = 0;                      // caller's handle, echoed in results
  std::string sender;                   // "" = null sender "<>"
  std::vector<std::string> recipients;  // at most max_rcpts_per_transaction
  absl::string_view wire_body;          // AppendDataWire() output; caller keeps it alive
  bool eight_bit = false;               // add BODY=8BITMIME when offered
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
};

// Why a session ended without (or before finishing) its work.
struct SessionFailure {
  bool failed = false;
  int code = 0;          // the server's reply code if the failure was a reply
  std::string reason;    // e.g. "greeting: 421 4.3.2 busy", "starttls-not-offered", "timeout in RCPT"
};

class SmtpSession {
 public:
  explicit SmtpSession(SessionOptions opts);

  [[nodiscard]] Action OnReply(const SmtpReply& reply);
  [[nodiscard]] Action OnTlsReady();
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
  const EhloCapabilities& capabilities() const { return caps_; }
  bool tls_active() const { return tls_active_; }
  const SessionFailure& failure() const { return failure_; }
  // The transaction in progress, if any (its id), for the engine's bookkeeping.
  bool in_transaction() const { return txn_active_; }
  uint64_t transactions_done() const { return transactions_done_; }

 private:
  // implementation detail: FIFO of commands awaiting replies, per-recipient acceptance, ...
  SessionOptions opts_;
  SmtpState state_ = SmtpState::kGreeting;
  EhloCapabilities caps_;
  bool tls_active_ = false;
  SessionFailure failure_;
  bool txn_active_ = false;
  uint64_t transactions_done_ = 0;
  std::vector<RecipientResult> results_;
};

}  // namespace mxb
