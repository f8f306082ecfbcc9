// TLS-RPT report encodings (engine/tlsrpt_message.h).
#include "engine/tlsrpt_message.h"

#include <zlib.h>

#include <cstring>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace mxb {

absl::StatusOr<std::string> GzipTlsRptReport(absl::string_view json) {
  z_stream z;
  std::memset(&z, 0, sizeof z);
  // windowBits 15 + 16: a gzip wrapper (RFC 1952), which §5.2 asks for, not a raw zlib stream.
  if (deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    return absl::InternalError("TLS-RPT: deflateInit2 failed");
  }
  std::string out(deflateBound(&z, json.size()) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(json.data()));
  z.avail_in = static_cast<uInt>(json.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  if (rc != Z_STREAM_END) return absl::InternalError("TLS-RPT: gzip failed");
  return out;
}

absl::StatusOr<std::string> GunzipTlsRptReport(absl::string_view gz) {
  z_stream z;
  std::memset(&z, 0, sizeof z);
  if (inflateInit2(&z, 15 + 16) != Z_OK) return absl::InternalError("inflateInit2 failed");
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(gz.data()));
  z.avail_in = static_cast<uInt>(gz.size());
  std::string out;
  char buf[16384];
  int rc = Z_OK;
  while (rc == Z_OK) {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof buf;
    rc = inflate(&z, Z_NO_FLUSH);
    out.append(buf, sizeof buf - z.avail_out);
    if (rc == Z_BUF_ERROR && z.avail_in == 0) break;
  }
  inflateEnd(&z);
  if (rc != Z_STREAM_END) return absl::InvalidArgumentError("not a complete gzip stream");
  return out;
}

std::string TlsRptPickupFile(const TlsRptMail& m, absl::string_view gz) {
  const std::string boundary = absl::StrCat("tlsrpt-", m.report_id);
  std::string b64;
  absl::Base64Escape(gz, &b64);
  std::string body;
  // RFC 2045 §6.8: encoded lines of at most 76 characters.
  for (size_t i = 0; i < b64.size(); i += 76) absl::StrAppend(&body, b64.substr(i, 76), "\n");
  const std::string date =
      absl::FormatTime("%a, %d %b %Y %H:%M:%S +0000", m.date, absl::UTCTimeZone());
  return absl::StrCat(
      "x-sender: <", m.from, ">\n", "x-receiver: <", m.to, ">\n", "x-job: ", kTlsRptJob, "\n",
      "From: <", m.from, ">\n", "To: <", m.to, ">\n",
      // RFC 8460 §5.3: the Subject names the policy domain, the submitter and the report id.
      "Subject: Report Domain: ", m.policy_domain, " Submitter: ", m.submitter,
      " Report-ID: <", m.report_id, ">\n", "TLS-Report-Domain: ", m.policy_domain, "\n",
      "TLS-Report-Submitter: ", m.submitter, "\n", "Date: ", date, "\n", "Message-ID: <",
      m.report_id, "@", m.submitter, ">\n",
      // RFC 3834: an automatic message; no vacation replies to it.
      "Auto-Submitted: auto-generated\n", "MIME-Version: 1.0\n",
      "Content-Type: multipart/report; report-type=\"tlsrpt\"; boundary=\"", boundary, "\"\n",
      "\n", "This is a multipart message in MIME format.\n\n", "--", boundary, "\n",
      "Content-Type: text/plain; charset=us-ascii\n\n",
      "This is an aggregate TLS report (RFC 8460) from ", m.submitter, " for ", m.policy_domain,
      ".\n\n", "--", boundary, "\n", "Content-Type: application/tlsrpt+gzip\n",
      "Content-Transfer-Encoding: base64\n", "Content-Disposition: attachment; filename=\"",
      m.file_name, "\"\n\n", body, "\n--", boundary, "--\n");
}

}  // namespace mxb
