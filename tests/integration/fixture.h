// Test fixture helpers for integration tests: start the project's real binaries (mxburst,
// mxburst-sink, mxburst-inject) as child processes on 127.0.0.0/8, temp directories, file
// helpers. Binaries are found through MXB_BIN_DIR (set by ctest, see tests/CMakeLists.txt).
#pragma once

#include <atomic>
#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "queue/spool.h"

namespace mxb::testing {

// A child process; killed (SIGKILL) and reaped on destruction if still running.
class Subprocess {
 public:
  // argv[0] is a path. stdout/stderr go to the given files ("" = inherit).
  Subprocess(std::vector<std::string> argv, const std::string& stdout_path,
             const std::string& stderr_path);
  ~Subprocess();
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  bool started() const { return pid_ > 0; }
  int pid() const { return pid_; }
  void Signal(int sig);
  // Waits for exit; returns the exit code, 128+signal if killed, -1 on timeout (then it is
  // killed).
  int Wait(absl::Duration timeout = absl::Minutes(5));

 private:
  int pid_ = -1;
  bool reaped_ = false;
};

std::string BinDir();
std::string Bin(const std::string& relative);  // e.g. "engine/mxburst"
std::string MakeTempDir(const std::string& tag);
std::string ReadFileOrDie(const std::string& path);
void WriteFileOrDie(const std::string& path, const std::string& contents);
bool WaitForFile(const std::string& path, absl::Duration timeout);
std::vector<std::string> ListDir(const std::string& dir);  // names, no dotfiles
int FreePort(const std::string& ip);                      // a currently free TCP port on ip
// Runs a command to completion and returns its exit code; output goes to `log_path`.
int RunCommand(std::vector<std::string> argv, const std::string& log_path,
        absl::Duration timeout = absl::Minutes(5));

// Polls `done` every `every` until it holds or `limit` has passed: a bound for a hung engine or
// server, never a timing assertion. True when `done` held.
//   ASSERT_TRUE(WaitFor([&] { return ReadJsonLines(log_).size() >= 7; })) << ...;
template <typename F>
bool WaitFor(F&& done, absl::Duration limit = absl::Seconds(60),
             absl::Duration every = absl::Milliseconds(50)) {
  const absl::Time deadline = absl::Now() + limit;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(every);
  }
  return true;
}

// The engine's command line: the mxburst binary, --allow-root (CI runs the tests as root), then
// `args`.
std::vector<std::string> EngineArgv(std::vector<std::string> args);
// One engine run to its end (EngineArgv(args), usually with --drain): stdout to `out_path`,
// stderr to `out_path`.err. Its exit code; -1 after `timeout` (it is killed then).
int RunEngine(std::vector<std::string> args, const std::string& out_path,
              absl::Duration timeout = absl::Minutes(5));
// The engine (EngineArgv(args)) running in the background until the test signals it.
std::unique_ptr<Subprocess> StartEngine(std::vector<std::string> args,
                                        const std::string& out_path,
                                        const std::string& err_path);

// mxburst-sink as a child process, started with a ready file and a stats file in `dir`.
class SinkProcess {
 public:
  // `args`: --listen and any other options. Waits until every listener is bound.
  SinkProcess(const std::string& dir, std::vector<std::string> args);
  bool ready() const { return ready_; }
  // host:port of every listener, in --listen order (the ready file's first words).
  std::vector<std::string> HostPorts() const;
  // SIGTERM, wait, and the stats JSON it wrote ({} if it did not exit with 0).
  nlohmann::json Stop();
  // The exit code Stop() saw (-1 before Stop()).
  int exit_code() const { return exit_code_; }
  std::string error_text() const;

 private:
  std::string dir_;
  std::unique_ptr<Subprocess> proc_;
  bool ready_ = false;
  int exit_code_ = -1;
};

// Files in `spool`/`subdir` ("incoming", "deferred", ...).
size_t CountSpool(const std::string& spool, const std::string& subdir);

