// engine/ring.h and engine/uring_tag.h against a real io_uring: tags survive the kernel round
// trip for the engine's and the sink's op enums, Sqe() submits on its own when the submission
// queue is full, a socket installed as a direct descriptor works and PrepClose frees its slot,
// and a buffered receive takes its bytes from the provided-buffer ring.
#include "engine/ring.h"

#include <fcntl.h>
#include <liburing.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "engine/uring_tag.h"
#include "gtest/gtest.h"

namespace mxb {
namespace {

enum class OtherOp : uint8_t { kFirst = 1, kLast = 255 };

TEST(UringTag, RoundTripsEveryField) {
  for (UringOp op : {UringOp::kConnect, UringOp::kRecv, UringOp::kClose, UringOp::kDnsPoll}) {
    for (uint32_t gen : {0u, 1u, 0x123456u, kGenMask}) {
      for (uint32_t slot : {0u, 77u, 65535u, kNoSlot}) {
        UringTag t = UringTag::Decode(UringTag{op, gen, slot}.Encode());
        EXPECT_EQ(t.op, op);
        EXPECT_EQ(t.gen, gen);
        EXPECT_EQ(t.slot, slot);
      }
    }
  }
  // The generation is 24 bits: a wrapped counter compares equal to its masked value.
  EXPECT_EQ(UringTag::Decode(UringTag{UringOp::kSend, 0x1000005u, 3}.Encode()).gen, 5u);
  // Another component's op enum (the sink's) uses the same encoding, all 8 bits of it.
  using OtherTag = BasicUringTag<OtherOp>;
  OtherTag o = OtherTag::Decode(OtherTag{OtherOp::kLast, 9, 4}.Encode());
  EXPECT_EQ(o.op, OtherOp::kLast);
  EXPECT_EQ(o.gen, 9u);
  EXPECT_EQ(o.slot, 4u);
}

class RingTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(ring_.Init(4, 64).ok()); }

  std::vector<io_uring_cqe> WaitFor(unsigned n) {
    std::vector<io_uring_cqe> out;
    while (out.size() < n) {
      EXPECT_GE(ring_.SubmitAndWait(1), 0);
      ring_.ForEachCompletion([&](io_uring_cqe* cqe) { out.push_back(*cqe); });
    }
    return out;
  }

  Ring ring_;
};

TEST_F(RingTest, SqeSubmitsWhenTheQueueIsFullAndTagsComeBack) {
  // Ten NOPs through a four-entry submission queue: Sqe() hands the full queue to the kernel.
  for (uint32_t i = 0; i < 10; ++i) {
    io_uring_sqe* sqe = ring_.Sqe();
    ASSERT_NE(sqe, nullptr);
    io_uring_prep_nop(sqe);
    Ring::SetTag(sqe, UringTag{UringOp::kTick, i, 100 + i});
  }
  std::vector<io_uring_cqe> cqes = WaitFor(10);
  ASSERT_EQ(cqes.size(), 10u);
  std::vector<bool> seen(10, false);
  for (const io_uring_cqe& c : cqes) {
    UringTag t = UringTag::Decode(c.user_data);
    EXPECT_EQ(t.op, UringOp::kTick);
    ASSERT_LT(t.gen, 10u);
    EXPECT_EQ(t.slot, 100 + t.gen);
    seen[t.gen] = true;
  }
  for (bool s : seen) EXPECT_TRUE(s);
}

TEST_F(RingTest, DirectDescriptorSendsAndCloseFreesTheSlot) {
  if (!ring_.RegisterDirectTable(8).ok()) GTEST_SKIP() << "no registered file tables";
  EXPECT_EQ(ring_.direct_slots(), 8u);
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  EXPECT_FALSE(ring_.InstallDirect(8, sv[0]));  // past the table: the regular fd is kept
  ASSERT_TRUE(ring_.InstallDirect(3, sv[0]));   // and the regular fd is closed
  EXPECT_EQ(fcntl(sv[0], F_GETFD), -1);

  io_uring_sqe* sqe = ring_.Sqe();
  io_uring_prep_send(sqe, 3, "hello", 5, MSG_NOSIGNAL);
  Ring::UseFd(sqe, /*fixed=*/true);
  Ring::SetTag(sqe, UringTag{UringOp::kSend, 1, 3});
  std::vector<io_uring_cqe> cqes = WaitFor(1);
  ASSERT_EQ(cqes[0].res, 5);
  char buf[8] = {};
  ASSERT_EQ(read(sv[1], buf, sizeof(buf)), 5);
  EXPECT_EQ(std::string(buf, 5), "hello");

  sqe = ring_.Sqe();
  Ring::PrepClose(sqe, 3, /*fixed=*/true);
  Ring::SetTag(sqe, UringTag{UringOp::kClose, 1, 3});
  cqes = WaitFor(1);
  EXPECT_EQ(cqes[0].res, 0);
  EXPECT_EQ(read(sv[1], buf, sizeof(buf)), 0);  // the peer sees the close
  // The slot is free again.
  int sv2[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv2), 0);
  EXPECT_TRUE(ring_.InstallDirect(3, sv2[0]));
  close(sv[1]);
  close(sv2[1]);
}

TEST_F(RingTest, BufferedRecvTakesAProvidedBuffer) {
  absl::Status s = ring_.SetUpBuffers(/*group=*/1, 4, 256);
  if (s.code() == absl::StatusCode::kUnavailable) GTEST_SKIP() << s;
  ASSERT_TRUE(s.ok()) << s;
  ring_.DisableMultishotRecv();  // one CQE per receive, on every kernel
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  io_uring_sqe* sqe = ring_.Sqe();
  ring_.PrepBufferedRecv(sqe, sv[0], /*fixed=*/false);
  Ring::SetTag(sqe, UringTag{UringOp::kRecv, 2, 0});
  ASSERT_GE(ring_.Submit(), 1);
  ASSERT_EQ(write(sv[1], "250 ok\r\n", 8), 8);
  std::vector<io_uring_cqe> cqes = WaitFor(1);
  ASSERT_EQ(cqes[0].res, 8);
  std::optional<uint16_t> bid = ProvidedBufferRing::BufferId(&cqes[0]);
  ASSERT_TRUE(bid.has_value());
  EXPECT_EQ(std::string(ring_.buffers()->Buffer(*bid), 8), "250 ok\r\n");
  ring_.ReturnBuffer(&cqes[0]);
  EXPECT_EQ(ring_.buffers()->unpublished(), 1u);
  ring_.ForEachCompletion([](io_uring_cqe*) {});  // publishes the returned buffer
  EXPECT_EQ(ring_.buffers()->unpublished(), 0u);
  close(sv[0]);
  close(sv[1]);
}

}  // namespace
}  // namespace mxb
