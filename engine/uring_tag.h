// io_uring user_data encoding: op kind | generation | slot, encoded and decoded in one place,
// for the engine's workers and for mxburst-sink's (each with its own op enum).
//
// An object that owns SQEs lives in a slab slot; the generation changes every time the slot is
// reused, so a completion for an old occupant is recognised (and counted as a bug) instead of
// being applied to the new one. Ring-level ops (wake-up eventfd read, timer tick) use kNoSlot.
//
// Thread: any (pure values). Usage:
//   io_uring_sqe_set_data64(sqe, UringTag{UringOp::kSend, c.gen(), slot}.Encode());
//   UringTag t = UringTag::Decode(io_uring_cqe_get_data64(cqe));   // t.op, t.gen, t.slot
//   using SinkTag = BasicUringTag<SinkOp>;                           // tools/sink/sink_worker.h
#pragma once

#include <cstdint>

namespace mxb {

inline constexpr uint32_t kNoSlot = 0xffffffffu;
inline constexpr uint32_t kGenMask = 0xffffffu;  // 24 bits

// `Op` is an 8-bit enum: the top byte of user_data.
template <typename Op>
struct BasicUringTag {
  Op op;
  uint32_t gen;   // 24 bits used
  uint32_t slot;

  constexpr uint64_t Encode() const {
    return (static_cast<uint64_t>(op) << 56) | (static_cast<uint64_t>(gen & kGenMask) << 32) |
           slot;
  }
  static constexpr BasicUringTag Decode(uint64_t v) {
    return BasicUringTag{static_cast<Op>(v >> 56), static_cast<uint32_t>((v >> 32) & kGenMask),
                         static_cast<uint32_t>(v)};
  }
};

// The engine worker's ops.
enum class UringOp : uint8_t {
  kConnect = 1,
  kLinkTimeout,
  kRecv,
  kSend,
  kCancel,
  kClose,
  kWake,
  kTick,
  kDnsPoll,  // slot = DNS socket fd, gen = that fd's watch generation
};

using UringTag = BasicUringTag<UringOp>;

static_assert(UringTag::Decode(UringTag{UringOp::kSend, 0x123456, 77}.Encode()).gen == 0x123456);
static_assert(UringTag::Decode(UringTag{UringOp::kSend, 0x123456, 77}.Encode()).slot == 77);
static_assert(UringTag::Decode(UringTag{UringOp::kTick, 5, kNoSlot}.Encode()).op == UringOp::kTick);

}  // namespace mxb
