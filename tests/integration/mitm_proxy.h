// Test fixtures that play the network attacker and the broken network between mxburst and a
// receiving MX (mxburst-sink), on 127.0.0.0/8 only.
//
// MitmProxy is a loopback TCP proxy: it listens on 127.0.0.x:port and forwards every accepted
// connection to an upstream (the sink). Until STARTTLS succeeds it understands SMTP replies and
// can rewrite them (the downgrade and injection attacks DESIGN.md's strict modes must survive);
// once the server's 220 to STARTTLS has passed it relays bytes both ways untouched (it cannot
// read TLS). Plain threads and blocking sockets with poll(): one accept thread, one thread per
// connection. All methods may be called from any thread.
//
// BlackHoleListener and ResetListener stand in for a dead implicit-TLS port 26 (DESIGN.md:
// "if 26 is refused, reset or times out, port 25 with mandatory STARTTLS"). "Refused" needs no
// fixture: a FreePort() nothing listens on.
//
//   auto sink_port = ...;  // mxburst-sink --listen 127.0.0.1:PORT
//   MitmOptions o;
//   o.listen_ip = "127.0.0.3";
//   o.upstream_ip = "127.0.0.1";
//   o.upstream_port = sink_port;
//   o.mode = MitmMode::kStripStartTls;
//   auto proxy = MitmProxy::Start(o);          // absl::StatusOr<std::unique_ptr<MitmProxy>>
//   route the MX to (*proxy)->ip():(*proxy)->port(); deliver; check (*proxy)->starttls_stripped()
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace mxb::testing {

enum class MitmMode {
  kPassThrough,     // relay bytes, change nothing
  kStripStartTls,   // remove STARTTLS from EHLO replies (fixing the continuation dashes);
                    // answer a STARTTLS command with "502 5.5.1 not supported" ourselves
  kInjectAfterStartTlsSameSegment,      // append `injected_reply` to the server's 220 to
                                        // STARTTLS in the same write
  kInjectAfterStartTlsSeparateSegment,  // send it in a second write `inject_delay` later
  kFakePreTlsCapabilities,  // add `fake_capabilities` to the first (pre-TLS) EHLO reply only
};
const char* ToString(MitmMode m);  // "pass-through", "strip-starttls", "inject-same-segment",
                                   // "inject-separate-segment", "fake-pre-tls-capabilities"

struct MitmOptions {
  std::string listen_ip = "127.0.0.1";
  uint16_t listen_port = 0;  // 0 = ephemeral; see MitmProxy::port()
  std::string upstream_ip = "127.0.0.1";
  uint16_t upstream_port = 0;
  MitmMode mode = MitmMode::kPassThrough;
  std::string injected_reply = "250 2.0.0 injected\r\n";
  std::vector<std::string> fake_capabilities = {"SIZE 1000", "CHUNKING"};
  absl::Duration inject_delay = absl::Milliseconds(50);
};

class MitmProxy {
 public:
  // Binds and listens (only 127.0.0.0/8 addresses are accepted), then serves until destroyed.
  static absl::StatusOr<std::unique_ptr<MitmProxy>> Start(const MitmOptions& opts);
  // Stops accepting, closes every connection and joins all threads.
  ~MitmProxy();
  MitmProxy(const MitmProxy&) = delete;
  MitmProxy& operator=(const MitmProxy&) = delete;

  const std::string& ip() const { return opts_.listen_ip; }
  uint16_t port() const { return port_; }
  MitmMode mode() const { return opts_.mode; }

  int connections() const { return connections_.load(); }     // accepted
  int upstream_failures() const { return upstream_failures_.load(); }  // upstream refused
  int starttls_stripped() const { return starttls_stripped_.load(); }  // EHLO replies changed
  int starttls_refused() const { return starttls_refused_.load(); }    // our own 502s
  int injections() const { return injections_.load(); }       // forged replies sent
  int capabilities_faked() const { return capabilities_faked_.load(); }
  int tls_relays() const { return tls_relays_.load(); }       // connections now relaying TLS
  // Plaintext command lines the clients sent (without CRLF), in arrival order.
  std::vector<std::string> commands() const;

 private:
  struct Conn;
  explicit MitmProxy(const MitmOptions& opts) : opts_(opts) {}
  void AcceptLoop();
  void Serve(int client_fd, int upstream_fd);
  void NoteCommand(const std::string& line);

  MitmOptions opts_;
  uint16_t port_ = 0;
  int listen_fd_ = -1;
  int stop_pipe_[2] = {-1, -1};  // the destructor writes a byte: every poll() wakes up
  std::thread accept_thread_;
  mutable std::mutex mu_;
  std::vector<std::thread> conn_threads_;  // guarded by mu_
  std::vector<std::string> commands_;      // guarded by mu_
  std::atomic<int> connections_{0}, upstream_failures_{0}, starttls_stripped_{0},
      starttls_refused_{0}, injections_{0}, capabilities_faked_{0}, tls_relays_{0};
};

// The proxy's reply rewrites, pure and exposed for tests. `reply` is one complete multi-line
// reply ("250-a\r\n250-b\r\n250 c\r\n"); the result is again a valid reply (RFC 5321
// §4.2.1: every line but the last "CODE-", the last "CODE "), CRLF line ends.
// Removes continuation lines whose keyword is `keyword` (case-insensitive; never the first line,
// which carries the host name). *changed tells whether anything was removed.
std::string StripEhloKeyword(const std::string& reply, const std::string& keyword, bool* changed);
// Inserts `keywords` right after the first line.
std::string AddEhloKeywords(const std::string& reply, const std::vector<std::string>& keywords);

// A port that never answers SMTP.
enum class BlackHoleMode {
  kNeverAccept,   // listening, never accept()ed: connect() succeeds (the kernel queues it), then
                  // silence — the client's greeting timeout fires
  kAcceptSilent,  // accept() and hold the connection open without writing a byte
  kSynDrop,       // listen backlog filled by our own never-accepted connections: further SYNs
                  // are dropped, so the client's connect() itself times out
};

class BlackHoleListener {
 public:
  static absl::StatusOr<std::unique_ptr<BlackHoleListener>> Start(const std::string& ip,
                                                                  uint16_t port,
                                                                  BlackHoleMode mode);
  ~BlackHoleListener();
  BlackHoleListener(const BlackHoleListener&) = delete;
  BlackHoleListener& operator=(const BlackHoleListener&) = delete;
  uint16_t port() const { return port_; }
  int accepted() const { return accepted_.load(); }

 private:
  BlackHoleListener() = default;
  void AcceptLoop();
  BlackHoleMode mode_ = BlackHoleMode::kNeverAccept;
  uint16_t port_ = 0;
  int listen_fd_ = -1;
  int stop_pipe_[2] = {-1, -1};
  std::vector<int> held_fds_;  // accepted (kAcceptSilent) or queue fillers (kSynDrop)
  std::mutex mu_;
  std::thread thread_;
  std::atomic<int> accepted_{0};
};

// Accepts every connection and closes it at once with SO_LINGER {1, 0}: the client sees a TCP
// RST (ECONNRESET), like a firewall answering for a closed implicit-TLS port.
class ResetListener {
 public:
  static absl::StatusOr<std::unique_ptr<ResetListener>> Start(const std::string& ip,
                                                              uint16_t port);
  ~ResetListener();
  ResetListener(const ResetListener&) = delete;
  ResetListener& operator=(const ResetListener&) = delete;
  uint16_t port() const { return port_; }
  int resets() const { return resets_.load(); }

 private:
  ResetListener() = default;
  void AcceptLoop();
  uint16_t port_ = 0;
  int listen_fd_ = -1;
  int stop_pipe_[2] = {-1, -1};
  std::thread thread_;
  std::atomic<int> resets_{0};
};

}  // namespace mxb::testing
