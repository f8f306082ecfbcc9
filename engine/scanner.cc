#include "engine/scanner.h"

#include <pthread.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "engine/dead_destinations.h"
#include "engine/requiretls.h"
#include "engine/smtp_data.h"
#include "queue/envelope.h"

namespace mxb {
namespace {

constexpr size_t kClaimBatch = 256;
// Looks hinted dead that wait to be decided (a few hundred bytes each).
constexpr size_t kLookedDeadBound = 16384;
// Inline: the longest one call claims before the scanner journals the outcomes that arrived
// meanwhile; that wait is the crash window in which a delivered message is sent again (issue
// 10). With claim threads the scanner thread only hands out names, so the window is its own.
constexpr absl::Duration kClaimSlice = absl::Milliseconds(2);
constexpr size_t kListBatch = 4096;
constexpr absl::Duration kHeldListingPause = absl::Milliseconds(50);
// Once everything in incoming/ is claimed, the loop turns every few milliseconds while the
// messages are out (each completion wakes it) and re-listed the directory every time: ~200
// getdents64 passes a second, 12 us of scanner CPU per message one connection each (an ext4
// directory that held 10,000 names keeps its blocks when emptied). New mail arriving in an empty
// incoming/ waits at most this long, the same as the loop's idle poll.
constexpr absl::Duration kEmptyListingPause = absl::Milliseconds(20);
// Files handed out per claim thread ahead of its work: enough to never wait for the scanner
// thread, few enough that the in-flight byte bound (checked as files come back) overshoots by
// little.
constexpr size_t kAheadPerThread = 8;
// A claim thread's read buffer is kept for the next file up to this size.
constexpr size_t kKeepScratch = 1u << 20;
// Claim renames in flight on the ring: a few batches' worth ahead of the reads, few enough that
// the in-flight bounds (checked as files come back) overshoot by little.
constexpr unsigned kRingClaims = 64;

// Eight bytes at a time: the byte loop with an early exit was 5% of the scanner's CPU on
// 7-bit mail, which is read to the end anyway.
bool HasEightBit(absl::string_view body) {
  const char* p = body.data();
  size_t n = body.size();
  uint64_t acc = 0;
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    acc |= w;
  }
  for (; n > 0; ++p, --n) acc |= static_cast<unsigned char>(*p);
  return (acc & 0x8080808080808080ull) != 0;
}

void FreeResult(ClaimedFile& f) {
  for (DeliveryJob* j : f.jobs) delete j;
  delete f.message;
  f.jobs.clear();
  f.message = nullptr;
}

}  // namespace

uint64_t ThreadCpuNs() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(ts.tv_nsec);
}

int Scanner::DefaultThreads(const EngineConfig& config) {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (config.dkim != nullptr && config.dkim->size() > 0) return std::min(cores, 8);
  return cores < 4 ? 0 : std::min(cores / 4, 4);
}

Scanner::Scanner(const EngineConfig& config, Spool* spool, size_t workers, int threads)
    : config_(config), spool_(spool), workers_(std::max<size_t>(1, workers)) {
  if (const char* env = std::getenv("MXB_ENVELOPE_LOOKER");
      env != nullptr && std::string_view(env) == "0") {
    looker_allowed_ = false;
  }
  if (threads < 0) threads = DefaultThreads(config);
  if (threads == 0) {
    const char* env = std::getenv("MXB_SPOOL_URING");
    if (env == nullptr || std::string_view(env) != "0") {
      absl::StatusOr<std::unique_ptr<SpoolRing>> ring = SpoolRing::Create(kRingClaims);
      if (ring.ok()) {  // else: the renames are plain syscalls, as before
        ring_ = *std::move(ring);
        event_fd_ = ring_->event_fd();
      }
    }
    return;
  }
  event_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  for (int i = 0; i < threads; ++i) {
    auto t = std::make_unique<ClaimThread>();
    ClaimThread* self = t.get();
    t->thread = std::thread([this, self, i] {
      const std::string name = absl::StrCat("mxb-claim", i);  // for top -H and perf
      pthread_setname_np(pthread_self(), name.c_str());
      ThreadMain(self);
    });
    threads_.push_back(std::move(t));
  }
}

