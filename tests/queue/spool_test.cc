// Spool: claim/complete/defer/quarantine/requeue/inject on a temporary spool directory.
#include "queue/spool.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace mxb {
namespace {

constexpr absl::string_view kMessage =
    "x-sender: <s@esp.example>\nx-receiver: <r@dest.example>\nSubject: t\n\nbody\n";

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

void RemoveTree(const std::string& path) {
  // Test-only cleanup of a directory we created.
  const std::string cmd = absl::StrCat("rm -rf '", path, "'");
  ASSERT_EQ(std::system(cmd.c_str()), 0);
}

class SpoolTest : public testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = absl::StrCat(testing::TempDir(), "/mxb-spool-XXXXXX");
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    root_ = dir_ + "/spool";  // Open must create the root too
    absl::StatusOr<Spool> spool = Spool::Open(root_);
    ASSERT_TRUE(spool.ok()) << spool.status();
    spool_.emplace(*std::move(spool));
  }
  void TearDown() override {
    if (!dir_.empty()) RemoveTree(dir_);
  }

  std::string Path(absl::string_view sub, absl::string_view name) const {
    return absl::StrCat(root_, "/", sub, "/", name);
  }

  std::string Inject(absl::string_view contents = kMessage) {
    const std::string name = NewSpoolFileName();
    absl::Status s = InjectFile(root_, name, contents, /*fsync_file=*/false);
    EXPECT_TRUE(s.ok()) << s;
    return name;
  }

  std::string dir_;
  std::string root_;
  std::optional<Spool> spool_;
};

TEST_F(SpoolTest, OpenCreatesSubdirectoriesAndIsIdempotent) {
  for (const char* sub : {"tmp", "incoming", "active", "deferred", "bad"}) {
    EXPECT_TRUE(Exists(Path(sub, ""))) << sub;
  }
  absl::StatusOr<Spool> again = Spool::Open(root_ + "/");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->root(), root_);
}

TEST_F(SpoolTest, OpenFailsOnFileInPlaceOfDirectory) {
  const std::string bogus = dir_ + "/file";
  std::ofstream(bogus) << "x";
  absl::StatusOr<Spool> spool = Spool::Open(bogus);
  ASSERT_FALSE(spool.ok());
  EXPECT_NE(spool.status().message().find(bogus), absl::string_view::npos) << spool.status();
}

TEST_F(SpoolTest, InjectWritesIncomingAndLeavesTmpEmpty) {
  for (bool fsync_file : {false, true}) {
    const std::string name = NewSpoolFileName();
    ASSERT_TRUE(InjectFile(root_, name, kMessage, fsync_file).ok());
    EXPECT_EQ(ReadAll(Path("incoming", name)), kMessage);
    EXPECT_FALSE(Exists(Path("tmp", name)));
  }
  EXPECT_EQ(spool_->CountIncoming(), 2u);
}

TEST_F(SpoolTest, InjectRefusesToOverwrite) {
  const std::string name = Inject();
  absl::Status s = InjectFile(root_, name, "other", false);
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists) << s;
  EXPECT_EQ(ReadAll(Path("incoming", name)), kMessage);
  EXPECT_FALSE(Exists(Path("tmp", name)));
}

TEST_F(SpoolTest, InjectIntoMissingSpoolNamesPath) {
  absl::Status s = InjectFile(dir_ + "/nope", "a.eml", kMessage);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_NE(s.message().find(dir_ + "/nope/tmp/a.eml"), absl::string_view::npos) << s;
  EXPECT_NE(s.message().find("No such file"), absl::string_view::npos) << s;
}

TEST_F(SpoolTest, BadNamesRejected) {
  for (const char* name : {"", ".hidden", "../escape", "a/b"}) {
    EXPECT_EQ(InjectFile(root_, name, kMessage, false).code(), absl::StatusCode::kInvalidArgument)
        << name;
    EXPECT_EQ(spool_->Claim(name).status().code(), absl::StatusCode::kInvalidArgument) << name;
  }
}

