// engine/envelope_looker.h on a real spool directory: looks come back in the order they were
// wanted, with the envelope and retry mark the inline look finds; a long envelope takes its
// second read; what is not a regular file (or is gone) comes back as an error without blocking
// the thread or following a link.
#include "engine/envelope_looker.h"

#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/dead_destinations.h"
#include "gtest/gtest.h"
#include "queue/spool.h"

namespace mxb {
namespace {

class EnvelopeLookerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/looker_testXXXXXX";
    char* dir = mkdtemp(tmpl.data());
    ASSERT_NE(dir, nullptr);
    dir_ = dir;
    root_ = dir_ + "/spool";
    absl::StatusOr<Spool> spool = Spool::Open(root_);
    ASSERT_TRUE(spool.ok()) << spool.status();
    spool_.emplace(*std::move(spool));
  }
  void TearDown() override { (void)!std::system(("rm -rf '" + dir_ + "'").c_str()); }

  void Put(const std::string& name, const std::string& contents) {
    ASSERT_TRUE(InjectFile(root_, name, contents, /*fsync_file=*/false).ok()) << name;
  }

  // Every look wanted so far, waiting on the eventfd as the scanner thread does.
  std::vector<LookedFile> TakeAll(EnvelopeLooker* looker) {
    std::vector<LookedFile> out;
    for (int spins = 0; looker->outstanding() > 0 && spins < 1000; ++spins) {
      pollfd p{looker->event_fd(), POLLIN, 0};
      poll(&p, 1, 10);
      if (!looker->has_ready()) continue;
      for (LookedFile& f : looker->TakeReady()) out.push_back(std::move(f));
    }
    EXPECT_EQ(looker->outstanding(), 0u);
    return out;
  }

  std::string dir_;
  std::string root_;
  std::optional<Spool> spool_;
};

std::string Pickup(int i, int recipients = 1) {
  std::string out = "x-sender: <bounce@esp.example>\n";
  for (int r = 0; r < recipients; ++r) {
    absl::StrAppend(&out, "x-receiver: <user", r, "-with-a-long-local-part@d", i % 7,
                    ".example>\n");
  }
  absl::StrAppend(&out, "Subject: m", i, "\n\n", std::string(20000, 'b'), "\n");
  return out;
}

TEST_F(EnvelopeLookerTest, LooksComeBackInTheOrderWantedWithTheirEnvelopes) {
  std::vector<std::string> names;
  for (int i = 0; i < 300; ++i) {
    names.push_back(absl::StrCat("m", i));
    Put(names.back(), Pickup(i));
  }
  EnvelopeLooker looker(&*spool_);
  // Three hand-offs, as the scanner tops the looker up.
  looker.Want({names.begin(), names.begin() + 100}, true);
  looker.Want({names.begin() + 100, names.begin() + 101}, true);
  looker.Want({names.begin() + 101, names.end()}, true);
  EXPECT_EQ(looker.outstanding(), 300u);
  std::vector<LookedFile> got = TakeAll(&looker);
  ASSERT_EQ(got.size(), 300u);
  std::string scratch;
  for (int i = 0; i < 300; ++i) {
    const LookedFile& f = got[i];
    EXPECT_EQ(f.name, names[i]);
    EXPECT_TRUE(f.from_incoming);
    ASSERT_TRUE(f.look.envelope.ok()) << f.name << ": " << f.look.envelope.status();
    EXPECT_EQ(f.look.reads, 1u);  // a 20 KB file: only its first 4 KiB
    ASSERT_EQ(f.look.envelope->recipients.size(), 1u);
    EXPECT_EQ(DomainOf(f.look.envelope->recipients[0]), absl::StrCat("d", i % 7, ".example"));
    EXPECT_FALSE(f.look.mark.has_value());
    // What the inline look (Engine::Postpone) finds.
    EnvelopeLook inline_look = LookAtEnvelope(*spool_, "incoming", f.name, &scratch);
    ASSERT_TRUE(inline_look.envelope.ok());
    EXPECT_EQ(inline_look.envelope->recipients, f.look.envelope->recipients);
    EXPECT_EQ(inline_look.envelope->body_offset, f.look.envelope->body_offset);
  }
  EXPECT_EQ(looker.reads(), 300u);
  EXPECT_GT(looker.cpu_ns(), 0u);
  EXPECT_FALSE(looker.has_ready());
}

TEST_F(EnvelopeLookerTest, ARetryInDeferredComesBackWithItsMark) {
  Put("r1", Pickup(1));
  ASSERT_TRUE(spool_->DeferUnchanged("r1", RetryMark{3, 1700000000, 1700000600}, "incoming").ok());
  EnvelopeLooker looker(&*spool_);
  looker.Want({"r1"}, /*from_incoming=*/false);
  std::vector<LookedFile> got = TakeAll(&looker);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_FALSE(got[0].from_incoming);
  ASSERT_TRUE(got[0].look.envelope.ok()) << got[0].look.envelope.status();
  ASSERT_TRUE(got[0].look.mark.has_value());
  EXPECT_EQ(got[0].look.mark->attempts, 3u);
  EXPECT_EQ(got[0].look.mark->first_attempt, 1700000000);
  EXPECT_EQ(got[0].look.mark->next_attempt, 1700000600);
}

