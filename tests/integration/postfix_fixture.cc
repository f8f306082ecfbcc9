#include "tests/integration/postfix_fixture.h"

#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "tests/integration/fixture.h"
#include "tls/tls_session.h"

namespace mxb::testing {
namespace {

constexpr char kPostfix[] = "/usr/sbin/postfix";
constexpr char kSaslPasswd[] = "/usr/sbin/saslpasswd2";

absl::Status WriteFile(const std::string& path, const std::string& text, mode_t mode) {
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  }
  if (chmod(path.c_str(), mode) != 0) return absl::InternalError(absl::StrCat("chmod ", path));
  return absl::OkStatus();
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// "ip:port" listeners with explicit addresses: inet_interfaces only accepts addresses that are
// configured on an interface (127.0.0.1 on `lo`), but master(8) binds any 127.0.0.0/8 address.
std::string MasterCf(const std::string& ip, int smtp_port, int smtps_port,
                     int submissions_port) {
  std::string submissions;
  if (submissions_port > 0) {
    // RFC 8314 §3.3 submission over implicit TLS with SASL (RFC 4954) inside TLS only; only an
    // authenticated client may send (mynetworks does not count here).
    submissions = absl::StrCat(
        ip, ":", submissions_port,
        " inet n - n - - smtpd -o syslog_name=postfix/submissions"
        " -o smtpd_tls_wrappermode=yes -o smtpd_sasl_auth_enable=yes -o smtpd_tls_auth_only=yes"
        " -o smtpd_client_restrictions=permit_sasl_authenticated,reject"
        " -o smtpd_relay_restrictions=permit_sasl_authenticated,reject"
        " -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject\n");
  }
  return absl::StrCat(submissions,
      "# service type  private unpriv  chroot  wakeup  maxproc command\n",
      ip, ":", smtp_port, " inet n - n - - smtpd\n",
      // RFC 8314 §3.3 implicit TLS; its own syslog_name tells its log lines apart.
      ip, ":", smtps_port,
      " inet n - n - - smtpd -o syslog_name=postfix/smtps -o smtpd_tls_wrappermode=yes\n",
      R"(pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
)");
}

std::string MainCf(const std::string& dir, const std::string& config_dir,
                   const std::string& queue_dir, const std::string& hostname, int tls_loglevel) {
  return absl::StrCat(
      "compatibility_level = 3.6\n",
      "config_directory = ", config_dir, "\n",
      "queue_directory = ", queue_dir, "\n",
      "data_directory = ", dir, "/data\n",
      "mail_owner = postfix\n"
      "setgid_group = postdrop\n",
      "myhostname = ", hostname, "\n",
      "mydomain = postfix.test\n"
      "myorigin = $myhostname\n"
      "smtpd_banner = $myhostname ESMTP\n"
      "inet_interfaces = loopback-only\n"
      "inet_protocols = ipv4\n"
      // Accept everything from loopback and throw it away: the tests are about the dialog.
      "mynetworks = 127.0.0.0/8\n"
      "mydestination =\n"
      "relay_domains =\n"
      "smtpd_relay_restrictions = permit_mynetworks, reject\n"
      "smtpd_recipient_restrictions = permit_mynetworks, reject\n"
      "default_transport = discard\n"
      "local_transport = discard\n"
      "relay_transport = discard\n"
      "virtual_transport = discard\n"
      "alias_maps =\n"
      "alias_database =\n"
      "biff = no\n"
      // No reverse lookups of 127.0.0.1 (no DNS beyond loopback in tests).
      "smtpd_peername_lookup = no\n"
      "default_process_limit = 100\n",
      "maillog_file = ", dir, "/maillog\n",
      "maillog_file_prefixes = ", dir, "\n",
      // TLS as a Debian receiver would have it: OpenSSL defaults, stateless session tickets
      // (tlsmgr(8) keys), one ticket per full handshake and none after a resumption.
      "smtpd_tls_chain_files = ", config_dir, "/key.pem, ", config_dir, "/chain.pem\n",
      "smtpd_tls_security_level = may\n",
      "smtpd_tls_loglevel = ", tls_loglevel, "\n",
      // Cyrus SASL with the sasldb next to main.cf (used by the submissions listener only).
      "smtpd_sasl_type = cyrus\n"
      "smtpd_sasl_path = smtpd\n",
      "cyrus_sasl_config_path = ", config_dir, "/sasl\n",
      "smtpd_sasl_local_domain = $myhostname\n"
      "smtpd_sasl_security_options = noanonymous\n");
}

int MasterPid(const std::string& queue_dir) {
  int pid = 0;
  const std::string text(absl::StripAsciiWhitespace(ReadAll(queue_dir + "/pid/master.pid")));
  return absl::SimpleAtoi(text, &pid) ? pid : 0;
}

}  // namespace

std::string PostfixServer::Unavailable(bool sasl) {
  if (sasl && access(kSaslPasswd, X_OK) != 0) {
    return "saslpasswd2 is not installed (Debian package `sasl2-bin`, see tools/setup.sh)";
  }
  if (access(kPostfix, X_OK) != 0) {
    return "Postfix is not installed (Debian package `postfix`, see tools/setup.sh)";
  }
  if (geteuid() != 0) return "a private Postfix instance needs root (master(8) binds as root)";
  if (getpwnam("postfix") == nullptr) return "no `postfix` user (the package creates it)";
  if (getgrnam("postdrop") == nullptr) return "no `postdrop` group (the package creates it)";
  return "";
}

PostfixServer::PostfixServer(std::string dir, Options options)
    : dir_(std::move(dir)), options_(std::move(options)) {
  config_dir_ = dir_ + "/etc";
  queue_dir_ = dir_ + "/queue";
  log_path_ = dir_ + "/maillog";
  ca_file_ = dir_ + "/ca.pem";
}

absl::Status PostfixServer::Start() {
  if (std::string why = Unavailable(!options_.sasl_user.empty()); !why.empty()) {
    return absl::FailedPreconditionError(why);
  }
  if (options_.names.empty()) return absl::InvalidArgumentError("postfix: no certificate names");
  // mkdtemp makes 0700 directories; the daemons run as `postfix` and must reach the queue.
  if (chmod(dir_.c_str(), 0755) != 0) return absl::InternalError(absl::StrCat("chmod ", dir_));
  for (const std::string& d : {config_dir_, queue_dir_, dir_ + "/data"}) {
    if (mkdir(d.c_str(), 0755) != 0 && errno != EEXIST) {
      return absl::InternalError(absl::StrCat("mkdir ", d));
    }
  }
  const passwd* pw = getpwnam("postfix");
  if (chown((dir_ + "/data").c_str(), pw->pw_uid, pw->pw_gid) != 0) {
    return absl::InternalError("chown data_directory");
  }

  CertOptions ca_opts;
  ca_opts.common_name = "mxburst interop test CA";
  ca_opts.dns_names = {"ca.invalid"};
  absl::StatusOr<GeneratedCert> ca = GenerateSelfSignedCert(ca_opts);
  if (!ca.ok()) return ca.status();
  CertOptions leaf_opts;
  leaf_opts.common_name = options_.names.front();
  leaf_opts.dns_names = options_.names;
  leaf_opts.is_ca = false;
  leaf_opts.issuer = &*ca;
  absl::StatusOr<GeneratedCert> leaf = GenerateSelfSignedCert(leaf_opts);
  if (!leaf.ok()) return leaf.status();

  smtp_port_ = FreePort(options_.ip);
  smtps_port_ = FreePort(options_.ip);
  if (!options_.sasl_user.empty()) {
    submissions_port_ = FreePort(options_.ip);
    if (submissions_port_ <= 0 || submissions_port_ == smtp_port_ ||
        submissions_port_ == smtps_port_) {
      return absl::UnavailableError(absl::StrCat("postfix: no free ports on ", options_.ip));
    }
  }
  if (smtp_port_ <= 0 || smtps_port_ <= 0 || smtp_port_ == smtps_port_) {
    return absl::UnavailableError(absl::StrCat("postfix: no free ports on ", options_.ip));
  }
  absl::Status s;
  if (!(s = WriteFile(ca_file_, ca->cert_pem, 0644)).ok()) return s;
  // smtpd reads its key as root before it drops privileges.
  if (!(s = WriteFile(config_dir_ + "/key.pem", leaf->key_pem, 0600)).ok()) return s;
  if (!(s = WriteFile(config_dir_ + "/chain.pem", leaf->cert_pem + ca->cert_pem, 0644)).ok()) {
    return s;
  }
  if (!(s = WriteFile(config_dir_ + "/main.cf",
                      MainCf(dir_, config_dir_, queue_dir_, options_.names.front(),
                             options_.tls_loglevel),
                      0644))
           .ok()) {
    return s;
  }
  if (!(s = WriteFile(config_dir_ + "/master.cf",
                      MasterCf(options_.ip, smtp_port_, smtps_port_, submissions_port_), 0644))
           .ok()) {
    return s;
  }
  if (!options_.sasl_user.empty() && !(s = WriteSasl()).ok()) return s;

  // postfix-script creates the queue directories with their owners, then `master -w` returns
  // once the listeners are bound (or with an error). Without a terminal, postfix(1) reports
  // only to syslog and to maillog_file: both go into the error text.
  const std::string out = dir_ + "/postfix-start.out";
  const int rc = RunCommand({kPostfix, "-c", config_dir_, "start"}, out, absl::Seconds(60));
  if (rc != 0) {
    return absl::InternalError(absl::StrCat("postfix -c ", config_dir_, " start: exit ", rc, ": ",
                                            ReadAll(out), ReadAll(out + ".err"),
                                            ReadAll(log_path_)));
  }
  started_ = true;
  return absl::OkStatus();
}

// Cyrus SASL for smtpd: auxprop over a sasldb in config_dir/sasl that smtpd (user postfix) can
// read, one user in the realm $myhostname (smtpd_sasl_local_domain), PLAIN and LOGIN.
absl::Status PostfixServer::WriteSasl() {
  const std::string sasl_dir = config_dir_ + "/sasl";
  const std::string db = sasl_dir + "/sasldb2";
  if (mkdir(sasl_dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return absl::InternalError(absl::StrCat("mkdir ", sasl_dir));
  }
  absl::Status s = WriteFile(sasl_dir + "/smtpd.conf",
                             absl::StrCat("pwcheck_method: auxprop\nauxprop_plugin: sasldb\n"
                                          "mech_list: PLAIN LOGIN\nsasldb_path: ", db, "\n"),
                             0644);
  if (!s.ok()) return s;
  // saslpasswd2 -p reads the password from stdin (no newline).
  const std::string pw_file = dir_ + "/sasl-password";
  if (!(s = WriteFile(pw_file, options_.sasl_password, 0600)).ok()) return s;
  const std::string out = dir_ + "/saslpasswd2.out";
  const int rc = RunCommand({"/bin/sh", "-c",
                             absl::StrCat(kSaslPasswd, " -p -c -f '", db, "' -u '",
                                          options_.names.front(), "' '", options_.sasl_user,
                                          "' < '", pw_file, "'")},
                            out, absl::Seconds(30));
  if (rc != 0) {
    return absl::InternalError(absl::StrCat("saslpasswd2: exit ", rc, ": ", ReadAll(out),
                                            ReadAll(out + ".err")));
  }
  const passwd* pw = getpwnam("postfix");
  if (chown(db.c_str(), pw->pw_uid, pw->pw_gid) != 0 || chmod(db.c_str(), 0600) != 0) {
    return absl::InternalError(absl::StrCat("chown/chmod ", db));
  }
  return absl::OkStatus();
}

PostfixServer::~PostfixServer() {
  if (!started_) return;
  const int pid = MasterPid(queue_dir_);
  RunCommand({kPostfix, "-c", config_dir_, "stop"}, dir_ + "/postfix-stop.out",
             absl::Seconds(30));
  if (pid <= 0) return;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (kill(pid, 0) == 0 && absl::Now() < deadline) usleep(20000);
  if (kill(pid, 0) == 0) kill(pid, SIGKILL);
}

size_t PostfixServer::LogSize() const {
  struct stat st {};
  return stat(log_path_.c_str(), &st) == 0 ? static_cast<size_t>(st.st_size) : 0;
}

std::vector<std::string> PostfixServer::LinesSince(size_t offset) const {
  const std::string text = ReadAll(log_path_);
  if (offset >= text.size()) return {};
  std::vector<std::string> lines;
  for (absl::string_view line : absl::StrSplit(absl::string_view(text).substr(offset), '\n')) {
    if (!line.empty()) lines.emplace_back(line);
  }
  return lines;
}

std::vector<std::string> PostfixServer::ProblemLines(size_t offset) const {
  // Postfix's own severities (msg_warn/msg_error/msg_fatal/msg_panic) and what smtpd logs for a
  // failed or abandoned TLS handshake.
  static constexpr const char* kProblems[] = {
      " warning: ", " error: ", " fatal: ", " panic: ", "SSL_accept error",
      "TLS library problem", "lost connection", "timeout after", "too many errors",
  };
  // cleanup(8) compares a queue file's mtime with time(): on a loaded box whose file system
  // clock runs a second ahead it warns and resets the stamps. Nothing to do with the SMTP peer.
  static constexpr const char* kBenign[] = {
      "warning: file system clock is", "warning: resetting file time stamps",
  };
  std::vector<std::string> bad;
  for (const std::string& line : LinesSince(offset)) {
    if (std::any_of(std::begin(kBenign), std::end(kBenign),
                    [&line](const char* b) { return absl::StrContains(line, b); })) {
      continue;
    }
    for (const char* p : kProblems) {
      if (absl::StrContains(line, p)) {
        bad.push_back(line);
        break;
      }
    }
  }
  return bad;
}

bool PostfixServer::WaitForLines(size_t offset, absl::string_view needle, size_t n,
                                 absl::Duration timeout) const {
  const absl::Time deadline = absl::Now() + timeout;
  while (CountContaining(LinesSince(offset), needle) < n) {
    if (absl::Now() > deadline) return false;
    usleep(20000);
  }
  return true;
}

size_t CountContaining(const std::vector<std::string>& lines, absl::string_view needle) {
  size_t n = 0;
  for (const std::string& line : lines) n += absl::StrContains(line, needle) ? 1 : 0;
  return n;
}

}  // namespace mxb::testing
