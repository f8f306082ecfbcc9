// JSON form of the sink counters (see sink_stats.h).
#include "tools/sink/sink_stats.h"

#include "absl/strings/str_format.h"

namespace mxb::sink {

std::string SinkStats::ToJson() const {
  return absl::StrFormat(
      "{\"connections\":%d,\"tls_connections\":%d,\"messages\":%d,\"recipients\":%d,"
      "\"bytes\":%d,\"tempfailed_rcpts\":%d,\"rejected_rcpts\":%d,\"protocol_errors\":%d,"
      "\"bare_lf_in_data\":%d,\"tempfailed_data\":%d,\"tls_failures\":%d,\"store_errors\":%d,"
      "\"stale_completions\":%d,\"peak_connections\":%d,\"peak_tls_sessions\":%d,"
      "\"bdat_messages\":%d}",
      connections, tls_connections, messages, recipients, bytes, tempfailed_rcpts, rejected_rcpts,
      protocol_errors, bare_lf_in_data, tempfailed_data, tls_failures, store_errors,
      stale_completions, peak_connections, peak_tls_sessions, bdat_messages);
}

}  // namespace mxb::sink
