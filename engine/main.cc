// mxburst: the delivery engine's command line. Thin: flags -> EngineConfig -> Engine.
#include <signal.h>
#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "engine/config.h"
#include "engine/engine.h"
#include "engine/privileges.h"
#include "engine/worker.h"
#include "queue/spool_lock.h"

namespace {

mxb::Engine* g_engine = nullptr;

void OnSignal(int) {
  if (g_engine != nullptr) g_engine->RequestStop();
}

// SIGHUP: reopen the accounting log (logrotate) and reload the shaping rules (engine/reload.cc).
void OnHangup(int) {
  if (g_engine != nullptr) g_engine->RequestReload();
}

// Sessions are io_uring direct descriptors in one registered file table per worker, and the
// kernel sizes each table by RLIMIT_NOFILE: raise the soft limit to the hard one. One line on
// stderr (also with --quiet) when that fails or when the tables hold fewer sessions than
// max_in_flight may need.
void RaiseFileLimit(const mxb::EngineConfig& config) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  std::string failed;
  if (rl.rlim_cur < rl.rlim_max) {
    const rlim_t soft = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
      failed = std::string("cannot raise RLIMIT_NOFILE from ") + std::to_string(soft) + " to " +
               std::to_string(rl.rlim_max) + " (" + std::strerror(errno) + "); ";
      rl.rlim_cur = soft;
    }
  }
  const unsigned workers = config.workers > 0
                               ? static_cast<unsigned>(config.workers)
                               : std::max(1u, std::thread::hardware_concurrency());
  const uint32_t per_worker = mxb::Worker::DirectTableSize();
  const uint64_t capacity = uint64_t{workers} * per_worker;
  if (failed.empty() && capacity >= config.max_messages_in_flight) return;
  std::fprintf(stderr,
               "mxburst: %sRLIMIT_NOFILE %llu: session capacity %u workers x %u direct "
               "descriptors = %llu%s\n",
               failed.c_str(), static_cast<unsigned long long>(rl.rlim_cur), workers, per_worker,
               static_cast<unsigned long long>(capacity),
               capacity < config.max_messages_in_flight
                   ? (", below max_in_flight " + std::to_string(config.max_messages_in_flight) +
                      " (raise the hard limit or --workers)")
                         .c_str()
                   : "");
}

}  // namespace

int main(int argc, char** argv) {
  bool help = false;
  bool version = false;
  absl::StatusOr<mxb::EngineConfig> config = mxb::ParseFlags(argc, argv, &help, &version);
  if (help) {
    std::fputs(mxb::UsageText(), stdout);
    return 0;
  }
  if (version) {
    std::printf("mxburst %s\n", MXB_VERSION);
    return 0;
  }
  if (!config.ok()) {
    std::fprintf(stderr, "mxburst: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  // DKIM keys are read here, still as the starting user (they may be root-only files), and
  // checked: a bad one stops start-up with one line.
  if (absl::Status s = mxb::LoadDkimSigner(&*config); !s.ok()) {
    std::fprintf(stderr, "mxburst: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  // Root only long enough to hand the spool to `user`, take the lock and raise RLIMIT_NOFILE.
  if (absl::Status s = mxb::PrepareSpoolForUser(*config); !s.ok()) {
    std::fprintf(stderr, "mxburst: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  // One engine per spool (two would recover and deliver each other's messages): the lock is
  // held until the process exits, kill -9 included.
  absl::StatusOr<mxb::SpoolLock> lock = mxb::SpoolLock::Acquire(config->spool_dir);
  if (!lock.ok()) {
    std::fprintf(stderr, "mxburst: %s\n", std::string(lock.status().message()).c_str());
    return 1;
  }
  RaiseFileLimit(*config);
  if (absl::Status s = mxb::DropPrivileges(*config); !s.ok()) {
    std::fprintf(stderr, "mxburst: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);

  mxb::Engine engine(*std::move(config));
  if (absl::Status s = engine.Start(); !s.ok()) {
    std::fprintf(stderr, "mxburst: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  g_engine = &engine;
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  struct sigaction hup {};
  hup.sa_handler = OnHangup;
  sigemptyset(&hup.sa_mask);
  hup.sa_flags = SA_RESTART;
  sigaction(SIGHUP, &hup, nullptr);

  absl::Status s = engine.Run();
  g_engine = nullptr;
  std::printf("%s\n", engine.SummaryLine().c_str());
  if (!s.ok()) {
    std::fprintf(stderr, "mxburst: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
