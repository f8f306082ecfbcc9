// MitmProxy, BlackHoleListener, ResetListener: see mitm_proxy.h.
//
// The proxy parses SMTP only while it has to: server replies are collected line by line into
// complete replies (RFC 5321 §4.2.1: "CODE-text" continues, "CODE text" ends) and matched to the
// client's commands in order; once the server's 220 to STARTTLS has passed, or the client has
// started a transaction (MAIL) in plaintext, it relays raw bytes. Nothing here trusts the bytes
// it sees: malformed lines are forwarded as they are.
#include "tests/integration/mitm_proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <chrono>
#include <deque>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace mxb::testing {
namespace {

absl::StatusOr<sockaddr_in> LoopbackAddr(const std::string& ip, uint16_t port) {
  sockaddr_in sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  if (inet_pton(AF_INET, ip.c_str(), &sa.sin_addr) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("'", ip, "' is not an IPv4 address"));
  }
  // Tests never touch the network beyond 127.0.0.0/8 (DESIGN.md, tests/).
  if ((ntohl(sa.sin_addr.s_addr) >> 24) != 127) {
    return absl::InvalidArgumentError(absl::StrCat("'", ip, "' is not in 127.0.0.0/8"));
  }
  return sa;
}

std::string Errno(const char* what, int err) {
  return absl::StrCat(what, ": ", std::strerror(err));
}

// Binds and listens; *bound gets the real port.
absl::StatusOr<int> Listen(const std::string& ip, uint16_t port, int backlog, uint16_t* bound) {
  absl::StatusOr<sockaddr_in> sa = LoopbackAddr(ip, port);
  if (!sa.ok()) return sa.status();
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(Errno("socket", errno));
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, reinterpret_cast<const sockaddr*>(&*sa), sizeof(*sa)) != 0) {
    const int err = errno;
    close(fd);
    return absl::UnavailableError(absl::StrCat(Errno("bind", err), " (", ip, ":", port, ")"));
  }
  if (listen(fd, backlog) != 0) {
    const int err = errno;
    close(fd);
    return absl::InternalError(Errno("listen", err));
  }
  sockaddr_in local;
  socklen_t len = sizeof(local);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0) {
    const int err = errno;
    close(fd);
    return absl::InternalError(Errno("getsockname", err));
  }
  *bound = ntohs(local.sin_port);
  return fd;
}

