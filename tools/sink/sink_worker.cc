// io_uring event loop of one mxburst-sink worker (see sink_worker.h).
#include "tools/sink/sink_worker.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <algorithm>
#include <new>
#include <optional>

#include "absl/base/attributes.h"
#include "absl/strings/str_cat.h"

namespace mxb::sink {
namespace {

// Provided receive buffers per worker. 16 KB holds a full TLS record; the memory is only touched
// (and becomes resident) as the kernel fills buffers, and it is shared by all connections.
constexpr uint32_t kRecvBufCount = 1024;  // power of two (buffer ring requirement)
constexpr uint32_t kRecvBufSize = 16 * 1024;
constexpr uint16_t kBufGroup = 1;
constexpr uint32_t kChunkShift = 10;  // 1024 connections per slab chunk
constexpr uint32_t kChunkSize = 1u << kChunkShift;
constexpr unsigned kRingEntries = 4096;
constexpr unsigned kCqEntries = 65536;
// A client that pipelines without reading its replies cannot make us buffer without bound.
constexpr size_t kMaxPendingOut = 8 * 1024 * 1024;
// Send buffers larger than this are released once drained, so idle connections stay small.
constexpr size_t kKeepSendCapacity = 16 * 1024;

std::string FormatSockaddr(const sockaddr_storage& ss) {
  char ip[INET6_ADDRSTRLEN] = "?";
  uint16_t port = 0;
  if (ss.ss_family == AF_INET) {
    const auto* sin = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
    port = ntohs(sin->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
    port = ntohs(sin6->sin6_port);
  }
  return FormatHostPort(ip, port);
}

}  // namespace

// One accepted connection. Lives in a slab slot; everything the kernel may be reading or writing
// (send buffer, timespec) is a member, valid until the op's final CQE. `inflight` counts SQEs
// whose final CQE has not arrived; the slot is freed only after the close CQE, at zero.
struct Connection {
  uint32_t slot = 0;
  uint32_t gen = 0;
  int fd = -1;
  bool fixed = false;        // `fd` is a slot of the worker's registered file table
  bool tls_counted = false;  // counted in the SessionGauge until closing
  uint32_t listener = 0;
  uint32_t inflight = 0;
  bool in_use = false;
  bool recv_armed = false;
  bool send_inflight = false;
  bool timer_armed = false;
  bool closing = false;
  bool close_submitted = false;
  bool close_after_flush = false;  // QUIT answered, TLS closed or failed: close once sent
  bool starttls_pending = false;   // 220 queued in plaintext; TLS starts once it is on the wire
  bool dirty = false;
  bool injection_counted = false;
  bool tls_shutdown = false;

