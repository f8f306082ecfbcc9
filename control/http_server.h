// ControlHttpServer: the control plane's HTTP listener — one cpp-httplib server (Debian's
// libcpp-httplib-dev) with its own accept thread and worker threads, never a worker ring.
//
// Owns: the listening socket, httplib's threads, the route table, the bearer token. Handlers are
// plain functions from HttpRequest to HttpResponse registered before Start(); they run on
// httplib's threads, so what they read must be safe to read from any thread (atomics, snapshots
// handed over through queues). Mutating routes (Post) require "Authorization: Bearer <token>"
// with the token from `token_file`; without a configured token every mutating call is refused.
//
// Threads: Handle()/Start()/Stop() from the thread that owns the server (the engine's scanner);
// handlers on httplib's threads.
//
//   ControlHttpServer http({.listen = "127.0.0.1:8025", .token_file = "/etc/mxburst/token"});
//   http.Get("/metrics", [&](const HttpRequest&) { return HttpResponse{200, kPrometheusType, m}; });
//   http.Post("/api/v1/suspend", [&](const HttpRequest& r) { ... });
//   if (auto s = http.Start(); !s.ok()) ...;   // bound; serving on its thread
//   ... http.Stop();
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace mxb::control {

// Prometheus text exposition format 0.0.4.
inline constexpr char kPrometheusType[] = "text/plain; version=0.0.4; charset=utf-8";
inline constexpr char kJsonType[] = "application/json";

struct HttpRequest {
  std::string method;
  std::string path;
  std::string body;
  std::map<std::string, std::string> params;  // query string and form fields
  std::string Param(const std::string& name) const {
    auto it = params.find(name);
    return it == params.end() ? std::string() : it->second;
  }
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

// The status page (control/dashboard.html, compiled in).
absl::string_view DashboardPage();

class ControlHttpServer {
 public:
  struct Options {
    // "127.0.0.1:8025" (port 0 = any free port, see port()). A Unix socket path is refused with
    // the reason: Debian 12's cpp-httplib 0.11.4 cannot listen on AF_UNIX.
    std::string listen;
    std::string token_file;  // "" = no token: every mutating call gets 401
  };
  using Handler = std::function<HttpResponse(const HttpRequest&)>;

  explicit ControlHttpServer(Options options);
  ~ControlHttpServer();
  ControlHttpServer(const ControlHttpServer&) = delete;
  ControlHttpServer& operator=(const ControlHttpServer&) = delete;

  void Get(const std::string& path, Handler h);
  // Needs the bearer token; every call (accepted or refused) is reported to the command log.
  void Post(const std::string& path, Handler h);
  // One line per mutating call ("POST /api/v1/suspend domain=x: 200"), on httplib's threads.
  void set_command_log(std::function<void(const std::string&)> log) { log_ = std::move(log); }

  // Reads the token (a file readable by group or others is refused), binds, starts serving.
  [[nodiscard]] absl::Status Start();
  void Stop();
  int port() const { return port_; }
  const std::string& host() const { return host_; }

 private:
  struct Impl;
  Options options_;
  std::string token_;
  std::string host_;
  int port_ = 0;
  std::function<void(const std::string&)> log_;
  std::unique_ptr<Impl> impl_;
  std::thread thread_;
};

// "a\"b" -> "a\\\"b": a Prometheus label value (backslash, quote and newline escaped).
std::string EscapeLabel(absl::string_view v);

}  // namespace mxb::control
