// engine/uring_setup.h against a real io_uring. ProvidedBufferRing with a socketpair: buffers are
// picked by the kernel only when data arrives, come back with their id, and are reused only after
// Return()+Publish(). DirectTableSize(): the kernel's cap on one registered file table.
#include "engine/uring_setup.h"

#include <liburing.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace mxb {
namespace {

class BufRingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(io_uring_queue_init(8, &ring_, 0), 0);
    ring_ok_ = true;
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds_), 0);
  }
  void TearDown() override {
    bufs_.reset();  // after the ring would be the rule; here no recv is pending any more
    if (ring_ok_) io_uring_queue_exit(&ring_);
    close(fds_[0]);
    close(fds_[1]);
  }

  // Creates the buffer ring, or skips the test on a kernel without buffer rings (< 5.19).
  void MakeBuffers(uint32_t count, uint32_t size) {
    auto b = ProvidedBufferRing::Create(&ring_, 7, count, size);
    if (!b.ok() && b.status().code() == absl::StatusCode::kUnavailable) {
      GTEST_SKIP() << "kernel without provided buffer rings: " << b.status();
    }
    ASSERT_TRUE(b.ok()) << b.status();
    bufs_ = *std::move(b);
  }

  // One recv with buffer selection; returns the CQE's result and buffer id (-1 if none).
  std::pair<int, int> RecvOnce() {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    io_uring_prep_recv(sqe, fds_[0], nullptr, bufs_->buffer_size(), 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = bufs_->group();
    EXPECT_EQ(io_uring_submit(&ring_), 1);
    io_uring_cqe* cqe = nullptr;
    EXPECT_EQ(io_uring_wait_cqe(&ring_, &cqe), 0);
    std::pair<int, int> out{cqe->res, -1};
    if (auto bid = ProvidedBufferRing::BufferId(cqe)) out.second = *bid;
    io_uring_cqe_seen(&ring_, cqe);
    return out;
  }

  io_uring ring_{};
  bool ring_ok_ = false;
  int fds_[2] = {-1, -1};
  std::unique_ptr<ProvidedBufferRing> bufs_;
};

TEST_F(BufRingTest, BuffersAreReusedOnlyAfterReturnAndPublish) {
  MakeBuffers(4, 64);
  if (bufs_ == nullptr) return;
  // Ten receives through four buffers: works only because each is handed back.
  for (int i = 0; i < 10; ++i) {
    std::string msg = absl::StrCat("message ", i);
    ASSERT_EQ(write(fds_[1], msg.data(), msg.size()), static_cast<ssize_t>(msg.size()));
    auto [res, bid] = RecvOnce();
    ASSERT_EQ(res, static_cast<int>(msg.size()));
    ASSERT_GE(bid, 0);
    ASSERT_LT(bid, 4);
    EXPECT_EQ(std::string(bufs_->Buffer(static_cast<uint16_t>(bid)), res), msg);
    bufs_->Return(static_cast<uint16_t>(bid));
    EXPECT_EQ(bufs_->unpublished(), 1u);
    bufs_->Publish();
    EXPECT_EQ(bufs_->unpublished(), 0u);
  }
}

TEST_F(BufRingTest, RunsOutWithoutReturnsAndRecoversAfterPublish) {
  MakeBuffers(2, 64);
  if (bufs_ == nullptr) return;
  int held[2];
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(write(fds_[1], "x", 1), 1);
    auto [res, bid] = RecvOnce();
    ASSERT_EQ(res, 1);
    held[i] = bid;
  }
  EXPECT_NE(held[0], held[1]);
  ASSERT_EQ(write(fds_[1], "y", 1), 1);
  EXPECT_EQ(RecvOnce().first, -ENOBUFS);  // both buffers still ours
  bufs_->Return(static_cast<uint16_t>(held[0]));
  EXPECT_EQ(RecvOnce().first, -ENOBUFS);  // returned but not yet published
  bufs_->Publish();
  auto [res, bid] = RecvOnce();
  EXPECT_EQ(res, 1);
  EXPECT_EQ(bid, held[0]);
}

TEST(BufRingCreateTest, RejectsCountThatIsNotAPowerOfTwo) {
  io_uring ring{};
  ASSERT_EQ(io_uring_queue_init(4, &ring, 0), 0);
  auto b = ProvidedBufferRing::Create(&ring, 1, 1000, 4096);
  EXPECT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("power of two"), std::string::npos) << b.status();
  io_uring_queue_exit(&ring);
}

// The fact the engine's session capacity rests on: one ring's table may be as large as
// RLIMIT_NOFILE and no larger, and DirectTableSize() asks for exactly that. In a child process:
// the hard limit is lowered too (liburing raises the soft one by itself on EMFILE), for good.
TEST(DirectTableSizeTest, IsTheLargestTableTheKernelAccepts) {
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    rlimit low{512, 512};
    if (setrlimit(RLIMIT_NOFILE, &low) != 0) _exit(10);
    if (DirectTableSize() != 512) _exit(11);
    io_uring ring{};
    if (io_uring_queue_init(4, &ring, 0) != 0) _exit(12);
    int too_big = io_uring_register_files_sparse(&ring, DirectTableSize() + 1);
    int fits = io_uring_register_files_sparse(&ring, DirectTableSize());
    if (fits == -EINVAL) _exit(77);  // kernel without sparse file tables
    _exit(too_big == -EMFILE ? (fits == 0 ? 0 : 14) : 13);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 77) GTEST_SKIP() << "kernel without sparse file tables";
  // 11: DirectTableSize() is not the limit; 13: a larger table was accepted; 14: the limit not.
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace mxb