  std::optional<SmtpServerSession> session;
  std::unique_ptr<TlsSession> tls;
  std::string replies;       // SMTP replies not yet encrypted / put on the wire
  size_t delay_ready = 0;    // leading bytes of `replies` whose --reply-delay-ms has elapsed
  size_t timer_covers = 0;   // leading bytes of `replies` the armed timer will release
  std::string sending;       // held by the kernel while send_inflight
  size_t sent = 0;
  std::string pending;       // wire bytes queued behind `sending`
  std::string plain;         // decrypted bytes (scratch, TLS only)
  __kernel_timespec delay_ts{};
};

SinkWorker::SinkWorker(int index, const std::vector<ListenerRuntime>* listeners,
                       std::vector<int> listen_fds, MessageStore* store, uint32_t reply_delay_ms,
                       bool quiet, SessionGauge* tls_gauge)
    : index_(index),
      listeners_(listeners),
      store_(store),
      reply_delay_ms_(reply_delay_ms),
      quiet_(quiet),
      tls_gauge_(tls_gauge) {
  listener_state_.resize(listen_fds.size());
  for (size_t i = 0; i < listen_fds.size(); ++i) listener_state_[i].fd = listen_fds[i];
}

SinkWorker::~SinkWorker() {
  // Only reached when the ring is gone or was never created; main normally _exit()s instead,
  // because the kernel may still own receive buffers until the ring is torn down.
  ring_.Exit();  // the ring first, then its receive buffers
  if (wake_fd_ >= 0) close(wake_fd_);
}

absl::Status SinkWorker::Init() {
  // DEFER_TASKRUN + SINGLE_ISSUER (6.1+), with fallbacks for older kernels (engine/ring.h).
  if (absl::Status st = ring_.Init(kRingEntries, kCqEntries); !st.ok()) {
    return absl::InternalError(absl::StrCat("worker ", index_, ": ", st.message()));
  }
  if (absl::Status st = ring_.SetUpBuffers(kBufGroup, kRecvBufCount, kRecvBufSize); !st.ok()) {
    return absl::InternalError(absl::StrCat("worker ", index_, ": ", st.message()));
  }

  // Accepted sockets as direct descriptors: each worker's table holds up to RLIMIT_NOFILE of
  // them, none in the process fd table. --out-dir records peer/local addresses with
  // getpeername(), which needs a regular descriptor.
  if (!store_->storing()) {
    const uint32_t n = DirectTableSize();
    absl::Status st = ring_.RegisterDirectTable(n);
    if (!st.ok() && index_ == 0 && !quiet_) {
      fprintf(stderr, "mxburst-sink: io_uring registered file table of %u: %s; accepting "
              "regular descriptors\n", n, std::string(st.message()).c_str());
    }
  }

  wake_fd_ = eventfd(0, EFD_CLOEXEC);
  if (wake_fd_ < 0) {
    return absl::InternalError(absl::StrCat("worker ", index_, ": eventfd: ", strerror(errno)));
  }
  ArmWake();
  for (uint32_t i = 0; i < listener_state_.size(); ++i) ArmAccept(i);
  int ret = ring_.Submit();
  if (ret < 0) {
    return absl::InternalError(
        absl::StrCat("worker ", index_, ": io_uring_submit: ", strerror(-ret)));
  }
  return absl::OkStatus();
}

void SinkWorker::Stop() {
  uint64_t one = 1;
  ssize_t n = write(wake_fd_, &one, sizeof(one));
  (void)n;
}

void SinkWorker::Run() {
  while (!stop_) {
    int ret = ring_.SubmitAndWait(1);
    if (ret < 0 && ret != -EINTR && ret != -EBUSY && ret != -EAGAIN) {
      fprintf(stderr, "mxburst-sink: worker %d: io_uring_submit_and_wait: %s\n", index_,
              strerror(-ret));
      return;
    }
    // Also hands the buffers of this batch back to the kernel, in one store.
    ring_.ForEachCompletion([this](io_uring_cqe* cqe) { Dispatch(cqe); });
    // PIPELINING (RFC 2920): replies to everything received in this batch leave in one send.
    for (size_t i = 0; i < dirty_.size(); ++i) {
      Connection* c = At(dirty_[i].first);
      if (c->gen != dirty_[i].second || !c->dirty) continue;
      c->dirty = false;
      Flush(c);
    }
    dirty_.clear();
  }
}

Connection* SinkWorker::At(uint32_t slot) {
  return &chunks_[slot >> kChunkShift][slot & (kChunkSize - 1)];
}

void SinkWorker::Dispatch(const io_uring_cqe* cqe) {
  const SinkTag tag = SinkTag::Decode(cqe->user_data);
  switch (tag.op) {
    case SinkOp::kWake:
      stop_ = true;
      return;
    case SinkOp::kAccept:
      OnAccept(tag.slot, cqe);
      return;
    case SinkOp::kAcceptRetry:
      OnAcceptRetry(tag.slot);
      return;
    default:
      break;
  }
  if (tag.slot >= chunks_.size() * kChunkSize) {
    ++stats_.stale_completions;
    return;
  }
  Connection* c = At(tag.slot);
  if (!c->in_use || c->gen != tag.gen) {
    // Should not happen: a slot is freed only when nothing is in flight. Still return a buffer
    // the kernel handed us, or the ring would leak it.
    ++stats_.stale_completions;
    ring_.ReturnBuffer(cqe);
    ABSL_ASSERT(false && "stale io_uring completion");
    return;
  }
  switch (tag.op) {
    case SinkOp::kRecv:
      OnRecv(c, cqe);
      break;
    case SinkOp::kSend:
      --c->inflight;
      OnSend(c, cqe->res);
      break;
    case SinkOp::kTimer:
      --c->inflight;
      OnTimer(c);
      break;
    case SinkOp::kCancel:
      --c->inflight;
      MaybeFinishClose(c);
      break;
    case SinkOp::kClose:
      --c->inflight;
      FreeConnection(c);
      break;
    default:
      ++stats_.stale_completions;
      break;
  }
}

// ---------------------------------------------------------------------------------------------
// Listeners

void SinkWorker::ArmWake() {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_read(sqe, wake_fd_, &wake_buf_, sizeof(wake_buf_), 0);
  Submit(sqe, SinkOp::kWake, kNoSlot, 0);
}

void SinkWorker::ArmAccept(uint32_t index) {
  io_uring_sqe* sqe = GetSqe();
  const int fd = listener_state_[index].fd;
  if (ring_.direct_slots() > 0) {
    // The kernel picks a free slot of the table (IORING_FILE_INDEX_ALLOC); CQE res = the slot.
    if (multishot_accept_) {
      io_uring_prep_multishot_accept_direct(sqe, fd, nullptr, nullptr, 0);
    } else {
      io_uring_prep_accept_direct(sqe, fd, nullptr, nullptr, 0, IORING_FILE_INDEX_ALLOC);
    }
  } else if (multishot_accept_) {
    io_uring_prep_multishot_accept(sqe, fd, nullptr, nullptr, SOCK_CLOEXEC);
  } else {
    io_uring_prep_accept(sqe, fd, nullptr, nullptr, SOCK_CLOEXEC);
  }
  Submit(sqe, SinkOp::kAccept, index, 0);
}

void SinkWorker::OnAccept(uint32_t index, const io_uring_cqe* cqe) {
  const bool more = (cqe->flags & IORING_CQE_F_MORE) != 0;
  if (cqe->res >= 0) {
    NewConnection(cqe->res, ring_.direct_slots() > 0, index);
  } else if (cqe->res == -EINVAL && multishot_accept_) {
    multishot_accept_ = false;  // kernel without multishot accept (< 5.19): re-arm each time
  } else if (cqe->res == -EMFILE || cqe->res == -ENFILE || cqe->res == -ENOMEM ||
             cqe->res == -ENOBUFS) {
    // Out of descriptors or memory: back off 50 ms instead of spinning on the error.
    if (!quiet_) {
      fprintf(stderr, "mxburst-sink: accept: %s (retrying)\n", strerror(-cqe->res));
    }
    ListenerState& ls = listener_state_[index];
    if (!more && !ls.retry_armed) {
      ls.retry_armed = true;
      ls.retry_ts.tv_sec = 0;
      ls.retry_ts.tv_nsec = 50 * 1000 * 1000;
      io_uring_sqe* sqe = GetSqe();
      io_uring_prep_timeout(sqe, &ls.retry_ts, 0, 0);
      Submit(sqe, SinkOp::kAcceptRetry, index, 0);
    }
    return;
  }
  // ECONNABORTED and friends concern one connection only: keep accepting.
  if (!more) ArmAccept(index);
}

void SinkWorker::OnAcceptRetry(uint32_t index) {
  listener_state_[index].retry_armed = false;
  ArmAccept(index);
}

// ---------------------------------------------------------------------------------------------
// Slab

Connection* SinkWorker::AllocConnection() {
  if (free_slots_.empty()) {
    uint32_t base = static_cast<uint32_t>(chunks_.size()) * kChunkSize;
    chunks_.push_back(std::make_unique<Connection[]>(kChunkSize));
    for (uint32_t i = kChunkSize; i > 0; --i) {
      At(base + i - 1)->slot = base + i - 1;
      free_slots_.push_back(base + i - 1);
    }
  }
  uint32_t slot = free_slots_.back();
  free_slots_.pop_back();
  Connection* c = At(slot);
  c->in_use = true;
  return c;
}

void SinkWorker::FreeConnection(Connection* c) {
  ABSL_ASSERT(c->inflight == 0);
  const uint32_t slot = c->slot;
  const uint32_t gen = (c->gen + 1) & kGenMask;
  c->~Connection();
  new (c) Connection();  // releases every buffer; the next occupant starts clean
  c->slot = slot;
  c->gen = gen;
  free_slots_.push_back(slot);
}

void SinkWorker::NewConnection(int fd, bool fixed, uint32_t listener_index) {
  const ListenerRuntime& lr = (*listeners_)[listener_index];
  Connection* c = AllocConnection();
  c->fd = fd;
  c->fixed = fixed;
  c->listener = listener_index;
  ++stats_.connections;
  stats_.peak_connections = std::max(stats_.peak_connections, ++stats_.open_connections);
  c->session.emplace(&lr.session_config, store_, &stats_, lr.spec.implicit_tls);
  if (store_->storing()) {
    sockaddr_storage peer{};
    sockaddr_storage local{};
    socklen_t peer_len = sizeof(peer);
    socklen_t local_len = sizeof(local);
    getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_len);
    getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_len);
    c->session->SetAddresses(FormatSockaddr(peer), FormatSockaddr(local));
  }
  if (lr.spec.implicit_tls) {
    // RFC 8314 §3.3: TLS from the first byte; the greeting waits in `replies` for the handshake.
    c->tls = lr.tls->NewSession();
    if (c->tls == nullptr) {
      TlsFailure(c, "new session");
      return;
    }
  }
  c->session->Start(&c->replies);
  ArmRecv(c);
  MarkDirty(c);
}

