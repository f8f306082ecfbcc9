// One mxburst-sink worker: a thread with its own io_uring, its own SO_REUSEPORT listening
// sockets, and every connection those sockets accept.
//
// The worker owns the ring, a provided-buffer ring for receives (buffers go back as soon as a
// completion is parsed or decrypted, so an idle connection pins no receive memory), and a slab of
// connections that grows in chunks (pointers stay stable). All I/O — accept, recv, send,
// timeouts, cancel, close — goes through the ring (engine/ring.h, the class the engine's workers
// use too); user_data is a SinkTag (engine/uring_tag.h with the sink's ops). Accepted sockets are
// io_uring direct descriptors (multishot accept into the ring's sparse file table, sized by
// RLIMIT_NOFILE), so each worker holds up to that many sessions without using process fds;
// regular descriptors when the kernel has no table, or with --out-dir (getpeername needs an fd).
// Only Stop() may be called from another thread; stats() is read by main after the join.
//
//   SinkWorker w(0, &listeners, {fd1, fd2}, &store, opts.reply_delay_ms, opts.quiet, &gauge);
//   std::thread t([&] { absl::Status st = w.Init(); ...; w.Run(); });
//   ... w.Stop(); t.join(); total.Add(w.stats());
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <liburing.h>

#include "absl/status/status.h"
#include "engine/ring.h"
#include "engine/uring_tag.h"
#include "tls/tls_session.h"
#include "tools/sink/message_store.h"
#include "tools/sink/sink_options.h"
#include "tools/sink/sink_stats.h"
#include "tools/sink/smtp_server_session.h"

namespace mxb::sink {

// The sink's io_uring ops. For connection ops the slot indexes the worker's connection slab and
// the generation must match the slot's current one (a mismatch is a stale completion: a bug,
// counted). For listener ops (kAccept, kAcceptRetry) the slot is the listener index; kWake uses
// kNoSlot.
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
using SinkTag = BasicUringTag<SinkOp>;
static_assert(SinkTag::Decode(SinkTag{SinkOp::kWake, 5, kNoSlot}.Encode()).op == SinkOp::kWake);

// A listener as all workers see it: its spec (with the port actually bound), the session
// behaviour and the TLS context (shared read-only by all threads). Owned by main.
struct ListenerRuntime {
  ListenerSpec spec;
  SessionConfig session_config;
  TlsContext* tls = nullptr;
};

struct Connection;

class SinkWorker {
 public:
  // `listen_fds[i]` is this worker's socket for `(*listeners)[i]`, already listening.
  SinkWorker(int index, const std::vector<ListenerRuntime>* listeners, std::vector<int> listen_fds,
             MessageStore* store, uint32_t reply_delay_ms, bool quiet, SessionGauge* tls_gauge);
  ~SinkWorker();
  SinkWorker(const SinkWorker&) = delete;
  SinkWorker& operator=(const SinkWorker&) = delete;

  // Creates the ring (must run on the worker thread: SINGLE_ISSUER), the buffer ring and the
  // wake-up eventfd, and arms the accepts.
  [[nodiscard]] absl::Status Init();
  // Serves until Stop(). Returns without closing connections (the process exits next).
  void Run();
  // Any thread.
  void Stop();
  const SinkStats& stats() const { return stats_; }

 private:
  struct ListenerState {
    int fd = -1;
    bool retry_armed = false;
    __kernel_timespec retry_ts{};
  };

  io_uring_sqe* GetSqe() { return ring_.Sqe(); }
  static void Submit(io_uring_sqe* sqe, SinkOp op, uint32_t slot, uint32_t gen) {
    Ring::SetTag(sqe, SinkTag{op, gen, slot});
  }
  void Dispatch(const io_uring_cqe* cqe);

  void ArmAccept(uint32_t index);
  void OnAccept(uint32_t index, const io_uring_cqe* cqe);
  void OnAcceptRetry(uint32_t index);
  void ArmWake();

  Connection* AllocConnection();
  void FreeConnection(Connection* c);
  Connection* At(uint32_t slot);
  void NewConnection(int fd, bool fixed, uint32_t listener_index);

  void ArmRecv(Connection* c);
  void OnRecv(Connection* c, const io_uring_cqe* cqe);
  void OnBytes(Connection* c, const char* data, size_t n);
  void OnPlaintext(Connection* c, const char* data, size_t n);
  void OnSend(Connection* c, int res);
  void OnTimer(Connection* c);
  void MarkDirty(Connection* c);
  void Flush(Connection* c);
  void AppendWire(Connection* c, std::string bytes);
  void StartSend(Connection* c);
  void ArmDelayTimer(Connection* c);
  bool FullyFlushed(const Connection* c) const;
  void TlsFailure(Connection* c, const char* where);
  void BeginClose(Connection* c);
  void MaybeFinishClose(Connection* c);

  const int index_;
  const std::vector<ListenerRuntime>* const listeners_;
  std::vector<ListenerState> listener_state_;
  MessageStore* const store_;
  const uint32_t reply_delay_ms_;
  const bool quiet_;
  SessionGauge* const tls_gauge_;

  Ring ring_;  // also owns the provided-buffer ring and the direct descriptor table
  bool multishot_accept_ = true;
  int wake_fd_ = -1;
  uint64_t wake_buf_ = 0;
  bool stop_ = false;


  std::vector<std::unique_ptr<Connection[]>> chunks_;
  std::vector<uint32_t> free_slots_;
  std::vector<std::pair<uint32_t, uint32_t>> dirty_;  // {slot, gen} to Flush() after a batch

  SinkStats stats_;
};

}  // namespace mxb::sink
