// FilterPending and RecoverSpool: each crash window of claim -> deliver -> journal -> spool op.
#include "queue/recovery.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace mxb {
namespace {

constexpr absl::string_view kBody = "From: a@esp.example\nSubject: hi\n\nhello\n";

std::string MakeFile(const std::vector<std::string>& rcpts, uint32_t attempts = 0) {
  Envelope env;
  env.sender = "bounce@esp.example";
  env.recipients = rcpts;
  env.envid = "ENV1";
  env.attempts = attempts;
  return SerializeEnvelope(env, kBody);
}

TEST(FilterPendingTest, DropsFinalIndexesAndBumpsGeneration) {
  absl::StatusOr<Envelope> env = ParseEnvelope(MakeFile({"a@x.example", "b@y.example", "c@z.example"}, 2));
  ASSERT_TRUE(env.ok()) << env.status();
  FinalSet fs;
  fs.generation = 2;
  fs.recipients[0] = FinalClass::kDelivered;
  fs.recipients[2] = FinalClass::kBounced;
  Envelope rest = FilterPending(*env, fs);
  EXPECT_EQ(rest.recipients, std::vector<std::string>{"b@y.example"});
  EXPECT_EQ(rest.attempts, 3u);
  EXPECT_EQ(rest.envid, "ENV1");
  EXPECT_EQ(rest.sender, "bounce@esp.example");

  fs.generation = 1;  // another generation's indexes never apply
  Envelope same = FilterPending(*env, fs);
  EXPECT_EQ(same.recipients.size(), 3u);
  EXPECT_EQ(same.attempts, 2u);
}

class RecoveryTest : public testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = absl::StrCat(testing::TempDir(), "/mxb-recovery-XXXXXX");
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    absl::StatusOr<Spool> spool = Spool::Open(dir_ + "/spool");
    ASSERT_TRUE(spool.ok()) << spool.status();
    spool_.emplace(*std::move(spool));
    jdir_ = dir_ + "/spool/journal";
  }
  void TearDown() override {
    const std::string cmd = absl::StrCat("rm -rf '", dir_, "'");
    ASSERT_EQ(std::system(cmd.c_str()), 0);
  }
  std::string Path(absl::string_view sub, absl::string_view name) const {
    return absl::StrCat(dir_, "/spool/", sub, "/", name);
  }
  void Put(absl::string_view sub, absl::string_view name, const std::string& data) {
    std::ofstream(Path(sub, name), std::ios::binary) << data;
  }
  static bool Exists(const std::string& p) { return access(p.c_str(), F_OK) == 0; }
  static std::string Slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  std::string dir_;
  std::string jdir_;
  std::optional<Spool> spool_;
};

TEST_F(RecoveryTest, ResolvesEveryCrashWindow) {
  const std::vector<std::string> three = {"a@x.example", "b@y.example", "c@z.example"};
  // all-final: journal committed, crash before Complete's unlink -> not sent again.
  Put("active", "all.eml", MakeFile(three));
  // partial: rcpt 1 final -> rewritten with a and c, generation 1.
  Put("active", "part.eml", MakeFile(three));
  // nothing journaled: delivered again as is.
  Put("active", "none.eml", MakeFile(three));
  // crash inside Defer after the rename: active gen 0 and deferred gen 1 both present.
  Put("active", "dup.eml", MakeFile(three));
  Put("deferred", "dup.eml", MakeFile({"c@z.example"}, 1));
  // journal records of an older generation: the file (gen 2) is kept as is.
  Put("active", "old.eml", MakeFile(three, 2));
  // unparsable: handed back for the engine to quarantine.
  Put("active", "bad.eml", "garbage\n");
  {
    auto j = Journal::Open(jdir_);
    ASSERT_TRUE(j.ok()) << j.status();
    for (uint32_t i = 0; i < 3; ++i) {
      (*j)->AppendFinal({"all.eml", 0, i, i == 2 ? FinalClass::kBounced : FinalClass::kDelivered});
    }
    (*j)->AppendFinal({"part.eml", 0, 1, FinalClass::kDelivered});
    (*j)->AppendFinal({"dup.eml", 0, 0, FinalClass::kDelivered});
    (*j)->AppendFinal({"dup.eml", 0, 1, FinalClass::kDelivered});
    (*j)->AppendFinal({"old.eml", 1, 0, FinalClass::kDelivered});
    ASSERT_TRUE((*j)->Commit().ok());
  }
  absl::StatusOr<RecoveredJournal> recovered = Journal::Recover(jdir_);
  ASSERT_TRUE(recovered.ok()) << recovered.status();
  int hook = 0;
  auto j = Journal::Open(jdir_, {.segment_bytes = 1 << 20, .before_delete = [&] {
                                   ++hook;
                                   return spool_->SyncDirs();
                                 }});
  ASSERT_TRUE(j.ok()) << j.status();
  absl::StatusOr<RecoveryReport> report = RecoverSpool(*spool_, *recovered, **j);
  ASSERT_TRUE(report.ok()) << report.status();

  EXPECT_EQ(report->completed, 1u);
  EXPECT_EQ(report->rewritten, 1u);
  EXPECT_EQ(report->duplicates, 1u);
  EXPECT_EQ(report->unparsable, 1u);
  std::vector<std::string> redeliver = report->redeliver;
  std::sort(redeliver.begin(), redeliver.end());
  EXPECT_EQ(redeliver, (std::vector<std::string>{"bad.eml", "none.eml", "old.eml", "part.eml"}));
  EXPECT_EQ(report->messages_with_failures, std::vector<std::string>{"all.eml"});

  EXPECT_FALSE(Exists(Path("active", "all.eml")));
  EXPECT_FALSE(Exists(Path("active", "dup.eml")));
  EXPECT_TRUE(Exists(Path("deferred", "dup.eml")));
  absl::StatusOr<Envelope> part = ParseEnvelope(Slurp(Path("active", "part.eml")));
  ASSERT_TRUE(part.ok()) << part.status();
  EXPECT_EQ(part->recipients, (std::vector<std::string>{"a@x.example", "c@z.example"}));
  EXPECT_EQ(part->attempts, 1u);
  EXPECT_EQ(Slurp(Path("active", "part.eml")).substr(part->body_offset), kBody);
  absl::StatusOr<Envelope> old = ParseEnvelope(Slurp(Path("active", "old.eml")));
  ASSERT_TRUE(old.ok());
  EXPECT_EQ(old->recipients.size(), 3u);

  // The old segment is gone; the new journal is empty.
  EXPECT_EQ(hook, 1);
  absl::StatusOr<RecoveredJournal> after = Journal::Recover(jdir_);
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(after->messages.empty());
  EXPECT_EQ(after->segments, 1u);

  // Recovery is idempotent: running it again changes nothing.
  absl::StatusOr<RecoveryReport> again = RecoverSpool(*spool_, *after, **j);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->completed + again->rewritten + again->duplicates, 0u);
  EXPECT_EQ(again->redeliver.size(), 4u);
}

}  // namespace
}  // namespace mxb
