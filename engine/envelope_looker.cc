#include "engine/envelope_looker.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <utility>

#include "engine/dead_destinations.h"
#include "engine/scanner.h"  // ThreadCpuNs

namespace mxb {
namespace {

// Results are published (and the scanner woken) this many files at a time, or sooner when the
// looker runs out of work: one wake-up per file would cost the scanner thread more than it saves.
constexpr size_t kPublishEvery = 8;
// The looker's read buffer is kept up to this size (kEnvelopeHeadBytes: one long envelope).
constexpr size_t kKeepScratch = kEnvelopeHeadBytes;

}  // namespace

EnvelopeLook LookAtEnvelope(const Spool& spool, absl::string_view subdir, const std::string& name,
                            std::string* scratch, int dir_fd) {
  EnvelopeLook look;
  // A few KiB hold the envelope of nearly every file (a 20 KB message's head is one page, not
  // the whole file); a longer envelope is read again, up to kEnvelopeHeadBytes.
  for (const size_t want : {kEnvelopeFirstBytes, kEnvelopeHeadBytes}) {
    absl::StatusOr<SpoolRead> head = dir_fd >= 0
                                         ? spool.ReadHeadAt(dir_fd, subdir, name, want, scratch)
                                         : spool.ReadHead(subdir, name, want, scratch);
    if (!head.ok()) {
      look.envelope = head.status();  // the claim reports (or quarantines) it
      return look;
    }
    ++look.reads;
    look.envelope = ParseEnvelope(head->contents);
    // The whole file (a bad envelope there: the claim quarantines it), or a head whose first
    // message line is whole; else the envelope may go on past it.
    const bool whole = head->contents.size() < want;
    if (whole ||
        (look.envelope.ok() &&
         head->contents.find('\n', look.envelope->body_offset) != absl::string_view::npos)) {
      look.mark = head->mark;
      return look;
    }
    look.envelope = absl::OutOfRangeError("envelope longer than the head read");
  }
  return look;
}

EnvelopeLooker::EnvelopeLooker(const Spool* spool) : spool_(spool) {
  // Thousands of looks in two directories: relative to their descriptors, not by path.
  incoming_fd_ = open((spool->root() + "/incoming").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  deferred_fd_ = open((spool->root() + "/deferred").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  event_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "mxb-look");  // for top -H and perf
    ThreadMain();
  });
}

EnvelopeLooker::~EnvelopeLooker() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_one();
  thread_.join();
  for (const int fd : {event_fd_, incoming_fd_, deferred_fd_}) {
    if (fd >= 0) close(fd);
  }
}

void EnvelopeLooker::Want(std::vector<std::string> names, bool from_incoming) {
  if (names.empty()) return;
  outstanding_ += names.size();
  bool wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    wake = tasks_.empty();
    for (std::string& n : names) {
      LookedFile f;
      f.name = std::move(n);
      f.from_incoming = from_incoming;
      tasks_.push_back(std::move(f));
    }
  }
  if (wake) work_cv_.notify_one();
}

std::vector<LookedFile> EnvelopeLooker::TakeReady() {
  uint64_t ignored;
  (void)!read(event_fd_, &ignored, sizeof ignored);
  std::vector<LookedFile> got;
  {
    std::lock_guard<std::mutex> lock(mu_);
    got.swap(results_);
    ready_.store(false, std::memory_order_relaxed);
  }
  outstanding_ -= got.size();
  return got;
}

void EnvelopeLooker::SetDeadDomains(const std::vector<std::string>& domains) {
  std::lock_guard<std::mutex> lock(mu_);
  dead_domains_ = absl::flat_hash_set<std::string>(domains.begin(), domains.end());
  ++dead_version_;
}

uint64_t EnvelopeLooker::reads() const {
  std::lock_guard<std::mutex> lock(mu_);
  return reads_;
}

void EnvelopeLooker::ThreadMain() {
  std::string scratch;
  std::vector<LookedFile> done;
  uint64_t reads = 0;
  absl::flat_hash_set<std::string> dead;  // this thread's copy of dead_domains_
  uint64_t dead_version = 0;
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    if (tasks_.empty() || stop_ || done.size() >= kPublishEvery) {
      // Publish what is finished before waiting (or every kPublishEvery files): the scanner
      // thread drains results_ after reading the eventfd, so a batch pushed after that drain
      // finds results_ empty again and writes — none waits for the poll timeout.
      if (!done.empty()) {
        const bool wake = results_.empty();
        for (LookedFile& f : done) results_.push_back(std::move(f));
        done.clear();
        ready_.store(true, std::memory_order_release);
        reads_ += reads;
        reads = 0;
        cpu_ns_.store(ThreadCpuNs(), std::memory_order_relaxed);
        if (wake) {
          const uint64_t one = 1;
          (void)!write(event_fd_, &one, sizeof one);
        }
      }
      if (stop_) break;
      if (tasks_.empty()) work_cv_.wait(lock, [&] { return stop_ || !tasks_.empty(); });
      if (stop_) break;
    }
    if (dead_version != dead_version_) {  // the set as of this task's Want, or newer
      dead = dead_domains_;
      dead_version = dead_version_;
    }
    LookedFile f = std::move(tasks_.front());
    tasks_.pop_front();
    lock.unlock();
    f.look = LookAtEnvelope(*spool_, f.from_incoming ? "incoming" : "deferred", f.name, &scratch,
                            f.from_incoming ? incoming_fd_ : deferred_fd_);
    reads += f.look.reads;
    if (f.look.envelope.ok() && !dead.empty()) {
      f.dead_hint = !f.look.envelope->recipients.empty();
      for (const std::string& rcpt : f.look.envelope->recipients) {
        if (!dead.contains(DomainOf(rcpt))) {
          f.dead_hint = false;
          break;
        }
      }
    }
    if (scratch.size() > kKeepScratch) std::string().swap(scratch);
    done.push_back(std::move(f));
    lock.lock();
  }
}

}  // namespace mxb
