// A real Postfix receiver for interoperability tests: a private instance of Debian's `postfix`
// (3.7, OpenSSL) on loopback. Owns its config_directory, queue_directory and data_directory under
// a test directory, a test CA with a server certificate for the given names, and the log file
// postlogd(8) writes. smtpd listens with STARTTLS on ip:smtp_port() and with implicit TLS
// (smtpd_tls_wrappermode, logged as postfix/smtps/smtpd) on ip:smtps_port(); every accepted
// message goes to discard(8). Our own sink only speaks wolfSSL; OpenSSL on the other end is what
// found the TLS 1.3 resumption bug of issue 10 item 13.
//
// Used from one test thread. Start() once per suite (SetUpTestSuite): starting Postfix costs
// about a second, and tests tell their log lines apart by offset (LogSize() before, LinesSince()
// after). Needs root (master(8) binds as root and runs its daemons as the `postfix` user) and
// the package (tools/setup.sh): Unavailable() gives the reason to skip otherwise.
//
//   mxb::testing::PostfixServer::Options o;
//   o.names = {"starttls-mx.postfix.test"};
//   mxb::testing::PostfixServer pf(MakeTempDir("postfix"), o);
//   ASSERT_TRUE(pf.Start().ok());
//   const size_t from = pf.LogSize();
//   ... run mxburst with --route '*=starttls-mx.postfix.test@127.0.0.25:<pf.smtp_port()>'
//       --ca-file pf.ca_file() ...
//   EXPECT_TRUE(pf.ProblemLines(from).empty());
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace mxb::testing {

class PostfixServer {
 public:
  struct Options {
    // Listeners bind this address explicitly (master.cf). 127.0.0.25 is used by no other test.
    std::string ip = "127.0.0.25";
    // dNSNames of the server certificate; the first is also myhostname.
    std::vector<std::string> names = {"mx.postfix.test"};
    // smtpd_tls_loglevel: 2 logs "Reusing old session" for each resumed handshake.
    int tls_loglevel = 2;
    // A submission server (issue 16): with a user, a third listener on submissions_port() —
    // implicit TLS (RFC 8314), SASL (Cyrus sasldb, PLAIN and LOGIN) only inside TLS, and mail
    // accepted only from authenticated clients. Needs Debian's sasl2-bin (saslpasswd2).
    std::string sasl_user;
    std::string sasl_password;
  };

  // Empty when a private instance can be started here, else why not (for GTEST_SKIP).
  // `sasl`: also the SASL tools the submission listener needs.
  static std::string Unavailable(bool sasl = false);

  PostfixServer(std::string dir, Options options);
  ~PostfixServer();  // `postfix stop`, then waits for master(8) to exit (SIGKILL after 10 s)
  PostfixServer(const PostfixServer&) = delete;
  PostfixServer& operator=(const PostfixServer&) = delete;

  // Writes the CA, certificate and configuration, and runs `postfix -c DIR start`, which
  // returns once master(8) has bound its listeners.
  absl::Status Start();

  const std::string& ip() const { return options_.ip; }
  int smtp_port() const { return smtp_port_; }
  int smtps_port() const { return smtps_port_; }
  int submissions_port() const { return submissions_port_; }  // 0 without Options::sasl_user
  const std::string& ca_file() const { return ca_file_; }      // PEM of the test CA
  const std::string& log_path() const { return log_path_; }

  size_t LogSize() const;  // bytes in the log now: a test's starting offset
  std::vector<std::string> LinesSince(size_t offset) const;
  // Lines since `offset` that report a TLS or handshake problem (SSL_accept error, "TLS library
  // problem", lost connection, timeout) or any warning, error, fatal or panic.
  std::vector<std::string> ProblemLines(size_t offset) const;
  // Waits until at least `n` lines since `offset` contain `needle`: postlogd writes
  // asynchronously, and smtpd logs "disconnect" after our client has already gone.
  bool WaitForLines(size_t offset, absl::string_view needle, size_t n,
                    absl::Duration timeout) const;

 private:
  std::string dir_;
  Options options_;
  std::string config_dir_, queue_dir_, log_path_, ca_file_;
  int smtp_port_ = 0, smtps_port_ = 0, submissions_port_ = 0;
  absl::Status WriteSasl();
  bool started_ = false;
};

// Lines of `lines` that contain `needle`.
size_t CountContaining(const std::vector<std::string>& lines, absl::string_view needle);

}  // namespace mxb::testing
