// mxburst-sink: the io_uring SMTP server that is the test and bench peer of mxburst.
//
// main parses the command line, loads or generates the certificate, binds every listener once
// per worker (SO_REUSEPORT when --threads > 1), starts the workers, announces "listening", and
// waits for SIGINT/SIGTERM; then it stops the workers and prints the stats JSON line.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <future>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tls/tls_session.h"
#include "tools/sink/message_store.h"
#include "tools/sink/sink_options.h"
#include "tools/sink/sink_stats.h"
#include "tools/sink/sink_worker.h"

namespace mxb::sink {
namespace {

[[noreturn]] void Die(const std::string& message) {
  fprintf(stderr, "mxburst-sink: %s\n", message.c_str());
  fflush(stderr);
  _exit(1);
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": ", strerror(errno)));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Each worker's registered file table (direct descriptors) is as large as RLIMIT_NOFILE allows:
// take the hard limit, and say so when that fails.
void RaiseNofileLimit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    const rlim_t soft = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
      fprintf(stderr, "mxburst-sink: cannot raise RLIMIT_NOFILE from %llu to %llu: %s; each "
              "worker holds at most %llu sessions\n", static_cast<unsigned long long>(soft),
              static_cast<unsigned long long>(rl.rlim_max), strerror(errno),
              static_cast<unsigned long long>(soft));
    }
  }
}

// Binds and listens on `spec`. `*port` is the port to use (0 = any); it is updated to the port
// actually bound so the other workers share it.
absl::StatusOr<int> BindListener(const ListenerSpec& spec, uint16_t* port, bool reuse_port) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (inet_pton(AF_INET, spec.host.c_str(), &reinterpret_cast<sockaddr_in*>(&ss)->sin_addr) ==
      1) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(*port);
    len = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, spec.host.c_str(),
                       &reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr) == 1) {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(*port);
    len = sizeof(sockaddr_in6);
  } else {
    return absl::InvalidArgumentError(absl::StrCat("bad address ", spec.host));
  }
  const std::string where = FormatHostPort(spec.host, *port);
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket ", where, ": ", strerror(errno)));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  // Only with several workers: a stray second sink on the same port must fail, not share it.
  if (reuse_port) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  // Accepted sockets inherit TCP_NODELAY: replies are whole, Nagle would only add latency.
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (ss.ss_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    int err = errno;
    close(fd);
    return absl::InternalError(absl::StrCat("bind ", where, ": ", strerror(err)));
  }
  if (listen(fd, 65535) != 0) {
    int err = errno;
    close(fd);
    return absl::InternalError(absl::StrCat("listen ", where, ": ", strerror(err)));
  }
  if (*port == 0) {
    sockaddr_storage bound{};
    socklen_t blen = sizeof(bound);
    getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &blen);
    *port = ntohs(bound.ss_family == AF_INET
                      ? reinterpret_cast<sockaddr_in*>(&bound)->sin_port
                      : reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
  }
  return fd;
}

