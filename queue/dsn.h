// Delivery status notifications: the RFC 3464 report sent back to the envelope sender when
// recipients bounce (5xx, RFC 5321 §4.2.1), expire (RFC 5321 §4.5.4.1) or, optionally, are
// delayed. Pure message building plus one atomic file write; any thread.
//
// The message (RFC 6522 multipart/report; report-type=delivery-status):
//   1. text/plain: a short human-readable explanation, one line per recipient;
//   2. message/delivery-status (RFC 3464 §2): per-message fields Reporting-MTA, Original-
//      Envelope-Id (x-envid, only when set), Arrival-Date; then one block per recipient with
//      Final-Recipient: rfc822;..., Action, Status (RFC 3463 enhanced code), Remote-MTA (if
//      known), Diagnostic-Code: smtp; ..., Last-Attempt-Date, Will-Retry-Until (delayed only);
//   3. text/rfc822-headers: the original message's header section only (never the body: a
//      bounce must not re-send the content, RFC 3464 §2 allows headers only).
// CRLF line ends only, every line <= 998 octets (RFC 5322 §2.1.1); long field values are folded
// at spaces, or split with a continuation line if they have none. Values from the network
// (diagnostics) are stripped of CR, LF and other controls so they cannot inject header lines.
//
// A message with the null reverse-path never gets a DSN (RFC 5321 §4.5.5, RFC 3461 §6.2):
// BuildDsn returns nullopt, so bounces cannot loop.
//
// Order in the engine, per batch: build and WriteDsn for the batch's bounced/expired
// recipients *before* Journal::Commit (the file name is deterministic, so a crash and a second
// pass rewrite the same file instead of sending two), then commit, then the spool operations.
//
//   DsnReport report{.reporting_mta = "mta.esp.example", .arrival = queued, .date = absl::Now()};
//   report.recipients.push_back({"a@x.example", DsnAction::kFailed, "5.1.1",
//                                "smtp; 550 5.1.1 no such user", "mx.x.example", last_try});
//   std::optional<std::string> dsn = BuildDsn(body, env, report);
//   if (dsn) WriteDsn(spool.root(), DsnFileName(name, env.attempts), env.sender, *dsn,
//                     DsnDestination::kBouncesDir);
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "queue/envelope.h"

namespace mxb {

// RFC 3464 §2.3.3 action-value (the subset an outbound MTA reports).
enum class DsnAction { kFailed, kDelayed };
absl::string_view ToString(DsnAction a);

struct DsnRecipient {
  std::string recipient;    // address as in the envelope, without <>
  DsnAction action = DsnAction::kFailed;
  std::string status;       // RFC 3463 enhanced code "5.1.1"; "4.4.7" for expired
  std::string diagnostic;   // "smtp; 550 5.1.1 <a@x.example>: no such user" (or without "smtp;")
  std::string remote_mta;   // MX host name or IP literal; empty if none was reached
  absl::Time last_attempt = absl::InfinitePast();  // omitted when InfinitePast
  absl::Time will_retry_until = absl::InfinitePast();  // delayed only; omitted when InfinitePast
};

struct DsnReport {
  std::string reporting_mta;  // this host's name, "mta.esp.example"
  absl::Time arrival;         // when the message entered the queue (Arrival-Date)
  absl::Time date;            // the DSN's own Date
  std::vector<DsnRecipient> recipients;
};

// RFC 3463 §3.5 "X.4.7 Delivery time expired", for recipients given up after the max age.
inline constexpr absl::string_view kExpiredStatus = "4.4.7";

// Builds the DSN for `env.sender` about `report.recipients`; `message` is the RFC 5322 message
// (the spool file from env.body_offset on). nullopt for the null sender or no recipients.
std::optional<std::string> BuildDsn(absl::string_view message, const Envelope& env,
                                    const DsnReport& report);

// The header section of an RFC 5322 message (up to the first empty line), CRLF line ends,
// bare CR/LF normalised, lines longer than 998 octets folded.
std::string HeaderSection(absl::string_view message);

enum class DsnDestination {
  kBouncesDir,  // spool/bounces/NAME: for an external bounce processor (the default)
  kIncoming,    // spool/incoming/NAME: the engine delivers it like any other message
};

// Deterministic DSN file name for a spool file at a generation ("NAME.gN.dsn"), so that a crash
// between writing the DSN and committing the journal rewrites the same file. Long names are
// shortened with a hash to stay within NAME_MAX.
std::string DsnFileName(absl::string_view spool_name, uint32_t generation);

// Writes `dsn` as a pickup file ("x-sender: <>", "x-receiver: <sender>", then the DSN) into the
// destination atomically: tmp/, fsync, rename (replacing a file of the same name from an earlier
// attempt), fsync the directory. Errors name the path and errno.
[[nodiscard]] absl::Status WriteDsn(const std::string& spool_root, const std::string& file_name,
                                    absl::string_view sender, absl::string_view dsn,
                                    DsnDestination destination = DsnDestination::kBouncesDir);

}  // namespace mxb