TEST_F(SpoolTest, ClaimMovesToActiveAndReturnsContent) {
  const std::string name = Inject();
  EXPECT_EQ(spool_->ListIncoming(10), std::vector<std::string>{name});
  absl::StatusOr<std::string> content = spool_->Claim(name);
  ASSERT_TRUE(content.ok()) << content.status();
  EXPECT_EQ(*content, kMessage);
  EXPECT_FALSE(Exists(Path("incoming", name)));
  EXPECT_EQ(spool_->ListActive(), std::vector<std::string>{name});
  absl::StatusOr<std::string> again = spool_->ReadActive(name);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, kMessage);
  // Claiming twice: the second claimer finds nothing.
  EXPECT_EQ(spool_->Claim(name).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SpoolTest, ClaimLargeAndEmptyFiles) {
  const std::string big(3 * 1024 * 1024 + 17, 'x');
  const std::string big_name = Inject(big);
  const std::string empty_name = Inject("");
  absl::StatusOr<std::string> got = spool_->Claim(big_name);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, big);
  got = spool_->Claim(empty_name);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, "");
}

TEST_F(SpoolTest, ClaimDoesNotOverwriteActive) {
  const std::string name = Inject();
  ASSERT_TRUE(spool_->Claim(name).ok());
  ASSERT_TRUE(InjectFile(root_, name, "second", false).ok());
  EXPECT_EQ(spool_->Claim(name).status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(ReadAll(Path("active", name)), kMessage);
  EXPECT_EQ(ReadAll(Path("incoming", name)), "second");
}

TEST_F(SpoolTest, Complete) {
  const std::string name = Inject();
  ASSERT_TRUE(spool_->Claim(name).ok());
  EXPECT_TRUE(spool_->Complete(name).ok());
  EXPECT_EQ(spool_->CountActive(), 0u);
  absl::Status s = spool_->Complete(name);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(s.message().find(Path("active", name)), absl::string_view::npos) << s;
}

TEST_F(SpoolTest, DeferThenRequeueThenClaim) {
  const std::string name = Inject();
  ASSERT_TRUE(spool_->Claim(name).ok());
  const std::string pending = "x-sender: <s@esp.example>\nx-receiver: <late@dest.example>\n\nb\n";
  ASSERT_TRUE(spool_->Defer(name, pending).ok());
  EXPECT_EQ(spool_->CountActive(), 0u);
  EXPECT_EQ(spool_->ListDeferred(), std::vector<std::string>{name});
  EXPECT_EQ(ReadAll(Path("deferred", name)), pending);
  EXPECT_EQ(spool_->CountDeferred(), 1u);
  // tmp/ holds nothing afterwards (the .defer file was renamed away).
  EXPECT_EQ(std::system(absl::StrCat("test -z \"$(ls -A '", root_, "/tmp')\"").c_str()), 0);

  ASSERT_TRUE(spool_->Requeue(name).ok());
  EXPECT_EQ(spool_->CountDeferred(), 0u);
  absl::StatusOr<std::string> content = spool_->Claim(name);
  ASSERT_TRUE(content.ok());
  EXPECT_EQ(*content, pending);
  EXPECT_EQ(spool_->Requeue(name).code(), absl::StatusCode::kNotFound);
}

TEST_F(SpoolTest, ReadDeferredHeadRewriteActiveSyncDirsAndBounces) {
  EXPECT_TRUE(Exists(Path("bounces", "")));
  const std::string name = Inject();
  ASSERT_TRUE(spool_->Claim(name).ok());
  ASSERT_TRUE(spool_->RewriteActive(name, "rewritten").ok());
  EXPECT_EQ(ReadAll(Path("active", name)), "rewritten");
  EXPECT_EQ(spool_->RewriteActive("ghost/../x", "y").code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(spool_->Defer(name, kMessage).ok());
  absl::StatusOr<std::string> head = spool_->ReadDeferred(name, 10);
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_EQ(*head, kMessage.substr(0, 10));
  absl::StatusOr<std::string> all = spool_->ReadDeferred(name);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(*all, kMessage);
  EXPECT_EQ(spool_->ReadDeferred("nope.eml").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(spool_->SyncDirs().ok());
  ASSERT_TRUE(ReplaceSpoolFile(root_, "bounces", "d.dsn", "one").ok());
  ASSERT_TRUE(ReplaceSpoolFile(root_, "bounces", "d.dsn", "two").ok());
  EXPECT_EQ(ReadAll(Path("bounces", "d.dsn")), "two");
}

// An access time well in the past, so that a read on a relatime mount would update it.
void AgeAtime(const std::string& path) {
  const timespec times[2] = {{946684800, 0}, {0, UTIME_OMIT}};  // 2000-01-01, mtime kept
  ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), times, 0), 0) << path;
}

time_t Atime(const std::string& path) {
  struct stat st;
  EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
  return st.st_atime;
}

