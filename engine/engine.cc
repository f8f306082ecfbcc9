#include "engine/engine.h"

#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/control_plane.h"
#include "queue/dsn.h"
#include "queue/envelope.h"
#include "queue/recovery.h"

namespace mxb {
namespace {

// Due retries held in the scanner ahead of the claims (one claim round's worth).
constexpr size_t kDueAhead = 256;
// Workers keep what does not fit and retry, so this only needs to cover a burst; each cell is
// 16 bytes written at construction (a 2^20 queue showed up in profiles as 16 MB of page faults).
constexpr size_t kCompletionCapacity = 1 << 16;

}  // namespace

Engine::Engine(EngineConfig config) : config_(std::move(config)) {}

Engine::~Engine() {
  amqp_.reset();
  if (outcomes_) {  // the last records reach the stream, then the log no longer calls it
    if (log_) (void)log_->Flush();
    if (log_) log_->set_on_durable(nullptr);
    outcomes_.reset();  // up to 2 s for the broker's confirms
  }
  if (control_) control_->Stop();  // its handlers read the workers
  for (auto& w : workers_) {
    w->RequestStop();
    w->Join();
  }
  redis_.reset();  // the workers' budgets point at its shares
}

absl::Status Engine::Start() {
  // main() loads the DKIM keys before dropping privileges; an engine built elsewhere loads here.
  if (absl::Status s = LoadDkimSigner(&config_); !s.ok()) return s;
  absl::StatusOr<Spool> spool = Spool::Open(config_.spool_dir);
  if (!spool.ok()) return spool.status();
  spool_ = std::make_unique<Spool>(*std::move(spool));

  absl::flat_hash_map<std::string, std::string> relay_hops;  // "relay:NAME" routes
  for (const RelayConfig& r : config_.relays) relay_hops[r.name] = r.HopSpec();
  absl::StatusOr<StaticRoutes> routes =
      StaticRoutes::Parse(config_.routes, config_.smtp_port, config_.dns_servers, relay_hops);
  if (!routes.ok()) return routes.status();
  routes_ = std::make_unique<StaticRoutes>(*std::move(routes));

  absl::StatusOr<std::unique_ptr<AccountingLog>> log = AccountingLog::Open(config_.log_path);
  if (!log.ok()) return log.status();
  log_ = *std::move(log);
  if (config_.amqp_output.enabled()) {  // [output.amqp]: a copy of each durable record
    outcomes_ = std::make_unique<AmqpOutput>(config_.amqp_output, config_.quiet);
    log_->set_on_durable([o = outcomes_.get()](absl::string_view lines) { o->Offer(lines); });
    outcomes_->Start();
  }

  absl::StatusOr<BounceClassifier> classes = BounceClassifier::Load(config_.bounce_classes_file);
  if (!classes.ok()) return classes.status();
  bounce_classes_ = *std::move(classes);

  TlsGlobalInit();
  TlsClientOptions tls_opts;
  tls_opts.ca_file = config_.ca_file;
  absl::StatusOr<std::unique_ptr<TlsContext>> ctx = TlsContext::NewClient(tls_opts);
  if (!ctx.ok()) return ctx.status();
  tls_client_ = *std::move(ctx);

  if (config_.mta_sts || config_.tlsrpt) {
    StsFetcher::Options so;
    so.dns_servers = config_.dns_servers;
    so.ca_file = config_.ca_file;
    so.https_port = config_.mta_sts_https_port;
    so.recheck = config_.mta_sts_recheck;
    absl::StatusOr<std::unique_ptr<StsFetcher>> sts =
        StsFetcher::Create(so, config_.spool_dir + "/policy/mta-sts");
    if (!sts.ok()) return sts.status();
    sts_ = *std::move(sts);
  }
  if (config_.banner_pins == BannerPinMode::kLearn) {
    std::string warning;
    absl::StatusOr<std::unique_ptr<BannerPinStore>> pins =
        BannerPinStore::Open(config_.spool_dir + "/policy", &warning);
    if (!pins.ok()) return pins.status();
    if (!warning.empty()) std::fprintf(stderr, "mxburst: banner pins: %s\n", warning.c_str());
    banner_pins_ = *std::move(pins);
  }
  // Read-only; the TLS-RPT counters' journal deltas are needed before the workers start.
  std::string journal_dir = config_.spool_dir + "/journal";
  absl::StatusOr<RecoveredJournal> old = Journal::Recover(journal_dir);
  if (!old.ok()) return old.status();
  if (config_.tlsrpt) {
    absl::StatusOr<std::unique_ptr<TlsRptReporter>> r =
        TlsRptReporter::Open(TlsRptOptionsFor(config_), *old, sts_.get());
    if (!r.ok()) return r.status();
    tlsrpt_ = *std::move(r);
  }

  if (config_.cluster.enabled() && config_.shaping) {
    // scope = "cluster" rules: their budgets draw on leases the Redis thread keeps current.
    std::vector<RedisBudgets::Rule> rules;
    for (auto [rule, budget] : config_.shaping->ClusterBudgets()) {
      cluster_shares_.push_back(std::make_unique<ClusterShare>());
      budget->AttachCluster(cluster_shares_.back().get());
      rules.push_back({budget->name(), rule->limits.max_connections,
                       rule->limits.max_message_rate.IntervalUs(), rule->limits.rate_burst,
                       cluster_shares_.back().get()});
    }
    if (!rules.empty()) {
      redis_ = std::make_unique<RedisBudgets>(config_.cluster, std::move(rules), config_.quiet);
      redis_->Start();
    }
  }

  int n = config_.workers;
  if (n <= 0) n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  completions_ = std::make_unique<CompletionQueue>(kCompletionCapacity);
  if (!config_.http_listen.empty()) {
    control_ = std::make_unique<ControlPlane>(config_, static_cast<size_t>(n));
    control_->SetBannerPins(banner_pins_.get());
  }
  // Issue 17: connects stay inside this budget instead of running into EADDRNOTAVAIL.
  const EphemeralPorts ports = ConnectGate::ReadPortRange();
  if (!config_.quiet) {
    std::fprintf(stderr, "mxburst: %s\n", ConnectGate::Describe(ports, n).c_str());
  }
  for (int i = 0; i < n; ++i) {
    auto w = std::make_unique<Worker>(static_cast<uint32_t>(i), config_, *routes_,
                                      tls_client_.get(), completions_.get());
    w->set_sts(config_.mta_sts ? sts_.get() : nullptr);
    w->set_tlsrpt(tlsrpt_.get());
    w->set_banner_pins(banner_pins_.get());
    w->set_ports(ports, n);
    if (control_) w->AttachControl(control_->channel(static_cast<size_t>(i)));
    if (absl::Status s = w->Init(); !s.ok()) return s;
    if (absl::Status s = w->Start(); !s.ok()) return s;
    workers_.push_back(std::move(w));
  }
  overflow_.resize(workers_.size());
  wake_.assign(workers_.size(), false);
  if (config_.amqp.enabled()) {
    amqp_ = std::make_unique<AmqpInput>(config_.amqp, config_.spool_dir, &intake_, config_.quiet);
  }
  if (control_) {
    if (amqp_) control_->AddMetrics([a = amqp_.get()](control::PrometheusText* p) { a->WriteMetrics(p); });
    if (redis_) control_->AddMetrics([r = redis_.get()](control::PrometheusText* p) { r->WriteMetrics(p); });
    if (outcomes_) control_->AddMetrics([o = outcomes_.get()](control::PrometheusText* p) { o->WriteMetrics(p); });
    if (absl::Status s = control_->Start(&workers_); !s.ok()) return s;
    if (!config_.quiet) std::fprintf(stderr, "mxburst: dashboard %s\n", control_->url().c_str());
  }

  absl::StatusOr<RetrySchedule> schedule =
      RetrySchedule::Create(config_.retry_delays, config_.retry_repeat, config_.max_queue_age);
  if (!schedule.ok()) return schedule.status();
  schedule_ = *std::move(schedule);

  // Recovery (at-least-once): files a previous run left in active/ were claimed but not
  // finished. The journal says which of their recipients already reached a final outcome;
  // those are not sent again, the rest are.
  // The journal is the commit point of the log too: a crash after a journal commit and before
  // (or during) that batch's log write left the log short; append the rest before anything
  // else is logged, so every journaled outcome has exactly one record.
  size_t log_repaired = 0;
  if (old->log_tail.has_value()) {
    absl::StatusOr<size_t> n =
        log_->Repair(old->log_tail->offset, old->log_tail->inode, old->log_tail->bytes);
    if (!n.ok()) return n.status();
    log_repaired = *n;
  }
  JournalOptions jo;
  jo.before_delete = [this] {
    absl::Status s = spool_->SyncDirs();
    // Aux records pin no segment: the TLS-RPT counters they carry go into its snapshot first.
    if (s.ok() && tlsrpt_) s = tlsrpt_->Snapshot();
    return s;
  };
  absl::StatusOr<std::unique_ptr<Journal>> journal = Journal::Open(journal_dir, jo);
  if (!journal.ok()) return journal.status();
  journal_ = *std::move(journal);
  absl::StatusOr<RecoveryReport> rep = RecoverSpool(*spool_, *old, *journal_);
  if (!rep.ok()) return rep.status();
  scanner_ = std::make_unique<Scanner>(config_, spool_.get(), workers_.size(),
                                       config_.scanner_threads);
  scanner_->AddRecovered(rep->redeliver);
  scanner_->set_gate(this);  // dead destinations (engine/dead_destinations.h)
  if (!config_.quiet &&
      (rep->redeliver.size() + rep->completed + rep->rewritten + log_repaired) > 0) {
    std::fprintf(stderr,
                 "mxburst: recovery: %zu message(s) to deliver again, %zu already complete, "
                 "%zu partly delivered (only pending recipients kept); journal: %zu records, "
                 "%zu torn bytes, %zu corrupt records skipped; accounting log: %zu bytes of "
                 "the last journaled batch appended\n",
                 rep->redeliver.size(), rep->completed, rep->rewritten, old->records,
                 old->torn_bytes, old->corrupted_records, log_repaired);
  }
  if (!config_.drain) deferred_.LoadFromSpool(*spool_, absl::Now());
  intake_.Publish(in_flight_, config_.max_messages_in_flight);
  if (amqp_) amqp_->Start();
  return absl::OkStatus();
}

void Engine::QuarantineFile(const std::string& name, const std::string& reason) {
  absl::Status s = spool_->Quarantine(name, reason);
  // One line per file (unless --quiet), so an operator sees it without reading the log.
  if (!s.ok() || !config_.quiet) {
    std::fprintf(stderr, "mxburst: quarantined: %s\n",
                 std::string(s.ok() ? absl::string_view(reason) : s.message()).c_str());
  }
  log_->AppendQuarantine(absl::Now(), name, reason);
  ++summary_.quarantined;
  if (control_) control_->counters().quarantined.fetch_add(1, std::memory_order_relaxed);
}

void Engine::FlushOverflow() {
  for (size_t w = 0; w < workers_.size(); ++w) {
    std::deque<DeliveryJob*>& q = overflow_[w];
    while (!q.empty() && workers_[w]->Enqueue(q.front())) {
      q.pop_front();
      wake_[w] = true;
    }
    if (wake_[w]) {
      workers_[w]->Wake();
      wake_[w] = false;
    }
  }
}

void Engine::ClaimBatch() {
  // Memory is bounded by count and by bytes; one message is always allowed, however large.
  // Files handed to claim threads count as in flight until they come back.
  auto may_claim = [this] {
    const size_t claims = in_flight_ + scanner_->outstanding();
    return claims < config_.max_messages_in_flight &&
           (claims == 0 || in_flight_bytes_ < config_.max_bytes_in_flight);
  };
  // Nothing out: an idle loop turns every 20 ms anyway, and a file written into incoming/ by
  // the outcomes just committed (a DSN with [queue] dsn = "spool") must be seen before --drain
  // takes an old empty listing for the end of the work.
  if (in_flight_ == 0 && scanner_->outstanding() == 0) scanner_->ListAgain();
  scanner_->Claim(may_claim, [this](ClaimedFile f) { Adopt(std::move(f)); });
}

void Engine::Adopt(ClaimedFile f) {
  switch (f.kind) {
    case ClaimedFile::Kind::kMessage:
      break;
    case ClaimedFile::Kind::kQuarantine:  // bad/ with the reason, or removed if it cannot move
      QuarantineFile(f.name, f.reason);
      return;
    case ClaimedFile::Kind::kShortage:  // back-pressure: the file waits in active/
      if (absl::Now() - last_shortage_log_ > absl::Seconds(10)) {
        last_shortage_log_ = absl::Now();
        std::fprintf(stderr, "mxburst: %s: claiming waits for the local shortage to pass\n",
                     f.reason.c_str());
      }
      return;
    case ClaimedFile::Kind::kGone:  // another engine claimed it first
      return;
    case ClaimedFile::Kind::kError:
      std::fprintf(stderr, "mxburst: %s\n", f.reason.c_str());
      return;
  }
  if (first_claim_ == absl::InfinitePast()) first_claim_ = absl::Now();
  MessageRecord* msg = f.message;
  if (f.marked_tries > 0) tries_[msg->spool_name] = f.marked_tries;
  for (DeliveryJob* job : f.jobs) overflow_[job->worker].push_back(job);
  ++in_flight_;
  in_flight_bytes_ += msg->wire.size();  // the file itself is not held (delivery.h)
  if (control_) control_->counters().claimed.fetch_add(1, std::memory_order_relaxed);
  if (f.from_incoming) intake_.claimed_incoming.fetch_add(1, std::memory_order_relaxed);
}

absl::Status Engine::ProcessCompletions() {
  completions_->ClearNotification();
  std::vector<MessageRecord*> finished;
  DeliveryJob* job;
  absl::Time now = absl::Now();
  // An outcome popped now arrived at the latest just after the previous pop: the time from that
  // pop to this commit bounds how long any outcome of this batch waited to become durable.
  const absl::Time window_start = last_pop_ == absl::InfinitePast() ? now : last_pop_;
  last_pop_ = now;
  size_t outcomes = 0;
  while (completions_->Pop(job)) {
    outcomes += job->rcpt_index.size();
    MessageRecord* msg = job->message;
    for (size_t k = 0; k < job->rcpt_index.size(); ++k) {
      RecipientOutcome& o = job->outcomes[k];
      uint32_t idx = job->rcpt_index[k];
      LogOutcome(*msg, idx, job->domain, o, now);
      msg->final_class[idx] = o.klass;
      if (o.klass != DeliveryClass::kDeferred) {
        JournalFinal(*msg, idx, o.klass == DeliveryClass::kDelivered ? FinalClass::kDelivered
                                                                     : FinalClass::kBounced);
      }
      switch (o.klass) {
        case DeliveryClass::kDelivered:
          ++summary_.delivered;
          ++summary_.policies[o.attempt.policy];
          if (!o.attempt.tls_version.empty()) {
            ++summary_.delivered_tls;
            ++summary_.tls_suites[absl::StrCat(o.attempt.tls_version, " ", o.attempt.tls_cipher)];
          }
          break;
        case DeliveryClass::kDeferred:
          ++summary_.deferred;
          break;
        case DeliveryClass::kBounced:
          ++summary_.bounced;
          break;
      }
      // Sized at the first outcome, not at claim: 352 bytes per recipient that a message waiting
      // on a slow receiver would otherwise hold for nothing (issue 17). Moved, not copied: the
      // job is deleted below (a dozen strings per recipient copied for nothing before).
      if (msg->outcomes.empty()) msg->outcomes.resize(msg->envelope.recipients.size());
      msg->outcomes[idx] = std::move(o);
    }
    dead_.Learn(*job);
    if (--msg->jobs_out == 0) finished.push_back(msg);
    delete job;
  }
  // Decide each finished message's fate; expiries are journaled and logged, DSNs written
  // before the commit (their names are deterministic, so a crash rewrites the same file).
  for (MessageRecord* msg : finished) held_.push_back(PlanFinish(msg, now));
  if (tlsrpt_) tlsrpt_->OnBatch(journal_.get(), now);  // TLS-RPT counts commit with the batch
  if (held_.empty() && moves_.empty() && log_->buffered().empty() &&
      journal_->buffered_bytes() == 0) {
    return absl::OkStatus();
  }
  // Disk full (or another failed durable write): everything stays in memory and is retried
  // with back-off; claiming is paused meanwhile (issue 10).
  if (durable_blocked_ && now < durable_retry_at_) return absl::OkStatus();
  // Group commit: every outcome above is durable before any spool file changes below. The
  // journal goes first and carries the batch's log bytes: a crash between the two writes is
  // repaired from the journal at start-up (never a second "delivered" record for an outcome
  // the journal knows, never a journaled outcome without one).
  if (log_->inode() != 0) {
    journal_->SetLogTail(log_->end_offset(), log_->inode(), log_->buffered());
  }
  absl::Status durable = journal_->Commit();
  if (durable.ok()) durable = log_->Flush();
  if (!durable.ok()) {
    BlockDurable(durable, now);
    return absl::OkStatus();
  }
  if (outcomes > 0 && commit_window_us_.size() < (1u << 20)) {
    commit_window_us_.push_back(static_cast<uint32_t>(std::min<int64_t>(
        absl::ToInt64Microseconds(absl::Now() - window_start), UINT32_MAX)));
  }
  std::vector<Finish> retry;
  absl::Status first_error;
  for (Finish& f : held_) {
    MessageRecord* msg = f.msg;
    absl::Status s;
    if (f.complete) {
      s = spool_->Complete(msg->spool_name);
    } else if (f.unchanged && xattr_ok_) {
      s = spool_->DeferUnchanged(msg->spool_name, f.mark);
      if (absl::IsUnimplemented(s)) {
        xattr_ok_ = false;  // this file system: rewrite from now on
        std::fprintf(stderr, "mxburst: %s: deferrals rewrite the file\n",
                     std::string(s.message()).c_str());
      }
    }
    if (!f.complete && (!f.unchanged || !xattr_ok_)) {
      Envelope next = f.unchanged ? msg->envelope : *std::move(f.rewrite);
      if (f.unchanged) {
        next.attempts = f.mark.attempts;
        next.first_attempt = f.mark.first_attempt;
        next.next_attempt = f.mark.next_attempt;
      }
      // A read error is retried like a failed write below (the file stays in active/).
      absl::StatusOr<std::string> body = ReadBody(*msg);
      s = body.ok() ? spool_->Defer(msg->spool_name, SerializeEnvelope(next, *body))
                    : body.status();
      if (!body.ok() && !f.unchanged) f.rewrite = std::move(next);
    }
    if (absl::IsResourceExhausted(s) || absl::IsUnavailable(s)) {
      // No space for deferred/ (ENOSPC, EDQUOT) or an I/O error: keep it, retry with the
      // journal's back-off. Its outcomes are durable already.
      if (first_error.ok()) first_error = s;
      retry.push_back(std::move(f));
      continue;
    }
    tries_.erase(msg->spool_name);
    if (s.ok()) {
      journal_->AppendRetired(msg->spool_name, msg->envelope.attempts);
      if (!f.complete && !config_.drain) deferred_.Schedule(msg->spool_name, f.next_attempt);
    } else {
      std::fprintf(stderr, "mxburst: %s\n", std::string(s.message()).c_str());
    }
    ++summary_.messages;
    --in_flight_;
    in_flight_bytes_ -= msg->wire.size();
    delete msg;
    last_finish_ = now;
  }
  held_ = std::move(retry);
  if (absl::Status s = MovePostponed(now); !s.ok() && first_error.ok()) first_error = s;
  if (!first_error.ok()) {
    BlockDurable(first_error, now);
  } else if (durable_blocked_) {
    durable_blocked_ = false;
    std::fprintf(stderr, "mxburst: spool writes succeed again: claiming resumed\n");
  }
  return absl::OkStatus();
}

void Engine::BlockDurable(const absl::Status& error, absl::Time now) {
  if (!durable_blocked_) {
    // Said once per episode, not once per retry.
    durable_blocked_ = true;
    durable_backoff_ = absl::Milliseconds(100);
    ++summary_.durable_pauses;
    std::fprintf(stderr,
                 "mxburst: %s — claiming paused; %zu finished message(s) kept in memory, "
                 "retrying the spool writes with back-off until they succeed\n",
                 std::string(error.message()).c_str(), held_.size());
  } else {
    durable_backoff_ = std::min(durable_backoff_ * 2, absl::Seconds(5));
  }
  durable_retry_at_ = now + durable_backoff_;
}

void Engine::CollectDueRetries() {
  // Only what the next claim rounds can take: the rest stays in the heap (and on disk).
  if (scanner_->due() >= kDueAhead) return;
  scanner_->AddDue(deferred_.PopDue(absl::Now(), kDueAhead - scanner_->due()));
}

absl::Status Engine::Run() {
  absl::Status result;
  last_progress_ = absl::Now();
  while (true) {
    if (absl::Status s = ProcessCompletions(); !s.ok()) {
      std::fprintf(stderr, "mxburst: %s — stopping: no spool file changes without a durable log\n",
                   std::string(s.message()).c_str());
      result = s;
      stop_.store(true);
    }
    ServeReload();  // right after a commit: nothing buffered, the log can be reopened
    ServeRetryNow();
    bool stopping = stop_.load(std::memory_order_relaxed);
    if (stopping && control_) control_->OnStopping();
    if (stopping && amqp_) amqp_->Stop();  // acks what is durable; the rest stays in the broker
    size_t before = in_flight_;
    if (stopping) {
      // The shutdown bound: in-flight transactions get shutdown_timeout to finish, then the
      // workers abort them (deferred "shutdown"), the outcomes are committed and we exit —
      // a peer that never answers cannot hold us for its RFC 5321 §4.5.3.2 timeout.
      const absl::Time now = absl::Now();
      if (stop_seen_ == absl::InfinitePast()) {
        stop_seen_ = now;
        // Nothing new starts: waiting jobs are deferred now, not after the bound below.
        for (auto& w : workers_) w->RequestDrain();
      }
      if (!abort_sent_ && now - stop_seen_ >= config_.shutdown_timeout && in_flight_ > 0) {
        abort_sent_ = true;
        if (!config_.quiet) {
          std::fprintf(stderr,
                       "mxburst: shutdown: %zu message(s) still in flight after %s: aborting "
                       "and deferring them\n",
                       in_flight_, absl::FormatDuration(config_.shutdown_timeout).c_str());
        }
        for (auto& w : workers_) w->RequestAbort();
      }
    }
    if (stopping && durable_blocked_ && in_flight_ == held_.size()) {
      // SIGTERM while the spool cannot be written: nothing more will finish. The held messages
      // are still in active/ and are delivered again at the next start (at-least-once).
      std::fprintf(stderr,
                   "mxburst: stopping with %zu message(s) whose outcomes could not be made "
                   "durable: they stay in active/ and are delivered again at the next start\n",
                   held_.size());
      result = absl::UnavailableError("stopped while the spool could not be written");
      break;
    }
    if (!stopping && !durable_blocked_) {
      if (!config_.drain) CollectDueRetries();
      ClaimBatch();
    } else {
      // Claimed already (in active/): handed to the workers like any other, nothing new chosen.
      scanner_->Collect([this](ClaimedFile f) { Adopt(std::move(f)); });
    }
    FlushOverflow();
    Progress(false);
    PublishCpu(false);
    if (control_) control_->PublishInFlight(in_flight_, in_flight_bytes_);
    intake_.Publish(in_flight_, config_.max_messages_in_flight);
    if (in_flight_ == 0 && scanner_->outstanding() == 0) {
      if (stopping) break;
      if (config_.drain && scanner_->drained() && !dead_.holds_any()) break;
    }
    // Sleep only when nothing was claimed: wake on a completion, a claim thread's result or
    // the next incoming scan.
    // Postponed files are deferred whenever nothing else is chosen — but not while the claim
    // waits for the look-ahead thread (engine/envelope_looker.h): that wait sleeps on its fd.
    bool busy = (in_flight_ > before && in_flight_ < config_.max_messages_in_flight &&
                 in_flight_bytes_ < config_.max_bytes_in_flight) ||
                (dead_.has_postponed() && !scanner_->waiting_for_look()) || !moves_.empty();
    pollfd pfd[3] = {{completions_->event_fd(), POLLIN, 0}};
    nfds_t nfds = 1;
    for (const int fd : {scanner_->event_fd(), scanner_->look_fd()}) {
      if (fd >= 0) pfd[nfds++] = {fd, POLLIN, 0};
    }
    poll(pfd, nfds, busy ? 0 : 20);
  }
  for (auto& w : workers_) w->RequestStop();
  for (auto& w : workers_) w->Join();
  durable_retry_at_ = absl::InfinitePast();  // one last attempt, whatever the back-off says
  if (absl::Status s = ProcessCompletions(); !s.ok() && result.ok()) result = s;
  // Never write log records the journal has not committed (they would be logged again after
  // the restart delivers those messages once more).
  if (!durable_blocked_) {
    absl::Status s = log_->Flush();
    if (!s.ok() && result.ok()) result = s;
    // Everything logged is durable: say so in the journal, so the next start repairs nothing
    // (else a log emptied between runs got the last batch back when it began at offset 0).
    if (s.ok() && log_->inode() != 0 && journal_->buffered_bytes() == 0) {
      journal_->MarkLogEnd(log_->end_offset(), log_->inode());
      if (absl::Status c = journal_->Commit(); !c.ok() && result.ok()) result = c;
    }
  } else if (journal_->buffered_bytes() > 0) {
    log_->Discard();
  }
  if (tlsrpt_) tlsrpt_->Close();
  PublishCpu(true);
  Progress(true);
  if (!config_.quiet && !commit_window_us_.empty()) {
    std::vector<uint32_t>& w = commit_window_us_;
    std::sort(w.begin(), w.end());
    auto ms = [&](double q) { return w[static_cast<size_t>(q * (w.size() - 1))] / 1000.0; };
    std::fprintf(stderr,
                 "mxburst: journal: %zu group commits with outcomes; outcome-to-durable bound "
                 "p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
                 w.size(), ms(0.5), ms(0.99), w.back() / 1000.0);
  }
  return result;
}

}  // namespace mxb
