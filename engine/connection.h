// Connection: one outbound SMTP connection of a worker — its socket (a direct descriptor when the
// ring has a file table), its TLS session, its SmtpSession, its send/receive buffers, its reply
// or idle deadline and the close protocol (mark closing -> cancel what the kernel holds -> wait
// for every CQE -> close -> the owner frees the slot). It carries out what SmtpSession asks for
// (STYLE.md: the session is sans-IO, this is its I/O) and the TLS policy it was opened with.
//
// Owns: everything the kernel may read or write for this connection until the final CQE (send
// bytes, the sockaddr, the connect timeout), the job of the transaction under way, and `ops`,
// the SQEs whose final CQE has not arrived. Knows nothing about destinations, queues or shaping:
// it reports upward to its ConnectionOwner (engine/destination.h) — ready for a job, a reply code
// (for back-off), a finished job, a failure before it was ever ready — and takes jobs with
// Transfer(). The ring is reached through ConnectionEnv (engine/ring.h, the timer wheel) only.
// connection.cc holds the bytes, the dialog and the close protocol; connection_tls.cc the TLS
// step (session, handshake, implicit-TLS fallback); connection_transfer.cc the transactions
// (Transfer with the REQUIRETLS check, Park/Quit, results into the job).
//
// Thread: the worker thread that owns the ring, for everything.
//
//   ConnectionSlab slab(&env);                      // env: ring, wheel, clock, policy cache, ...
//   uint32_t slot = slab.Alloc();
//   slab.At(slot).Connect(fd, owner, std::move(spec));   // connect + linked timeout
//   ... per CQE: UringTag t = UringTag::Decode(...);
//   if (Connection* c = slab.Find(t.slot, t.gen); c && c->OnCompletion(t.op, cqe)) {
//     ConnectionOwner* o = c->owner(); slab.Free(t.slot); o->OnClosed(t.slot);
//   }
//   ... owner->OnReady(slot, first): c.Transfer(job) / c.Park(until) / c.Quit()
#pragma once

#include <liburing.h>
#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "engine/delivery.h"
#include "engine/ring.h"
#include "engine/send_buffer_pool.h"
#include "engine/smtp_reply.h"
#include "engine/smtp_session.h"
#include "engine/timer_wheel.h"
#include "tls/banner_pin.h"
#include "tls/policy.h"
#include "tls/tls_session.h"
#include "tls/tlsrpt.h"