// The scanner's look at a file it may postpone (engine/dead_destinations.h) reads only the
// head, with the retry mark from the same descriptor; no read of a spool file touches its access
// time (O_NOATIME: on relatime the first read of a fresh file was an inode update per message).
TEST_F(SpoolTest, ReadHeadReadsTheHeadAndTheMarkAndNoReadTouchesAtime) {
  const std::string name = Inject();
  AgeAtime(Path("incoming", name));
  std::string scratch;
  absl::StatusOr<SpoolRead> head = spool_->ReadHead("incoming", name, 10, &scratch);
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_EQ(head->contents, kMessage.substr(0, 10));
  EXPECT_FALSE(head->mark.has_value());
  head = spool_->ReadHead("incoming", name, 4096, &scratch);
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_EQ(head->contents, kMessage);  // shorter than asked: the whole file
  EXPECT_EQ(Atime(Path("incoming", name)), 946684800);

  ASSERT_TRUE(spool_->DeferUnchanged(name, {3, 1000, 2000}, "incoming").ok());
  head = spool_->ReadHead("deferred", name, 10, &scratch);
  ASSERT_TRUE(head.ok()) << head.status();
  ASSERT_TRUE(head->mark.has_value());
  EXPECT_EQ(head->mark->attempts, 3u);
  EXPECT_EQ(head->mark->next_attempt, 2000);
  EXPECT_EQ(spool_->ReadHead("deferred", "nope.eml", 10, &scratch).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(spool_->ReadHead("deferred", "../x", 10, &scratch).status().code(),
            absl::StatusCode::kInvalidArgument);

  // The claim's full read too.
  AgeAtime(Path("deferred", name));
  absl::StatusOr<SpoolRead> all = spool_->ClaimDeferred(name, &scratch);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->contents, kMessage);
  EXPECT_EQ(Atime(Path("active", name)), 946684800);
}

TEST_F(SpoolTest, DeferWithoutActiveFileReportsIt) {
  absl::Status s = spool_->Defer("ghost.eml", kMessage);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
}

TEST_F(SpoolTest, QuarantineFromActiveAndFromIncoming) {
  const std::string claimed = Inject();
  ASSERT_TRUE(spool_->Claim(claimed).ok());
  ASSERT_TRUE(spool_->Quarantine(claimed, "line 3: x-receiver without '@'").ok());
  EXPECT_EQ(ReadAll(Path("bad", claimed)), kMessage);
  EXPECT_EQ(ReadAll(Path("bad", claimed + ".why")), "line 3: x-receiver without '@'\n");
  EXPECT_EQ(spool_->CountActive(), 0u);

  const std::string unclaimed = Inject("junk");
  ASSERT_TRUE(spool_->Quarantine(unclaimed, "binary junk").ok());
  EXPECT_EQ(ReadAll(Path("bad", unclaimed)), "junk");
  EXPECT_EQ(spool_->CountIncoming(), 0u);
  EXPECT_EQ(spool_->CountBad(), 2u);  // .why files are not counted

  EXPECT_EQ(spool_->Quarantine("ghost.eml", "x").code(), absl::StatusCode::kNotFound);
}

TEST_F(SpoolTest, ListingsSkipDotfilesAndHonourMax) {
  for (int i = 0; i < 5; ++i) Inject();
  std::ofstream(Path("incoming", ".in-progress")) << "x";
  EXPECT_EQ(spool_->ListIncoming(3).size(), 3u);
  EXPECT_EQ(spool_->ListIncoming(0).size(), 0u);
  EXPECT_EQ(spool_->ListIncoming(100).size(), 5u);
  EXPECT_EQ(spool_->CountIncoming(), 5u);
}

