// StsPolicyServer (tests/integration/sts_policy_server.h).
#include "tests/integration/sts_policy_server.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "tls/tls_session.h"

namespace mxb {
namespace {

// Serves GET /.well-known/mta-sts.txt by Host header from config.json (re-read per request) and
// appends each request's host to requests.log. Loopback only.
constexpr char kScript[] = R"PY(
import http.server, json, os, ssl, sys, threading
d, port = sys.argv[1], int(sys.argv[2])
# ThreadingHTTPServer: concurrent POSTs must not pick the same number (they did, and a report
# overwrote another one's files).
post_lock = threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        host = (self.headers.get('Host') or '').split(':')[0].lower()
        with open(os.path.join(d, 'requests.log'), 'a') as f:
            f.write(host + '\n')
        with open(os.path.join(d, 'config.json')) as f:
            cfg = json.load(f)
        e = cfg.get(host)
        if e is None or self.path != '/.well-known/mta-sts.txt':
            self.send_response(404); self.send_header('Content-Length', '0'); self.end_headers()
            return
        body = e['body'].encode()
        self.send_response(e['status'])
        self.send_header('Content-Type', e['content_type'])
        if e['location']:
            self.send_header('Location', e['location'])
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        # TLS-RPT (RFC 8460 §5.2): keep each report POSTed, with its headers, for the test.
        body = self.rfile.read(int(self.headers.get('Content-Length') or 0))
        pd = os.path.join(d, 'posts')
        meta = {'host': (self.headers.get('Host') or '').split(':')[0].lower(), 'path': self.path,
                'content_type': self.headers.get('Content-Type') or ''}
        with post_lock:
            os.makedirs(pd, exist_ok=True)
            n = len([x for x in os.listdir(pd) if x.endswith('.json')])
            with open(os.path.join(pd, '%d.bin' % n), 'wb') as f:
                f.write(body)
            with open(os.path.join(pd, '%d.tmp' % n), 'w') as f:
                json.dump(meta, f)
            os.rename(os.path.join(pd, '%d.tmp' % n), os.path.join(pd, '%d.json' % n))
        self.send_response(201); self.send_header('Content-Length', '0'); self.end_headers()
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer.daemon_threads = True
srv = http.server.ThreadingHTTPServer(('127.0.0.1', port), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(os.path.join(d, 'cert.pem'), os.path.join(d, 'key.pem'))
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
open(os.path.join(d, 'ready.tmp'), 'w').close()
os.rename(os.path.join(d, 'ready.tmp'), os.path.join(d, 'ready'))
srv.serve_forever()
)PY";

// A leaf certificate (CA:FALSE) for `names`, the first one its CN, signed by `ca`.
absl::StatusOr<GeneratedCert> LeafCert(const GeneratedCert& ca,
                                       const std::vector<std::string>& names) {
  CertOptions leaf;
  leaf.common_name = names.empty() ? "mta-sts.invalid" : names.front();
  leaf.dns_names = names;
  leaf.is_ca = false;
  leaf.issuer = &ca;
  return GenerateSelfSignedCert(leaf);
}

}  // namespace

absl::StatusOr<GeneratedCert> StsPolicyServer::IssueLeaf(
    const std::vector<std::string>& names) const {
  return LeafCert(ca_, names);
}

std::unique_ptr<StsPolicyServer> StsPolicyServer::Start(const std::string& dir,
                                                        const std::vector<std::string>& names) {
  auto s = std::unique_ptr<StsPolicyServer>(new StsPolicyServer());
  s->dir_ = dir + "/policy-server";
  testing::RunCommand({"/bin/mkdir", "-p", s->dir_}, "/dev/null");
  CertOptions ca_opts;
  ca_opts.common_name = "MTA-STS test CA";
  ca_opts.dns_names = {"ca.ststest"};
  absl::StatusOr<GeneratedCert> ca = GenerateSelfSignedCert(ca_opts);
  if (!ca.ok()) {
    s->error_ = std::string(ca.status().message());
    return s;
  }
  absl::StatusOr<GeneratedCert> cert = LeafCert(*ca, names);
  if (!cert.ok()) {
    s->error_ = std::string(cert.status().message());
    return s;
  }
  s->ca_ = *ca;
  s->ca_file_ = s->dir_ + "/ca.pem";
  testing::WriteFileOrDie(s->ca_file_, ca->cert_pem);
  testing::WriteFileOrDie(s->dir_ + "/cert.pem", cert->cert_pem);
  testing::WriteFileOrDie(s->dir_ + "/key.pem", cert->key_pem);
  testing::WriteFileOrDie(s->dir_ + "/server.py", kScript);
  s->WriteConfig();
  s->port_ = testing::FreePort("127.0.0.1");
  s->proc_ = std::make_unique<testing::Subprocess>(
      std::vector<std::string>{"/usr/bin/python3", s->dir_ + "/server.py", s->dir_,
                               std::to_string(s->port_)},
      s->dir_ + "/stdout", s->dir_ + "/stderr");
  s->ready_ = testing::WaitForFile(s->dir_ + "/ready", absl::Seconds(20));
  if (!s->ready_) s->error_ = "policy server did not start: " + testing::ReadFileOrDie(s->dir_ + "/stderr");
  return s;
}

void StsPolicyServer::WriteConfig() {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [host, e] : entries_) {
    j[host] = {{"status", e.status}, {"body", e.body}, {"content_type", e.content_type},
               {"location", e.location}};
  }
  testing::WriteFileOrDie(dir_ + "/config.json.tmp", j.dump());
  std::rename((dir_ + "/config.json.tmp").c_str(), (dir_ + "/config.json").c_str());
}

void StsPolicyServer::SetPolicy(const std::string& host, const std::string& body,
                                const std::string& content_type) {
  entries_[host] = Entry{200, body, content_type, ""};
  WriteConfig();
}

void StsPolicyServer::SetRedirect(const std::string& host, const std::string& location) {
  entries_[host] = Entry{302, "", "text/plain", location};
  WriteConfig();
}

void StsPolicyServer::Remove(const std::string& host) {
  entries_.erase(host);
  WriteConfig();
}

std::vector<StsPolicyServer::Post> StsPolicyServer::Posts() const {
  std::vector<Post> out;
  for (int n = 0;; ++n) {
    const std::string meta = absl::StrCat(dir_, "/posts/", n, ".json");
    if (!testing::WaitForFile(meta, absl::ZeroDuration())) break;
    nlohmann::json j = nlohmann::json::parse(testing::ReadFileOrDie(meta), nullptr, false);
    Post p;
    p.host = j.value("host", "");
    p.path = j.value("path", "");
    p.content_type = j.value("content_type", "");
    p.body = testing::ReadFileOrDie(absl::StrCat(dir_, "/posts/", n, ".bin"));
    out.push_back(std::move(p));
  }
  return out;
}

int StsPolicyServer::Requests(const std::string& host) const {
  FILE* f = std::fopen((dir_ + "/requests.log").c_str(), "r");
  if (f == nullptr) return 0;
  std::fclose(f);
  int n = 0;
  for (absl::string_view line : absl::StrSplit(testing::ReadFileOrDie(dir_ + "/requests.log"), '\n')) {
    if (line == host) ++n;
  }
  return n;
}

}  // namespace mxb