Scanner::~Scanner() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (auto& t : threads_) t->thread.join();
  // Claimed but never handed to a worker: the files are in active/, recovered at the next start.
  for (ClaimedFile& f : results_) FreeResult(f);
  // Renames in flight finish (or not) in the kernel; either way the file is in incoming/ or
  // active/, where the next start finds it.
  if (ring_ != nullptr) {
    ring_.reset();
  } else if (event_fd_ >= 0) {
    close(event_fd_);
  }
}

void Scanner::AddRecovered(std::vector<std::string> names) {
  for (auto it = names.rbegin(); it != names.rend(); ++it) {
    pending_.push_front({std::move(*it), Source::kActive});
  }
}

void Scanner::AddDue(std::vector<std::string> names) {
  for (std::string& n : names) due_.push_back(std::move(n));
}

uint64_t Scanner::claim_cpu_ns() const {
  uint64_t sum = 0;
  for (const auto& t : threads_) sum += t->cpu_ns.load(std::memory_order_relaxed);
  return sum;
}

Scanner::Pick Scanner::NextTask(bool* listed, Task* out) {
  const absl::Time now = absl::Now();
  const bool held = gate_ != nullptr && gate_->holds_any();
  // A scan that found nothing new (incoming/ empty, or only postponed files in it) is not
  // repeated at once: the next one waits a little (new mail waits at most that long).
  if (pending_.empty() && !*listed && now >= next_listing_) {
    *listed = true;  // one directory scan per call at most
    ++listings_;
    // Names out for a look or a claim are skipped, not counted against the batch: thousands
    // of looks hinted dead may wait (LookAhead), and a batch of only those would stall.
    std::vector<std::string> names =
        held || !in_claim_.empty()
            ? spool_->ListIncoming(kListBatch,
                                   [this, held](absl::string_view n) {
                                     return in_claim_.contains(n) || (held && gate_->Holds(n));
                                   })
            : spool_->ListIncoming(kListBatch);
    for (std::string& name : names) {
      // A name a claim thread has not renamed yet is still listed: claimed once.
      if (!in_claim_.contains(name)) pending_.push_back({std::move(name), Source::kIncoming});
    }
    incoming_empty_ = pending_.empty();
    if (incoming_empty_) next_listing_ = now + (held ? kHeldListingPause : kEmptyListingPause);
  }
  const bool looking = LookAhead();
  // Fresh mail ready to choose: files recovered from active/ (at the front of pending_, never
  // looked at, they go first), then files whose look is done, then — while nothing is looked
  // at ahead — the listing's order.
  const bool active_front = !pending_.empty() && pending_.front().source == Source::kActive;
  const bool fresh_ready = active_front || !looked_.empty() || (!looking && !pending_.empty());
  const bool fresh_waiting = !fresh_ready && looker_ != nullptr && looker_->outstanding() > 0;
  // Looks hinted dead are decided when nothing else fresh is ready, also while the looker
  // works on: the scanner thread spends its time on healthy mail first.
  if (!fresh_ready && !looked_dead_.empty()) {
    return DecideLooked(&looked_dead_, out) ? Pick::kGated : Pick::kTask;
  }
  // Fresh mail and due retries take turns, like Postfix's qmgr alternating between its
  // incoming and deferred queues: a backlog of retries never starves new mail, nor the
  // reverse.
  const bool retry_turn = !due_.empty() && (!fresh_ready || (retry_turn_ && !active_front));
  // Mail postponed for dead destinations goes last (engine/dead_destinations.h).
  // One turn in kPostponedShare claims (postponements and deferrals are not claims).
  if (gate_ != nullptr && gate_->has_postponed() &&
      ((!retry_turn && !fresh_ready && !fresh_waiting) || gate_->crowded() ||
       postponed_turn_ >= kPostponedShare)) {
    postponed_turn_ = 0;
    gate_->DeferOnePostponed();
    return Pick::kGated;
  }
  if (!retry_turn && !fresh_ready) {
    waiting_for_look_ = fresh_waiting;
    return fresh_waiting ? Pick::kWait : Pick::kNone;
  }
  retry_turn_ = !retry_turn;
  if (retry_turn) {
    *out = {std::move(due_.front()), Source::kDeferred};
    due_.pop_front();
  } else if (active_front || looked_.empty()) {
    *out = std::move(pending_.front());
    pending_.pop_front();
  } else {
    if (DecideLooked(&looked_, out)) return Pick::kGated;
    ++postponed_turn_;
    return Pick::kTask;
  }
  if (gate_ != nullptr && out->source != Source::kActive &&
      gate_->Postpone(out->name, out->source == Source::kIncoming)) {
    return Pick::kGated;
  }
  ++postponed_turn_;
  return Pick::kTask;
}

