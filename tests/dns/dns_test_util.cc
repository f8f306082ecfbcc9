#include "tests/dns/dns_test_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"

namespace mxb::testing {

std::string AuthZone(const std::string& name, const std::string& file) {
  return absl::StrCat("auth-zone:\n  name: \"", name, "\"\n  zonefile: \"", file,
                      "\"\n  for-upstream: yes\n  for-downstream: no\n");
}
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::Status WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

absl::StatusOr<std::string> MakeTempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "mxb-dns-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) {
    return absl::InternalError(absl::StrCat("mkdtemp: ", std::strerror(errno)));
  }
  return tmpl;
}

// Binds a UDP socket to 127.0.0.1:port (0 = any free one); returns fd and the port.
absl::StatusOr<std::pair<int, uint16_t>> BindUdp(uint16_t port) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    int e = errno;
    close(fd);
    return absl::UnavailableError(absl::StrCat("bind udp ", port, ": ", std::strerror(e)));
  }
  return std::make_pair(fd, ntohs(a.sin_port));
}

}  // namespace

absl::StatusOr<uint16_t> FreeLoopbackPort() {
  for (int attempt = 0; attempt < 20; ++attempt) {
    absl::StatusOr<std::pair<int, uint16_t>> udp = BindUdp(0);
    if (!udp.ok()) return udp.status();
    int tcp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(udp->second);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = tcp >= 0 && bind(tcp, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    if (tcp >= 0) close(tcp);
    close(udp->first);
    if (ok) return udp->second;
  }
  return absl::UnavailableError("no free loopback port");
}

absl::StatusOr<std::unique_ptr<UnboundServer>> UnboundServer::Start(
    const std::string& server_conf, const std::string& extra_conf) {
  if (access(MXB_UNBOUND_BIN, X_OK) != 0) {
    return absl::NotFoundError(absl::StrCat(MXB_UNBOUND_BIN, " not installed (tools/setup.sh)"));
  }
  std::unique_ptr<UnboundServer> s(new UnboundServer());
  absl::StatusOr<std::string> dir = MakeTempDir();
  if (!dir.ok()) return dir.status();
  s->dir_ = *dir;
  absl::StatusOr<uint16_t> port = FreeLoopbackPort();
  if (!port.ok()) return port.status();
  s->port_ = *port;
  std::string conf = absl::StrCat(
      "server:\n"
      "  username: \"\"\n"
      "  chroot: \"\"\n"
      "  directory: \"@DIR@\"\n"
      "  pidfile: \"\"\n"
      "  use-syslog: no\n"
      "  logfile: \"\"\n"
      "  verbosity: 1\n"
      "  interface: 127.0.0.1@", s->port_, "\n",
      "  port: ", s->port_, "\n",
      "  do-ip6: no\n"
      "  do-not-query-localhost: no\n"
      "  access-control: 127.0.0.0/8 allow\n"
      "  num-threads: 1\n"
      "  so-reuseport: no\n"
      "  module-config: \"validator iterator\"\n"
      // Never recurse to the real root servers: a name outside the test zones goes to a
      // "root" on 127.0.0.254, where nothing listens, and fails at once (loopback only).
      "  root-hints: \"@DIR@/root.hints\"\n",
      server_conf,
      "remote-control:\n"
      "  control-enable: no\n",
      extra_conf);
  conf = absl::StrReplaceAll(conf, {{"@DIR@", s->dir_}});
  const std::string conf_path = s->dir_ + "/unbound.conf";
  const std::string log_path = s->dir_ + "/unbound.log";
  if (absl::Status st = WriteFile(conf_path, conf); !st.ok()) return st;
  if (absl::Status st = WriteFile(s->dir_ + "/root.hints",
                                 ". 3600000 NS root.invalid.\nroot.invalid. 3600000 A 127.0.0.254\n");
      !st.ok()) {
    return st;
  }

  pid_t pid = fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);  // a crashed test leaves no unbound behind
    int log = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (log >= 0) {
      dup2(log, 1);
      dup2(log, 2);
    }
    execl(MXB_UNBOUND_BIN, "unbound", "-d", "-c", conf_path.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  s->pid_ = pid;
  // Ready when its TCP listener accepts (it opens UDP and TCP together).
  for (int i = 0; i < 500; ++i) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      s->pid_ = -1;
      return absl::InternalError(absl::StrCat("unbound exited: ", ReadFile(log_path)));
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(s->port_);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool up = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    close(fd);
    if (up) return s;
    usleep(10000);
  }
  return absl::DeadlineExceededError(absl::StrCat("unbound not up: ", ReadFile(log_path)));
}

UnboundServer::~UnboundServer() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    int status = 0;
    for (int i = 0; i < 300 && waitpid(pid_, &status, WNOHANG) == 0; ++i) usleep(10000);
    if (waitpid(pid_, &status, WNOHANG) == 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
    }
  }
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

std::string UnboundServer::address() const { return absl::StrCat("127.0.0.1:", port_); }

