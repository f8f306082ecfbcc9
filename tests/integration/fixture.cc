#include "tests/integration/fixture.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <netinet/in.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "absl/strings/str_cat.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace mxb::testing {

Subprocess::Subprocess(std::vector<std::string> argv, const std::string& stdout_path,
                       const std::string& stderr_path) {
  pid_ = fork();
  if (pid_ == 0) {
    if (!stdout_path.empty()) {
      int fd = open(stdout_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) dup2(fd, 1);
    }
    if (!stderr_path.empty()) {
      int fd = open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) dup2(fd, 2);
    }
    std::vector<char*> args;
    for (std::string& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
}

Subprocess::~Subprocess() {
  if (pid_ > 0 && !reaped_) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

void Subprocess::Signal(int sig) {
  if (pid_ > 0 && !reaped_) kill(pid_, sig);
}

int Subprocess::Wait(absl::Duration timeout) {
  if (pid_ <= 0) return -1;
  absl::Time deadline = absl::Now() + timeout;
  while (true) {
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      reaped_ = true;
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
      return -1;
    }
    if (absl::Now() > deadline) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
      reaped_ = true;
      return -1;
    }
    usleep(10000);
  }
}

std::string BinDir() {
  const char* d = std::getenv("MXB_BIN_DIR");
  return d != nullptr ? d : ".";
}

std::string Bin(const std::string& relative) { return BinDir() + "/" + relative; }

std::string MakeTempDir(const std::string& tag) {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = absl::StrCat(base != nullptr ? base : "/tmp", "/mxb-", tag, "-XXXXXX");
  char* made = mkdtemp(tmpl.data());
  if (made == nullptr) throw std::runtime_error("mkdtemp failed");
  return tmpl;
}

std::string ReadFileOrDie(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFileOrDie(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error("cannot write " + path);
  out << contents;
}

bool WaitForFile(const std::string& path, absl::Duration timeout) {
  struct stat st;
  return WaitFor([&] { return stat(path.c_str(), &st) == 0; }, timeout, absl::Milliseconds(10));
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    out.emplace_back(e->d_name);
  }
  closedir(d);
  return out;
}

int FreePort(const std::string& ip) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  a.sin_port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

int RunCommand(std::vector<std::string> argv, const std::string& log_path, absl::Duration timeout) {
  Subprocess p(std::move(argv), log_path, log_path.empty() ? "" : log_path + ".err");
  return p.Wait(timeout);
}

std::vector<std::string> EngineArgv(std::vector<std::string> args) {
  std::vector<std::string> argv = {Bin("engine/mxburst"), "--allow-root"};
  argv.insert(argv.end(), std::make_move_iterator(args.begin()),
              std::make_move_iterator(args.end()));
  return argv;
}

int RunEngine(std::vector<std::string> args, const std::string& out_path,
              absl::Duration timeout) {
  return RunCommand(EngineArgv(std::move(args)), out_path, timeout);
}

std::unique_ptr<Subprocess> StartEngine(std::vector<std::string> args,
                                        const std::string& out_path,
                                        const std::string& err_path) {
  return std::make_unique<Subprocess>(EngineArgv(std::move(args)), out_path, err_path);
}

SinkProcess::SinkProcess(const std::string& dir, std::vector<std::string> args) : dir_(dir) {
  std::vector<std::string> argv = {Bin("tools/mxburst-sink"), "--ready-file", dir + "/sink.ready",
                                   "--stats-file", dir + "/sink-stats.json", "--quiet"};
  argv.insert(argv.end(), args.begin(), args.end());
  unlink((dir + "/sink.ready").c_str());
  proc_ = std::make_unique<Subprocess>(argv, dir + "/sink.out", dir + "/sink.err");
  ready_ = WaitForFile(dir + "/sink.ready", absl::Seconds(10));
}

std::vector<std::string> SinkProcess::HostPorts() const {
  std::vector<std::string> out;
  for (absl::string_view line :
       absl::StrSplit(ReadFileOrDie(dir_ + "/sink.ready"), '\n', absl::SkipEmpty())) {
    out.push_back(std::string(line.substr(0, line.find(' '))));
  }
  return out;
}