namespace mxb {

struct EngineConfig;  // engine/config.h
struct RelayConfig;   // engine/relay.h

// Receive buffer of a connection when the ring has no provided-buffer ring.
inline constexpr size_t kOwnRecvBufferSize = 16 * 1024;
struct WorkerStats;   // engine/worker.h
class ConnectGate;    // engine/connect_gate.h
class TlsRptRecorder;  // engine/tlsrpt_reporter.h

// What a connection may use of its worker. All pointers outlive every connection.
struct ConnectionEnv {
  Ring* ring = nullptr;
  TimerWheel* wheel = nullptr;
  const int64_t* now_ms = nullptr;  // the loop's clock (CLOCK_MONOTONIC ms, once per batch)
  PolicyCache* policy_cache = nullptr;  // TLS sessions to resume, EHLO seen, failures
  TlsContext* tls_client = nullptr;
  const EngineConfig* config = nullptr;
  WorkerStats* stats = nullptr;
  ConnectGate* gate = nullptr;  // local back-pressure (engine/connect_gate.h); nullptr = none
  TlsRptRecorder* tlsrpt = nullptr;  // engine/tlsrpt_reporter.h; nullptr = TLS-RPT off
  // Banner strict-tls pins (tls/banner_pin.h) learned from verified greetings; nullptr = off.
  BannerPinStore* banner_pins = nullptr;
  // Drained send buffers kept for the next flight (engine/send_buffer_pool.h); nullptr = each
  // buffer is freed once sent.
  SendBufferPool* send_buffers = nullptr;
};

// The upward interface: what a connection tells whoever opened it (a Destination). `slot`
// names the connection. Called synchronously from inside the connection's own methods.
class ConnectionOwner {
 public:
  virtual ~ConnectionOwner() = default;
  // Between transactions: give it a job (Transfer), Park() it or Quit() it. `first`: the session
  // just became ready for the first time (greeting, EHLO and any STARTTLS went through).
  virtual void OnReady(uint32_t slot, bool first) = 0;
  // An SMTP reply code that concerns the receiver (recipient results, a 4xx/421 greeting).
  virtual void OnReplyCode(uint32_t slot, int code) = 0;
  // A job with every outcome filled in.
  virtual void OnJobDone(DeliveryJob* job) = 0;
  // Closing started. `was_connecting`: it had not been ready yet.
  virtual void OnClosing(uint32_t slot, bool was_connecting) = 0;
  // It failed before it was ever ready (connect, greeting, TLS): try the next hop. Closing has
  // already started. `enhanced` is the RFC 3463 code the recipients get if this was the last
  // hop ("4.4.1" no answer, "4.7.5" certificate/handshake failure, "4.7.4" no STARTTLS, ...).
  virtual void OnFailedBeforeReady(uint32_t slot, absl::string_view reason,
                                   absl::string_view enhanced, const AttemptInfo& attempt) = 0;
  // The implicit-TLS port failed (remembered in the policy cache); closing has started and the
  // owner opens the STARTTLS connection to the same host now.
  virtual void OnImplicitTlsFailed(uint32_t slot) = 0;
  // The connect failed for a local shortage (engine/connect_gate.h: no free port, descriptor or
  // buffer): not the peer's fault. Closing has started; the owner waits for
  // DestinationHost-style back-off and retries, deferring nobody. The default treats it as a
  // failed hop, for owners that have no way to wait.
  virtual void OnLocalShortage(uint32_t slot) {
    OnFailedBeforeReady(slot, "local resource shortage", "4.4.1", AttemptInfo());
  }
  // The close completed and the slot is free again.
  virtual void OnClosed(uint32_t slot) = 0;
};

// Where to connect and how, decided by the owner (hop, port, TLS policy, source address).
struct ConnectSpec {
  std::string mx;             // MX host name: TLS policy key, checked against certificates
  bool mx_dnssec = false;     // the MX answer was DNSSEC-validated (logged)
  // The domain's MTA-STS policy (enforce or testing) lists this MX: for REQUIRETLS as good as a
  // validated MX lookup (RFC 8689 §4.2.1), the policy having come over PKIX-verified HTTPS.
  bool mx_sts_listed = false;
  sockaddr_storage addr{};    // with the port to use
  TlsPolicy policy;
  bool implicit_tls = false;  // the smtps port: TLS before the greeting
  std::optional<sockaddr_storage> source;  // bind() before connect
  // A "relay:NAME" route (engine/relay.h): AUTH after TLS, and an implicit-TLS failure is the
  // hop's failure (no STARTTLS fallback on another port).
  const RelayConfig* relay = nullptr;
  // TLS-RPT (RFC 8460): the recipient domain's policy this session is counted under, and a
  // failure already known before connecting (an MTA-STS fetch that failed); null = not counted
  // (TLS-RPT off, or a connection carrying reports: §3, reports never trigger reports).
  std::shared_ptr<const TlsRptConnInfo> tlsrpt;
};

// A new TCP socket for `spec` (TCP_NODELAY, bound to the source if any). The error is the
// reason logged for the hop: "socket: <errno text>" / "bind 192.0.2.1: <errno text>"; it is
// ResourceExhausted when the errno is a local shortage (engine/connect_gate.h IsLocalShortage).
absl::StatusOr<int> OpenSocket(const ConnectSpec& spec);

// Bytes for the peer. `wire` is held by the kernel while `inflight`; later bytes wait in
// `pending`. A drained buffer goes back to `pool` (or is freed without one), so a session
// waiting for a reply or parked idle keeps no send bytes.
struct SendQueue {
  std::string wire;
  size_t off = 0;
  std::string pending;
  bool inflight = false;
  SendBufferPool* pool = nullptr;