TEST_F(EnvelopeLookerTest, AnEnvelopePastTheFirstReadTakesASecondOne) {
  // ~200 recipients: an envelope of ~10 KiB, past kEnvelopeFirstBytes.
  const std::string contents = Pickup(3, 200);
  ASSERT_GT(contents.find("Subject:"), kEnvelopeFirstBytes);
  Put("long", contents);
  // Past kEnvelopeHeadBytes: not postponed (the normal path takes it), an error here.
  Put("huge", Pickup(4, 1500));
  EnvelopeLooker looker(&*spool_);
  looker.Want({"long", "huge"}, true);
  std::vector<LookedFile> got = TakeAll(&looker);
  ASSERT_EQ(got.size(), 2u);
  ASSERT_TRUE(got[0].look.envelope.ok()) << got[0].look.envelope.status();
  EXPECT_EQ(got[0].look.reads, 2u);
  EXPECT_EQ(got[0].look.envelope->recipients.size(), 200u);
  EXPECT_FALSE(got[1].look.envelope.ok());
  EXPECT_EQ(got[1].look.reads, 2u);
  EXPECT_EQ(looker.reads(), 4u);
}

TEST_F(EnvelopeLookerTest, WhatIsNotARegularFileComesBackAsAnErrorAndIsNeverOpened) {
  Put("ok", Pickup(1));
  const std::string in = root_ + "/incoming/";
  ASSERT_EQ(symlink((in + "ok").c_str(), (in + "link").c_str()), 0);
  ASSERT_EQ(mkdir((in + "dir").c_str(), 0700), 0);
  ASSERT_EQ(mkfifo((in + "fifo").c_str(), 0600), 0);  // an open for reading would block
  EnvelopeLooker looker(&*spool_);
  looker.Want({"link", "dir", "fifo", "missing", "ok"}, true);
  std::vector<LookedFile> got = TakeAll(&looker);
  ASSERT_EQ(got.size(), 5u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(absl::IsFailedPrecondition(got[i].look.envelope.status()))
        << got[i].name << ": " << got[i].look.envelope.status();
    EXPECT_EQ(got[i].look.reads, 0u);
  }
  EXPECT_TRUE(absl::IsNotFound(got[3].look.envelope.status())) << got[3].look.envelope.status();
  EXPECT_TRUE(got[4].look.envelope.ok());
}

// The hint sorts the scanner's work (live destinations' mail first); it holds only when every
// recipient's domain is dead, and follows the latest set.
TEST_F(EnvelopeLookerTest, TheDeadHintMarksFilesWhoseEveryRecipientIsDead) {
  const std::string from = "x-sender: <b@esp.example>\n";
  Put("dead", from + "x-receiver: <a@d0.example>\nx-receiver: <b@D0.example>\n\nbody\n");
  Put("mixed", from + "x-receiver: <a@d0.example>\nx-receiver: <b@d1.example>\n\nbody\n");
  Put("live", from + "x-receiver: <a@d1.example>\n\nbody\n");
  EnvelopeLooker looker(&*spool_);
  looker.Want({"dead", "mixed", "live"}, true);
  std::vector<LookedFile> got = TakeAll(&looker);  // no dead domains yet: no hint
  ASSERT_EQ(got.size(), 3u);
  for (const LookedFile& f : got) EXPECT_FALSE(f.dead_hint) << f.name;
  looker.SetDeadDomains({"d0.example"});
  looker.Want({"dead", "mixed", "live"}, true);
  got = TakeAll(&looker);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_TRUE(got[0].dead_hint);
  EXPECT_FALSE(got[1].dead_hint);
  EXPECT_FALSE(got[2].dead_hint);
  looker.SetDeadDomains({"d0.example", "d1.example"});
  looker.Want({"mixed", "live"}, true);
  got = TakeAll(&looker);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_TRUE(got[0].dead_hint);
  EXPECT_TRUE(got[1].dead_hint);
  looker.SetDeadDomains({});
  looker.Want({"dead"}, true);
  got = TakeAll(&looker);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_FALSE(got[0].dead_hint);
}

TEST_F(EnvelopeLookerTest, StoppingWithLooksOutstandingDropsThem) {
  for (int i = 0; i < 2000; ++i) Put(absl::StrCat("m", i), Pickup(i));
  std::vector<std::string> names;
  for (int i = 0; i < 2000; ++i) names.push_back(absl::StrCat("m", i));
  {
    EnvelopeLooker looker(&*spool_);
    looker.Want(names, true);
  }  // joins without taking anything: no hang, nothing touched
  for (const std::string& n : names) {
    struct stat st;
    ASSERT_EQ(stat((root_ + "/incoming/" + n).c_str(), &st), 0) << n;
  }
}

}  // namespace
}  // namespace mxb