// ---------------------------------------------------------------------------------------------
// Receive

void SinkWorker::ArmRecv(Connection* c) {
  io_uring_sqe* sqe = GetSqe();
  ring_.PrepBufferedRecv(sqe, c->fd, c->fixed);
  Submit(sqe, SinkOp::kRecv, c->slot, c->gen);
  ++c->inflight;
  c->recv_armed = true;
}

void SinkWorker::OnRecv(Connection* c, const io_uring_cqe* cqe) {
  const bool more = (cqe->flags & IORING_CQE_F_MORE) != 0;
  if (!more) {
    c->recv_armed = false;
    --c->inflight;
  }
  const int res = cqe->res;
  if (auto bid = ProvidedBufferRing::BufferId(cqe)) {
    ProvidedBufferRing* bufs = ring_.buffers();
    if (res > 0 && !c->closing) OnBytes(c, bufs->Buffer(*bid), static_cast<size_t>(res));
    bufs->Return(*bid);  // parsed or copied into TLS: the kernel may refill it after Publish()
  }
  if (c->closing) {
    MaybeFinishClose(c);
    return;
  }
  if (res == 0) {
    BeginClose(c);  // peer closed (possibly without QUIT)
  } else if (res < 0) {
    if (res == -ENOBUFS) {
      // All provided buffers were in CQEs of this batch; they are back by the time we submit.
      if (!more && !c->recv_armed) ArmRecv(c);
    } else if (res == -EINVAL && ring_.multishot_recv()) {
      ring_.DisableMultishotRecv();  // kernel without multishot recv (< 6.0)
      if (!c->recv_armed) ArmRecv(c);
    } else {
      BeginClose(c);  // ECONNRESET, ...
    }
  } else if (!more && !c->recv_armed && !c->closing) {
    ArmRecv(c);
  }
}

