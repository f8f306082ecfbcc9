#include "engine/engine.h"

#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <thread>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/smtp_data.h"
#include "queue/envelope.h"

namespace mxb {
namespace {

constexpr size_t kClaimBatch = 256;
constexpr size_t kListBatch = 4096;
constexpr size_t kCompletionCapacity = 1 << 20;

bool HasEightBit(absl::string_view body) {
  return std::any_of(body.begin(), body.end(),
                     [](char ch) { return static_cast<unsigned char>(ch) >= 0x80; });
}

}  // namespace

Engine::Engine(EngineConfig config) : config_(std::move(config)) {}

Engine::~Engine() {
  for (auto& w : workers_) {
    w->RequestStop();
    w->Join();
  }
}

absl::Status Engine::Start() {
  absl::StatusOr<Spool> spool = Spool::Open(config_.spool_dir);
  if (!spool.ok()) return spool.status();
  spool_ = std::make_unique<Spool>(*std::move(spool));

  absl::StatusOr<StaticRoutes> routes = StaticRoutes::Parse(config_.routes, config_.smtp_port);
  if (!routes.ok()) return routes.status();
  routes_ = std::make_unique<StaticRoutes>(*std::move(routes));

  absl::StatusOr<std::unique_ptr<AccountingLog>> log = AccountingLog::Open(config_.log_path);
  if (!log.ok()) return log.status();
  log_ = *std::move(log);

  TlsGlobalInit();
  TlsClientOptions tls_opts;
  tls_opts.ca_file = config_.ca_file;
  absl::StatusOr<std::unique_ptr<TlsContext>> ctx = TlsContext::NewClient(tls_opts);
  if (!ctx.ok()) return ctx.status();
  tls_client_ = *std::move(ctx);

  int n = config_.workers;
  if (n <= 0) n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  completions_ = std::make_unique<CompletionQueue>(kCompletionCapacity);
  for (int i = 0; i < n; ++i) {
    auto w = std::make_unique<Worker>(static_cast<uint32_t>(i), config_, *routes_,
                                      tls_client_.get(), completions_.get());
    if (absl::Status s = w->Init(); !s.ok()) return s;
    if (absl::Status s = w->Start(); !s.ok()) return s;
    workers_.push_back(std::move(w));
  }
  overflow_.resize(workers_.size());
  wake_.assign(workers_.size(), false);

  // Recovery: files a previous run left in active/ were claimed but not finished. At-least-once:
  // they are delivered again (recipients already logged as final are the durable-queue issue's
  // refinement).
  for (std::string& name : spool_->ListActive()) pending_.push_back({std::move(name), true});
  if (!pending_.empty() && !config_.quiet) {
    std::fprintf(stderr, "mxburst: recovering %zu message(s) left in %s/active\n",
                 pending_.size(), config_.spool_dir.c_str());
  }
  return absl::OkStatus();
}

void Engine::Dispatch(const std::string& name, std::string contents) {
  absl::StatusOr<Envelope> env = ParseEnvelope(contents);
  if (!env.ok()) {
    std::string reason = absl::StrCat(config_.spool_dir, "/active/", name, ": ",
                                      env.status().message());
    if (absl::Status s = spool_->Quarantine(name, reason); !s.ok()) {
      std::fprintf(stderr, "mxburst: %s\n", std::string(s.message()).c_str());
    }
    log_->AppendQuarantine(absl::Now(), name, reason);
    ++summary_.quarantined;
    return;
  }
  if (first_claim_ == absl::InfinitePast()) first_claim_ = absl::Now();
  auto* msg = new MessageRecord;
  msg->spool_name = name;
  msg->envelope = *std::move(env);
  msg->file = std::move(contents);
  absl::string_view body = absl::string_view(msg->file).substr(msg->envelope.body_offset);
  msg->wire.reserve(body.size() + body.size() / 32 + 8);
  AppendDataWire(body, &msg->wire);
  msg->eight_bit = HasEightBit(body);
  msg->queued_at = absl::Now();
  msg->final_class.assign(msg->envelope.recipients.size(), DeliveryClass::kDeferred);

  // Group recipients by domain, at most max_recipients_per_transaction per job.
  absl::flat_hash_map<std::string, DeliveryJob*> open_jobs;
  for (uint32_t i = 0; i < msg->envelope.recipients.size(); ++i) {
    std::string domain = DomainOf(msg->envelope.recipients[i]);
    DeliveryJob*& job = open_jobs[domain];
    if (job == nullptr || job->rcpt_index.size() >= config_.max_recipients_per_transaction) {
      job = new DeliveryJob;
      job->message = msg;
      job->domain = domain;
      job->worker = static_cast<uint32_t>(absl::HashOf(domain) % workers_.size());
      ++msg->jobs_out;
      overflow_[job->worker].push_back(job);
    }
    job->rcpt_index.push_back(i);
  }
  ++in_flight_;
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
  size_t claimed = 0;
  while (claimed < kClaimBatch && in_flight_ < config_.max_messages_in_flight) {
    if (pending_.empty()) {
      for (std::string& name : spool_->ListIncoming(kListBatch)) {
        pending_.push_back({std::move(name), false});
      }
      incoming_empty_ = pending_.empty();
      if (pending_.empty()) break;
    }
    PendingFile f = std::move(pending_.front());
    pending_.pop_front();
    absl::StatusOr<std::string> contents =
        f.from_active ? spool_->ReadActive(f.name) : spool_->Claim(f.name);
    if (!contents.ok()) {
      if (!absl::IsNotFound(contents.status())) {
        std::fprintf(stderr, "mxburst: %s\n", std::string(contents.status().message()).c_str());
      }
      continue;  // NotFound: another engine claimed it first
    }
    Dispatch(f.name, *std::move(contents));
    ++claimed;
  }
}

absl::Status Engine::ProcessCompletions() {
  completions_->ClearNotification();
  std::vector<MessageRecord*> finished;
  DeliveryJob* job;
  absl::Time now = absl::Now();
  while (completions_->Pop(job)) {
    MessageRecord* msg = job->message;
    for (size_t k = 0; k < job->rcpt_index.size(); ++k) {
      const RecipientOutcome& o = job->outcomes[k];
      uint32_t idx = job->rcpt_index[k];
      LogRecord r;
      r.time = now;
      r.message_id = msg->spool_name;
      r.job = msg->envelope.job;
      r.envid = msg->envelope.envid;
      r.sender = msg->envelope.sender;
      r.recipient = msg->envelope.recipients[idx];
      r.domain = job->domain;
      r.outcome = &o;
      r.queue_time = now - msg->queued_at;
      log_->Append(r);
      msg->final_class[idx] = o.klass;
      switch (o.klass) {
        case DeliveryClass::kDelivered:
          ++summary_.delivered;
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
    }
    if (--msg->jobs_out == 0) finished.push_back(msg);
    delete job;
  }
  // Group commit: every outcome above is durable before any spool file changes below.
  if (absl::Status s = log_->Flush(); !s.ok()) {
    for (MessageRecord* m : finished) delete m;  // files stay in active/: recovered next start
    return s;
  }
  for (MessageRecord* msg : finished) {
    std::vector<std::string> pending;
    for (size_t i = 0; i < msg->envelope.recipients.size(); ++i) {
      if (msg->final_class[i] == DeliveryClass::kDeferred) {
        pending.push_back(msg->envelope.recipients[i]);
      }
    }
    absl::Status s;
    if (pending.empty()) {
      s = spool_->Complete(msg->spool_name);
    } else {
      Envelope rest = msg->envelope;
      rest.recipients = std::move(pending);
      s = spool_->Defer(msg->spool_name,
                        SerializeEnvelope(rest, absl::string_view(msg->file)
                                                    .substr(msg->envelope.body_offset)));
    }
    if (!s.ok()) std::fprintf(stderr, "mxburst: %s\n", std::string(s.message()).c_str());
    ++summary_.messages;
    --in_flight_;
    delete msg;
    last_finish_ = now;
  }
  return absl::OkStatus();
}

void Engine::RequeueDeferred() {
  // The retry schedule proper (timing wheel, back-off, expiry) belongs to the durable-queue
  // work; until then a deferred file is retried once it has waited retry_after.
  absl::Time now = absl::Now();
  if (now - last_requeue_ < absl::Seconds(10)) return;
  last_requeue_ = now;
  for (const std::string& name : spool_->ListDeferred()) {
    std::string path = absl::StrCat(config_.spool_dir, "/deferred/", name);
    struct stat st;
    if (stat(path.c_str(), &st) != 0) continue;
    if (now - absl::FromTimeT(st.st_mtime) < config_.retry_after) continue;
    if (absl::Status s = spool_->Requeue(name); !s.ok()) {
      std::fprintf(stderr, "mxburst: %s\n", std::string(s.message()).c_str());
    }
  }
}

void Engine::Progress(bool final) {
  if (config_.quiet) return;
  absl::Time now = absl::Now();
  if (!final && now - last_progress_ < absl::Seconds(2)) return;
  last_progress_ = now;
  std::fprintf(stderr,
               "mxburst: %llu messages done, %zu in flight; recipients: %llu delivered, "
               "%llu deferred, %llu bounced\n",
               static_cast<unsigned long long>(summary_.messages), in_flight_,
               static_cast<unsigned long long>(summary_.delivered),
               static_cast<unsigned long long>(summary_.deferred),
               static_cast<unsigned long long>(summary_.bounced));
}

absl::Status Engine::Run() {
  absl::Status result;
  last_progress_ = absl::Now();
  last_requeue_ = absl::Now();
  while (true) {
    if (absl::Status s = ProcessCompletions(); !s.ok()) {
      std::fprintf(stderr, "mxburst: %s — stopping: no spool file changes without a durable log\n",
                   std::string(s.message()).c_str());
      result = s;
      stop_.store(true);
    }
    bool stopping = stop_.load(std::memory_order_relaxed);
    size_t before = in_flight_;
    if (!stopping) {
      ClaimBatch();
      if (!config_.drain) RequeueDeferred();
    }
    FlushOverflow();
    Progress(false);
    if (in_flight_ == 0) {
      if (stopping) break;
      if (config_.drain && incoming_empty_ && pending_.empty()) break;
    }
    // Sleep only when nothing was claimed: wake on a completion or the next incoming scan.
    bool busy = in_flight_ > before && in_flight_ < config_.max_messages_in_flight;
    pollfd pfd{completions_->event_fd(), POLLIN, 0};
    poll(&pfd, 1, busy ? 0 : 20);
  }
  for (auto& w : workers_) w->RequestStop();
  for (auto& w : workers_) w->Join();
  if (absl::Status s = ProcessCompletions(); !s.ok() && result.ok()) result = s;
  if (absl::Status s = log_->Flush(); !s.ok() && result.ok()) result = s;
  Progress(true);
  return result;
}

EngineSummary Engine::summary() const {
  EngineSummary s = summary_;
  for (const auto& w : workers_) {
    s.connections += w->stats().connections.load();
    s.tls_sessions += w->stats().tls_sessions.load();
    s.stale_completions += w->stats().stale_completions.load();
  }
  if (first_claim_ != absl::InfinitePast() && last_finish_ > first_claim_) {
    s.elapsed = last_finish_ - first_claim_;
  }
  return s;
}

std::string Engine::SummaryLine() const {
  EngineSummary s = summary();
  double secs = absl::ToDoubleSeconds(s.elapsed);
  double rate = secs > 0 ? static_cast<double>(s.messages) / secs : 0;
  double tls_share =
      s.delivered > 0 ? 100.0 * static_cast<double>(s.delivered_tls) / s.delivered : 0;
  std::string suites;
  for (const auto& [suite, n] : s.tls_suites) {
    absl::StrAppend(&suites, suites.empty() ? "" : ", ", suite, " x", n);
  }
  return absl::StrFormat(
      "mxburst: %d messages finished in %.2f s (%.0f msgs/s); recipients: %d delivered, "
      "%d deferred, %d bounced; %d quarantined; over TLS: %.1f%% of delivered (%s); "
      "%d connections, %d TLS sessions",
      s.messages, secs, rate, s.delivered, s.deferred, s.bounced, s.quarantined, tls_share,
      suites.empty() ? "none" : suites, s.connections, s.tls_sessions);
}

}  // namespace mxb
