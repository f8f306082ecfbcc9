// StsPolicyServer: an HTTPS server for MTA-STS policy files (RFC 8461 §3.3) in tests — Python's
// http.server + ssl on 127.0.0.1, a certificate for the given host names signed by a test CA of
// its own. What each Host gets (status, body, Content-Type, Location) is a JSON file the server
// reads per request, so a test can change it while the server runs. POSTs (TLS-RPT reports) are
// kept in posts/N.bin with their headers in posts/N.json. Test thread only.
//
//   auto s = StsPolicyServer::Start(dir, {"mta-sts.d.example"});
//   s->SetPolicy("mta-sts.d.example", "version: STSv1\nmode: enforce\nmx: mx.d.example\nmax_age: 60\n");
//   fetcher options: ca_file = s->ca_file(), https_port = s->port()
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tests/integration/fixture.h"
#include "tls/tls_session.h"

namespace mxb {

class StsPolicyServer {
 public:
  static std::unique_ptr<StsPolicyServer> Start(const std::string& dir,
                                                const std::vector<std::string>& cert_names);
  bool ready() const { return ready_; }
  const std::string& error() const { return error_; }
  int port() const { return port_; }
  const std::string& ca_file() const { return ca_file_; }
  // The test CA (with its key): sign other test certificates (an SMTP sink's) with it.
  const GeneratedCert& ca() const { return ca_; }
  // A leaf certificate for `names` (the first one its CN) signed by ca(): an SMTP sink's.
  absl::StatusOr<GeneratedCert> IssueLeaf(const std::vector<std::string>& names) const;
  void SetPolicy(const std::string& host, const std::string& body,
                 const std::string& content_type = "text/plain; charset=utf-8");
  void SetRedirect(const std::string& host, const std::string& location);
  void Remove(const std::string& host);
  // Requests served per host (from the server's log file).
  int Requests(const std::string& host) const;
  // Every POST received so far (TLS-RPT reports, RFC 8460 §5.2), in order; answered 201.
  struct Post {
    std::string host, path, content_type, body;
  };
  std::vector<Post> Posts() const;

 private:
  void WriteConfig();
  std::string dir_, ca_file_, error_;
  GeneratedCert ca_;
  int port_ = 0;
  bool ready_ = false;
  struct Entry {
    int status = 200;
    std::string body, content_type, location;
  };
  std::map<std::string, Entry> entries_;
  std::unique_ptr<testing::Subprocess> proc_;
};

}  // namespace mxb