  void Append(absl::string_view bytes);
  void Append(std::string&& bytes);
  // The bytes to send next (pending moves to wire once wire is drained); empty = nothing.
  absl::string_view Next();
  void Sent(size_t n);
  void Free();  // release both buffers

 private:
  void Recycle(std::string& buf);  // `buf` is drained: to the pool, left empty
};

class Connection {
 public:
  Connection(const ConnectionEnv* env, uint32_t slot) : env_(env), slot_(slot) {}
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Slab bookkeeping: a new occupant (fresh state, next generation) / the slot is free again.
  void Acquire();
  void Release();
  uint32_t slot() const { return slot_; }
  uint32_t gen() const { return gen_; }
  bool used() const { return used_; }
  ConnectionOwner* owner() const { return owner_; }
  // Between transactions only: another destination of the same MX pool takes it over.
  void set_owner(ConnectionOwner* owner) { owner_ = owner; }

  // Takes `fd` (from OpenSocket), makes it a direct descriptor when it can, and submits the
  // connect with a linked timeout (config connect_timeout).
  void Connect(int fd, ConnectionOwner* owner, ConnectSpec spec);
  // A CQE tagged for this connection (gen already checked). True: the close completed; the
  // caller frees the slot and tells the owner.
  bool OnCompletion(UringOp op, const io_uring_cqe* cqe);
  // A timer wheel entry fired; ignored unless `deadline_ms` is the one armed now.
  void OnDeadline(int64_t deadline_ms);

  // Starts a transaction for `job` (the session is ready). True: it is under way; false: the
  // session finished it at once (every address refused locally, too big for SIZE, ...) and
  // the job has been handed back — the connection is ready for the next one.
  bool Transfer(DeliveryJob* job);
  void Quit();
  // Shutdown past its bound: the job (if any) is handed back with every recipient not reported
  // yet deferred with `why`, and the connection closes without waiting for the peer.
  void Abort(absl::string_view why);
  // Shutdown: closes the connection if it never became ready (connecting, greeting, EHLO, TLS),
  // without telling the owner of a failed hop. Such a connection never holds a job.
  void CloseIfNotReady();
  // Keeps the ready session until `until_ms` (then QUIT) while no job is there for it.
  void Park(int64_t until_ms);
  // False when a banner pin (tls/banner_pin.h) learned after this connection opened now covers
  // its MX host and the connection has no verified TLS: it must carry no more mail (the owner
  // quits it; the next connection is opened under the pin). engine/connection_pin.cc.
  bool MeetsBannerPins();
  bool parked() const { return parked_; }
  void Unpark() { parked_ = false; }

  // Where and how this connection delivers: copied into every outcome. Worked out once when the
  // session first becomes ready (nothing in it changes afterwards), before that on each call.
  const AttemptInfo& Attempt();
  const ConnectSpec& spec() const { return spec_; }
  // The TCP connect completed (so its local port goes to TIME_WAIT when we close).
  bool established() const { return established_; }
  bool ready_seen() const { return ready_seen_; }

 private:
  enum class Phase { kConnecting, kSmtp, kTlsHandshake, kClosing };

