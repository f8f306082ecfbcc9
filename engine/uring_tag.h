// io_uring user_data encoding: op kind | generation | slot, decoded in one place.
//
// A connection lives in a per-worker slab slot; the generation changes every time the slot is
// reused, so a completion for an old occupant is recognised (and counted as a bug) instead of
// being applied to the new one. Worker-local ops (wake-up eventfd read, timer tick) use
// kNoSlot.
#pragma once

#include <cstdint>

namespace mxb {

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

inline constexpr uint32_t kNoSlot = 0xffffffffu;
inline constexpr uint32_t kGenMask = 0xffffffu;  // 24 bits

struct UringTag {
  UringOp op;
  uint32_t gen;   // 24 bits used
  uint32_t slot;

  constexpr uint64_t Encode() const {
    return (static_cast<uint64_t>(op) << 56) | (static_cast<uint64_t>(gen & kGenMask) << 32) |
           slot;
  }
  static constexpr UringTag Decode(uint64_t v) {
    return UringTag{static_cast<UringOp>(v >> 56), static_cast<uint32_t>((v >> 32) & kGenMask),
                    static_cast<uint32_t>(v)};
  }
};

static_assert(UringTag::Decode(UringTag{UringOp::kSend, 0x123456, 77}.Encode()).gen == 0x123456);
static_assert(UringTag::Decode(UringTag{UringOp::kSend, 0x123456, 77}.Encode()).slot == 77);
static_assert(UringTag::Decode(UringTag{UringOp::kTick, 5, kNoSlot}.Encode()).op == UringOp::kTick);

}  // namespace mxb
