// SendBufferPool (engine/send_buffer_pool.h) and the SendQueue of engine/connection.h that gives
// its drained buffers back to it.
#include "engine/send_buffer_pool.h"

#include <string>

#include "engine/connection.h"
#include "gtest/gtest.h"

namespace mxb {
namespace {

std::string WithCapacity(size_t n) {
  std::string s;
  s.reserve(n);
  return s;
}

TEST(SendBufferPoolTest, KeepsDrainedBuffersForTheNextTake) {
  SendBufferPool pool;
  EXPECT_EQ(pool.Take().capacity(), std::string().capacity());  // nothing kept yet
  std::string b = WithCapacity(20 * 1024);
  b.append("bytes already sent");
  const char* data = b.data();
  pool.Give(std::move(b));
  EXPECT_EQ(pool.kept(), 1u);
  std::string again = pool.Take();
  EXPECT_TRUE(again.empty());
  EXPECT_EQ(again.data(), data);
  EXPECT_EQ(pool.kept(), 0u);
}

TEST(SendBufferPoolTest, IsBoundedInCountAndSize) {
  SendBufferPool pool;
  pool.Give(WithCapacity(SendBufferPool::kMaxCapacity + 1));  // one huge message: not kept
  pool.Give(std::string("short"));                            // inline storage: nothing to keep
  EXPECT_EQ(pool.kept(), 0u);
  for (size_t i = 0; i < SendBufferPool::kMaxKept + 5; ++i) pool.Give(WithCapacity(4096));
  EXPECT_EQ(pool.kept(), SendBufferPool::kMaxKept);
}

// The queue sends its bytes in order and, once a buffer is drained, hands it to the pool; the
// next bytes appended go into a kept buffer.
TEST(SendQueueTest, DrainedBuffersGoBackToThePool) {
  SendBufferPool pool;
  SendQueue q;
  q.pool = &pool;
  const std::string body(20000, 'b');
  q.Append(absl::string_view("MAIL FROM:<a@b>\r\n"));
  q.Append(absl::string_view(body));
  absl::string_view next = q.Next();
  EXPECT_EQ(next, "MAIL FROM:<a@b>\r\n" + body);
  q.Sent(100);
  EXPECT_EQ(q.Next(), next.substr(100));
  EXPECT_EQ(pool.kept(), 0u);  // in flight: the kernel still reads it
  q.Sent(next.size() - 100);
  EXPECT_TRUE(q.Next().empty());
  EXPECT_EQ(pool.kept(), 1u);
  q.Append(absl::string_view(body));  // reuses the kept buffer
  EXPECT_EQ(pool.kept(), 0u);
  std::string tls_flight(1500, 'c');  // a flight handed over whole (TlsSession::TakeCiphertext)
  q.Append(std::move(tls_flight));
  EXPECT_EQ(q.Next(), body + std::string(1500, 'c'));
  q.Free();
  EXPECT_EQ(pool.kept(), 2u);  // the queue's buffer and the flight's
  EXPECT_TRUE(q.Next().empty());
}

TEST(SendQueueTest, WithoutAPoolBuffersAreFreed) {
  SendQueue q;
  q.Append(absl::string_view(std::string(5000, 'x')));
  absl::string_view next = q.Next();
  ASSERT_EQ(next.size(), 5000u);
  q.Sent(next.size());
  EXPECT_TRUE(q.Next().empty());
  EXPECT_EQ(q.wire.capacity(), std::string().capacity());
}

}  // namespace
}  // namespace mxb