void SinkWorker::OnBytes(Connection* c, const char* data, size_t n) {
  if (c->starttls_pending) {
    // RFC 3207 §4.2 / CVE-2011-0411: plaintext after STARTTLS and before the handshake is
    // never interpreted.
    if (!c->injection_counted) {
      c->injection_counted = true;
      ++stats_.protocol_errors;
    }
    return;
  }
  if (c->tls == nullptr) {
    OnPlaintext(c, data, n);
    return;
  }
  c->tls->FeedCiphertext(absl::string_view(data, n));
  MarkDirty(c);  // handshake records or alerts may be waiting in ciphertext_out()
  if (!c->tls->handshake_done()) {
    switch (c->tls->Handshake()) {
      case TlsStatus::kWantIo:
        return;
      case TlsStatus::kOk:
        ++stats_.tls_connections;
        c->tls_counted = true;
        tls_gauge_->Up();
        c->session->OnTlsEstablished(absl::StrCat(c->tls->version(), " ", c->tls->cipher()));
        break;
      case TlsStatus::kClosed:
        c->close_after_flush = true;
        return;
      case TlsStatus::kError:
        TlsFailure(c, "handshake");
        return;
    }
  }
  // Application data that came with (or after) the client's Finished.
  c->plain.clear();
  TlsStatus st = c->tls->ReadPlaintext(&c->plain);
  if (!c->plain.empty()) OnPlaintext(c, c->plain.data(), c->plain.size());
  if (c->plain.capacity() > kKeepSendCapacity) std::string().swap(c->plain);
  if (st == TlsStatus::kClosed) {
    c->close_after_flush = true;
  } else if (st == TlsStatus::kError) {
    TlsFailure(c, "read");
  }
}