bool Scanner::DecideLooked(std::deque<LookedFile>* from, Task* out) {
  LookedFile f = std::move(from->front());
  from->pop_front();
  in_claim_.erase(f.name);  // the claim (or the postponement) takes it from here
  *out = {std::move(f.name), f.from_incoming ? Source::kIncoming : Source::kDeferred};
  return gate_ != nullptr && gate_->PostponeLooked(out->name, f.from_incoming, std::move(f.look));
}

void Scanner::TakeLooks() {
  // In batches (the looker publishes several at once); each take clears the eventfd, so a
  // caller that cannot claim now (in-flight bounds) still sleeps in its poll.
  if (looker_ == nullptr || !looker_->has_ready()) return;
  for (LookedFile& f : looker_->TakeReady()) {
    (f.dead_hint ? looked_dead_ : looked_).push_back(std::move(f));
  }
}

bool Scanner::LookAhead() {
  const bool want = looker_allowed_ && gate_ != nullptr && gate_->wants_looks();
  if (want && looker_ == nullptr) looker_ = std::make_unique<EnvelopeLooker>(spool_);
  if (looker_ == nullptr) return false;
  TakeLooks();
  if (!want) return false;  // looks still out come back and are used; no new ones
  if (const uint64_t v = gate_->dead_version(); v != dead_version_) {
    dead_version_ = v;
    looker_->SetDeadDomains(gate_->dead_domains());
  }
  // Looks hinted dead wait (each holds its envelope) up to a bound; past it nothing new is
  // looked at, so they are decided (NextTask) before more are read.
  if (looked_dead_.size() >= kLookedDeadBound) return true;
  // Topped up from below half to kLookAhead: one hand-off per ~128 names, never a wait for the
  // scanner thread while the looker keeps up. Recovered files at the front are never looked at.
  const size_t ahead = looker_->outstanding() + looked_.size();
  if (ahead < kLookAhead / 2 && !pending_.empty() && pending_.front().source == Source::kIncoming) {
    std::vector<std::string> names;
    while (names.size() + ahead < kLookAhead && !pending_.empty() &&
           pending_.front().source == Source::kIncoming) {
      in_claim_.insert(pending_.front().name);  // listed again until chosen: skipped
      names.push_back(std::move(pending_.front().name));
      pending_.pop_front();
    }
    looker_->Want(std::move(names), /*from_incoming=*/true);
  }
  return true;
}

void Scanner::ListAgain() {
  if (gate_ == nullptr || !gate_->holds_any()) next_listing_ = absl::InfinitePast();
}

void Scanner::Requeue(std::string name, bool from_incoming) {
  if (from_incoming) {
    pending_.push_front({std::move(name), Source::kIncoming});
  } else {
    due_.push_front(std::move(name));
  }
}