int Main(int argc, char** argv) {
  absl::StatusOr<SinkOptions> parsed = ParseSinkOptions(argc, argv);
  if (!parsed.ok()) {
    fprintf(stderr, "mxburst-sink: %s\n", std::string(parsed.status().message()).c_str());
    return 2;
  }
  const SinkOptions& opts = *parsed;
  if (opts.help) {
    fputs(SinkUsage(), stdout);
    return 0;
  }

  RaiseNofileLimit();
  signal(SIGPIPE, SIG_IGN);
  // Workers inherit this mask; only main receives SIGINT/SIGTERM, through sigwait().
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  TlsGlobalInit();
  const std::string hostname = opts.cert_names.empty() ? "localhost" : opts.cert_names[0];
  TlsServerOptions global_tls;
  if (!opts.cert_file.empty()) {
    auto cert = ReadFile(opts.cert_file);
    if (!cert.ok()) Die(std::string(cert.status().message()));
    auto key = ReadFile(opts.key_file);
    if (!key.ok()) Die(std::string(key.status().message()));
    global_tls.cert_pem = *std::move(cert);
    global_tls.key_pem = *std::move(key);
  } else {
    auto generated = GenerateSelfSignedCert(hostname, opts.cert_names, 365);
    if (!generated.ok()) Die(absl::StrCat("generating certificate: ", generated.status().ToString()));
    global_tls.cert_pem = std::move(generated->cert_pem);
    global_tls.key_pem = std::move(generated->key_pem);
  }
  if (!opts.write_cert_file.empty()) {
    absl::Status st = WriteFileAtomically(opts.write_cert_file, global_tls.cert_pem);
    if (!st.ok()) Die(st.ToString());
  }
  auto global_ctx = TlsContext::NewServer(global_tls);
  if (!global_ctx.ok()) Die(absl::StrCat("TLS context: ", global_ctx.status().ToString()));

  if (!opts.out_dir.empty()) {
    if (mkdir(opts.out_dir.c_str(), 0755) != 0 && errno != EEXIST) {
      Die(absl::StrCat(opts.out_dir, ": mkdir: ", strerror(errno)));
    }
    struct stat st{};
    if (stat(opts.out_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      Die(absl::StrCat(opts.out_dir, ": not a directory"));
    }
  }

  std::vector<std::unique_ptr<TlsContext>> own_contexts;
  std::vector<ListenerRuntime> listeners(opts.listeners.size());
  for (size_t i = 0; i < opts.listeners.size(); ++i) {
    ListenerRuntime& lr = listeners[i];
    lr.spec = opts.listeners[i];
    lr.session_config.hostname = hostname;
    lr.session_config.banner = opts.banner;
    lr.session_config.offer_starttls = !lr.spec.no_starttls;
    lr.session_config.offer_requiretls = lr.spec.requiretls;
    lr.session_config.tempfail_rcpt = opts.tempfail_rcpt;
    lr.session_config.reject_rcpt = opts.reject_rcpt;
    lr.session_config.max_rcpts = opts.max_rcpts;
    lr.session_config.reject_data_from = opts.reject_data_from;
    lr.session_config.refuse_data_from = opts.refuse_data_from;
    lr.session_config.shutdown_rcpt = opts.shutdown_rcpt;
    lr.session_config.offer_chunking = opts.chunking;
    lr.session_config.chunking_broken = opts.chunking_broken;
    lr.session_config.quiet = opts.quiet;
    lr.tls = global_ctx->get();
    if (!lr.spec.cert_file.empty()) {
      TlsServerOptions o;
      auto cert = ReadFile(lr.spec.cert_file);
      if (!cert.ok()) Die(std::string(cert.status().message()));
      auto key = ReadFile(lr.spec.key_file);
      if (!key.ok()) Die(std::string(key.status().message()));
      o.cert_pem = *std::move(cert);
      o.key_pem = *std::move(key);
      auto ctx = TlsContext::NewServer(o);
      if (!ctx.ok()) Die(absl::StrCat(lr.spec.cert_file, ": ", ctx.status().ToString()));
      lr.tls = ctx->get();
      own_contexts.push_back(*std::move(ctx));
    }
  }

  // Every worker binds every listener (SO_REUSEPORT spreads connections over the workers).
  const bool reuse_port = opts.threads > 1;
  std::vector<std::vector<int>> fds(opts.threads);
  for (int w = 0; w < opts.threads; ++w) {
    for (ListenerRuntime& lr : listeners) {
      auto fd = BindListener(lr.spec, &lr.spec.port, reuse_port);
      if (!fd.ok()) Die(std::string(fd.status().message()));
      fds[w].push_back(*fd);
    }
  }

  MessageStore store(opts.out_dir, opts.tempfail_data_every);
  SessionGauge tls_gauge;
  std::vector<std::unique_ptr<SinkWorker>> workers;
  std::vector<std::thread> threads;
  std::vector<std::future<absl::Status>> started;
  for (int w = 0; w < opts.threads; ++w) {
    workers.push_back(std::make_unique<SinkWorker>(w, &listeners, fds[w], &store,
                                                   opts.reply_delay_ms, opts.quiet, &tls_gauge));
    auto ready = std::make_shared<std::promise<absl::Status>>();
    started.push_back(ready->get_future());
    SinkWorker* worker = workers.back().get();
    threads.emplace_back([worker, ready] {
      absl::Status st = worker->Init();
      bool ok = st.ok();
      ready->set_value(std::move(st));
      if (ok) worker->Run();
    });
  }
  for (auto& f : started) {
    absl::Status st = f.get();
    if (!st.ok()) Die(std::string(st.message()));
  }

  std::vector<std::string> names;
  std::string ready_text;
  for (const ListenerRuntime& lr : listeners) {
    std::string hp = FormatHostPort(lr.spec.host, lr.spec.port);
    names.push_back(lr.spec.implicit_tls ? absl::StrCat(hp, " (implicit-tls)") : hp);
    absl::StrAppend(&ready_text, hp, lr.spec.implicit_tls ? " implicit-tls" : "", "\n");
  }
  fprintf(stderr, "mxburst-sink listening on %s\n", absl::StrJoin(names, " ").c_str());
  fflush(stderr);
  if (!opts.ready_file.empty()) {
    absl::Status st = WriteFileAtomically(opts.ready_file, ready_text);
    if (!st.ok()) Die(st.ToString());
  }

  int sig = 0;
  while (sigwait(&stop_signals, &sig) != 0) {
  }
  for (auto& w : workers) w->Stop();
  for (auto& t : threads) t.join();
  SinkStats total;
  for (auto& w : workers) total.Add(w->stats());
  total.peak_tls_sessions = tls_gauge.peak();
  const std::string json = total.ToJson();
  printf("%s\n", json.c_str());
  fflush(stdout);
  if (!opts.stats_file.empty()) {
    absl::Status st = WriteFileAtomically(opts.stats_file, json + "\n");
    if (!st.ok()) fprintf(stderr, "mxburst-sink: %s\n", st.ToString().c_str());
  }
  fflush(stderr);
  // No teardown: the kernel may own receive buffers until the rings are gone, and the process
  // is about to release everything anyway.
  _exit(0);
}

}  // namespace
}  // namespace mxb::sink

int main(int argc, char** argv) { return mxb::sink::Main(argc, argv); }
