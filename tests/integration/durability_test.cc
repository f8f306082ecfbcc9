// Durability and flow under an unlucky operator (issue 10): non-regular files in incoming/, a
// full spool file system, a dead destination's backlog, shutdown with stalled peers. Each test
// runs the real mxburst against mxburst-sink or a fault listener on 127.0.0.0/8.
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "queue/spool.h"
#include "tests/integration/fixture.h"

namespace mxb {
namespace {

using testing::Bin;
using testing::CountSpool;
using testing::ListDir;
using testing::ReadFileOrDie;
using testing::ReadJsonLines;
using testing::RunCommand;
using testing::SpoolWorld;
using testing::WaitFor;

class DurabilityTest : public SpoolWorld {
 protected:
  DurabilityTest() : SpoolWorld("durability") {}

  std::vector<std::string> EngineArgs(std::vector<std::string> extra = {}) const {
    std::vector<std::string> argv = {Bin("engine/mxburst"), "--allow-root", "--spool", spool_, "--route",
                                     absl::StrCat("*=127.0.0.1:", port_), "--log", log_,
                                     "--workers", "2", "--helo", "test.mxburst.example"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return argv;
  }

  void Inject(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {Bin("tools/mxburst-inject"), "--spool", spool_};
    argv.insert(argv.end(), args.begin(), args.end());
    ASSERT_EQ(RunCommand(argv, dir_ + "/inject.out"), 0) << ReadFileOrDie(dir_ + "/inject.out.err");
  }
};

// Issue 10 item 7: symbolic links (to a file outside the spool, to a device), a directory and a
// FIFO in incoming/ used to be skipped by the listing forever, with no bad/, no .why and no log
// record. Now each goes to bad/ with a reason, a log record and a stderr line; no link is
// followed (the outside file is neither sent nor moved) and the FIFO does not block the engine.
TEST_F(DurabilityTest, NonRegularFilesInIncomingAreQuarantinedNeverFollowed) {
  StartSink("127.0.0.1");
  Inject({"--count", "3", "--no-fsync"});
  const std::string outside = dir_ + "/outside.eml";
  const std::string message =
      "x-sender: <s@esp.example>\nx-receiver: <r@dest.example>\nSubject: t\n\nsecret\n";
  std::ofstream(outside) << message;
  const std::string in = spool_ + "/incoming/";
  ASSERT_EQ(symlink(outside.c_str(), (in + "link-outside.eml").c_str()), 0);
  ASSERT_EQ(symlink("/dev/zero", (in + "link-device.eml").c_str()), 0);
  ASSERT_EQ(mkdir((in + "dir.eml").c_str(), 0750), 0);
  ASSERT_EQ(mkfifo((in + "fifo.eml").c_str(), 0640), 0);

  std::vector<std::string> argv = EngineArgs({"--drain"});
  ASSERT_EQ(RunCommand(argv, dir_ + "/engine.out", absl::Minutes(2)), 0)
      << ReadFileOrDie(dir_ + "/engine.out.err");
  nlohmann::json stats = StopSink();
  EXPECT_EQ(stats["messages"], 3);  // the three real messages, not the linked one

  const std::vector<std::string> odd = {"link-outside.eml", "link-device.eml", "dir.eml",
                                        "fifo.eml"};
  std::set<std::string> bad;
  for (const std::string& n : ListDir(spool_ + "/bad")) bad.insert(n);
  for (const std::string& n : odd) {
    EXPECT_TRUE(bad.count(n)) << n;
    ASSERT_TRUE(bad.count(n + ".why")) << n;
    EXPECT_TRUE(absl::StrContains(ReadFileOrDie(spool_ + "/bad/" + n + ".why"),
                                  "not a regular file"))
        << n;
  }
  EXPECT_EQ(ReadFileOrDie(outside), message);
  EXPECT_EQ(Count("incoming"), 0u);
  EXPECT_EQ(Count("active"), 0u);
  std::set<std::string> logged;
  for (const nlohmann::json& r : ReadJsonLines(log_)) {
    if (r["status"] == "quarantined") logged.insert(r["msgid"].get<std::string>());
  }
  EXPECT_EQ(logged, std::set<std::string>(odd.begin(), odd.end()));
  const std::string err = ReadFileOrDie(dir_ + "/engine.out.err");
  EXPECT_TRUE(absl::StrContains(err, "quarantined: ")) << err;
  EXPECT_TRUE(absl::StrContains(err, "(symbolic link)")) << err;
}

// A log emptied between two runs (`: > acct.jsonl`) stays empty. The journal keeps the last
// batch's log bytes to repair a log a crash left short; after a clean stop whose last batch
// began at offset 0, the emptied log looked exactly like that, and the next start appended the
// previous run's records again (seen as a flake of StsDeliveryTest, which empties its log).
TEST_F(DurabilityTest, ALogEmptiedBetweenRunsIsNotRefilledByTheNextStart) {
  port_ = testing::FreePort("127.0.0.1");  // nothing listens: connection refused
  Inject({"--count", "1", "--domains", "1", "--no-fsync"});
  ASSERT_EQ(RunCommand(EngineArgs({"--drain", "--quiet"}), dir_ + "/engine.out"), 0)
      << ReadFileOrDie(dir_ + "/engine.out.err");
  ASSERT_EQ(ReadJsonLines(log_).size(), 1u) << ReadFileOrDie(log_);  // one batch, at offset 0
  testing::WriteFileOrDie(log_, "");
  ASSERT_EQ(RunCommand(EngineArgs({"--drain", "--quiet"}), dir_ + "/engine2.out"), 0)
      << ReadFileOrDie(dir_ + "/engine2.out.err");
  EXPECT_EQ(ReadFileOrDie(log_), "");
}

// Issue 10 item 4: deferring a message whose recipients did not change (here: nothing listens,
// so the destination is dead and the rest is "not tried") used to rewrite and fsync the whole
// file per message, which made a dead destination's backlog fsync-bound for everybody. Now the
// file stays byte-identical (same inode) and only its retry mark moves; a retry pass counts on.
TEST_F(DurabilityTest, DeferralWithoutRecipientChangesKeepsTheFile) {
  port_ = testing::FreePort("127.0.0.1");  // nothing listens: connection refused
  Inject({"--count", "200", "--domains", "2", "--no-fsync"});
  std::map<std::string, std::string> before;
  std::map<std::string, ino_t> inodes;
  for (const std::string& n : ListDir(spool_ + "/incoming")) {
    before[n] = ReadFileOrDie(spool_ + "/incoming/" + n);
    struct stat st;
    ASSERT_EQ(stat((spool_ + "/incoming/" + n).c_str(), &st), 0);
    inodes[n] = st.st_ino;
  }
  ASSERT_EQ(RunCommand(EngineArgs({"--drain", "--quiet"}), dir_ + "/engine.out"), 0)
      << ReadFileOrDie(dir_ + "/engine.out.err");
  ASSERT_EQ(Count("deferred"), 200u);
  for (const auto& [n, bytes] : before) {
    const std::string path = spool_ + "/deferred/" + n;
    EXPECT_EQ(ReadFileOrDie(path), bytes) << n;
    struct stat st;
    ASSERT_EQ(stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_ino, inodes[n]) << n;
  }
  // A second pass (flushed by hand) is attempt 2 although the file still says nothing.
  ASSERT_EQ(RunCommand({Bin("tools/mxburstctl"), "flush", "--spool", spool_}, dir_ + "/ctl.out"), 0);
  ASSERT_EQ(RunCommand(EngineArgs({"--drain", "--quiet"}), dir_ + "/engine2.out"), 0)
      << ReadFileOrDie(dir_ + "/engine2.out.err");
  std::map<int, int> attempts;
  for (const nlohmann::json& r : ReadJsonLines(log_)) {
    EXPECT_EQ(r["status"], "deferred");
    ++attempts[r["attempt"].get<int>()];
  }
  EXPECT_EQ(attempts, (std::map<int, int>{{1, 200}, {2, 200}}));
  for (const auto& [n, bytes] : before) {
    EXPECT_EQ(ReadFileOrDie(spool_ + "/deferred/" + n), bytes) << n;
  }
}

// How often `needle` occurs in the file at `path` (0 while it does not exist yet).
int Occurrences(const std::string& path, const std::string& needle) {
  std::ifstream in(path);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  int n = 0;
  for (size_t pos = text.find(needle); pos != std::string::npos;
       pos = text.find(needle, pos + needle.size())) {
    ++n;
  }
  return n;
}

// The dead-destination files of the spool's incoming/ (their recipients are at dead.example):
// name -> (bytes, inode).
std::map<std::string, std::pair<std::string, ino_t>> DeadFiles(const std::string& spool) {
  std::map<std::string, std::pair<std::string, ino_t>> files;
  for (const std::string& n : ListDir(spool + "/incoming")) {
    const std::string path = spool + "/incoming/" + n;
    std::string bytes = ReadFileOrDie(path);
    if (!absl::StrContains(bytes, "@dead.example>")) continue;
    struct stat st;
    if (stat(path.c_str(), &st) == 0) files[n] = {std::move(bytes), st.st_ino};
  }
  return files;
}

// "N message(s) for dead destinations deferred by the scanner" in the summary line, or 0.
int DeferredByScanner(const std::string& summary) {
  const std::string tail = " message(s) for dead destinations deferred by the scanner";
  const size_t end = summary.find(tail);
  if (end == std::string::npos) return 0;
  size_t begin = end;
  while (begin > 0 && std::isdigit(static_cast<unsigned char>(summary[begin - 1]))) --begin;
  return std::stoi(summary.substr(begin, end - begin));
}

// "(N envelope read(s))" after the dead-destination count in the summary line, or -1.
int EnvelopeReads(const std::string& summary) {
  const std::string tail = " envelope read(s))";
  const size_t end = summary.find(tail);
  if (end == std::string::npos) return -1;
  size_t begin = end;
  while (begin > 0 && std::isdigit(static_cast<unsigned char>(summary[begin - 1]))) --begin;
  return std::stoi(summary.substr(begin, end - begin));
}

// Issue 10 item 4: a dead destination's backlog (every connection refused) next to healthy
// mail used to go through the whole pipeline — claimed into active/, read, encoded, handed to
// its worker, deferred "not tried" and renamed back — costing the scanner as much as healthy
// mail, so the healthy domains took 3-5x as long. Now, once a worker reports the destination
// dead, the scanner reads only the envelope of such a file, postpones it behind the other mail
// and defers it itself: no claim, no worker, one log record per recipient, the file untouched
// but for its retry mark. Counted (not timed): most of the backlog never reaches a worker.
TEST_F(DurabilityTest, DeadBacklogIsDeferredByTheScannerWithoutAClaim) {
  StartSink("127.0.0.1");
  const int dead_port = testing::FreePort("127.0.0.3");  // nothing listens: refused
  Inject({"--count", "1500", "--size", "2000", "--domain-list", "dead.example",
          "--rcpt-local-prefix", "x", "--seed", "1", "--no-fsync"});
  Inject({"--count", "300", "--size", "2000", "--domains", "3", "--seed", "2", "--no-fsync"});
  const auto dead = DeadFiles(spool_);
  ASSERT_EQ(dead.size(), 1500u);
  ASSERT_EQ(RunCommand(EngineArgs({"--route", absl::StrCat("dead.example=127.0.0.3:", dead_port),
                                   "--drain", "--quiet"}),
                       dir_ + "/engine.out"),
            0)
      << ReadFileOrDie(dir_ + "/engine.out.err");
  const std::string summary = ReadFileOrDie(dir_ + "/engine.out");
  // The first few go to the worker while its first connection is refused.
  EXPECT_GE(DeferredByScanner(summary), 750) << summary;
  // Each file's envelope is read once at most (a 2 KB file in one read), never once per scan.
  EXPECT_GE(EnvelopeReads(summary), DeferredByScanner(summary)) << summary;
  EXPECT_LE(EnvelopeReads(summary), 1800) << summary;
  EXPECT_EQ(Count("incoming") + Count("active"), 0u);
  ASSERT_EQ(Count("deferred"), 1500u);
  Spool spool = *Spool::Open(spool_);
  for (const auto& [n, file] : dead) {
    const std::string path = spool_ + "/deferred/" + n;
    EXPECT_EQ(ReadFileOrDie(path), file.first) << n;
    struct stat st;
    ASSERT_EQ(stat(path.c_str(), &st), 0) << n;
    EXPECT_EQ(st.st_ino, file.second) << n;
    std::optional<RetryMark> mark = spool.ReadRetryMark("deferred", n);
    ASSERT_TRUE(mark.has_value()) << n;
    EXPECT_EQ(mark->attempts, 1u) << n;
  }
  std::map<std::string, int> deferred;
  int delivered = 0;
  for (const nlohmann::json& r : ReadJsonLines(log_)) {
    if (r["status"] == "delivered") ++delivered;
    if (r["status"] != "deferred") continue;
    EXPECT_EQ(r["domain"], "dead.example") << r.dump();
    EXPECT_EQ(r["attempt"], 1) << r.dump();
    // A record without a hop tried names no TLS policy ("opportunistic" before, whatever the
    // domain's policy): the ones the worker tried name theirs.
    EXPECT_EQ(r["policy_source"] == "none", r["mx"] == "") << r.dump();
    ++deferred[r["msgid"].get<std::string>()];
  }
  EXPECT_EQ(delivered, 300);
  EXPECT_EQ(deferred.size(), 1500u);
  for (const auto& [id, n] : deferred) EXPECT_EQ(n, 1) << id;
}

// An envelope longer than the first read (kEnvelopeFirstBytes, 4 KiB: here 150 recipients,
// ~5 KB) is read again, longer, and deferred by the scanner all the same (here the retry passes
// after the first, which met the destination dead); never from a cut-off recipient list.
TEST_F(DurabilityTest, DeadRetriesWithLongEnvelopesAreDeferredByTheScannerToo) {
  port_ = testing::FreePort("127.0.0.1");  // nothing listens: refused
  Inject({"--count", "50", "--size", "2000", "--domain-list", "dead.example",
          "--rcpt-local-prefix", "x", "--recipients-per-message", "150", "--no-fsync"});
  const auto dead = DeadFiles(spool_);
  ASSERT_EQ(dead.size(), 50u);
  ASSERT_GT(dead.begin()->second.first.find("\nFrom:"), 4096u);  // the envelope is longer
  const std::string err = dir_ + "/engine.err";
  {
    testing::Subprocess engine(EngineArgs({"--retry", "1/1/3600"}), dir_ + "/engine.out", err);
    ASSERT_TRUE(WaitFor([&] { return Occurrences(log_, "\"deferred\"") >= 3 * 50 * 150; }))
        << ReadFileOrDie(err);
    engine.Signal(SIGTERM);
    ASSERT_EQ(engine.Wait(absl::Seconds(60)), 0) << ReadFileOrDie(err);
  }
  const std::string summary = ReadFileOrDie(dir_ + "/engine.out");
  const int by_scanner = DeferredByScanner(summary);
  EXPECT_GE(by_scanner, 50) << summary;
  EXPECT_GE(EnvelopeReads(summary), 2 * by_scanner) << summary;  // the first read was cut off
  EXPECT_EQ(Count("incoming") + Count("active"), 0u);
  ASSERT_EQ(Count("deferred"), 50u);
  for (const auto& [n, file] : dead) {
    EXPECT_EQ(ReadFileOrDie(spool_ + "/deferred/" + n), file.first) << n;
  }
  // Every pass defers every recipient, in order: attempt k has 150 records per message.
  std::map<std::string, std::map<int, int>> records;
  for (const nlohmann::json& r : ReadJsonLines(log_)) {
    ASSERT_EQ(r["status"], "deferred") << r.dump();
    ++records[r["msgid"].get<std::string>()][r["attempt"].get<int>()];
  }
  ASSERT_EQ(records.size(), 50u);
  for (const auto& [id, passes] : records) {
    for (const auto& [attempt, n] : passes) EXPECT_EQ(n, 150) << id << " attempt " << attempt;
  }
}

// The same for due retries: while the destination stays dead (dead_destination_time, 60 s by
// default) each retry pass is logged as the next attempt and moves only the file's retry mark in
// deferred/ (no rename to active/ and back); the files stay byte-identical.
TEST_F(DurabilityTest, RetriesToADeadDestinationOnlyMoveTheirMark) {
  port_ = testing::FreePort("127.0.0.1");  // nothing listens: refused
  Inject({"--count", "100", "--size", "2000", "--domain-list", "dead.example",
          "--rcpt-local-prefix", "x", "--no-fsync"});
  const auto dead = DeadFiles(spool_);
  ASSERT_EQ(dead.size(), 100u);
  const std::string err = dir_ + "/engine.err";
  {
    testing::Subprocess engine(EngineArgs({"--retry", "1/1/3600"}), dir_ + "/engine.out", err);
    // Three passes: the first through the worker, the next ones deferred by the scanner.
    ASSERT_TRUE(WaitFor([&] { return Occurrences(log_, "\"deferred\"") >= 300; }))
        << ReadFileOrDie(err);
    engine.Signal(SIGTERM);
    ASSERT_EQ(engine.Wait(absl::Seconds(60)), 0) << ReadFileOrDie(err);
  }
  EXPECT_GE(DeferredByScanner(ReadFileOrDie(dir_ + "/engine.out")), 150)
      << ReadFileOrDie(dir_ + "/engine.out");
  EXPECT_EQ(Count("incoming") + Count("active"), 0u);
  ASSERT_EQ(Count("deferred"), 100u);
  Spool spool = *Spool::Open(spool_);
  for (const auto& [n, file] : dead) {
    EXPECT_EQ(ReadFileOrDie(spool_ + "/deferred/" + n), file.first) << n;
    std::optional<RetryMark> mark = spool.ReadRetryMark("deferred", n);
    ASSERT_TRUE(mark.has_value()) << n;
    EXPECT_GE(mark->attempts, 3u) << n;
  }
  // Passes are counted on per message, one record per pass: attempts 1, 2, 3, ... in order.
  std::map<std::string, std::vector<int>> attempts;
  for (const nlohmann::json& r : ReadJsonLines(log_)) {
    ASSERT_EQ(r["status"], "deferred") << r.dump();
    attempts[r["msgid"].get<std::string>()].push_back(r["attempt"].get<int>());
  }
  ASSERT_EQ(attempts.size(), 100u);
  for (const auto& [id, seq] : attempts) {
    for (size_t i = 0; i < seq.size(); ++i) EXPECT_EQ(seq[i], static_cast<int>(i) + 1) << id;
  }
}

// Writes zeros into `path` until the file system is full (ENOSPC).
void FillUp(const std::string& path) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  std::string chunk(64 << 10, '\0');
  while (write(fd, chunk.data(), chunk.size()) > 0) {
  }
  close(fd);
}

// Issue 10 item 5: with the spool's file system full the engine used to print the same error
// over a thousand times, keep delivering, never finish the delivered messages in active/ once
// space returned, and ignore SIGTERM. Now it says so once, stops claiming, keeps the finished
// messages in memory, retries with back-off, resumes by itself when space returns, and honours
// SIGTERM while the disk is still full (what it held is delivered again at the next start).
// The spool and the log are on a small tmpfs mounted here (root only; skipped otherwise).
TEST_F(DurabilityTest, DiskFullPausesClaimingResumesAndHonoursSigterm) {
  const std::string fs = dir_ + "/fs";
  ASSERT_EQ(mkdir(fs.c_str(), 0750), 0);
  if (mount("mxb-test", fs.c_str(), "tmpfs", 0, "size=6m") != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs at " << fs << ": " << std::strerror(errno)
                 << " (needs root or CAP_SYS_ADMIN)";
  }
  struct Unmount {
    std::string path;
    ~Unmount() { umount2(path.c_str(), MNT_DETACH); }
  } unmount{fs};
  const std::string spool = fs + "/spool", log = fs + "/acct.jsonl", filler = fs + "/filler";
  ASSERT_TRUE(Spool::Open(spool).ok());
  StartSink("127.0.0.1");
  auto inject = [&](int count, int seed, const std::string& into) {
    ASSERT_EQ(RunCommand({Bin("tools/mxburst-inject"), "--spool", into, "--count",
                          std::to_string(count), "--size", "1500", "--domains", "4", "--seed",
                          std::to_string(seed), "--no-fsync"},
                         dir_ + "/inject.out"),
              0);
  };
  // Hard links keep the messages' pages allocated after the engine removes them from the spool,
  // so finishing messages cannot free the space the journal and the log need.
  const std::string keep = fs + "/keep";
  ASSERT_EQ(mkdir(keep.c_str(), 0750), 0);
  auto pin = [&](const std::string& from) {
    for (const std::string& n : ListDir(from + "/incoming")) {
      link((from + "/incoming/" + n).c_str(), (keep + "/" + n).c_str());
    }
  };
  inject(300, 1, spool);
  pin(spool);
  {
    // Leave ~48 KiB: the engine starts, delivers a little, then every durable write fails.
    FillUp(filler);
    struct stat st;
    ASSERT_EQ(stat(filler.c_str(), &st), 0);
    ASSERT_EQ(truncate(filler.c_str(), st.st_size - (48 << 10)), 0);
  }
  const std::string err = dir_ + "/engine-full.err";
  std::vector<std::string> argv = {Bin("engine/mxburst"), "--allow-root", "--spool", spool, "--route",
                                   absl::StrCat("*=127.0.0.1:", port_), "--log", log,
                                   "--workers", "2", "--max-in-flight", "40", "--quiet"};
  {
    testing::Subprocess engine(argv, dir_ + "/engine-full.out", err);
    ASSERT_TRUE(WaitFor([&] { return Occurrences(err, "claiming paused") > 0; }))
        << ReadFileOrDie(err);
    usleep(1500 * 1000);  // several retries with back-off happen meanwhile
    EXPECT_EQ(Occurrences(err, "claiming paused"), 1) << ReadFileOrDie(err);
    const std::string text = ReadFileOrDie(err);
    EXPECT_LT(std::count(text.begin(), text.end(), '\n'), 4) << text;  // no error per retry
    EXPECT_GT(CountSpool(spool, "incoming"), 0u);  // claiming stopped
    ASSERT_EQ(unlink(filler.c_str()), 0);           // space returns
    ASSERT_TRUE(WaitFor([&] {
      return CountSpool(spool, "incoming") + CountSpool(spool, "active") == 0;
    })) << ReadFileOrDie(err);
    EXPECT_EQ(Occurrences(err, "claiming resumed"), 1) << ReadFileOrDie(err);

    // Full again, more mail, then SIGTERM while the writes still fail: it must exit. The mail
    // is written next to the spool and renamed in only once the file system is full: injected
    // straight into incoming/, a loaded box let the engine deliver all of it before FillUp
    // ended, and no write ever failed (a CI flake).
    const std::string stage = fs + "/stage";
    ASSERT_TRUE(Spool::Open(stage).ok());
    inject(60, 2, stage);
    pin(stage);
    FillUp(filler);
    for (const std::string& n : ListDir(stage + "/incoming")) {
      ASSERT_EQ(rename((stage + "/incoming/" + n).c_str(), (spool + "/incoming/" + n).c_str()), 0)
          << n << ": " << std::strerror(errno);
    }
    ASSERT_TRUE(WaitFor([&] { return Occurrences(err, "claiming paused") > 1; }))
        << ReadFileOrDie(err);
    engine.Signal(SIGTERM);
    EXPECT_EQ(engine.Wait(absl::Seconds(60)), 1) << ReadFileOrDie(err);
    EXPECT_EQ(Occurrences(err, "stopping with"), 1) << ReadFileOrDie(err);
  }
  ASSERT_EQ(unlink(filler.c_str()), 0);
  std::vector<std::string> drain = argv;
  drain.push_back("--drain");
  ASSERT_EQ(RunCommand(drain, dir_ + "/engine-drain.out"), 0)
      << ReadFileOrDie(dir_ + "/engine-drain.out.err");
  StopSink();
  EXPECT_EQ(CountSpool(spool, "incoming") + CountSpool(spool, "active") +
                CountSpool(spool, "deferred"),
            0u);
  // Nothing lost, nothing logged twice: one delivered record per message.
  std::map<std::string, int> delivered;
  for (const nlohmann::json& r : ReadJsonLines(log)) {
    if (r["status"] == "delivered") ++delivered[r["msgid"].get<std::string>()];
  }
  EXPECT_EQ(delivered.size(), 360u);
  for (const auto& [id, n] : delivered) EXPECT_EQ(n, 1) << id;
}

// Issue 10 item 6: after SIGTERM a peer that never sends its greeting used to keep the process
// alive for the full RFC 5321 §4.5.3.2 greeting timeout (5 minutes), later for `[timeouts]
// shutdown`. A connection not greeted yet carries no job: at SIGTERM it closes at once, the
// messages waiting for it are deferred ("engine shutting down"), committed, and the engine exits
// 0 well inside the bound (30 s here). A stalled transaction, which the bound is for:
// ShutdownTest.ATransactionThePeerStallsIsAbortedAtTheBound.
TEST_F(DurabilityTest, ShutdownIsBoundedWhenThePeerNeverGreets) {
  port_ = testing::FreePort("127.0.0.1");
  testing::FaultServer silent(port_, testing::FaultServer::Mode::kSilent);
  ASSERT_TRUE(silent.ok());
  Inject({"--count", "5", "--domains", "1", "--no-fsync"});
  const std::string config = dir_ + "/mxburst.toml";
  testing::WriteFileOrDie(config, "[timeouts]\nshutdown = 30\n");
  const std::string err = dir_ + "/engine.err";
  testing::Subprocess engine(EngineArgs({"--config", config}), dir_ + "/engine.out", err);
  ASSERT_TRUE(WaitFor([&] { return silent.accepts() > 0; }));
  ASSERT_TRUE(WaitFor([&] { return Count("incoming") == 0; }));
  const absl::Time stop = absl::Now();
  engine.Signal(SIGTERM);
  EXPECT_EQ(engine.Wait(absl::Seconds(60)), 0) << ReadFileOrDie(err);
  EXPECT_LT(absl::Now() - stop, absl::Seconds(5)) << ReadFileOrDie(err);
  EXPECT_EQ(Count("active"), 0u);
  EXPECT_EQ(Count("deferred"), 5u);
  int deferred = 0;
  for (const nlohmann::json& r : ReadJsonLines(log_)) {
    EXPECT_EQ(r["status"], "deferred");
    EXPECT_TRUE(absl::StrContains(r["text"].get<std::string>(), "shut")) << r.dump();
    ++deferred;
  }
  EXPECT_EQ(deferred, 5);
}

// What happens after the journal commit when a finished message's file cannot be unlinked
// (here it was replaced by a directory while its delivery waited for a slow sink): the error
// names the path, the message still counts as finished, the --drain run ends, and every other
// delivered file has left active/ (issue 17: the unlink path measured and kept as syscalls).
TEST_F(DurabilityTest, AnUnlinkThatFailsIsReportedAndTheRunEnds) {
  StartSink("127.0.0.1", {"--reply-delay-ms", "300"});
  Inject({"--count", "6", "--no-fsync"});
  const std::string err = dir_ + "/engine.err";
  testing::Subprocess engine(EngineArgs({"--drain"}), dir_ + "/engine.out", err);
  ASSERT_TRUE(engine.started());
  const std::string active = spool_ + "/active/";
  ASSERT_TRUE(WaitFor([&] { return Count("active") == 6; }, absl::Seconds(60)))
      << ReadFileOrDie(err);
  // Claimed and read: replace one file by a directory of its name (unlink cannot remove it).
  const std::string victim = ListDir(active).front();
  ASSERT_EQ(rename((active + victim).c_str(), (dir_ + "/" + victim).c_str()), 0);
  ASSERT_EQ(mkdir((active + victim).c_str(), 0750), 0);
  ASSERT_EQ(engine.Wait(absl::Minutes(2)), 0) << ReadFileOrDie(err);
  EXPECT_EQ(ListDir(active), std::vector<std::string>{victim});  // only the directory is left
  const std::string text = ReadFileOrDie(err);
  EXPECT_TRUE(absl::StrContains(text, absl::StrCat("active/", victim, ": unlink: "))) << text;
  nlohmann::json stats = StopSink();
  EXPECT_EQ(stats["messages"], 6);
  EXPECT_EQ(testing::StatusCounts(ReadJsonLines(log_))["delivered"], 6);
}

}  // namespace
}  // namespace mxb