ClaimedFile Scanner::Process(const Task& task) const {
  // The file is read into one buffer per thread, reused: the message keeps only its wire form,
  // so a fresh file-sized allocation (zero-filled, then freed) per message bought nothing
  // (issue 17 item 3). A buffer grown past kKeepScratch by a big message is not kept.
  thread_local std::string scratch;
  absl::StatusOr<SpoolRead> contents =
      task.source == Source::kActive     ? spool_->ReadActive(task.name, &scratch)
      : task.source == Source::kDeferred ? spool_->ClaimDeferred(task.name, &scratch)
                                         : spool_->Claim(task.name, &scratch);
  if (contents.ok()) {
    ClaimedFile f = Prepare(task.name, contents->contents, contents->mark);
    f.from_incoming = task.source == Source::kIncoming;
    if (scratch.size() > kKeepScratch) std::string().swap(scratch);
    return f;
  }
  return Failed(task, contents.status());
}

ClaimedFile Scanner::Failed(const Task& task, const absl::Status& status) {
  ClaimedFile f;
  f.name = task.name;
  f.from_incoming = task.source == Source::kIncoming;
  f.reason = std::string(status.message());
  if (absl::IsResourceExhausted(status)) {
    f.kind = ClaimedFile::Kind::kShortage;
  } else if (absl::IsFailedPrecondition(status)) {
    // Not a regular file (a symbolic link, directory, FIFO, device): never followed or read.
    f.kind = ClaimedFile::Kind::kQuarantine;
  } else if (absl::IsNotFound(status)) {
    f.kind = ClaimedFile::Kind::kGone;
  } else {
    f.kind = ClaimedFile::Kind::kError;
  }
  return f;
}

ClaimedFile Scanner::Prepare(const std::string& name, absl::string_view contents,
                             const std::optional<RetryMark>& mark) const {
  ClaimedFile f;
  f.name = name;
  absl::StatusOr<Envelope> env = ParseEnvelope(contents);
  if (!env.ok()) {
    f.kind = ClaimedFile::Kind::kQuarantine;
    f.reason = absl::StrCat(config_.spool_dir, "/active/", name, ": ", env.status().message());
    return f;
  }
  // A message deferred without a rewrite carries its retry state on the file (the envelope's
  // x-attempts stays the generation the journal's indexes refer to).
  if (mark.has_value()) {
    if (mark->attempts > env->attempts) f.marked_tries = mark->attempts;
    if (env->first_attempt == 0) env->first_attempt = mark->first_attempt;
  }
  // DKIM (dkim/signer.h): signed once per message, here, over the bytes the encoder sends
  // (line ends normalised, long lines re-cut, before dot-stuffing); the fields go in front.
  std::string dkim_fields;
  if (config_.dkim != nullptr) {
    const std::string sender_domain = env->sender.empty() ? "" : DomainOf(env->sender);
    if (config_.dkim->Applies(sender_domain, env->job)) {
      absl::StatusOr<std::string> fields = config_.dkim->Sign(
          sender_domain, env->job,
          NormalizeLineEndings(contents.substr(env->body_offset)), name);
      if (!fields.ok()) {  // e.g. no From field: not sent unsigned, kept in bad/ with the reason
        f.kind = ClaimedFile::Kind::kQuarantine;
        f.reason = absl::StrCat(config_.spool_dir, "/active/", name, ": dkim: ",
                                fields.status().message());
        return f;
      }
      dkim_fields = *std::move(fields);
    }
  }
  auto* msg = new MessageRecord;
  msg->spool_name = name;
  msg->envelope = *std::move(env);
  msg->file_size = contents.size();
  absl::string_view body = contents.substr(msg->envelope.body_offset);
  msg->wire = std::move(dkim_fields);
  msg->wire.reserve(msg->wire.size() + body.size() + body.size() / 32 + 8);
  AppendDataWire(body, &msg->wire, &msg->stuffed_dots);  // dots recorded after the DKIM fields
  msg->eight_bit = HasEightBit(body);
  msg->tls_required_no = config_.tls_global.honor_tls_required_no &&
                         !msg->envelope.require_tls && HasTlsRequiredNo(body);
  msg->queued_at = absl::Now();
  msg->final_class.assign(msg->envelope.recipients.size(), DeliveryClass::kDeferred);

  // Group recipients by domain, at most max_recipients_per_transaction per job. One recipient
  // (the common case) needs no map.
  absl::flat_hash_map<absl::string_view, DeliveryJob*> open_jobs;
  for (uint32_t i = 0; i < msg->envelope.recipients.size(); ++i) {
    std::string domain = DomainOf(msg->envelope.recipients[i]);
    DeliveryJob* job = nullptr;
    if (msg->envelope.recipients.size() > 1) {
      auto it = open_jobs.find(domain);
      if (it != open_jobs.end()) job = it->second;
    }
    if (job == nullptr || job->rcpt_index.size() >= config_.max_recipients_per_transaction) {
      job = new DeliveryJob;
      job->message = msg;
      job->worker = static_cast<uint32_t>(absl::HashOf(domain) % workers_);
      job->domain = std::move(domain);
      ++msg->jobs_out;
      f.jobs.push_back(job);
      if (msg->envelope.recipients.size() > 1) open_jobs[job->domain] = job;
    }
    job->rcpt_index.push_back(i);
  }
  f.kind = ClaimedFile::Kind::kMessage;
  f.message = msg;
  return f;
}

