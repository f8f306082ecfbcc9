// Connection (engine/connection.h), the transactions: handing a job to the ready session
// (REQUIRETLS checked first, RFC 8689 §4.2.1), parking and quitting between them, and moving the
// session's per-recipient results into the job. connection.cc holds the bytes, the dialog and
// the close protocol; connection_tls.cc the TLS step.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/connection.h"
#include "engine/worker.h"

namespace mxb {

bool Connection::Transfer(DeliveryJob* job) {
  job_ = job;
  RecipientOutcome unset;
  unset.code = -1;
  job->outcomes.assign(job->rcpt_index.size(), unset);
  const MessageRecord& m = *job->message;
  Transaction txn;
  txn.id = reinterpret_cast<uint64_t>(job);
  txn.sender = m.envelope.sender;
  txn.recipients.reserve(job->rcpt_index.size());
  for (uint32_t i : job->rcpt_index) txn.recipients.push_back(m.envelope.recipients[i]);
  txn.wire_body = m.wire;
  txn.eight_bit = m.eight_bit;
  txn.stuffed_dots = &m.stuffed_dots;
  if (m.envelope.require_tls) {
    if (std::string why = RequireTlsProblem(); !why.empty()) {
      // RFC 8689 §4.2.1: not over this hop. Deferred with 4.7.30; when the retries run out
      // the engine bounces it as 5.7.30 (§5) with a DSN.
      job_ = nullptr;
      const AttemptInfo& attempt = Attempt();
      for (RecipientOutcome& o : job->outcomes) {
        o.klass = DeliveryClass::kDeferred;
        o.code = 0;
        o.enhanced = "4.7.30";
        o.text = absl::StrCat("REQUIRETLS: ", why);
        o.attempt = attempt;
      }
      owner_->OnJobDone(job);
      return false;
    }
    txn.require_tls = true;
  }
  Action a = session_->StartTransaction(std::move(txn));
  if (a.kind != Action::Kind::kNeedTransaction) {
    Handle(std::move(a));
    return true;
  }
  CollectResults();
  return false;
}

// RFC 8689 §4.2.1 for the hop of this connection: (1) the MX came from a DNSSEC-validated
// lookup or is listed in the domain's MTA-STS policy, (2) TLS with the certificate
// verified by DANE or PKIX against the MX name, (3) REQUIRETLS in the EHLO reply after STARTTLS.
std::string Connection::RequireTlsProblem() const {
  if (!spec_.mx_dnssec && !spec_.mx_sts_listed) {
    return absl::StrCat("MX ", spec_.mx,
                        " neither found by a DNSSEC-validated lookup nor listed by MTA-STS");
  }
  if (tls_ == nullptr || !tls_->handshake_done()) return absl::StrCat(spec_.mx, " is not using TLS");
  if (!tls_->verified()) {
    return absl::StrCat("the certificate of ", spec_.mx, " was not verified (DANE or PKIX)");
  }
  if (!session_->capabilities().requiretls) {
    return absl::StrCat(spec_.mx, " does not offer REQUIRETLS");
  }
  return std::string();
}

void Connection::Quit() { Handle(session_->Quit()); }

void Connection::Abort(absl::string_view why) {
  if (!used_ || phase_ == Phase::kClosing) return;
  CollectResults();  // replies already read count; only the rest is deferred
  if (job_ != nullptr) FinishJob(why);
  StartClose();
}

void Connection::Park(int64_t until_ms) {
  parked_ = true;
  ArmDeadlineAt(until_ms);
}

// Moves the session's results into the job; hands back the job once its transaction ended.
void Connection::CollectResults() {
  if (!session_) return;
  std::vector<RecipientResult> results = session_->TakeResults();
  if (results.empty()) return;
  const AttemptInfo& attempt = Attempt();
  for (RecipientResult& r : results) {
    DeliveryJob* job = reinterpret_cast<DeliveryJob*>(r.txn_id);
    if (job == nullptr || r.rcpt_index >= job->outcomes.size()) continue;
    owner_->OnReplyCode(slot_, r.code);
    RecipientOutcome& o = job->outcomes[r.rcpt_index];
    o.klass = r.klass;
    o.code = r.code;
    o.enhanced = std::move(r.enhanced);
    o.text = std::move(r.text);
    o.attempt = attempt;
  }
  if (job_ != nullptr && !session_->in_transaction()) FinishJob("no result");
}

// Hands job_ back; any recipient the session did not report is deferred with `why`.
void Connection::FinishJob(absl::string_view why) {
  DeliveryJob* job = job_;
  job_ = nullptr;
  const AttemptInfo& attempt = Attempt();
  for (RecipientOutcome& o : job->outcomes) {
    if (o.code < 0) {
      o.klass = DeliveryClass::kDeferred;
      o.code = 0;
      o.enhanced = "4.4.2";
      o.text = std::string(why);
      o.attempt = attempt;
    }
  }
  env_->stats->transactions.fetch_add(1, std::memory_order_relaxed);
  owner_->OnJobDone(job);
}

}  // namespace mxb