void SinkWorker::OnPlaintext(Connection* c, const char* data, size_t n) {
  if (c->close_after_flush) return;  // after QUIT nothing more is interpreted
  FeedResult r = c->session->Feed(absl::string_view(data, n), &c->replies);
  MarkDirty(c);
  if (r.event == SessionEvent::kStartTls) {
    c->starttls_pending = true;
    if (r.discarded > 0) {
      c->injection_counted = true;
      ++stats_.protocol_errors;
    }
  } else if (r.event == SessionEvent::kClose) {
    c->close_after_flush = true;
  }
}

void SinkWorker::TlsFailure(Connection* c, const char* where) {
  ++stats_.tls_failures;
  ++stats_.protocol_errors;
  if (!quiet_) {
    fprintf(stderr, "mxburst-sink: TLS %s failed: %s\n", where,
            c->tls != nullptr ? c->tls->last_error().c_str() : "no session");
  }
  // Send the alert wolfSSL queued, if any, then close.
  c->close_after_flush = true;
  c->replies.clear();
  c->delay_ready = 0;
  MarkDirty(c);
}

// ---------------------------------------------------------------------------------------------
// Send

void SinkWorker::MarkDirty(Connection* c) {
  if (c->dirty) return;
  c->dirty = true;
  dirty_.emplace_back(c->slot, c->gen);
}

bool SinkWorker::FullyFlushed(const Connection* c) const {
  return c->replies.empty() && !c->send_inflight && c->pending.empty() &&
         c->sent == c->sending.size() && (c->tls == nullptr || !c->tls->has_ciphertext_out());
}

void SinkWorker::Flush(Connection* c) {
  if (c->closing) return;
  // The implicit-TLS greeting (and anything after a failed handshake) waits for the handshake.
  const bool hold = c->tls != nullptr && !c->tls->handshake_done();
  const size_t ready =
      reply_delay_ms_ == 0 ? c->replies.size() : std::min(c->delay_ready, c->replies.size());
  if (ready > 0 && !hold) {
    absl::string_view chunk(c->replies.data(), ready);
    if (c->tls != nullptr) {
      if (c->tls->Write(chunk) != TlsStatus::kOk) {
        TlsFailure(c, "write");
        return Flush(c);
      }
    } else {
      AppendWire(c, std::string(chunk));
    }
    c->replies.erase(0, ready);
    c->delay_ready = 0;
    if (c->starttls_pending && c->replies.empty()) {
      // The 220 is queued in plaintext; from here on every byte is TLS (RFC 3207 §4).
      c->tls = (*listeners_)[c->listener].tls->NewSession();
      c->starttls_pending = false;
      if (c->tls == nullptr) TlsFailure(c, "new session");
    }
  }
  if (reply_delay_ms_ != 0 && !hold && !c->timer_armed && c->replies.size() > c->delay_ready) {
    ArmDelayTimer(c);
  }
  if (c->close_after_flush && !c->tls_shutdown && c->replies.empty() && c->tls != nullptr &&
      c->tls->handshake_done()) {
    c->tls_shutdown = true;
    c->tls->Shutdown();  // close_notify (RFC 8446 §6.1) so the client sees a clean end
  }
  if (c->tls != nullptr && c->tls->has_ciphertext_out()) AppendWire(c, c->tls->TakeCiphertext());
  if (c->pending.size() > kMaxPendingOut) {
    ++stats_.protocol_errors;  // the client does not read its replies
    BeginClose(c);
    return;
  }
  StartSend(c);
  if (c->close_after_flush && FullyFlushed(c)) BeginClose(c);
}

