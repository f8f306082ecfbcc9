// Connection (engine/connection.h): one outbound SMTP connection on the worker's ring.
#include "engine/connection.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "dns/static_routes.h"
#include "engine/config.h"
#include "engine/connect_gate.h"
#include "engine/worker.h"

namespace mxb {
namespace {

std::string ErrnoText(int err) { return std::strerror(err); }

// EHLO keywords as seen, for the policy cache ("PIPELINING SIZE=52428800 8BITMIME ...").
std::string KeywordsOf(const EhloCapabilities& caps) {
  std::string out;
  auto add = [&out](absl::string_view k) { absl::StrAppend(&out, out.empty() ? "" : " ", k); };
  if (caps.starttls) add("STARTTLS");
  if (caps.pipelining) add("PIPELINING");
  if (caps.eightbitmime) add("8BITMIME");
  if (caps.smtputf8) add("SMTPUTF8");
  if (caps.enhancedstatuscodes) add("ENHANCEDSTATUSCODES");
  if (caps.chunking) add("CHUNKING");
  if (caps.requiretls) add("REQUIRETLS");
  if (caps.size > 0) add(absl::StrCat("SIZE=", caps.size));
  return out;
}

// Binds a new socket to the source address chosen for its connection, before connect().
// IP_BIND_ADDRESS_NO_PORT defers the port choice to connect(), so many sources x destinations do
// not exhaust ephemeral ports at bind(). Returns 0 or an errno.
int BindSource(int fd, const sockaddr_storage& source) {
  int one = 1;
  setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
  socklen_t len = source.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  if (bind(fd, reinterpret_cast<const sockaddr*>(&source), len) != 0) return errno;
  return 0;
}

}  // namespace

absl::StatusOr<int> OpenSocket(const ConnectSpec& spec) {
  int fd = socket(spec.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int bind_err = fd >= 0 && spec.source ? BindSource(fd, *spec.source) : 0;
  if (fd < 0 || bind_err != 0) {
    int err = fd < 0 ? errno : bind_err;
    if (fd >= 0) close(fd);
    std::string why = fd < 0 ? absl::StrCat("socket: ", ErrnoText(err))
                             : absl::StrCat("bind ", SockaddrIp(*spec.source), ": ", ErrnoText(err));
    errno = err;  // for the caller's ConnectGate::Shortage
    return IsLocalShortage(err, /*at_bind=*/fd >= 0) ? absl::ResourceExhaustedError(why)
                                                    : absl::UnavailableError(why);
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

// ---------------------------------------------------------------------------------------------
// SendQueue

void SendQueue::Recycle(std::string& buf) {
  if (pool != nullptr) {
    pool->Give(std::move(buf));
    buf.clear();  // moved-from is valid but unspecified
  } else {
    std::string().swap(buf);
  }
}

void SendQueue::Append(absl::string_view bytes) {
  if (bytes.empty()) return;
  if (pending.empty() && pending.capacity() < bytes.size() && pool != nullptr) {
    pending = pool->Take();
  }
  pending.append(bytes.data(), bytes.size());
}

void SendQueue::Append(std::string&& bytes) {
  if (pending.empty()) {
    pending.swap(bytes);
    Recycle(bytes);  // the drained buffer `pending` was
  } else {
    pending.append(bytes);
    Recycle(bytes);
  }
}

absl::string_view SendQueue::Next() {
  if (off >= wire.size()) {
    if (pending.empty()) return {};
    wire.swap(pending);
    Recycle(pending);  // the drained wire buffer
    off = 0;
  }
  return absl::string_view(wire).substr(off);
}

void SendQueue::Sent(size_t n) {
  off += n;
  if (off >= wire.size()) {
    Recycle(wire);
    off = 0;
  }
}

void SendQueue::Free() {
  Recycle(wire);
  Recycle(pending);
  off = 0;
  inflight = false;
}

// ---------------------------------------------------------------------------------------------
// Slab

uint32_t ConnectionSlab::Alloc() {
  uint32_t slot;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
  } else {
    slot = static_cast<uint32_t>(slab_.size());
    slab_.push_back(std::make_unique<Connection>(env_, slot));
  }
  slab_[slot]->Acquire();
  ++live_;
  return slot;
}

void ConnectionSlab::Free(uint32_t slot) {
  slab_[slot]->Release();
  free_slots_.push_back(slot);
  --live_;
}

void Connection::Acquire() {
  used_ = true;
  gen_ = (gen_ + 1) & kGenMask;
  owner_ = nullptr;
  phase_ = Phase::kConnecting;
  fd_ = -1;
  fixed_ = false;
  spec_ = ConnectSpec();
  addr_len_ = 0;
  session_saved_ = false;
  violation_.clear();
  announced_pin_.reset();
  pins_checked_gen_ = ~uint64_t{0};
  session_.reset();
  tls_.reset();
  parser_ = ReplyParser();
  send_.wire.clear();
  send_.off = 0;
  send_.pending.clear();
  send_.inflight = false;
  send_.pool = env_->send_buffers;
  recv_inflight_ = close_posted_ = hold_flush_ = false;
  ops_ = 0;
  deadline_ = WheelDeadline();  // the last occupant's entries no longer match (generation)
  job_ = nullptr;
  ready_seen_ = false;
  established_ = false;
  parked_ = false;
}

void Connection::Release() {
  used_ = false;
  gen_ = (gen_ + 1) & kGenMask;
  session_.reset();
  tls_.reset();
  recv_buf_.reset();
  send_.Free();
}

void Connection::Tag(io_uring_sqe* sqe, UringOp op) {
  Ring::SetTag(sqe, UringTag{op, gen_, slot_});
  ++ops_;
}

// ---------------------------------------------------------------------------------------------
// Opening

void Connection::Connect(int fd, ConnectionOwner* owner, ConnectSpec spec) {
  const EngineConfig& config = *env_->config;
  owner_ = owner;
  fd_ = fd;
  spec_ = std::move(spec);
  addr_len_ = spec_.addr.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  int64_t ms = absl::ToInt64Milliseconds(config.connect_timeout);
  connect_timeout_.tv_sec = ms / 1000;
  connect_timeout_.tv_nsec = (ms % 1000) * 1000000;
  env_->stats->connections.fetch_add(1, std::memory_order_relaxed);

  // After bind/setsockopt (OpenSocket), which need the regular descriptor.
  if (env_->ring->InstallDirect(slot_, fd_)) {
    fd_ = static_cast<int>(slot_);
    fixed_ = true;
  }
  io_uring_sqe* sqe = env_->ring->Sqe();
  io_uring_prep_connect(sqe, fd_, reinterpret_cast<sockaddr*>(&spec_.addr), addr_len_);
  Ring::UseFd(sqe, fixed_);
  sqe->flags |= IOSQE_IO_LINK;
  Tag(sqe, UringOp::kConnect);
  sqe = env_->ring->Sqe();
  io_uring_prep_link_timeout(sqe, &connect_timeout_, 0);
  Tag(sqe, UringOp::kLinkTimeout);
}

const AttemptInfo& Connection::Attempt() {
  if (!ready_seen_) attempt_ = ComputeAttempt();
  return attempt_;
}

AttemptInfo Connection::ComputeAttempt() const {
  AttemptInfo a;
  a.mx = spec_.mx;
  a.ip = SockaddrIp(spec_.addr);
  a.port = SockaddrPort(spec_.addr);
  if (tls_ != nullptr && tls_->handshake_done()) {
    a.tls_version = tls_->version();
    a.tls_cipher = tls_->cipher();
    a.tls_resumed = tls_->resumed();
  }
  a.policy = spec_.policy.name;
  a.policy_source = ToString(spec_.policy.source);
  a.dnssec = spec_.mx_dnssec;
  a.violation = violation_;
  if (spec_.policy.name == "dane-unusable") {
    a.dane = "tlsa-unusable";
  } else if (spec_.policy.dane != nullptr && tls_ != nullptr) {
    const DaneMatch& m = tls_->dane_match();
    a.dane = m.matched ? m.record : m.reason;
  }
  return a;
}

// ---------------------------------------------------------------------------------------------
// Completions

bool Connection::OnCompletion(UringOp op, const io_uring_cqe* cqe) {
  // A multishot receive stays in flight until its CQE without F_MORE.
  if ((cqe->flags & IORING_CQE_F_MORE) == 0) --ops_;
  switch (op) {
    case UringOp::kConnect:
      OnConnect(cqe->res);
      break;
    case UringOp::kRecv:
      OnRecv(cqe);
      break;
    case UringOp::kSend:
      OnSend(cqe->res);
      break;
    case UringOp::kClose:
      return true;
    case UringOp::kLinkTimeout:
    case UringOp::kCancel:
    default:
      break;
  }
  if (used_ && phase_ == Phase::kClosing) MaybeFinishClose();
  return false;
}

void Connection::OnConnect(int res) {
  const EngineConfig& config = *env_->config;
  if (phase_ == Phase::kClosing) return;
  if (res < 0 && IsLocalShortage(-res)) {
    // Issue 17: no free local port (EADDRNOTAVAIL), descriptor or buffer. This host's limit,
    // not the peer's: no hop failure, no recipient deferred; the owner waits and retries.
    if (env_->gate != nullptr) {
      env_->gate->Shortage(-res, absl::StrCat("connect to ", spec_.mx, " [",
                                              SockaddrToString(spec_.addr), "]"),
                           *env_->now_ms);
    }
    ConnectionOwner* owner = owner_;
    StartClose();
    owner->OnLocalShortage(slot_);
    return;
  }
  if (res < 0 && ImplicitFallback()) {
    ImplicitTlsFailed(res == -ECANCELED ? "connect timed out" : ErrnoText(-res));
    return;
  }
  if (res < 0) {
    env_->stats->connect_failures.fetch_add(1, std::memory_order_relaxed);
    env_->stats->CountConnectFailure(-res);
    ConnectionOwner* owner = owner_;
    const AttemptInfo attempt = Attempt();
    std::string reason =
        res == -ECANCELED
            ? absl::StrCat("connect to ", attempt.mx, " [", SockaddrToString(spec_.addr),
                           "]: timed out")
            : absl::StrCat("connect to ", attempt.mx, " [", SockaddrToString(spec_.addr),
                           "]: ", ErrnoText(-res));
    NoteHopFailure(reason);
    StartClose();
    owner->OnFailedBeforeReady(slot_, reason, "4.4.1", attempt);  // RFC 3463: no answer
    return;
  }
  established_ = true;
  if (env_->gate != nullptr) env_->gate->Succeeded();
  phase_ = Phase::kSmtp;
  SessionOptions opts;
  opts.helo_name = config.helo_name;
  switch (spec_.policy.requirement) {
    case TlsRequirement::kDisabled: opts.tls = TlsMode::kDisabled; break;
    case TlsRequirement::kOpportunistic: opts.tls = TlsMode::kOpportunistic; break;
    case TlsRequirement::kRequired: opts.tls = TlsMode::kRequired; break;
  }
  opts.implicit_tls = spec_.implicit_tls;
  opts.max_rcpts_per_transaction = config.max_recipients_per_transaction;
  opts.use_chunking = config.chunking;
  // Credentials only to a relay session whose certificate is verified (engine/relay.h).
  if (spec_.relay != nullptr && spec_.relay->auth && spec_.policy.verify &&
      spec_.policy.requirement == TlsRequirement::kRequired) {
    opts.auth = &spec_.relay->credentials;
  }
  session_.emplace(std::move(opts));
  ArmDeadline(DefaultReplyTimeout(SmtpState::kGreeting));
  PostRecv();
  if (spec_.implicit_tls) {
    if (!NewTls()) {
      Handle(session_->OnTlsFailed("cannot create TLS session"));
      return;
    }
    phase_ = Phase::kTlsHandshake;
    DriveHandshake();
  }
}

void Connection::OnRecv(const io_uring_cqe* cqe) {
  const int res = cqe->res;
  ProvidedBufferRing* bufs = env_->ring->buffers();
  if ((cqe->flags & IORING_CQE_F_MORE) == 0) recv_inflight_ = false;  // multishot ended
  // A provided buffer goes back to the ring when this returns: by then its bytes have been
  // parsed (the reply parser keeps a partial line) or copied into the TLS session.
  struct GiveBack {
    ProvidedBufferRing* ring;
    std::optional<uint16_t> bid;
    ~GiveBack() {
      if (ring != nullptr && bid) ring->Return(*bid);
    }
  } give_back{bufs, ProvidedBufferRing::BufferId(cqe)};
  if (phase_ == Phase::kClosing) return;
  // What this read makes us say goes out in one send when it returns (destroyed before
  // give_back): the TLS Finished with the EHLO after it, a reply's follow-up commands.
  struct FlushOnReturn {
    Connection* c;
    ~FlushOnReturn() {
      c->hold_flush_ = false;
      c->FlushSend();
    }
  } flush_on_return{this};
  hold_flush_ = true;
  if (res == -ENOBUFS && bufs != nullptr) {
    // Every buffer was in a CQE of this batch; they are back before the next submit.
    PostRecv();
    return;
  }
  if (res == -EINVAL && bufs != nullptr && env_->ring->multishot_recv() && !recv_inflight_) {
    env_->ring->DisableMultishotRecv();  // kernel without multishot recv (< 6.0): one-shot now
    PostRecv();
    return;
  }
  if (res > 0 && bufs != nullptr && !give_back.bid) {
    Handle(session_->OnConnectionLost("recv completed without a buffer"));
    return;
  }
  if (res <= 0) {
    std::string why = res == 0 ? "connection closed by peer"
                               : absl::StrCat("recv: ", ErrnoText(-res));
    if (ImplicitFallback() && phase_ == Phase::kTlsHandshake) {
      ImplicitTlsFailed(why);
      return;
    }
    if (phase_ == Phase::kTlsHandshake) {
      Handle(session_->OnTlsFailed(absl::StrCat("handshake-failed: ", why)));
      return;
    }
    Handle(session_->OnConnectionLost(why));
    return;
  }
  absl::string_view data(bufs != nullptr ? bufs->Buffer(*give_back.bid) : recv_buf_.get(),
                         static_cast<size_t>(res));
  std::string plain;
  if (tls_ != nullptr) {
    tls_->FeedCiphertext(data);
    if (phase_ == Phase::kTlsHandshake) {
      DriveHandshake();
      if (phase_ != Phase::kSmtp) {
        PostRecv();
        return;
      }
    }
    TlsStatus st = tls_->ReadPlaintext(&plain);
    MoveCiphertext();  // post-handshake messages (tickets, key updates) may need replies
    FlushSend();
    if (st == TlsStatus::kError || st == TlsStatus::kClosed) {
      if (!plain.empty()) DispatchReplies(plain);
      if (phase_ == Phase::kClosing) return;
      Handle(session_->OnConnectionLost(st == TlsStatus::kClosed
                                            ? std::string("TLS closed by peer")
                                            : absl::StrCat("TLS error: ", tls_->last_error())));
      return;
    }
    data = plain;
  }
  DispatchReplies(data);
  PostRecv();
}

void Connection::DispatchReplies(absl::string_view data) {
  std::vector<SmtpReply> replies;
  absl::Status st = parser_.Feed(data, &replies);
  if (tls_ != nullptr && !session_saved_ && !replies.empty()) {
    // TLS 1.3 tickets arrive after the handshake, before the server's first reply inside
    // TLS: now the session can be kept for the next connection to this MX (newest only).
    session_saved_ = true;
    if (std::shared_ptr<TlsSessionTicket> t = tls_->SaveSession()) {
      if (PolicyEntry* e = env_->policy_cache->Find(spec_.mx)) e->session = std::move(t);
    }
  }
  for (const SmtpReply& r : replies) {
    if (phase_ != Phase::kSmtp) return;
    if (session_->state() == SmtpState::kGreeting) NoteGreeting(r);
    Action a = session_->OnReply(r);
    bool starttls = a.kind == Action::Kind::kStartTls;
    Handle(std::move(a));
    // Replies after "220 ready to start TLS" in the same read are injected plaintext.
    if (starttls) return;
  }
  if (!st.ok() && phase_ == Phase::kSmtp) {
    Handle(session_->OnConnectionLost(absl::StrCat("protocol error: ", st.message())));
  }
}

void Connection::OnSend(int res) {
  send_.inflight = false;
  if (phase_ == Phase::kClosing) return;
  if (res < 0) {
    Handle(session_->OnConnectionLost(absl::StrCat("send: ", ErrnoText(-res))));
    return;
  }
  send_.Sent(static_cast<size_t>(res));
  FlushSend();
}

void Connection::OnDeadline(int64_t deadline_ms) {
  if (!deadline_.OnFired(env_->wheel, slot_, gen_, deadline_ms)) return;  // not due (re-armed)
  if (phase_ != Phase::kSmtp && phase_ != Phase::kTlsHandshake) return;
  if (parked_) {
    parked_ = false;  // its entry in the owner's idle list goes stale
    Quit();
    return;
  }
  if (phase_ == Phase::kTlsHandshake) {
    if (ImplicitFallback()) {
      ImplicitTlsFailed("handshake timed out");
      return;
    }
    Handle(session_->OnTlsFailed("handshake-failed: timed out"));
    return;
  }
  Handle(session_->OnTimeout());
}

// ---------------------------------------------------------------------------------------------
// Bytes

// Arms the receive: multishot from the ring's buffer ring (stays armed across completions;
// re-armed only after a CQE without IORING_CQE_F_MORE), else one-shot into our own buffer.
void Connection::PostRecv() {
  if (recv_inflight_ || phase_ == Phase::kClosing) return;
  io_uring_sqe* sqe = env_->ring->Sqe();
  if (env_->ring->buffers() != nullptr) {
    env_->ring->PrepBufferedRecv(sqe, fd_, fixed_);
  } else {
    if (!recv_buf_) recv_buf_.reset(new char[kOwnRecvBufferSize]);
    io_uring_prep_recv(sqe, fd_, recv_buf_.get(), kOwnRecvBufferSize, 0);
    Ring::UseFd(sqe, fixed_);
  }
  Tag(sqe, UringOp::kRecv);
  recv_inflight_ = true;
}

void Connection::FlushSend() {
  if (hold_flush_ || send_.inflight || phase_ == Phase::kClosing) return;
  absl::string_view next = send_.Next();
  if (next.empty()) return;
  io_uring_sqe* sqe = env_->ring->Sqe();
  io_uring_prep_send(sqe, fd_, next.data(), next.size(), MSG_NOSIGNAL);
  Ring::UseFd(sqe, fixed_);
  Tag(sqe, UringOp::kSend);
  send_.inflight = true;
}

// Queues an action's bytes for the peer (commands, body, BDAT parts in that order): encrypted
// when TLS is up, as-is otherwise.
bool Connection::Output(const Action& a) {
  if (tls_ != nullptr) {
    if (env_->send_buffers != nullptr && !tls_->has_ciphertext_out()) {
      tls_->ProvideOutputBuffer(env_->send_buffers->Take());  // the ciphertext goes in there
    }
    // Each Write() ends a TLS record: short pieces (commands, "BDAT n LAST", the text between two
    // stuffed dots) are gathered and go out with the ones after them, not one record each.
    constexpr size_t kGather = 2048;
    std::string gathered;
    auto write = [this](absl::string_view s) {
      return s.empty() || tls_->Write(s) == TlsStatus::kOk;
    };
    auto add = [&](absl::string_view s) {
      if (s.size() < kGather) {
        gathered.append(s.data(), s.size());
        return true;
      }
      const bool ok = write(gathered) && write(s);
      gathered.clear();
      return ok;
    };
    bool ok = add(a.bytes) && add(a.body);
    for (size_t i = 0; ok && i < a.parts.size(); ++i) ok = add(a.parts[i]);
    if (!ok || !write(gathered)) return false;
    MoveCiphertext();
  } else {
    send_.Append(a.bytes);
    send_.Append(a.body);
    for (absl::string_view p : a.parts) send_.Append(p);
  }
  FlushSend();
  return true;
}

void Connection::MoveCiphertext() {
  if (tls_->has_ciphertext_out()) send_.Append(tls_->TakeCiphertext());
}

void Connection::ArmDeadline(absl::Duration d) {
  if (d == absl::InfiniteDuration()) {  // nothing awaited (idle between commands)
    deadline_.Disarm();
    return;
  }
  ArmDeadlineAt(*env_->now_ms + static_cast<int64_t>(absl::ToDoubleMilliseconds(d) *
                                                     env_->config->reply_timeout_scale));
}

void Connection::ArmDeadlineAt(int64_t at_ms) { deadline_.Arm(env_->wheel, slot_, gen_, at_ms); }

// ---------------------------------------------------------------------------------------------
// The dialog: carrying out the session's actions

void Connection::Handle(Action a) {
  if (phase_ == Phase::kClosing) return;
  switch (a.kind) {
    case Action::Kind::kWait:
      ArmDeadline(session_->reply_timeout());
      break;
    case Action::Kind::kSend:
      if (!Output(a)) {
        Handle(session_->OnConnectionLost(absl::StrCat("tls write failed: ", tls_->last_error())));
        return;
      }
      ArmDeadline(session_->reply_timeout());
      break;
    case Action::Kind::kStartTls: {
      // RFC 3207 §5 / CVE-2011-0411 class: anything buffered after "220 ready" was not
      // protected by TLS and is dropped; the caller also stops processing replies.
      parser_.Reset();
      if (!NewTls()) {
        Handle(session_->OnTlsFailed("cannot create TLS session"));
        return;
      }
      phase_ = Phase::kTlsHandshake;
      ArmDeadline(DefaultReplyTimeout(session_->state()));
      DriveHandshake();
      break;
    }
    case Action::Kind::kNeedTransaction: {
      CollectResults();
      const bool first = !ready_seen_;
      if (first) {
        if (spec_.policy.log_only && !session_->tls_active()) {
          // log-only: deliver, but say what enforcement would have refused.
          violation_ = "starttls-not-offered";
        }
        attempt_ = ComputeAttempt();  // Attempt() from now on
        ready_seen_ = true;
        if (env_->gate != nullptr) env_->gate->Ready(spec_);
        LearnBannerPin();
        RecordTlsRpt(true, "");
        if (PolicyEntry* e = env_->policy_cache->Find(spec_.mx)) {
          e->ehlo_keywords = KeywordsOf(session_->capabilities());
          e->last_used = absl::Now();
        }
      }
      if (PolicyEntry* e = env_->policy_cache->Find(spec_.mx)) e->recent_failures = 0;
      owner_->OnReady(slot_, first);
      break;
    }
    case Action::Kind::kClose: {
      CollectResults();
      const SessionFailure& f = session_->failure();
      // A 421 or 4xx greeting, or a 421 between transactions, reaches no recipient result.
      if (f.failed && (!ready_seen_ || f.code == 421)) owner_->OnReplyCode(slot_, f.code);
      if (f.failed && !ready_seen_) {
        ConnectionOwner* owner = owner_;
        AttemptInfo attempt = Attempt();
        std::string reason = f.reason;
        std::string enhanced = f.enhanced.empty() ? "4.4.1" : f.enhanced;
        if (f.auth_failed && spec_.relay != nullptr) {
          ReportRelayAuthFailure(*spec_.relay, f.reply, *env_->now_ms, env_->config->quiet);
        }
        NoteHopFailure(reason);
        RecordTlsRpt(false, reason);
        StartClose();
        owner->OnFailedBeforeReady(slot_, reason, enhanced, attempt);
        return;
      }
      StartClose();
      break;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Closing is a protocol: cancel what the kernel holds, wait for every CQE, close, free.

void Connection::StartClose() {
  if (phase_ == Phase::kClosing) return;
  if (hold_flush_) {
    hold_flush_ = false;  // what was queued (a TLS alert, ...) goes out before the cancel
    FlushSend();
  }
  const bool was_connecting = phase_ == Phase::kConnecting;
  phase_ = Phase::kClosing;
  deadline_.Disarm();
  parked_ = false;
  // Counted as connecting by the owner until it reached the ready state.
  owner_->OnClosing(slot_, was_connecting || !ready_seen_);
  if (job_ != nullptr) {
    // The session always reports every recipient of an aborted transaction; this is the
    // safety net so that a job can never be lost.
    FinishJob("connection closed");
  }
  if (ops_ > 0) {
    io_uring_sqe* sqe = env_->ring->Sqe();
    const unsigned fixed = fixed_ ? IORING_ASYNC_CANCEL_FD_FIXED : 0;
    io_uring_prep_cancel_fd(sqe, fd_, IORING_ASYNC_CANCEL_ALL | fixed);
    Tag(sqe, UringOp::kCancel);
  }
  MaybeFinishClose();
  // Jobs still waiting for the owner get a new connection when this one's close completes.
}

void Connection::CloseIfNotReady() {
  if (!used_ || phase_ == Phase::kClosing || ready_seen_ || job_ != nullptr) return;
  StartClose();
}

void Connection::MaybeFinishClose() {
  if (phase_ != Phase::kClosing || ops_ > 0 || close_posted_) return;
  close_posted_ = true;
  io_uring_sqe* sqe = env_->ring->Sqe();
  Ring::PrepClose(sqe, fd_, fixed_);  // a direct descriptor frees table slot `slot_`
  Tag(sqe, UringOp::kClose);
}

}  // namespace mxb