// Issue 10 item 7: a symbolic link (to a file outside the spool, to a device), a directory and a
// FIFO in incoming/ are listed, refused by Claim without being followed or opened, and can be
// quarantined into bad/ (the link itself moves; its target is untouched).
TEST_F(SpoolTest, NonRegularFilesAreListedRefusedAndQuarantined) {
  const std::string outside = dir_ + "/outside.eml";
  std::ofstream(outside) << kMessage;
  ASSERT_EQ(symlink(outside.c_str(), Path("incoming", "link-outside.eml").c_str()), 0);
  ASSERT_EQ(symlink("/dev/zero", Path("incoming", "link-device.eml").c_str()), 0);
  ASSERT_EQ(symlink("/nonexistent/x", Path("incoming", "link-dangling.eml").c_str()), 0);
  ASSERT_EQ(mkdir(Path("incoming", "dir.eml").c_str(), 0750), 0);
  ASSERT_EQ(mkfifo(Path("incoming", "fifo.eml").c_str(), 0640), 0);  // opening it would block

  std::vector<std::string> names = spool_->ListIncoming(100);
  std::sort(names.begin(), names.end());
  ASSERT_EQ(names, (std::vector<std::string>{"dir.eml", "fifo.eml", "link-dangling.eml",
                                             "link-device.eml", "link-outside.eml"}));
  for (const std::string& name : names) {
    absl::StatusOr<std::string> got = spool_->Claim(name);
    ASSERT_EQ(got.status().code(), absl::StatusCode::kFailedPrecondition) << name;
    EXPECT_NE(got.status().message().find("not a regular file"), absl::string_view::npos);
    ASSERT_TRUE(spool_->Quarantine(name, std::string(got.status().message())).ok()) << name;
    struct stat st;
    ASSERT_EQ(lstat(Path("bad", name).c_str(), &st), 0) << name;
    EXPECT_FALSE(S_ISREG(st.st_mode)) << name;
    EXPECT_NE(ReadAll(Path("bad", name + ".why")).find("not a regular file"), std::string::npos);
  }
  EXPECT_NE(ReadAll(Path("bad", "link-outside.eml.why")).find("symbolic link"), std::string::npos);
  EXPECT_NE(ReadAll(Path("bad", "fifo.eml.why")).find("FIFO"), std::string::npos);
  EXPECT_EQ(ReadAll(outside), kMessage);  // never followed, never moved
  EXPECT_EQ(spool_->CountIncoming(), 0u);
  EXPECT_EQ(spool_->CountActive(), 0u);
}

// A planted bad/NAME.why symbolic link does not redirect the .why write.
TEST_F(SpoolTest, QuarantineDoesNotFollowAPlantedWhyLink) {
  const std::string victim = dir_ + "/victim";
  std::ofstream(victim) << "keep";
  const std::string name = Inject("junk");
  ASSERT_EQ(symlink(victim.c_str(), Path("bad", name + ".why").c_str()), 0);
  EXPECT_FALSE(spool_->Quarantine(name, "binary junk").ok());
  EXPECT_EQ(ReadAll(victim), "keep");
}

// What cannot be moved into bad/ (a non-empty directory of the same name is there) is removed.
TEST_F(SpoolTest, NonRegularFileThatCannotBeMovedIsRemoved) {
  ASSERT_EQ(mkdir(Path("incoming", "d.eml").c_str(), 0750), 0);
  ASSERT_EQ(mkdir(Path("bad", "d.eml").c_str(), 0750), 0);
  std::ofstream(Path("bad", "d.eml/keep")) << "x";
  absl::Status s = spool_->Quarantine("d.eml", "not a regular file (directory)");
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_FALSE(Exists(Path("incoming", "d.eml")));
  EXPECT_TRUE(Exists(Path("bad", "d.eml/keep")));
}

// Issue 10 item 4: a deferral that changes only the schedule keeps the file (same inode, same
// bytes) and records the schedule on it; a due retry is claimed straight from deferred/.
TEST_F(SpoolTest, DeferUnchangedKeepsTheFileAndMarksTheSchedule) {
  const std::string name = Inject();
  ASSERT_TRUE(spool_->Claim(name).ok());
  struct stat before;
  ASSERT_EQ(stat(Path("active", name).c_str(), &before), 0);
  EXPECT_FALSE(spool_->ReadRetryMark("active", name).has_value());
  absl::Status s = spool_->DeferUnchanged(name, {3, 1700000000, 1700000600});
  if (absl::IsUnimplemented(s)) GTEST_SKIP() << "no user xattrs on " << dir_ << ": " << s;
  ASSERT_TRUE(s.ok()) << s;
  struct stat after;
  ASSERT_EQ(stat(Path("deferred", name).c_str(), &after), 0);
  EXPECT_EQ(before.st_ino, after.st_ino);
  EXPECT_EQ(ReadAll(Path("deferred", name)), kMessage);
  EXPECT_FALSE(Exists(Path("active", name)));
  std::optional<RetryMark> mark = spool_->ReadRetryMark("deferred", name);
  ASSERT_TRUE(mark.has_value());
  EXPECT_EQ(mark->attempts, 3u);
  EXPECT_EQ(mark->first_attempt, 1700000000);
  EXPECT_EQ(mark->next_attempt, 1700000600);

  absl::StatusOr<std::string> got = spool_->ClaimDeferred(name);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, kMessage);
  EXPECT_TRUE(spool_->ReadRetryMark("active", name).has_value());  // travels with the file
  EXPECT_EQ(spool_->ClaimDeferred(name).status().code(), absl::StatusCode::kNotFound);
}