// `n` pickup files for `rcpt` in `spool` (rcpt.0.eml ...): from <bounce@esp.example>, Message-ID
// <i.rcpt>, Subject `subject`, body "hello"; `envelope_extra` ("x-requiretls: yes\n") goes after
// the x-receiver line. Header-only (InjectFile is mxb_queue's), like SpoolWorld.
inline void InjectTo(const std::string& spool, const std::string& rcpt, int n,
                     const std::string& subject, const std::string& envelope_extra = "") {
  for (int i = 0; i < n; ++i) {
    std::string msg = absl::StrCat("x-sender: <bounce@esp.example>\nx-receiver: <", rcpt, ">\n",
                                   envelope_extra, "From: a@esp.example\nTo: ", rcpt,
                                   "\nMessage-ID: <", i, ".", rcpt, ">\nSubject: ", subject,
                                   "\n\nhello\n");
    ASSERT_TRUE(InjectFile(spool, absl::StrCat(rcpt, ".", i, ".eml"), msg, false).ok());
  }
}

// Accounting log records per "status" value.
std::map<std::string, int> StatusCounts(const std::vector<nlohmann::json>& log);

// One test's world: SetUp makes a temp dir `dir_` with an opened spool `spool_`, the path
// `received_` for a sink's --out-dir and the path `log_` for the engine's accounting log.
// StartSink runs mxburst-sink on ip:port_ writing to received_. Header-only, so that only the
// test binaries that use it need gtest and mxb_queue.
class SpoolWorld : public ::testing::Test {
 protected:
  explicit SpoolWorld(std::string tag, std::string log_name = "accounting.jsonl")
      : tag_(std::move(tag)), log_name_(std::move(log_name)) {}

  void SetUp() override {
    dir_ = MakeTempDir(tag_);
    spool_ = dir_ + "/spool";
    received_ = dir_ + "/received";
    log_ = dir_ + "/" + log_name_;
    ASSERT_TRUE(Spool::Open(spool_).ok());
  }

  // Files in spool_/subdir.
  size_t Count(const std::string& subdir) const { return CountSpool(spool_, subdir); }

  // The sink on `ip` and a free port (port_), --out-dir received_, then `extra`.
  void StartSink(const std::string& ip, std::vector<std::string> extra = {}) {
    port_ = FreePort(ip);
    ASSERT_GT(port_, 0);
    std::vector<std::string> args = {"--listen", absl::StrCat(ip, ":", port_), "--out-dir",
                                     received_};
    args.insert(args.end(), extra.begin(), extra.end());
    sink_ = std::make_unique<SinkProcess>(dir_, args);
    ASSERT_TRUE(sink_->ready()) << sink_->error_text();
  }

  // Stops the sink (which must exit with 0) and returns its stats.
  nlohmann::json StopSink() {
    nlohmann::json stats = sink_->Stop();
    EXPECT_EQ(sink_->exit_code(), 0) << sink_->error_text();
    return stats;
  }

  std::string dir_, spool_, received_, log_;
  int port_ = 0;
  std::unique_ptr<SinkProcess> sink_;

 private:
  std::string tag_, log_name_;
};

// The Message-ID header value of an RFC 5322 message ("" if none), LF or CRLF.
std::string MessageIdOf(const std::string& message);

// Every JSON line of a file (lines torn by a crash are skipped).
std::vector<nlohmann::json> ReadJsonLines(const std::string& path);

// FAULT INJECTION listener on 127.0.0.1:port for peers that misbehave in ways mxburst-sink will
// not: kDrip sends an SMTP greeting one byte every 50 ms (bounded to 60 s), kReset accepts and
// resets the connection (SO_LINGER 0), kSilent accepts and never writes, kStallAfterData
// answers greeting, EHLO, MAIL, RCPT and DATA (354) and then never replies to the message.
// Counts accepts (and transactions stalled), so a test can prove a host was (not) tried again.
class FaultServer {
 public:
  enum class Mode { kDrip, kReset, kSilent, kStallAfterData };
  FaultServer(int port, Mode mode);
  ~FaultServer();
  bool ok() const { return ok_; }
  int accepts() const { return accepts_.load(); }
  int stalled() const { return stalled_.load(); }  // kStallAfterData: sessions past the 354

 private:
  void Serve();
  int fd_ = -1;
  Mode mode_;
  bool ok_ = false;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepts_{0};
  std::atomic<int> stalled_{0};
  std::thread thread_;
  std::vector<std::thread> clients_;
};

}  // namespace mxb::testing