  void Tag(io_uring_sqe* sqe, UringOp op);
  void OnConnect(int res);
  void OnRecv(const io_uring_cqe* cqe);
  void DispatchReplies(absl::string_view data);
  void OnSend(int res);
  void PostRecv();
  void FlushSend();
  bool Output(const Action& a);
  void MoveCiphertext();
  void ArmDeadline(absl::Duration d);  // a reply timeout from now (scaled); infinite = none
  void ArmDeadlineAt(int64_t at_ms);
  void Handle(Action a);
  void CollectResults();
  void FinishJob(absl::string_view why);
  // Why a REQUIRETLS message may not go over this connection ("" = it may), RFC 8689 §4.2.1.
  std::string RequireTlsProblem() const;
  bool NewTls();
  // Implicit TLS failed at connect/handshake: fall back to STARTTLS (the smtps- prefix's rule),
  // never for a relay.
  bool ImplicitFallback() const { return spec_.implicit_tls && spec_.relay == nullptr; }
  void DriveHandshake();
  void ImplicitTlsFailed(absl::string_view why);
  // The policy cache's view of this MX: one more failure before a ready session, and its text.
  void NoteHopFailure(absl::string_view reason);
  // TLS-RPT: this session's outcome, once — ready (success, or the log-only violation / missing
  // STARTTLS it had), or failed before ready with `reason` (counted only if it is a TLS one).
  void RecordTlsRpt(bool ready, absl::string_view reason);
  // Banner pins (engine/connection_pin.cc): the 220 greeting's strict-tls announcement, kept
  // until the session is ready; recorded then only if the certificate was PKIX-verified for
  // the MX name.
  void NoteGreeting(const SmtpReply& greeting);
  void LearnBannerPin();
  void StartClose();
  void MaybeFinishClose();
  AttemptInfo ComputeAttempt() const;

  const ConnectionEnv* const env_;
  const uint32_t slot_;
  uint32_t gen_ = 0;
  bool used_ = false;
  ConnectionOwner* owner_ = nullptr;
  Phase phase_ = Phase::kConnecting;
  int fd_ = -1;
  bool fixed_ = false;  // `fd_` is a slot of the ring's registered file table (FIXED_FILE)
  ConnectSpec spec_;
  socklen_t addr_len_ = 0;
  __kernel_timespec connect_timeout_{};
  bool session_saved_ = false;  // TLS session stored for resumption
  std::string violation_;       // log-only mode: what the prefix policy would have refused
  std::optional<BannerPinAnnouncement> announced_pin_;  // from the greeting (learn mode)
  uint64_t pins_checked_gen_ = ~uint64_t{0};  // BannerPinStore generation MeetsBannerPins passed
  AttemptInfo attempt_;          // Attempt(): fixed once ready_seen_, scratch before

  std::optional<SmtpSession> session_;
  std::unique_ptr<TlsSession> tls_;
  ReplyParser parser_;
  std::unique_ptr<char[]> recv_buf_;  // only without a provided-buffer ring
  SendQueue send_;
  bool recv_inflight_ = false;
  bool close_posted_ = false;
  bool hold_flush_ = false;  // inside OnRecv: FlushSend() once at its end (one send per flight)
  int ops_ = 0;  // SQEs whose final CQE has not arrived

  WheelDeadline deadline_;  // the reply or idle deadline: at most one live wheel entry
  DeliveryJob* job_ = nullptr;
  bool ready_seen_ = false;  // reached the ready state at least once
  bool established_ = false;
  bool parked_ = false;      // between transactions, waiting for a job
};

// The worker's connections, addressed by {slot, generation}. Slot i is also index i of the
// ring's file table. Connections never move (pointers stay valid while the slot is used).
class ConnectionSlab {
 public:
  explicit ConnectionSlab(const ConnectionEnv* env) : env_(env) {}
  uint32_t Alloc();
  void Free(uint32_t slot);
  Connection& At(uint32_t slot) { return *slab_[slot]; }
  const Connection& At(uint32_t slot) const { return *slab_[slot]; }
  // The connection in `slot` if it is used and of generation `gen`.
  Connection* Find(uint32_t slot, uint32_t gen) {
    if (slot >= slab_.size() || !slab_[slot]->used() || slab_[slot]->gen() != gen) return nullptr;
    return slab_[slot].get();
  }
  size_t live() const { return live_; }
  // Every slot ever allocated (used or free), for visiting all connections.
  uint32_t capacity() const { return static_cast<uint32_t>(slab_.size()); }

 private:
  const ConnectionEnv* env_;
  std::vector<std::unique_ptr<Connection>> slab_;
  std::vector<uint32_t> free_slots_;
  size_t live_ = 0;
};

}  // namespace mxb