int ConnectBlocking(const std::string& ip, uint16_t port) {
  absl::StatusOr<sockaddr_in> sa = LoopbackAddr(ip, port);
  if (!sa.ok()) return -1;
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (connect(fd, reinterpret_cast<const sockaddr*>(&*sa), sizeof(*sa)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

bool SendAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    const ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

absl::Status MakeStopPipe(int fds[2]) {
  if (pipe2(fds, O_CLOEXEC) != 0) return absl::InternalError(Errno("pipe2", errno));
  return absl::OkStatus();
}

void Stop(int fds[2]) {
  if (fds[1] >= 0) {
    const char byte = 'x';
    ssize_t n = write(fds[1], &byte, 1);
    (void)n;
  }
}

void CloseFd(int* fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

// Waits until `fd` is readable or the stop pipe fires; false on stop.
bool WaitReadable(int fd, int stop_fd) {
  pollfd p[2] = {{fd, POLLIN, 0}, {stop_fd, POLLIN, 0}};
  for (;;) {
    const int r = poll(p, 2, -1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 || (p[1].revents & POLLIN) != 0) return false;
    if (p[0].revents != 0) return true;
  }
}

std::string Verb(absl::string_view line) {
  absl::string_view v = absl::StripAsciiWhitespace(line);
  const size_t sp = v.find(' ');
  if (sp != absl::string_view::npos) v = v.substr(0, sp);
  return absl::AsciiStrToUpper(v);
}

absl::string_view WithoutEol(absl::string_view line) {
  if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

bool IsReplyLine(absl::string_view line) {
  return line.size() >= 3 && absl::ascii_isdigit(line[0]) && absl::ascii_isdigit(line[1]) &&
         absl::ascii_isdigit(line[2]) && (line.size() == 3 || line[3] == ' ' || line[3] == '-');
}

// A reply line ends its reply unless it is "CODE-...". Lines that are not reply lines end it too
// (garbage is forwarded, never interpreted).
bool EndsReply(absl::string_view line) {
  return !IsReplyLine(line) || line.size() == 3 || line[3] == ' ';
}

// Splits a reply into its code and per-line texts (after "CODE-" / "CODE ").
std::string SplitReply(const std::string& reply, std::vector<std::string>* texts) {
  std::string code;
  size_t start = 0;
  while (start < reply.size()) {
    size_t nl = reply.find('\n', start);
    if (nl == std::string::npos) nl = reply.size() - 1;
    const absl::string_view line = WithoutEol(absl::string_view(reply).substr(start, nl + 1 - start));
    start = nl + 1;
    if (code.empty() && line.size() >= 3) code = std::string(line.substr(0, 3));
    texts->emplace_back(line.size() > 4 ? line.substr(4) : absl::string_view());
  }
  return code;
}

std::string JoinReply(const std::string& code, const std::vector<std::string>& texts) {
  std::string out;
  for (size_t i = 0; i < texts.size(); ++i) {
    absl::StrAppend(&out, code, i + 1 == texts.size() ? " " : "-", texts[i], "\r\n");
  }
  return out;
}

}  // namespace

std::string StripEhloKeyword(const std::string& reply, const std::string& keyword, bool* changed) {
  std::vector<std::string> texts;
  const std::string code = SplitReply(reply, &texts);
  std::vector<std::string> kept;
  const std::string want = absl::AsciiStrToUpper(keyword);
  for (size_t i = 0; i < texts.size(); ++i) {
    if (i > 0 && Verb(texts[i]) == want) continue;
    kept.push_back(texts[i]);
  }
  *changed = kept.size() != texts.size();
  return *changed ? JoinReply(code, kept) : reply;
}

std::string AddEhloKeywords(const std::string& reply, const std::vector<std::string>& keywords) {
  std::vector<std::string> texts;
  const std::string code = SplitReply(reply, &texts);
  if (texts.empty()) return reply;
  texts.insert(texts.begin() + 1, keywords.begin(), keywords.end());
  return JoinReply(code, texts);
}

const char* ToString(MitmMode m) {
  switch (m) {
    case MitmMode::kPassThrough:
      return "pass-through";
    case MitmMode::kStripStartTls:
      return "strip-starttls";
    case MitmMode::kInjectAfterStartTlsSameSegment:
      return "inject-same-segment";
    case MitmMode::kInjectAfterStartTlsSeparateSegment:
      return "inject-separate-segment";
    case MitmMode::kFakePreTlsCapabilities:
      return "fake-pre-tls-capabilities";
  }
  return "unknown";
}

// ---------------------------------------------------------------------------------------------
// MitmProxy

absl::StatusOr<std::unique_ptr<MitmProxy>> MitmProxy::Start(const MitmOptions& opts) {
  if (absl::StatusOr<sockaddr_in> up = LoopbackAddr(opts.upstream_ip, opts.upstream_port);
      !up.ok()) {
    return up.status();
  }
  std::unique_ptr<MitmProxy> proxy(new MitmProxy(opts));
  absl::StatusOr<int> fd = Listen(opts.listen_ip, opts.listen_port, 128, &proxy->port_);
  if (!fd.ok()) return fd.status();
  proxy->listen_fd_ = *fd;
  if (absl::Status st = MakeStopPipe(proxy->stop_pipe_); !st.ok()) return st;
  proxy->accept_thread_ = std::thread([p = proxy.get()] { p->AcceptLoop(); });
  return proxy;
}

MitmProxy::~MitmProxy() {
  Stop(stop_pipe_);
  if (accept_thread_.joinable()) accept_thread_.join();
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    threads.swap(conn_threads_);
  }
  for (std::thread& t : threads) t.join();
  CloseFd(&listen_fd_);
  CloseFd(&stop_pipe_[0]);
  CloseFd(&stop_pipe_[1]);
}

std::vector<std::string> MitmProxy::commands() const {
  std::lock_guard<std::mutex> lock(mu_);
  return commands_;
}

void MitmProxy::NoteCommand(const std::string& line) {
  std::lock_guard<std::mutex> lock(mu_);
  commands_.push_back(line);
}

void MitmProxy::AcceptLoop() {
  for (;;) {
    if (!WaitReadable(listen_fd_, stop_pipe_[0])) return;
    const int client = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    connections_.fetch_add(1);
    const int upstream = ConnectBlocking(opts_.upstream_ip, opts_.upstream_port);
    if (upstream < 0) {
      upstream_failures_.fetch_add(1);
      close(client);
      continue;
    }
    std::lock_guard<std::mutex> lock(mu_);
    conn_threads_.emplace_back([this, client, upstream] { Serve(client, upstream); });
  }
}

// One proxied connection: SMTP-aware until TLS (or a plaintext transaction) starts, then raw.
void MitmProxy::Serve(int client_fd, int upstream_fd) {
  const MitmMode mode = opts_.mode;
  bool raw = mode == MitmMode::kPassThrough;
  bool greeting_seen = false;
  bool capabilities_faked = false;
  std::string from_client;  // partial client line
  std::string from_server;  // partial server line
  std::vector<std::string> reply;  // lines (with EOL) of the server reply being collected
  std::deque<std::string> awaiting;  // verbs of commands whose replies have not come yet
  bool ok = true;

  // Emits one complete server reply to the client, rewritten per mode. Returns false when the
  // client is gone.
  auto finish_reply = [&]() -> bool {
    std::string verb;
    if (!greeting_seen) {
      greeting_seen = true;
      verb = "<greeting>";
    } else if (!awaiting.empty()) {
      verb = awaiting.front();
      awaiting.pop_front();
    }
    const absl::string_view first = WithoutEol(reply.front());
    const std::string code = IsReplyLine(first) ? std::string(first.substr(0, 3)) : "";
    std::string out;
    for (const std::string& l : reply) out += l;
    if (verb == "EHLO" && code == "250") {
      if (mode == MitmMode::kStripStartTls) {
        bool changed = false;
        out = StripEhloKeyword(out, "STARTTLS", &changed);
        if (changed) starttls_stripped_.fetch_add(1);
      } else if (mode == MitmMode::kFakePreTlsCapabilities && !capabilities_faked) {
        capabilities_faked = true;  // the first EHLO reply is the pre-TLS one
        out = AddEhloKeywords(out, opts_.fake_capabilities);
        capabilities_faked_.fetch_add(1);
      }
    }
    reply.clear();
    if (verb == "STARTTLS" && code == "220") {
      // From here on the bytes are TLS records.
      raw = true;
      tls_relays_.fetch_add(1);
      if (mode == MitmMode::kInjectAfterStartTlsSameSegment) {
        injections_.fetch_add(1);
        return SendAll(client_fd, out + opts_.injected_reply);
      }
      if (mode == MitmMode::kInjectAfterStartTlsSeparateSegment) {
        if (!SendAll(client_fd, out)) return false;
        std::this_thread::sleep_for(absl::ToChronoMilliseconds(opts_.inject_delay));
        injections_.fetch_add(1);
        return SendAll(client_fd, opts_.injected_reply);
      }
    }
    return SendAll(client_fd, out);
  };

  auto on_server_bytes = [&](absl::string_view bytes) -> bool {
    if (raw) return SendAll(client_fd, bytes);
    from_server.append(bytes.data(), bytes.size());
    size_t start = 0;
    for (size_t nl; !raw && (nl = from_server.find('\n', start)) != std::string::npos;) {
      const std::string line = from_server.substr(start, nl + 1 - start);
      start = nl + 1;
      reply.push_back(line);
      if (EndsReply(WithoutEol(line)) && !finish_reply()) return false;
    }
    from_server.erase(0, start);
    if (raw) {
      // Bytes after the 220 in the same read (cannot happen with a sane server): relay them.
      std::string rest;
      for (const std::string& l : reply) rest += l;
      rest += from_server;
      reply.clear();
      from_server.clear();
      if (!rest.empty() && !SendAll(client_fd, rest)) return false;
      if (!from_client.empty()) {
        const std::string pending = std::move(from_client);
        from_client.clear();
        if (!SendAll(upstream_fd, pending)) return false;
      }
    }
    return true;
  };

  auto on_client_bytes = [&](absl::string_view bytes) -> bool {
    if (raw) return SendAll(upstream_fd, bytes);
    from_client.append(bytes.data(), bytes.size());
    size_t start = 0;
    for (size_t nl; !raw && (nl = from_client.find('\n', start)) != std::string::npos;) {
      const std::string line = from_client.substr(start, nl + 1 - start);
      start = nl + 1;
      const std::string text(WithoutEol(line));
      NoteCommand(text);
      const std::string verb = Verb(text);
      if (verb == "STARTTLS" && mode == MitmMode::kStripStartTls) {
        starttls_refused_.fetch_add(1);
        if (!SendAll(client_fd, "502 5.5.1 not supported\r\n")) return false;
        continue;
      }
      awaiting.push_back(verb);
      if (!SendAll(upstream_fd, line)) return false;
      if (verb == "MAIL") {
        // A plaintext transaction: no more EHLO/STARTTLS to rewrite, and message bodies (BDAT
        // chunks) are not lines. Replies already owed are relayed as they come.
        raw = true;
      }
    }
    from_client.erase(0, start);
    if (raw && !from_client.empty()) {
      const std::string pending = std::move(from_client);
      from_client.clear();
      if (!SendAll(upstream_fd, pending)) return false;
    }
    if (raw && (!reply.empty() || !from_server.empty())) {
      std::string rest;
      for (const std::string& l : reply) rest += l;
      rest += from_server;
      reply.clear();
      from_server.clear();
      if (!SendAll(client_fd, rest)) return false;
    }
    return true;
  };

  char buf[16384];
  while (ok) {
    pollfd p[3] = {{client_fd, POLLIN, 0}, {upstream_fd, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
    const int r = poll(p, 3, -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if ((p[2].revents & POLLIN) != 0) break;
    if (p[0].revents != 0) {
      const ssize_t n = recv(client_fd, buf, sizeof(buf), 0);
      if (n <= 0) break;
      ok = on_client_bytes(absl::string_view(buf, static_cast<size_t>(n)));
    }
    if (ok && p[1].revents != 0) {
      const ssize_t n = recv(upstream_fd, buf, sizeof(buf), 0);
      if (n <= 0) break;
      ok = on_server_bytes(absl::string_view(buf, static_cast<size_t>(n)));
    }
  }
  close(client_fd);
  close(upstream_fd);
}

// ---------------------------------------------------------------------------------------------
// BlackHoleListener

absl::StatusOr<std::unique_ptr<BlackHoleListener>> BlackHoleListener::Start(
    const std::string& ip, uint16_t port, BlackHoleMode mode) {
  std::unique_ptr<BlackHoleListener> l(new BlackHoleListener());
  l->mode_ = mode;
  absl::StatusOr<int> fd = Listen(ip, port, mode == BlackHoleMode::kSynDrop ? 0 : 128, &l->port_);
  if (!fd.ok()) return fd.status();
  l->listen_fd_ = *fd;
  if (absl::Status st = MakeStopPipe(l->stop_pipe_); !st.ok()) return st;
  if (mode == BlackHoleMode::kSynDrop) {
    // Linux queues backlog + 1 established connections; with the queue full, SYNs are dropped
    // (tcp_conn_request: listen overflow), so later connect()s hang in SYN_SENT.
    absl::StatusOr<sockaddr_in> sa = LoopbackAddr(ip, l->port_);
    if (!sa.ok()) return sa.status();
    for (int i = 0; i < 3; ++i) {
      const int f = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
      if (f < 0) return absl::InternalError(Errno("socket", errno));
      (void)connect(f, reinterpret_cast<const sockaddr*>(&*sa), sizeof(*sa));
      l->held_fds_.push_back(f);
      // Let the handshake of the fillers that fit finish before the next one.
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  if (mode == BlackHoleMode::kAcceptSilent) {
    l->thread_ = std::thread([p = l.get()] { p->AcceptLoop(); });
  }
  return l;
}

void BlackHoleListener::AcceptLoop() {
  for (;;) {
    if (!WaitReadable(listen_fd_, stop_pipe_[0])) return;
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    std::lock_guard<std::mutex> lock(mu_);
    held_fds_.push_back(fd);
    accepted_.fetch_add(1);  // never written, never read: silence until we are destroyed
  }
}

BlackHoleListener::~BlackHoleListener() {
  Stop(stop_pipe_);
  if (thread_.joinable()) thread_.join();
  for (int fd : held_fds_) close(fd);
  CloseFd(&listen_fd_);
  CloseFd(&stop_pipe_[0]);
  CloseFd(&stop_pipe_[1]);
}

// ---------------------------------------------------------------------------------------------
// ResetListener

absl::StatusOr<std::unique_ptr<ResetListener>> ResetListener::Start(const std::string& ip,
                                                                    uint16_t port) {
  std::unique_ptr<ResetListener> l(new ResetListener());
  absl::StatusOr<int> fd = Listen(ip, port, 128, &l->port_);
  if (!fd.ok()) return fd.status();
  l->listen_fd_ = *fd;
  if (absl::Status st = MakeStopPipe(l->stop_pipe_); !st.ok()) return st;
  l->thread_ = std::thread([p = l.get()] { p->AcceptLoop(); });
  return l;
}

void ResetListener::AcceptLoop() {
  for (;;) {
    if (!WaitReadable(listen_fd_, stop_pipe_[0])) return;
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    // SO_LINGER with a zero timeout: close() sends RST instead of FIN.
    linger lg;
    lg.l_onoff = 1;
    lg.l_linger = 0;
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    resets_.fetch_add(1);  // before close(): the client may look as soon as the RST lands
    close(fd);
  }
}

ResetListener::~ResetListener() {
  Stop(stop_pipe_);
  if (thread_.joinable()) thread_.join();
  CloseFd(&listen_fd_);
  CloseFd(&stop_pipe_[0]);
  CloseFd(&stop_pipe_[1]);
}

}  // namespace mxb::testing