void Scanner::ThreadMain(ClaimThread* self) {
  uint32_t since_sample = 0;
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    if (tasks_.empty() && !stop_) {
      self->cpu_ns.store(ThreadCpuNs(), std::memory_order_relaxed);
      work_cv_.wait(lock, [&] { return stop_ || !tasks_.empty(); });
    }
    if (stop_) break;
    Task task = std::move(tasks_.front());
    tasks_.pop_front();
    lock.unlock();
    ClaimedFile f = Process(task);
    if (++since_sample % 16 == 0) self->cpu_ns.store(ThreadCpuNs(), std::memory_order_relaxed);
    lock.lock();
    const bool wake = results_.empty();
    results_.push_back(std::move(f));
    if (wake) {
      // The scanner thread drains results_ after reading the eventfd: a result pushed after
      // that drain finds results_ empty again and writes, so none waits for the poll timeout.
      lock.unlock();
      const uint64_t one = 1;
      (void)!write(event_fd_, &one, sizeof one);
      lock.lock();
    }
  }
  self->cpu_ns.store(ThreadCpuNs(), std::memory_order_relaxed);
}

void Scanner::Finish(ClaimedFile f, absl::FunctionRef<void(ClaimedFile)> done) {
  if (f.kind == ClaimedFile::Kind::kShortage) {
    // Out of descriptors or memory (issue 17): the claimed file waits in active/ and is read
    // again on a later call; nothing more is chosen in this one.
    pending_.push_front({f.name, Source::kActive});
    shortage_ = true;
  }
  done(std::move(f));
}

void Scanner::ReapRing(absl::FunctionRef<void(ClaimedFile)> done) {
  std::vector<std::pair<uint64_t, int>> finished;
  ring_->Reap([&](uint64_t cookie, int res) { finished.emplace_back(cookie, res); });
  for (const auto& [cookie, res] : finished) {
    auto it = ring_tasks_.find(cookie);
    if (it == ring_tasks_.end()) continue;
    Task task = std::move(it->second);
    ring_tasks_.erase(it);
    --outstanding_;
    in_claim_.erase(task.name);
    const bool from_deferred = task.source == Source::kDeferred;
    if (res == -EINVAL || res == -ENOSYS) {
      // No RENAME_NOREPLACE on this file system (or no renameat on the ring): the synchronous
      // claim knows the fallback; it does every later rename too.
      rename_fallback_ = true;
      Finish(Process(task), done);
      continue;
    }
    if (res < 0) {
      std::string from, to;
      (void)spool_->ClaimPaths(task.name, from_deferred, &from, &to);
      Finish(Failed(task, Spool::ClaimError(-res, from_deferred, from, to)), done);
      continue;
    }
    // Renamed into active/: read it there, as recovery would.
    Task read = task;
    read.source = Source::kActive;
    ClaimedFile f = Process(read);
    f.from_incoming = task.source == Source::kIncoming;
    Finish(std::move(f), done);
  }
}

