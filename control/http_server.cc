#include "control/http_server.h"

#include <sys/socket.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "httplib.h"

namespace mxb::control {
namespace {

// Two request threads are plenty for an operator's browser, mxburstctl and a Prometheus scraper
// (httplib's default is one per core, at least eight).
constexpr size_t kHttpThreads = 2;

HttpRequest ToRequest(const httplib::Request& r) {
  HttpRequest out;
  out.method = r.method;
  out.path = r.path;
  out.body = r.body;
  for (const auto& [k, v] : r.params) out.params[k] = v;
  return out;
}

void Send(const HttpResponse& h, httplib::Response& res) {
  res.status = h.status;
  res.set_content(h.body, h.content_type);
  // The page and the API are for this host's operators only; nothing is cached by a proxy.
  res.set_header("Cache-Control", "no-store");
}

// Constant-time comparison: the token must not leak through response timing.
bool SameToken(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

struct ControlHttpServer::Impl {
  httplib::Server server;
};

ControlHttpServer::ControlHttpServer(Options options)
    : options_(std::move(options)), impl_(std::make_unique<Impl>()) {
  impl_->server.new_task_queue = [] { return new httplib::ThreadPool(kHttpThreads); };
  impl_->server.set_payload_max_length(64 * 1024);
  impl_->server.set_read_timeout(5, 0);
  // httplib's default adds SO_REUSEPORT: a second engine (or a stale one still stopping) would
  // then share the port and answer half the calls. SO_REUSEADDR only, so a taken port fails.
  impl_->server.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
}

ControlHttpServer::~ControlHttpServer() { Stop(); }

void ControlHttpServer::Get(const std::string& path, Handler h) {
  impl_->server.Get(path, [h = std::move(h)](const httplib::Request& req, httplib::Response& res) {
    Send(h(ToRequest(req)), res);
  });
}

void ControlHttpServer::Post(const std::string& path, Handler h) {
  impl_->server.Post(path, [this, h = std::move(h)](const httplib::Request& req,
                                                    httplib::Response& res) {
    HttpRequest r = ToRequest(req);
    std::string args;
    for (const auto& [k, v] : r.params) absl::StrAppend(&args, args.empty() ? "" : " ", k, "=", v);
    HttpResponse out;
    const std::string auth = req.get_header_value("Authorization");
    constexpr absl::string_view kBearer = "Bearer ";
    if (token_.empty()) {
      out = {401, "application/json", R"({"error":"no [http] token_file configured"})"};
    } else if (!absl::StartsWith(auth, kBearer) ||
               !SameToken(absl::string_view(auth).substr(kBearer.size()), token_)) {
      out = {401, "application/json", R"({"error":"missing or wrong bearer token"})"};
    } else {
      out = h(r);
    }
    if (out.status == 401) res.set_header("WWW-Authenticate", "Bearer");
    if (log_) log_(absl::StrCat(req.method, " ", req.path, args.empty() ? "" : " ", args, ": ",
                                out.status));
    Send(out, res);
  });
}

absl::Status ControlHttpServer::Start() {
  const std::string& listen = options_.listen;
  if (!listen.empty() && listen[0] == '/') {
    return absl::UnimplementedError(absl::StrCat(
        "http.listen: ", listen, ": this cpp-httplib (", CPPHTTPLIB_VERSION,
        ", Debian 12) cannot listen on a Unix socket; use a loopback address such as "
        "127.0.0.1:8025"));
  }
  size_t colon = listen.rfind(':');
  int port = -1;
  if (colon == std::string::npos || !absl::SimpleAtoi(listen.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("http.listen: expected HOST:PORT or a Unix socket path, got '", listen, "'"));
  }
  host_ = listen.substr(0, colon);
  if (absl::StartsWith(host_, "[") && absl::EndsWith(host_, "]")) {
    host_ = host_.substr(1, host_.size() - 2);
  }
  if (!options_.token_file.empty()) {
    struct stat st {};
    if (stat(options_.token_file.c_str(), &st) != 0) {
      return absl::NotFoundError(absl::StrCat("http.token_file: ", options_.token_file,
                                              ": cannot read it"));
    }
    if ((st.st_mode & 077) != 0) {
      return absl::PermissionDeniedError(absl::StrCat(
          "http.token_file: ", options_.token_file, ": readable by group or others (chmod 600)"));
    }
    std::ifstream in(options_.token_file);
    std::stringstream ss;
    ss << in.rdbuf();
    token_ = std::string(absl::StripAsciiWhitespace(ss.str()));
    if (token_.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("http.token_file: ", options_.token_file, ": empty"));
    }
  }
  if (port == 0) {
    port_ = impl_->server.bind_to_any_port(host_);
    if (port_ < 0) port_ = 0;
  } else if (impl_->server.bind_to_port(host_, port)) {
    port_ = port;
  }
  if (port_ <= 0) {
    return absl::UnavailableError(absl::StrCat("http.listen: cannot listen on ", listen));
  }
  thread_ = std::thread([this] { impl_->server.listen_after_bind(); });
  // stop() before the loop runs would be lost (httplib only stops a running server).
  for (int i = 0; i < 2000 && !impl_->server.is_running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return absl::OkStatus();
}

void ControlHttpServer::Stop() {
  if (!thread_.joinable()) return;
  impl_->server.stop();
  thread_.join();
}

std::string EscapeLabel(absl::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace mxb::control
