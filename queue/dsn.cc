// RFC 3464 delivery status notifications; layout and rules in dsn.h.
#include "queue/dsn.h"

#include <cstdint>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "queue/journal.h"
#include "queue/spool.h"

namespace mxb {
namespace {

constexpr size_t kMaxLine = 998;   // RFC 5322 §2.1.1, without CRLF
constexpr size_t kFoldAt = 76;     // preferred width for folded values (RFC 5322 §2.1.1: 78)
constexpr size_t kMaxSpoolName = 240;  // Spool's name limit

// RFC 5322 §3.3 date-time in UTC.
std::string Rfc5322Date(absl::Time t) {
  return absl::FormatTime("%a, %d %b %Y %H:%M:%S +0000", t, absl::UTCTimeZone());
}

// Values from the network or the envelope, made safe for one header field: controls (CR, LF,
// NUL, ...) become spaces so nothing can start a new header line; runs of spaces collapse.
std::string CleanValue(absl::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char ch : v) {
    const auto c = static_cast<unsigned char>(ch);
    const char put = (c < 0x20 || c == 0x7f) ? ' ' : ch;
    if (put == ' ' && (out.empty() || out.back() == ' ')) continue;
    out.push_back(put);
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// Appends "Name: value" CRLF, folded (RFC 5322 §2.2.3) at spaces so that lines stay short; a
// word longer than a line is split with a continuation line at kMaxLine.
void AppendField(std::string* out, absl::string_view name, absl::string_view raw_value) {
  const std::string value = CleanValue(raw_value);
  std::string line = absl::StrCat(name, ": ");
  size_t pos = 0;
  bool first_word = true;
  while (pos < value.size()) {
    size_t end = value.find(' ', pos);
    if (end == std::string::npos) end = value.size();
    absl::string_view word(value.data() + pos, end - pos);
    const size_t needed = word.size() + (first_word ? 0 : 1);
    if (!first_word && line.size() + needed > kFoldAt) {
      absl::StrAppend(out, line, "\r\n");
      line = " ";  // continuation line: the fold keeps the space
    } else if (!first_word) {
      line.push_back(' ');
    }
    while (line.size() + word.size() > kMaxLine) {
      const size_t take = kMaxLine - line.size();
      line.append(word.data(), take);
      absl::StrAppend(out, line, "\r\n");
      line = " ";
      word.remove_prefix(take);
    }
    line.append(word.data(), word.size());
    first_word = false;
    pos = end + 1;
  }
  absl::StrAppend(out, line, "\r\n");
}

// "smtp; 550 ..." as given, or the type added when the caller passed bare text.
std::string DiagnosticValue(absl::string_view d) {
  const size_t semi = d.find(';');
  if (semi != absl::string_view::npos && semi < 16 && d.substr(0, semi).find(' ') == absl::string_view::npos) {
    return std::string(d);
  }
  return absl::StrCat("smtp; ", d);
}

std::string Boundary(absl::string_view env_name, absl::Time date, int salt) {
  const uint32_t h = Crc32c(absl::StrCat(env_name, "|", absl::ToUnixNanos(date), "|", salt));
  return absl::StrFormat("=_mxburst_dsn_%08x_%d", h, absl::ToUnixSeconds(date));
}

}  // namespace

absl::string_view ToString(DsnAction a) {
  switch (a) {
    case DsnAction::kFailed:
      return "failed";
    case DsnAction::kDelayed:
      return "delayed";
  }
  return "unknown";
}

std::string HeaderSection(absl::string_view message) {
  std::string out;
  size_t pos = 0;
  while (pos < message.size()) {
    size_t lf = message.find('\n', pos);
    const size_t end = lf == absl::string_view::npos ? message.size() : lf;
    absl::string_view line = message.substr(pos, end - pos);
    pos = end + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) break;  // end of the header section
    // A bare CR inside a line is not a line end (SMTP smuggling defence): make it a space.
    std::string clean(line);
    for (char& c : clean) {
      if (c == '\r') c = ' ';
    }
    absl::string_view rest(clean);
    bool first = true;
    while (rest.size() > kMaxLine - (first ? 0 : 1)) {
      const size_t take = kMaxLine - (first ? 0 : 1);
      absl::StrAppend(&out, first ? "" : " ", rest.substr(0, take), "\r\n");
      rest.remove_prefix(take);
      first = false;
    }
    absl::StrAppend(&out, first ? "" : " ", rest, "\r\n");
  }
  return out;
}

std::optional<std::string> BuildDsn(absl::string_view message, const Envelope& env,
                                    const DsnReport& report) {
  // RFC 5321 §4.5.5: no notification is ever sent about a message with a null reverse-path.
  if (env.sender.empty() || report.recipients.empty()) return std::nullopt;
  bool any_failed = false;
  for (const DsnRecipient& r : report.recipients) any_failed |= r.action == DsnAction::kFailed;
  const std::string headers = HeaderSection(message);

  // Part 1: human-readable.
  std::string text;
  absl::StrAppend(&text, "This is the mail system at host ", CleanValue(report.reporting_mta),
                  ".\r\n\r\n");
  if (any_failed) {
    absl::StrAppend(&text,
                    "Your message could not be delivered to one or more recipients. It has\r\n"
                    "been returned without its body; the headers are attached below.\r\n\r\n");
  } else {
    absl::StrAppend(&text,
                    "Your message has not been delivered to one or more recipients yet. The\r\n"
                    "mail system will keep trying; you do not need to send it again.\r\n\r\n");
  }
  for (const DsnRecipient& r : report.recipients) {
    std::string line = absl::StrCat("<", r.recipient, ">: ", ToString(r.action), ", ",
                                    r.diagnostic.empty() ? r.status : r.diagnostic);
    AppendField(&text, "Recipient", line);
  }

  // Part 2: machine-readable (RFC 3464 §2.2 per-message, §2.3 per-recipient fields).
  std::string status;
  AppendField(&status, "Reporting-MTA", absl::StrCat("dns; ", report.reporting_mta));
  if (!env.envid.empty()) AppendField(&status, "Original-Envelope-Id", env.envid);
  AppendField(&status, "Arrival-Date", Rfc5322Date(report.arrival));
  for (const DsnRecipient& r : report.recipients) {
    status.append("\r\n");  // blank line before each per-recipient block (§2.1)
    AppendField(&status, "Final-Recipient", absl::StrCat("rfc822; ", r.recipient));
    AppendField(&status, "Action", ToString(r.action));
    AppendField(&status, "Status", r.status);
    if (!r.remote_mta.empty()) {
      AppendField(&status, "Remote-MTA", absl::StrCat("dns; ", r.remote_mta));
    }
    if (!r.diagnostic.empty()) {
      AppendField(&status, "Diagnostic-Code", DiagnosticValue(r.diagnostic));
    }
    if (r.last_attempt != absl::InfinitePast()) {
      AppendField(&status, "Last-Attempt-Date", Rfc5322Date(r.last_attempt));
    }
    if (r.action == DsnAction::kDelayed && r.will_retry_until != absl::InfinitePast()) {
      AppendField(&status, "Will-Retry-Until", Rfc5322Date(r.will_retry_until));
    }
  }

  std::string boundary;
  for (int salt = 0;; ++salt) {
    boundary = Boundary(env.envid + env.sender, report.date, salt);
    if (!absl::StrContains(headers, boundary) && !absl::StrContains(text, boundary)) break;
  }

  std::string out;
  out.reserve(headers.size() + text.size() + status.size() + 1024);
  AppendField(&out, "From",
              absl::StrCat("Mail Delivery System <MAILER-DAEMON@", report.reporting_mta, ">"));
  AppendField(&out, "To", absl::StrCat("<", env.sender, ">"));
  AppendField(&out, "Subject", any_failed ? "Undelivered Mail Returned to Sender"
                                          : "Delayed Mail (still being retried)");
  AppendField(&out, "Date", Rfc5322Date(report.date));
  AppendField(&out, "Message-ID",
              absl::StrFormat("<dsn.%d.%08x@%s>", absl::ToUnixSeconds(report.date),
                              Crc32c(absl::StrCat(env.sender, headers, status)),
                              report.reporting_mta));
  AppendField(&out, "Auto-Submitted", "auto-replied");  // RFC 3834 §5
  AppendField(&out, "MIME-Version", "1.0");
  // RFC 6522 §3: multipart/report with report-type=delivery-status (RFC 3464 §2).
  absl::StrAppend(&out, "Content-Type: multipart/report; report-type=delivery-status;\r\n",
                  "\tboundary=\"", boundary, "\"\r\n\r\n");
  absl::StrAppend(&out, "This is a MIME-encapsulated message.\r\n\r\n");
  absl::StrAppend(&out, "--", boundary, "\r\n",
                  "Content-Description: Notification\r\n"
                  "Content-Type: text/plain; charset=utf-8\r\n\r\n",
                  text, "\r\n");
  absl::StrAppend(&out, "--", boundary, "\r\n",
                  "Content-Description: Delivery report\r\n"
                  "Content-Type: message/delivery-status\r\n\r\n",
                  status, "\r\n");
  absl::StrAppend(&out, "--", boundary, "\r\n",
                  "Content-Description: Undelivered message headers\r\n"
                  "Content-Type: text/rfc822-headers\r\n\r\n",
                  headers, "\r\n");
  absl::StrAppend(&out, "--", boundary, "--\r\n");
  return out;
}

std::string DsnFileName(absl::string_view spool_name, uint32_t generation) {
  std::string suffix = absl::StrCat(".g", generation, ".dsn");
  if (spool_name.size() + suffix.size() <= kMaxSpoolName) {
    return absl::StrCat(spool_name, suffix);
  }
  return absl::StrFormat("%s.%08x%s", spool_name.substr(0, 200), Crc32c(spool_name), suffix);
}

absl::Status WriteDsn(const std::string& spool_root, const std::string& file_name,
                      absl::string_view sender, absl::string_view dsn,
                      DsnDestination destination) {
  if (sender.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(file_name, ": no DSN for the null sender (RFC 5321 §4.5.5)"));
  }
  // The DSN itself has the null reverse-path, so its own failure cannot bounce back.
  Envelope env;
  env.recipients.push_back(std::string(sender));
  const std::string file = SerializeEnvelope(env, dsn);
  return ReplaceSpoolFile(spool_root,
                          destination == DsnDestination::kIncoming ? "incoming" : "bounces",
                          file_name, file);
}

}  // namespace mxb
