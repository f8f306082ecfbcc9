// TlsRptReporter: the engine's TLS-RPT (RFC 8460) bookkeeping — it takes the session outcomes the
// workers record, keeps them durably per (policy domain, UTC day, policy), and once a day (and on
// `mxburstctl tlsrpt --send-now`) turns them into reports and delivers them.
//
// Owns: the counters (tls/tlsrpt.h) and their durability — every batch's new counts are one
// journal record (queue/journal.h type 4, kind kJournalAuxTlsRpt) written by the scanner's
// group commit, and SPOOL/tlsrpt/counters.json is a snapshot covering them, rewritten before the
// journal deletes a segment and at exit, so a restart (kill -9 included) loses no day's counts;
// the outbox SPOOL/tlsrpt/outbox.<report-id>.json (a built report waiting for its rua lookup and
// delivery, durable before its counts are taken out of the counters); SPOOL/tlsrpt/sent.jsonl
// (one line per delivered or abandoned report destination). Delivery: TXT _smtp._tls.<domain>
// (§3) through TlsRptNetwork, then per rua a mailto: message injected into the spool
// (engine/tlsrpt_message.h, x-job kTlsRptJob: such sessions are never counted, §3) or an https:
// POST of the gzip report (§5.2), retried with back-off.
//
// Thread: Record() from any thread (the workers; a lock-free bounded queue, never blocking — a
// full queue drops the outcome and counts it). Everything else on the scanner thread; the
// TlsRptNetwork callbacks run on the fetcher thread and only hand results over (mutex).
//
//   auto r = TlsRptReporter::Open(opts, recovered_journal, fetcher);   // before Journal::Open
//   worker env: r->get() as TlsRptRecorder
//   scanner loop, before each group commit: r->OnBatch(journal, now);  at exit: r->Close();
//   JournalOptions::before_delete: ... r->Snapshot()
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "queue/journal.h"
#include "queue/mpsc_queue.h"
#include "tls/tlsrpt.h"

namespace mxb {

inline constexpr uint8_t kJournalAuxTlsRpt = 1;

// What a connection reports (engine/connection_tls.cc). Thread: any.
class TlsRptRecorder {
 public:
  virtual ~TlsRptRecorder() = default;
  virtual void Record(TlsRptSession s) = 0;
};

// The network steps of a report's delivery, carried out off the scanner and worker threads (the
// MTA-STS fetcher thread implements them). Callbacks run on that thread.
class TlsRptNetwork {
 public:
  // ok: records are the answer; absent: NXDOMAIN / no TXT (no TLS-RPT); else a temporary error.
  using TxtDone = std::function<void(bool ok, bool absent, std::vector<std::string> records,
                                     std::string error)>;
  using PostDone = std::function<void(std::string error)>;  // "" = accepted (2xx)
  virtual ~TlsRptNetwork() = default;
  virtual void LookupTxt(std::string name, TxtDone done) = 0;
  virtual void PostReport(std::string url, std::string body, std::string content_type,
                          PostDone done) = 0;
};

struct TlsRptOptions {
  std::string spool_dir;
  std::string organization_name;  // §4.4 organization-name
  std::string contact_info;       // §4.4 contact-info
  std::string submitter;          // TLS-Report-Submitter, file names, Message-ID
  std::string from;               // report mails: From and envelope sender
  bool quiet = false;
};

struct EngineConfig;  // engine/config.h
// [tlsrpt] with its defaults filled in from the HELO name.
TlsRptOptions TlsRptOptionsFor(const EngineConfig& c);

class TlsRptReporter : public TlsRptRecorder {
 public:
  // Loads SPOOL/tlsrpt/counters.json, adds the journal's newer deltas (`old`, read before the
  // journal is opened) and writes the snapshot, so the old segments may go; loads the outbox.
  static absl::StatusOr<std::unique_ptr<TlsRptReporter>> Open(TlsRptOptions opts,
                                                              const RecoveredJournal& old,
                                                              TlsRptNetwork* net);

  void Record(TlsRptSession s) override;

  // Scanner thread. The recorded sessions of this batch -> counters + one journal record.
  void Drain(Journal* journal, absl::Time now);
  // Scanner thread. At a new UTC day (and at start) the days before it, on SPOOL/tlsrpt/send-now
  // every day including today, become reports in the outbox (their counts taken out with a
  // journal record); outbox entries move on (lookup, mail injection, POST, retries).
  void Tick(Journal* journal, absl::Time now);
  // Scanner thread, before each group commit: Drain() then Tick().
  void OnBatch(Journal* journal, absl::Time now) {
    Drain(journal, now);
    Tick(journal, now);
  }
  // At exit: the last snapshot (a failure is said on stderr; the journal still has the deltas).
  void Close();
  // Scanner thread: the counters as of now into SPOOL/tlsrpt/counters.json (tmp + fsync +
  // rename). Cheap when nothing changed since the last one.
  absl::Status Snapshot();

  const TlsRptCounters& counters() const { return state_.counters; }
  uint64_t dropped() const { return dropped_; }

 private:
  struct Outbox {
    std::string id, domain, file_name, json;
    absl::Time start, end;
    bool looked_up = false;
    std::vector<std::string> rua;  // destinations not delivered yet (after the lookup)
    int attempts = 0;
    absl::Time next_try = absl::InfinitePast();
    int inflight = 0;  // lookups / POSTs out on the network thread
  };
  struct NetResult {
    std::string id;
    enum Kind { kTxt, kPost } kind = kTxt;
    bool ok = false, absent = false;
    std::vector<std::string> records;
    std::string rua, error;
  };

  TlsRptReporter(TlsRptOptions opts, TlsRptNetwork* net);
  std::string Dir() const { return opts_.spool_dir + "/tlsrpt"; }
  void BuildReports(Journal* journal, absl::Time now, bool include_today);
  void Deliver(absl::Time now);
  void Apply(NetResult r, absl::Time now);
  void Retry(Outbox& o, absl::Time now, const std::string& why);
  void Sent(const Outbox& o, const std::string& rua, const std::string& result);
  absl::Status WriteOutbox(const Outbox& o);
  void RemoveOutbox(const std::string& id);
  std::string SendingIpFor(const std::string& receiving_ip);

  const TlsRptOptions opts_;
  TlsRptNetwork* const net_;
  MpscQueue<std::unique_ptr<TlsRptSession>> queue_{1 << 14};
  std::atomic<uint64_t> dropped_{0};
  TlsRptState state_;
  uint64_t snapshot_seq_ = 0;  // state_.seq as of the last snapshot written
  int64_t reported_day_ = -1;  // days before this one have been turned into reports
  absl::Time last_trigger_check_ = absl::InfinitePast();
  std::vector<Outbox> outbox_;
  absl::flat_hash_map<std::string, std::string> source_for_;  // receiving IP -> our address
  std::mutex net_mu_;
  std::vector<NetResult> net_results_;
  uint64_t report_serial_ = 0;
};

}  // namespace mxb
