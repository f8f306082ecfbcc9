// Crash safety: a child process runs the engine's spool/journal protocol in a loop
// (recover -> claim -> "deliver" -> journal commit -> Complete/Defer -> retire -> requeue) and
// is SIGKILLed at random instants, 25 times. After each kill the parent checks that no recipient
// was lost, and at the end that the spool drained and that no recipient whose final outcome was
// committed to the journal was delivered again.
//
// SIGKILL loses the process, not the page cache, so this exercises the ordering of operations,
// not fsync placement (which the journal and spool code document separately).
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "queue/envelope.h"
#include "queue/journal.h"
#include "queue/recovery.h"
#include "queue/spool.h"

namespace mxb {
namespace {

constexpr int kMessages = 300;
constexpr int kRecipients = 3;
constexpr int kKills = 25;
constexpr size_t kBatch = 4;
constexpr absl::string_view kBody = "From: a@esp.example\nSubject: crash\n\nbody\n";

std::string Rcpt(int m, int r) { return absl::StrCat("r", r, "-m", m, "@d", r, ".example"); }

// Deterministic outcome per (recipient, generation): deferred for a while, then final.
enum class Outcome { kDelivered, kBounced, kDeferred };
Outcome OutcomeFor(const std::string& rcpt, uint32_t generation) {
  const size_t h = absl::HashOf(rcpt);
  if (generation < h % 3) return Outcome::kDeferred;
  return h % 5 == 0 ? Outcome::kBounced : Outcome::kDelivered;
}

// The "remote side": an append-only log of final deliveries ("F run name rcpt") and of
// completed journal commits ("C run"). One write(2) per line on an O_APPEND fd.
void LogLine(int fd, const std::string& line) {
  const std::string l = line + "\n";
  ssize_t n = write(fd, l.data(), l.size());
  if (n != static_cast<ssize_t>(l.size())) _exit(3);
}

// The child: the engine's protocol, looping until the spool is empty. Exit codes: 0 drained.
[[noreturn]] void RunChild(const std::string& root, const std::string& log_path, int run) {
  absl::StatusOr<Spool> spool = Spool::Open(root);
  if (!spool.ok()) _exit(10);
  const std::string jdir = root + "/journal";
  absl::StatusOr<RecoveredJournal> old = Journal::Recover(jdir);
  if (!old.ok()) _exit(11);
  JournalOptions opts;
  opts.segment_bytes = 2048;  // rotate often
  opts.before_delete = [&] { return spool->SyncDirs(); };
  absl::StatusOr<std::unique_ptr<Journal>> journal = Journal::Open(jdir, opts);
  if (!journal.ok()) _exit(12);
  absl::StatusOr<RecoveryReport> report = RecoverSpool(*spool, *old, **journal);
  if (!report.ok()) _exit(13);
  const int log = open(log_path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (log < 0) _exit(14);

  std::vector<std::string> work = report->redeliver;  // names in active/
  bool from_active = true;
  for (;;) {
    if (work.empty()) {
      for (const std::string& name : spool->ListDeferred()) {
        if (!spool->Requeue(name).ok()) _exit(15);
      }
      work = spool->ListIncoming(kBatch);
      from_active = false;
      if (work.empty()) break;
    }
    struct Msg {
      std::string name;
      std::string file;
      Envelope env;
      std::vector<std::string> pending;
    };
    std::vector<Msg> batch;
    while (!work.empty() && batch.size() < kBatch) {
      std::string name = std::move(work.back());
      work.pop_back();
      absl::StatusOr<std::string> file = from_active ? spool->ReadActive(name) : spool->Claim(name);
      if (!file.ok()) _exit(16);
      absl::StatusOr<Envelope> env = ParseEnvelope(*file);
      if (!env.ok()) _exit(17);
      batch.push_back({std::move(name), *std::move(file), *std::move(env), {}});
    }
    // Deliver, then journal the finals, then one group commit.
    for (Msg& m : batch) {
      for (uint32_t i = 0; i < m.env.recipients.size(); ++i) {
        const std::string& r = m.env.recipients[i];
        const Outcome o = OutcomeFor(r, m.env.attempts);
        if (o == Outcome::kDeferred) {
          m.pending.push_back(r);
          continue;
        }
        LogLine(log, absl::StrCat("F ", run, " ", m.name, " ", r));
        (*journal)->AppendFinal({m.name, m.env.attempts, i,
                                 o == Outcome::kBounced ? FinalClass::kBounced
                                                        : FinalClass::kDelivered});
      }
    }
    if (!(*journal)->Commit().ok()) _exit(18);
    LogLine(log, absl::StrCat("C ", run));
    usleep(300);  // spread the work so kills land everywhere
    for (Msg& m : batch) {
      absl::Status s;
      if (m.pending.empty()) {
        s = spool->Complete(m.name);
      } else {
        Envelope rest = m.env;
        rest.recipients = m.pending;
        rest.attempts = m.env.attempts + 1;
        s = spool->Defer(m.name, SerializeEnvelope(rest, absl::string_view(m.file).substr(
                                                             m.env.body_offset)));
      }
      if (!s.ok()) _exit(19);
      (*journal)->AppendRetired(m.name, m.env.attempts);
    }
  }
  if (!(*journal)->Commit().ok()) _exit(20);
  _exit(0);
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class CrashTest : public testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = absl::StrCat(testing::TempDir(), "/mxb-crash-XXXXXX");
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    root_ = dir_ + "/spool";
    log_ = dir_ + "/deliveries.log";
    std::ofstream(log_).flush();
  }
  void TearDown() override {
    const std::string cmd = absl::StrCat("rm -rf '", dir_, "'");
    ASSERT_EQ(std::system(cmd.c_str()), 0);
  }

  // Recipients still pending in the spool, per message name (union over incoming/active/deferred).
  std::map<std::string, std::set<std::string>> PendingInSpool(Spool& spool) {
    std::map<std::string, std::set<std::string>> out;
    auto add = [&](absl::string_view sub, const std::vector<std::string>& names) {
      for (const std::string& n : names) {
        absl::StatusOr<Envelope> env =
            ParseEnvelope(Slurp(absl::StrCat(root_, "/", sub, "/", n)));
        if (!env.ok()) continue;  // renamed away between listing and reading: not possible here
        out[n].insert(env->recipients.begin(), env->recipients.end());
      }
    };
    add("incoming", spool.ListIncoming(SIZE_MAX));
    add("active", spool.ListActive());
    add("deferred", spool.ListDeferred());
    return out;
  }

  struct LogState {
    std::map<std::pair<std::string, std::string>, int> finals;  // (name, rcpt) -> count
    int resent_after_commit = 0;
  };
  LogState ReadLog() {
    LogState st;
    // (name, rcpt) whose final line was followed by its run's commit marker.
    std::set<std::pair<std::string, std::string>> committed;
    std::map<std::string, std::vector<std::pair<std::string, std::string>>> uncommitted_by_run;
    for (absl::string_view line : absl::StrSplit(Slurp(log_), '\n', absl::SkipEmpty())) {
      std::vector<std::string> f = absl::StrSplit(line, ' ');
      if (f[0] == "C") {
        for (auto& k : uncommitted_by_run[f[1]]) committed.insert(k);
        uncommitted_by_run[f[1]].clear();
        continue;
      }
      auto key = std::make_pair(f[2], f[3]);
      if (committed.count(key)) ++st.resent_after_commit;
      ++st.finals[key];
      uncommitted_by_run[f[1]].push_back(key);
    }
    return st;
  }

  void CheckNothingLost(int round) {
    absl::StatusOr<Spool> spool = Spool::Open(root_);
    ASSERT_TRUE(spool.ok());
    const auto pending = PendingInSpool(*spool);
    const LogState st = ReadLog();
    for (int m = 0; m < kMessages; ++m) {
      const std::string name = absl::StrCat("m", m, ".eml");
      for (int r = 0; r < kRecipients; ++r) {
        const std::string rcpt = Rcpt(m, r);
        const bool final = st.finals.count({name, rcpt}) > 0;
        auto it = pending.find(name);
        const bool queued = it != pending.end() && it->second.count(rcpt) > 0;
        ASSERT_TRUE(final || queued) << "round " << round << ": " << name << " " << rcpt
                                     << " is neither delivered nor in the spool";
      }
    }
  }

  std::string dir_;
  std::string root_;
  std::string log_;
};

TEST_F(CrashTest, KillNineAtRandomInstantsLosesNothingAndDoesNotResendCommitted) {
  {
    absl::StatusOr<Spool> spool = Spool::Open(root_);
    ASSERT_TRUE(spool.ok()) << spool.status();
    for (int m = 0; m < kMessages; ++m) {
      Envelope env;
      env.sender = "bounce@esp.example";
      for (int r = 0; r < kRecipients; ++r) env.recipients.push_back(Rcpt(m, r));
      ASSERT_TRUE(InjectFile(root_, absl::StrCat("m", m, ".eml"), SerializeEnvelope(env, kBody),
                             /*fsync_file=*/false)
                      .ok());
    }
  }
  std::mt19937 rng(20240611);
  std::uniform_int_distribution<int> delay_us(0, 12'000);
  int killed_mid_work = 0;
  for (int round = 0; round < kKills; ++round) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) RunChild(root_, log_, round);
    usleep(static_cast<useconds_t>(delay_us(rng)));
    kill(pid, SIGKILL);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status)) {
      ++killed_mid_work;
    } else {
      ASSERT_TRUE(WIFEXITED(status));
      ASSERT_EQ(WEXITSTATUS(status), 0) << "child failed in round " << round;
    }
    CheckNothingLost(round);
    if (HasFatalFailure()) return;
  }
  EXPECT_GE(killed_mid_work, kKills / 2) << "most kills should land while the child works";
  std::printf("crash test: %d of %d children killed mid-work\n", killed_mid_work, kKills);

  // A last run to completion drains the spool.
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) RunChild(root_, log_, kKills);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  CheckNothingLost(kKills);

  absl::StatusOr<Spool> spool = Spool::Open(root_);
  ASSERT_TRUE(spool.ok());
  EXPECT_EQ(spool->CountIncoming(), 0u);
  EXPECT_EQ(spool->CountActive(), 0u);
  EXPECT_EQ(spool->CountDeferred(), 0u);
  const LogState st = ReadLog();
  EXPECT_EQ(st.finals.size(), static_cast<size_t>(kMessages * kRecipients));
  EXPECT_EQ(st.resent_after_commit, 0)
      << "a recipient whose final outcome was committed was delivered again";
  int duplicates = 0;
  for (const auto& [key, n] : st.finals) duplicates += n - 1;
  // Only the batch in flight at each kill (kBatch messages) may be delivered twice.
  EXPECT_LE(duplicates, (kKills) * static_cast<int>(kBatch) * kRecipients);
  // The journal shrank back: only the segment of the last run is left.
  absl::StatusOr<RecoveredJournal> j = Journal::Recover(root_ + "/journal");
  ASSERT_TRUE(j.ok());
  for (const auto& [name, set] : j->messages) {
    ADD_FAILURE() << "journal still holds " << name << " generation " << set.generation;
  }
  EXPECT_LE(j->segments, 2u);
}

}  // namespace
}  // namespace mxb