absl::StatusOr<SignedZone> MakeSignedZone(const std::string& dir, const std::string& zone,
                                          const std::string& records) {
  if (access(MXB_LDNS_KEYGEN_BIN, X_OK) != 0 || access(MXB_LDNS_SIGNZONE_BIN, X_OK) != 0) {
    return absl::NotFoundError("ldns-keygen/ldns-signzone not installed (ldnsutils)");
  }
  SignedZone z;
  const std::string plain = absl::StrCat(dir, "/", zone, "zone");
  if (absl::Status st = WriteFile(plain, records); !st.ok()) return st;
  // ECDSA P-256 (algorithm 13): fast to generate, what most signed zones use today.
  std::string cmd = absl::StrCat(
      "cd '", dir, "' && ksk=$(", MXB_LDNS_KEYGEN_BIN, " -a ECDSAP256SHA256 -k ", zone,
      ") && zsk=$(", MXB_LDNS_KEYGEN_BIN, " -a ECDSAP256SHA256 ", zone, ") && ",
      MXB_LDNS_SIGNZONE_BIN, " -n '", plain, "' $ksk $zsk && echo \"$ksk\" > ksk.name");
  if (std::system(cmd.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("signing failed: ", cmd));
  }
  std::string ksk(absl::StripAsciiWhitespace(ReadFile(dir + "/ksk.name")));
  z.zone_file = plain + ".signed";
  z.anchor_file = absl::StrCat(dir, "/", ksk, ".key");
  return z;
}

Resolver::WatchFn PollLoop::Watcher() {
  return [this](int fd, bool r, bool w) {
    if (!r && !w) {
      fds_.erase(fd);
    } else {
      fds_[fd] = {r, w};
    }
  };
}

bool PollLoop::RunUntil(Resolver& r, const std::function<bool()>& done, absl::Duration limit) {
  const absl::Time deadline = absl::Now() + limit;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    std::vector<pollfd> pfds;
    for (const auto& [fd, rw] : fds_) {
      pfds.push_back(pollfd{fd, static_cast<short>((rw.first ? POLLIN : 0) |
                                                   (rw.second ? POLLOUT : 0)),
                            0});
    }
    for (const auto& [fd, fn] : readers_) pfds.push_back(pollfd{fd, POLLIN, 0});
    absl::Duration wait = std::min(r.NextTimeout(), absl::Milliseconds(20));
    int n = poll(pfds.data(), pfds.size(), static_cast<int>(absl::ToInt64Milliseconds(wait)) + 1);
    if (n < 0 && errno != EINTR) return false;
    for (const pollfd& p : pfds) {
      if (p.revents == 0) continue;
      if (auto it = readers_.find(p.fd); it != readers_.end()) {
        it->second();
        continue;
      }
      // The resolver may have closed or changed the fd in the meantime.
      if (fds_.count(p.fd) && (p.revents & (POLLIN | POLLERR | POLLHUP))) r.OnReadable(p.fd);
      if (fds_.count(p.fd) && (p.revents & POLLOUT)) r.OnWritable(p.fd);
    }
    r.ProcessTimeouts();
  }
  return true;
}

absl::StatusOr<std::unique_ptr<UdpBlackhole>> UdpBlackhole::Start() {
  absl::StatusOr<std::pair<int, uint16_t>> s = BindUdp(0);
  if (!s.ok()) return s.status();
  auto b = std::make_unique<UdpBlackhole>();
  b->fd_ = s->first;
  b->port_ = s->second;
  return b;
}
UdpBlackhole::~UdpBlackhole() {
  if (fd_ >= 0) close(fd_);
}
std::string UdpBlackhole::address() const { return absl::StrCat("127.0.0.1:", port_); }

absl::StatusOr<std::unique_ptr<ScriptedResponder>> ScriptedResponder::Start(Script respond) {
  absl::StatusOr<std::pair<int, uint16_t>> s = BindUdp(0);
  if (!s.ok()) return s.status();
  auto r = std::make_unique<ScriptedResponder>();
  r->fd_ = s->first;
  r->port_ = s->second;
  r->respond_ = std::move(respond);
  return r;
}
ScriptedResponder::~ScriptedResponder() {
  if (fd_ >= 0) close(fd_);
}
std::string ScriptedResponder::address() const { return absl::StrCat("127.0.0.1:", port_); }

void ScriptedResponder::OnReadable() {
  for (;;) {
    uint8_t buf[4096];
    sockaddr_storage from{};
    socklen_t fromlen = sizeof(from);
    ssize_t n = recvfrom(fd_, buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&from), &fromlen);
    if (n <= 0) return;
    ++queries_;
    std::vector<uint8_t> answer = respond_(std::vector<uint8_t>(buf, buf + n));
    if (!answer.empty()) {
      sendto(fd_, answer.data(), answer.size(), 0, reinterpret_cast<sockaddr*>(&from), fromlen);
    }
  }
}

}  // namespace mxb::testing