std::string SinkProcess::error_text() const {
  std::ifstream in(dir_ + "/sink.err");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

nlohmann::json SinkProcess::Stop() {
  proc_->Signal(SIGTERM);
  exit_code_ = proc_->Wait(absl::Seconds(30));
  if (exit_code_ != 0) return nlohmann::json::object();
  return nlohmann::json::parse(ReadFileOrDie(dir_ + "/sink-stats.json"), nullptr, false);
}

size_t CountSpool(const std::string& spool, const std::string& subdir) {
  return ListDir(spool + "/" + subdir).size();
}

std::map<std::string, int> StatusCounts(const std::vector<nlohmann::json>& log) {
  std::map<std::string, int> out;
  for (const nlohmann::json& r : log) ++out[r["status"].get<std::string>()];
  return out;
}

std::string MessageIdOf(const std::string& message) {
  for (absl::string_view line : absl::StrSplit(message, '\n')) {
    if (line.empty() || line == "\r") break;  // end of the header section
    if (line.size() >= 11 && absl::EqualsIgnoreCase(line.substr(0, 11), "message-id:")) {
      return std::string(absl::StripAsciiWhitespace(line.substr(11)));
    }
  }
  return "";
}

std::vector<nlohmann::json> ReadJsonLines(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_discarded()) out.push_back(std::move(j));
  }
  return out;
}

FaultServer::FaultServer(int port, Mode mode) : mode_(mode) {
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  ok_ = bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 && listen(fd_, 64) == 0;
  thread_ = std::thread([this] { Serve(); });
}

FaultServer::~FaultServer() {
  stop_ = true;
  shutdown(fd_, SHUT_RDWR);
  close(fd_);
  thread_.join();
  for (std::thread& t : clients_) t.join();
}

void FaultServer::Serve() {
  while (!stop_) {
    int c = accept(fd_, nullptr, nullptr);
    if (c < 0) return;
    ++accepts_;
    clients_.emplace_back([this, c] {
      switch (mode_) {
        case Mode::kReset: {
          linger l{1, 0};
          setsockopt(c, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
          break;
        }
        case Mode::kSilent:
          // Hold the connection, read and ignore, until the peer gives up (bounded: 60 s).
          for (int i = 0; i < 600 && !stop_; ++i) {
            char buf[512];
            if (recv(c, buf, sizeof(buf), MSG_DONTWAIT) == 0) break;
            usleep(100000);
          }
          break;
        case Mode::kStallAfterData: {
          // One command per line (no PIPELINING offered); after "354" the rest is read and
          // ignored until the peer goes away (bounded: 60 s).
          auto say = [c](const char* s) { return send(c, s, strlen(s), MSG_NOSIGNAL) > 0; };
          std::string in;
          bool data = false;
          say("220 stall.example ESMTP\r\n");
          for (int i = 0; i < 600 && !stop_; ++i) {
            char buf[4096];
            ssize_t n = recv(c, buf, sizeof(buf), MSG_DONTWAIT);
            if (n == 0) break;
            if (n < 0) {
              usleep(100000);
              continue;
            }
            if (data) continue;
            in.append(buf, static_cast<size_t>(n));
            for (size_t eol; !data && (eol = in.find("\r\n")) != std::string::npos;) {
              const std::string cmd = in.substr(0, 4);
              in.erase(0, eol + 2);
              if (cmd == "DATA") {
                data = true;
                ++stalled_;
                say("354 go ahead\r\n");
              } else {
                say("250 ok\r\n");
              }
            }
          }
          break;
        }
        case Mode::kDrip: {
          const char kGreeting[] = "220 drip.example ESMTP\r\n";
          for (int i = 0; i < 1200 && !stop_; ++i) {
            if (send(c, &kGreeting[i % (sizeof(kGreeting) - 3)], 1, MSG_NOSIGNAL) != 1) break;
            usleep(50000);
          }
          break;
        }
      }
      close(c);
    });
  }
}

}  // namespace mxb::testing
