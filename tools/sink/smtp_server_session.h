// The server side of one SMTP connection in mxburst-sink, sans-IO.
//
// SmtpServerSession turns received plaintext into reply text: it owns the command line
// assembly, the envelope, the incremental DATA decoder (un-dot-stuffing, RFC 5321 §4.5.2) and
// the per-message body while it is being received. It never touches a socket, the ring or TLS:
// the connection feeds it bytes (already decrypted), sends the replies it appends, and performs
// the STARTTLS switch or the close it asks for. Owned and called by one worker thread.
//
//   SmtpServerSession s(&config, &store, &stats);
//   std::string replies;
//   s.Start(&replies);                                   // "220 ... ESMTP"
//   FeedResult r = s.Feed("EHLO x\r\nMAIL FROM:<>\r\n", &replies);
//   if (r.event == SessionEvent::kStartTls) { send replies in plaintext, then handshake,
//                                              then s.OnTlsEstablished("TLSv1.3 ...") }
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "tools/sink/message_store.h"
#include "tools/sink/sink_stats.h"

namespace mxb::sink {

// Behaviour shared by all connections of one listener. Read-only after start-up.
struct SessionConfig {
  std::string hostname = "localhost";  // in the greeting and the EHLO reply
  std::string banner;                  // appended to the greeting line (--banner)
  bool offer_starttls = true;          // false for no-starttls listeners
  bool offer_requiretls = false;       // RFC 8689 §3: REQUIRETLS in EHLO replies inside TLS
  std::string tempfail_rcpt;           // see SinkOptions
  std::string reject_rcpt;
  uint32_t max_rcpts = 0;
  std::string reject_data_from;
  std::string refuse_data_from;
  std::string shutdown_rcpt;
  bool offer_chunking = false;   // CHUNKING in EHLO, BDAT taken (RFC 3030)
  bool chunking_broken = false;  // CHUNKING in EHLO, BDAT answered 502 (not understood)
  bool quiet = false;
};

enum class SessionEvent {
  kNone,
  kStartTls,  // "220 Ready to start TLS" was appended; input after STARTTLS was discarded
  kClose,     // QUIT answered; close once the replies are sent
};
const char* ToString(SessionEvent e);

struct FeedResult {
  SessionEvent event = SessionEvent::kNone;
  size_t discarded = 0;  // bytes after STARTTLS/QUIT in the same input, never interpreted
};

// RFC 1870 SIZE announced in EHLO and enforced on DATA.
inline constexpr uint64_t kMaxMessageSize = 52428800;
// Longest command line accepted, without CRLF (RFC 5321 §4.5.3.1.4 says 512; we are lenient).
inline constexpr size_t kMaxCommandLine = 2048;

class SmtpServerSession {
 public:
  // `in_tls`: the connection is already TLS (implicit-TLS listener): STARTTLS is not offered.
  SmtpServerSession(const SessionConfig* config, MessageStore* store, SinkStats* stats,
                    bool in_tls);
  SmtpServerSession(const SmtpServerSession&) = delete;
  SmtpServerSession& operator=(const SmtpServerSession&) = delete;

  // Appends the 220 greeting.
  void Start(std::string* replies);
  // Processes every complete command (and DATA bytes) in `input`, appending all replies. Stops
  // at STARTTLS or QUIT; the rest of `input` is then reported as discarded.
  [[nodiscard]] FeedResult Feed(absl::string_view input, std::string* replies);

  // After the TLS handshake: "TLSv1.3 TLS_CHACHA20_POLY1305_SHA256" for the .env file.
  void OnTlsEstablished(std::string description) { tls_description_ = std::move(description); }
  // "IP:PORT" of both ends, for the .env file (only needed when storing).
  void SetAddresses(std::string peer, std::string local) {
    peer_ = std::move(peer);
    local_ = std::move(local);
  }

  bool in_data() const { return phase_ == Phase::kData; }

 private:
  enum class Phase { kCommand, kDiscardLine, kData, kBdat, kDone };
  // Position inside DATA, relative to the last CRLF (the only line end on the wire).
  enum class DataState { kLineStart, kMid, kMidCr, kDot, kDotCr };

  [[nodiscard]] SessionEvent OnLine(absl::string_view line, std::string* replies);
  void OnEhlo(absl::string_view arg, bool extended, std::string* replies);
  void OnMail(absl::string_view arg, std::string* replies);
  // True when the reply was 421: the session closes after sending it.
  [[nodiscard]] bool OnRcpt(absl::string_view arg, std::string* replies);
  void OnData(absl::string_view arg, std::string* replies);
  // RFC 3030: "BDAT n [LAST]" then exactly n octets of message, no dot-stuffing.
  void OnBdat(absl::string_view arg, std::string* replies);
  void FinishBdatChunk(std::string* replies);
  void StartBody();
  [[nodiscard]] SessionEvent OnStartTls(absl::string_view arg, std::string* replies);
  // Consumes DATA bytes; true once CRLF "." CRLF was consumed (*used counts it).
  bool FeedData(absl::string_view input, size_t* used);
  void EmitBody(const char* p, size_t n);
  void FinishData(std::string* replies);
  std::string EnvelopeText() const;
  void ResetTransaction();
  void ProtocolError(std::string* replies, absl::string_view reply);

  const SessionConfig* config_;
  MessageStore* store_;
  SinkStats* stats_;

  Phase phase_ = Phase::kCommand;
  bool greeted_ = false;  // HELO/EHLO seen since the start or since STARTTLS
  bool in_tls_;
  bool has_mail_ = false;
  std::string line_;  // partial command line carried between Feed() calls
  std::string helo_;
  std::string mail_from_;
  std::string mail_params_;
  std::vector<std::string> rcpts_;

  DataState data_state_ = DataState::kLineStart;
  std::string body_;  // only filled when storing
  uint64_t body_size_ = 0;
  uint64_t bare_in_message_ = 0;
  bool too_big_ = false;
  // BDAT: octets of the current chunk still to read, whether it is the LAST, the reply it gets
  // instead of 250 (no MAIL, no recipients, an earlier chunk failed), and whether this
  // transaction's body is coming by BDAT (DATA is then refused, RFC 3030 §2).
  uint64_t bdat_remaining_ = 0;
  bool bdat_last_ = false;
  std::string bdat_error_;
  bool bdat_started_ = false;
  bool via_bdat_ = false;

  std::string tls_description_;
  std::string peer_;
  std::string local_;
};

}  // namespace mxb::sink