void SinkWorker::AppendWire(Connection* c, std::string bytes) {
  if (c->pending.empty()) {
    c->pending = std::move(bytes);
  } else {
    c->pending.append(bytes);
  }
}

void SinkWorker::StartSend(Connection* c) {
  if (c->send_inflight || c->closing) return;
  if (c->sent == c->sending.size()) {
    if (c->pending.empty()) return;
    c->sending.clear();
    c->sent = 0;
    c->sending.swap(c->pending);
    if (c->pending.capacity() > kKeepSendCapacity) std::string().swap(c->pending);
  }
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_send(sqe, c->fd, c->sending.data() + c->sent, c->sending.size() - c->sent,
                     MSG_NOSIGNAL);
  Ring::UseFd(sqe, c->fixed);
  Submit(sqe, SinkOp::kSend, c->slot, c->gen);
  ++c->inflight;
  c->send_inflight = true;
}

void SinkWorker::OnSend(Connection* c, int res) {
  c->send_inflight = false;
  if (c->closing) {
    MaybeFinishClose(c);
    return;
  }
  if (res < 0) {
    BeginClose(c);  // EPIPE, ECONNRESET: the peer is gone
    return;
  }
  c->sent += static_cast<size_t>(res);
  if (c->sent == c->sending.size() && c->sending.capacity() > kKeepSendCapacity) {
    std::string().swap(c->sending);
    c->sent = 0;
  }
  StartSend(c);
  if (c->close_after_flush && FullyFlushed(c)) BeginClose(c);
}

void SinkWorker::ArmDelayTimer(Connection* c) {
  c->timer_covers = c->replies.size();
  c->delay_ts.tv_sec = reply_delay_ms_ / 1000;
  c->delay_ts.tv_nsec = static_cast<long long>(reply_delay_ms_ % 1000) * 1000 * 1000;
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_timeout(sqe, &c->delay_ts, 0, 0);
  Submit(sqe, SinkOp::kTimer, c->slot, c->gen);
  ++c->inflight;
  c->timer_armed = true;
}

void SinkWorker::OnTimer(Connection* c) {
  c->timer_armed = false;
  if (c->closing) {
    MaybeFinishClose(c);
    return;
  }
  c->delay_ready = c->timer_covers;
  MarkDirty(c);
}

// ---------------------------------------------------------------------------------------------
// Close: mark closing -> cancel what is in flight -> wait for the CQEs -> close -> free.

void SinkWorker::BeginClose(Connection* c) {
  if (c->closing) return;
  c->closing = true;
  if (c->tls_counted) tls_gauge_->Down();
  --stats_.open_connections;  // counted here, not at close(): the client may reconnect sooner
  if (c->recv_armed) {
    io_uring_sqe* sqe = GetSqe();
    io_uring_prep_cancel64(sqe, SinkTag{SinkOp::kRecv, c->gen, c->slot}.Encode(), 0);
    Submit(sqe, SinkOp::kCancel, c->slot, c->gen);
    ++c->inflight;
  }
  if (c->send_inflight) {
    io_uring_sqe* sqe = GetSqe();
    io_uring_prep_cancel64(sqe, SinkTag{SinkOp::kSend, c->gen, c->slot}.Encode(), 0);
    Submit(sqe, SinkOp::kCancel, c->slot, c->gen);
    ++c->inflight;
  }
  if (c->timer_armed) {
    io_uring_sqe* sqe = GetSqe();
    io_uring_prep_timeout_remove(sqe, SinkTag{SinkOp::kTimer, c->gen, c->slot}.Encode(), 0);
    Submit(sqe, SinkOp::kCancel, c->slot, c->gen);
    ++c->inflight;
  }
  MaybeFinishClose(c);
}

void SinkWorker::MaybeFinishClose(Connection* c) {
  if (!c->closing || c->inflight != 0 || c->close_submitted) return;
  c->close_submitted = true;
  io_uring_sqe* sqe = GetSqe();
  Ring::PrepClose(sqe, c->fd, c->fixed);
  Submit(sqe, SinkOp::kClose, c->slot, c->gen);
  ++c->inflight;
}

}  // namespace mxb::sink
