// mxburst: the delivery engine's command line. Thin: flags -> EngineConfig -> Engine.
#include <signal.h>
#include <sys/resource.h>

#include <cstdio>

#include "engine/config.h"
#include "engine/engine.h"

namespace {

mxb::Engine* g_engine = nullptr;

void OnSignal(int) {
  if (g_engine != nullptr) g_engine->RequestStop();
}

// Tens of thousands of sessions need as many descriptors: raise the soft limit to the hard one.
void RaiseFileLimit(bool quiet) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  if (rl.rlim_cur < rl.rlim_max) {
    rlim_t want = rl.rlim_max;
    rl.rlim_cur = want;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 && !quiet) {
      std::fprintf(stderr, "mxburst: warning: cannot raise RLIMIT_NOFILE to %llu\n",
                   static_cast<unsigned long long>(want));
    }
  }
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
  RaiseFileLimit(config->quiet);
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

  absl::Status s = engine.Run();
  g_engine = nullptr;
  std::printf("%s\n", engine.SummaryLine().c_str());
  if (!s.ok()) {
    std::fprintf(stderr, "mxburst: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
