// Startup recovery: makes the spool agree with the outcome journal before the engine claims
// anything, so that after a kill -9 at any instant (DESIGN.md "Spool directory API"):
//  - a message whose recipients were all journaled final is not sent again (its active/ file is
//    removed);
//  - a partially delivered message keeps only its pending recipients (its active/ file is
//    rewritten with them, generation + 1, so old journal indexes can never apply to it);
//  - every other file in active/ is handed back to the engine to deliver again (at-least-once);
//  - a message that reached deferred/ but whose active/ copy was not yet unlinked (crash inside
//    Spool::Defer) is kept once: the newer deferred/ generation wins.
// Afterwards no spool file depends on the old journal segments, so they are deleted.
//
// Scanner thread, once, before the engine starts claiming.
//
//   auto old = Journal::Recover(spool_root + "/journal");
//   auto journal = Journal::Open(spool_root + "/journal", {...});
//   auto report = RecoverSpool(spool, *old, **journal);
//   for (const std::string& name : report->redeliver) { ReadActive(name) ... dispatch }
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "queue/envelope.h"
#include "queue/journal.h"
#include "queue/spool.h"

namespace mxb {

// The envelope with the recipients in `final_set` removed (indexes of `env.recipients`) and
// attempts (= generation) incremented, because the remaining recipients are re-numbered. Only
// applies `final_set` when its generation equals env.attempts; otherwise returns `env` unchanged.
// Everything else (sender, envid, job, retry times, body_offset) is copied.
Envelope FilterPending(const Envelope& env, const FinalSet& final_set);

struct RecoveryReport {
  std::vector<std::string> redeliver;  // names in active/ to dispatch again (ReadActive)
  size_t completed = 0;        // every recipient was final: active/ file removed
  size_t rewritten = 0;        // some recipients final: active/ file rewritten with the rest
  size_t duplicates = 0;       // active/ copy dropped, deferred/ holds the newer generation
  size_t unparsable = 0;       // left in active/ for the engine to quarantine (in redeliver)
  // Final recipients that were bounced/expired, per removed or rewritten message: the engine
  // writes their DSN if it does not exist yet (DSN files are written before the journal commit,
  // see queue/dsn.h, so normally it does).
  std::vector<std::string> messages_with_failures;
};

// Resolves every file in spool/active against `recovered`, then makes the spool directories
// durable and drops the journal segments that existed before `journal` was opened. Errors name
// the file; a file that cannot be read is left in active/ and listed in redeliver.
[[nodiscard]] absl::StatusOr<RecoveryReport> RecoverSpool(Spool& spool,
                                                          const RecoveredJournal& recovered,
                                                          Journal& journal);

}  // namespace mxb
