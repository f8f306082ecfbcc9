// The unit of work that crosses threads: a claimed spool message (MessageRecord, owned by the
// scanner thread) and a DeliveryJob — that message's recipients at one destination domain, at
// most one SMTP transaction's worth.
//
// Ownership: the scanner creates a MessageRecord and its jobs, hands each job to the worker that
// owns the job's domain through that worker's MpscQueue, and gets it back (with one
// RecipientOutcome per recipient filled in) through the completion queue. A worker only writes
// the job's own `outcomes`; the MessageRecord is read-only while any job is out. The queues give
// the happens-before edges, so no field here is atomic.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "engine/smtp_session.h"
#include "queue/envelope.h"

namespace mxb {

// Where and how a recipient's attempt ran; copied into the log record.
struct AttemptInfo {
  std::string mx;           // next-hop host name
  std::string ip;
  uint16_t port = 0;
  std::string tls_version;  // "" = plaintext
  std::string tls_cipher;
  bool tls_resumed = false;
  // TlsPolicy::name and ToString(PolicySource) of the hop tried; "none" when no hop was (not
  // tried: dead, paused, shutting down; no MX): no TLS policy was decided for that outcome.
  std::string policy = "none";
  std::string policy_source = "none";
  bool dnssec = false;      // the MX answer was DNSSEC-validated
  std::string violation;    // log-only mode: what enforcement would have refused
  // DANE (RFC 7672): the TLSA record that matched ("3 1 1") or why none did ("tlsa-mismatch",
  // "tlsa-unusable", "tlsa-lookup-failed"); empty when DANE did not apply.
  std::string dane;
};

struct RecipientOutcome {
  DeliveryClass klass = DeliveryClass::kDeferred;
  int code = 0;
  std::string enhanced;
  std::string text;
  AttemptInfo attempt;
};

struct MessageRecord {
  std::string spool_name;   // file name in spool/active/
  Envelope envelope;
  // The spool file itself is not held while the jobs are out, only its size: a deferral rewrite
  // or a DSN reads the message back from active/, where it stays until it is finished (issue 17:
  // one copy less per claimed message — 1.3 KB of each of 100k waiting sessions, 20 KB for a
  // 20 KB message).
  size_t file_size = 0;
  bool tls_required_no = false;  // RFC 8689 §5 "TLS-Required: No" in the header (requiretls.h)
  std::string wire;         // AppendDataWire(message) — what goes after DATA
  // Offsets in `wire` of the dots AppendDataWire stuffed: BDAT sends `wire` without them
  // (engine/smtp_bdat.h). Whoever changes `wire` records them again.
  std::vector<uint32_t> stuffed_dots;
  bool eight_bit = false;
  absl::Time queued_at;     // file mtime at claim: when the producer finished writing it
  int jobs_out = 0;         // scanner thread only
  std::vector<DeliveryClass> final_class;  // per envelope recipient, filled as jobs return
  std::vector<RecipientOutcome> outcomes;  // per recipient (DSNs), sized at the first outcome
};

struct DeliveryJob {
  MessageRecord* message = nullptr;
  std::string domain;
  std::vector<uint32_t> rcpt_index;        // indexes into message->envelope.recipients
  std::vector<RecipientOutcome> outcomes;  // same size as rcpt_index once the job is done
  uint32_t worker = 0;
  // RFC 8689 §5: the message says "TLS-Required: No" (and [tls] honor_tls_required_no): the
  // hop's TLS policy failures are logged, not enforced, for this job.
  bool tls_optional = false;
  // Set by the destination when it deferred this job because every next hop failed recently
  // (engine/destination.h, "dead"): until when new jobs will not be tried either, and the last
  // hop failure. The scanner learns it (engine/dead_destinations.h) and defers such mail itself.
  absl::Time dead_until = absl::InfinitePast();
  std::string dead_reason;
};

// The outcome text of a job deferred without a connection attempt because its destination is
// dead; the worker and the scanner say the same.
inline std::string NotTriedText(absl::string_view last_failure) {
  return absl::StrCat("destination not tried: all next hops failed recently (", last_failure,
                      ")");
}

}  // namespace mxb
