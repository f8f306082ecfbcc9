// io_uring user_data encoding of mxburst-sink: op kind | generation | slot, decoded in one place.
//
// For connection ops the slot indexes the worker's connection slab and the generation must match
// the slot's current one (a mismatch is a stale completion: a bug, counted). For listener ops
// (kAccept, kAcceptRetry) the slot is the listener index; kWake uses kNoSlot.
#pragma once

#include <cstdint>

namespace mxb::sink {

enum class SinkOp : uint8_t {
  kAccept = 1,   // (multishot) accept on a listener
  kAcceptRetry,  // timeout before re-arming an accept that failed with EMFILE/ENFILE/ENOMEM
  kRecv,         // (multishot) recv with a provided buffer
  kSend,
  kTimer,        // --reply-delay-ms timeout of one connection
  kCancel,       // ASYNC_CANCEL / TIMEOUT_REMOVE issued while closing
  kClose,
  kWake,         // eventfd read: the main thread asks the worker to stop
};

inline constexpr uint32_t kNoSlot = 0xffffffffu;
inline constexpr uint32_t kGenMask = 0xffffffu;  // 24 bits

struct SinkTag {
  SinkOp op;
  uint32_t gen;  // 24 bits used
  uint32_t slot;

  constexpr uint64_t Encode() const {
    return (static_cast<uint64_t>(op) << 56) | (static_cast<uint64_t>(gen & kGenMask) << 32) |
           slot;
  }
  static constexpr SinkTag Decode(uint64_t v) {
    return SinkTag{static_cast<SinkOp>(v >> 56), static_cast<uint32_t>((v >> 32) & kGenMask),
                   static_cast<uint32_t>(v)};
  }
};

static_assert(SinkTag::Decode(SinkTag{SinkOp::kSend, 0x123456, 77}.Encode()).gen == 0x123456);
static_assert(SinkTag::Decode(SinkTag{SinkOp::kSend, 0x123456, 77}.Encode()).slot == 77);
static_assert(SinkTag::Decode(SinkTag{SinkOp::kWake, 5, kNoSlot}.Encode()).op == SinkOp::kWake);

}  // namespace mxb::sink