TEST(NewSpoolFileNameTest, UniqueAcrossThreadsAndWellFormed) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 5000;
  std::vector<std::vector<std::string>> names(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&names, t] {
      for (int i = 0; i < kPerThread; ++i) names[t].push_back(NewSpoolFileName());
    });
  }
  for (auto& th : threads) th.join();
  std::set<std::string> all;
  for (const auto& v : names) all.insert(v.begin(), v.end());
  EXPECT_EQ(all.size(), static_cast<size_t>(kThreads * kPerThread));
  const std::string& one = *all.begin();
  EXPECT_EQ(std::count(one.begin(), one.end(), '.'), 4) << one;
  EXPECT_TRUE(one.ends_with(".eml")) << one;
  EXPECT_NE(one.find(absl::StrCat(".", getpid(), ".")), std::string::npos) << one;
}

TEST_F(SpoolTest, NamesUniqueAcrossProcesses) {
  // A forked child has the parent's counter and random seed; the pid still separates them.
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    const std::string name = NewSpoolFileName();
    const ssize_t n = write(fds[1], name.data(), name.size());
    _exit(n == static_cast<ssize_t>(name.size()) ? 0 : 1);
  }
  close(fds[1]);
  const std::string mine = NewSpoolFileName();
  char buf[256];
  const ssize_t n = read(fds[0], buf, sizeof(buf));
  close(fds[0]);
  ASSERT_GT(n, 0);
  EXPECT_NE(std::string(buf, static_cast<size_t>(n)), mine);
}

// Two claimers race for each file: exactly one wins, the other gets NotFound, and the winner
// reads the complete content.
TEST_F(SpoolTest, RacingClaimersExactlyOneWins) {
  constexpr int kFiles = 300;
  std::vector<std::string> names;
  for (int i = 0; i < kFiles; ++i) names.push_back(Inject(absl::StrCat(kMessage, i, "\n")));
  // Each claimer has its own Spool object, as two processes would.
  absl::StatusOr<Spool> a = Spool::Open(root_);
  absl::StatusOr<Spool> b = Spool::Open(root_);
  ASSERT_TRUE(a.ok() && b.ok());
  // Each thread records its own wins; the two vectors are compared after join().
  std::vector<int> wins_a(kFiles, 0), wins_b(kFiles, 0);
  std::atomic<int> not_found{0}, other_errors{0}, bad_content{0};
  std::atomic<int> ready{0};
  auto run = [&](Spool& spool, std::vector<int>& wins) {
    // Start both claimers together so they really contend on every file.
    ready.fetch_add(1);
    while (ready.load() < 2) std::this_thread::yield();
    for (int i = 0; i < kFiles; ++i) {
      absl::StatusOr<std::string> got = spool.Claim(names[i]);
      if (got.ok()) {
        wins[i] = 1;
        if (*got != absl::StrCat(kMessage, i, "\n")) bad_content.fetch_add(1);
      } else if (got.status().code() == absl::StatusCode::kNotFound) {
        not_found.fetch_add(1);
      } else {
        other_errors.fetch_add(1);
      }
    }
  };
  std::thread ta(run, std::ref(*a), std::ref(wins_a));
  std::thread tb(run, std::ref(*b), std::ref(wins_b));
  ta.join();
  tb.join();
  int total_wins = 0;
  for (int i = 0; i < kFiles; ++i) {
    EXPECT_EQ(wins_a[i] + wins_b[i], 1) << names[i];
    total_wins += wins_a[i] + wins_b[i];
  }
  EXPECT_EQ(total_wins, kFiles);
  EXPECT_EQ(not_found.load(), kFiles);
  EXPECT_EQ(other_errors.load(), 0);
  EXPECT_EQ(bad_content.load(), 0);
  EXPECT_EQ(spool_->CountActive(), static_cast<size_t>(kFiles));
  EXPECT_EQ(spool_->CountIncoming(), 0u);
}

}  // namespace
}  // namespace mxb
