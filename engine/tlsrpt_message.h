// The two forms a TLS-RPT report travels in (RFC 8460 §5): the gzip-compressed JSON (§5.2, the
// body of an https POST with Content-Type application/tlsrpt+gzip) and the mail for a mailto:
// rua (§5.3): multipart/report; report-type="tlsrpt" with a short text part and the report as
// an application/tlsrpt+gzip attachment named per §5.1, the §5.3 Subject and the
// TLS-Report-Domain / TLS-Report-Submitter header fields, written as a spool pickup file so the
// engine delivers it like any other message.
//
// Owns: nothing; pure functions (any thread). gzip is Debian's zlib; base64 is absl's.
//
//   absl::StatusOr<std::string> gz = GzipTlsRptReport(json);
//   TlsRptMail m{.from = "tlsrpt@esp.example", .to = "tlsrpt@d.example", ...};
//   std::string pickup = TlsRptPickupFile(m, *gz);   // -> InjectFile(spool, name, pickup)
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace mxb {

// Report mails carry this x-job: their sessions are never counted (RFC 8460 §3: reports must
// not trigger reports).
inline constexpr char kTlsRptJob[] = "mxburst-tlsrpt";

absl::StatusOr<std::string> GzipTlsRptReport(absl::string_view json);
// For tests and mxburstctl: the inverse of GzipTlsRptReport.
absl::StatusOr<std::string> GunzipTlsRptReport(absl::string_view gz);

struct TlsRptMail {
  std::string from;           // From: and the envelope sender
  std::string to;             // the rua address without "mailto:"
  std::string policy_domain;  // TLS-Report-Domain
  std::string submitter;      // TLS-Report-Submitter (the reporting organisation's domain)
  std::string report_id;
  std::string file_name;      // §5.1 TlsRptFileName()
  absl::Time date;
};

// The pickup file (x-sender / x-receiver / x-job envelope lines, then the RFC 5322 message).
std::string TlsRptPickupFile(const TlsRptMail& m, absl::string_view gz);

}  // namespace mxb
