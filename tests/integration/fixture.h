// Test fixture helpers for integration tests: start the project's real binaries (mxburst,
// mxburst-sink, mxburst-inject) as child processes on 127.0.0.0/8, temp directories, file
// helpers. Binaries are found through MXB_BIN_DIR (set by ctest, see tests/CMakeLists.txt).
#pragma once

#include <string>
#include <vector>

#include "absl/time/time.h"

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

}  // namespace mxb::testing