void Scanner::ClaimOnRing(absl::FunctionRef<bool()> may_claim,
                          absl::FunctionRef<void(ClaimedFile)> done) {
  ReapRing(done);
  bool listed = false;
  size_t chosen = 0;
  Task task;
  const absl::Time start = absl::Now();
  while (!rename_fallback_ && chosen < kClaimBatch && !shortage_ && ring_->has_room() &&
         may_claim()) {
    if (chosen % 8 == 7 && absl::Now() - start > kClaimSlice) break;
    const Pick pick = NextTask(&listed, &task);
    if (pick == Pick::kNone || pick == Pick::kWait) break;
    ++chosen;
    if (pick == Pick::kGated) continue;
    if (task.source == Source::kActive) {  // recovered: already in active/, nothing to rename
      Finish(Process(task), done);
      continue;
    }
    std::string from, to;
    if (absl::Status s = spool_->ClaimPaths(task.name, task.source == Source::kDeferred, &from,
                                            &to);
        !s.ok()) {
      Finish(Failed(task, s), done);
      continue;
    }
    const uint64_t cookie = next_cookie_++;
    ring_->Rename(std::move(from), std::move(to), cookie);
    ++outstanding_;
    in_claim_.insert(task.name);
    ring_tasks_.emplace(cookie, std::move(task));
  }
  ring_->Submit();
}

void Scanner::Collect(absl::FunctionRef<void(ClaimedFile)> done) {
  TakeLooks();  // nothing new is chosen; the eventfd must not keep the caller's poll awake
  if (ring_ != nullptr) {
    shortage_ = false;
    ReapRing(done);
    return;
  }
  if (threads_.empty()) return;
  uint64_t ignored;
  (void)!read(event_fd_, &ignored, sizeof ignored);
  std::vector<ClaimedFile> got;
  {
    std::lock_guard<std::mutex> lock(mu_);
    got.swap(results_);
  }
  for (ClaimedFile& f : got) {
    --outstanding_;
    in_claim_.erase(f.name);
    Finish(std::move(f), done);
  }
}

void Scanner::Claim(absl::FunctionRef<bool()> may_claim,
                    absl::FunctionRef<void(ClaimedFile)> done) {
  shortage_ = false;
  waiting_for_look_ = false;
  TakeLooks();
  bool listed = false;
  size_t chosen = 0;
  Task task;
  if (ring_ != nullptr && rename_fallback_ && ring_tasks_.empty()) {
    ring_.reset();  // every rename in flight came back: plain syscalls from now on
    event_fd_ = -1;
  }
  if (ring_ != nullptr) {
    ClaimOnRing(may_claim, done);
    return;
  }
  if (threads_.empty()) {
    const absl::Time start = absl::Now();
    while (chosen < kClaimBatch && !shortage_ && may_claim()) {
      if (chosen % 8 == 7 && absl::Now() - start > kClaimSlice) break;
      const Pick pick = NextTask(&listed, &task);
      if (pick == Pick::kNone || pick == Pick::kWait) break;
      ++chosen;
      if (pick == Pick::kTask) Finish(Process(task), done);
    }
    return;
  }
  Collect(done);
  const size_t ahead = std::max<size_t>(16, kAheadPerThread * threads_.size());
  std::vector<Task> batch;
  while (chosen < kClaimBatch && !shortage_ && outstanding_ < ahead && may_claim()) {
    const Pick pick = NextTask(&listed, &task);
    if (pick == Pick::kNone || pick == Pick::kWait) break;
    ++chosen;
    if (pick == Pick::kGated) continue;
    ++outstanding_;
    in_claim_.insert(task.name);
    batch.push_back(std::move(task));
  }
  if (batch.empty()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (Task& t : batch) tasks_.push_back(std::move(t));
  }
  if (batch.size() == 1) {
    work_cv_.notify_one();
  } else {
    work_cv_.notify_all();
  }
}

}  // namespace mxb
