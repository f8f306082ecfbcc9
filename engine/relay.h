// Smarthost relays (RFC 8314 implicit TLS, RFC 4954 AUTH): the `[relay.NAME]` tables of the
// config file, and what a route "DOMAIN=relay:NAME" (dns/static_routes.h) delivers through.
//
// Owns: RelayConfig — where the relay is, how TLS is done there, and the credentials, read at
// start-up (the password file must not be readable by group or others); RelayGate — the one
// piece of process-wide mutable state per relay: until one connection has authenticated, only
// that one connection (the probe) is open to the relay — so wrong credentials cost one failed
// AUTH, not one per parallel connection (relays lock accounts after a few); after the relay
// refused our credentials, new connections to it wait (everything for it is deferred, nothing
// bounces) and the operator is told once, on stderr.
//
// A relay's TLS is never opportunistic: implicit TLS (`tls = "implicit"`, port 465) or
// mandatory STARTTLS, and always PKIX + host name verification against `host` (RelayTlsPolicy).
// AUTH is only handed to a session with that policy.
//
// Threads: parsed once by main's config loader; read-only afterwards, from every worker. The
// gate's atomics may be touched by any worker.
//
//   [relay.smarthost]
//   host = "smtp.provider.example"          # or "NAME@ADDRESS" to pin the address
//   port = 465
//   tls = "implicit"                         # or "starttls"
//   auth = "plain"                           # or "login"; leave out for no AUTH
//   username = "mx@esp.example"
//   password_file = "/etc/mxburst/smarthost.password"   # mode 0600, one line
//   --route '*=relay:smarthost'
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "engine/smtp_auth.h"
#include "tls/policy.h"

namespace mxb {

// Process-wide state of one relay, shared by every worker (lock-free).
class RelayGate {
 public:
  // The relay refused our credentials at `now_ms` (a monotonic clock in ms): nobody connects
  // to it before `until_ms`. True for the caller that closed the gate (it tells the operator).
  bool CloseUntil(int64_t now_ms, int64_t until_ms);
  // 0 when open, else the time it opens again.
  int64_t ClosedUntil(int64_t now_ms) const;
  // May a new connection open? Always once one has authenticated; before that only one at a
  // time, process-wide: *probe is set for that one, whose owner calls ProbeDone() exactly once
  // (ready: true; closed before ready, or never opened: false).
  bool MayConnect(bool* probe);
  void ProbeDone(bool authenticated);

 private:
  enum : int { kUnknown, kProbing, kAuthenticated };
  std::atomic<int64_t> closed_until_ms_{0};
  std::atomic<int> state_{kUnknown};
};

struct RelayConfig {
  std::string name;
  std::string host;  // as a route hop: "relay.example" or "relay.example@192.0.2.7"
  uint16_t port = 465;
  bool implicit_tls = true;  // RFC 8314 §3; false: STARTTLS, required
  bool auth = false;         // `auth` given: credentials below
  SmtpCredentials credentials;
  std::shared_ptr<RelayGate> gate = std::make_shared<RelayGate>();

  // The route hop spec for dns/static_routes.h: "relay.example@192.0.2.7:465".
  std::string HopSpec() const;
};

// How long a relay that refused our credentials is left alone (one AUTH attempt per period).
inline constexpr int64_t kRelayAuthPauseMs = 10 * 60 * 1000;

// The relay called `name` (nullptr for "" or an unknown name).
const RelayConfig* FindRelay(const std::vector<RelayConfig>& relays, absl::string_view name);

// Why a job for a relay whose gate is closed (until `until_ms`) is deferred without a try.
std::string RelayPausedText(const RelayConfig& relay, int64_t until_ms, int64_t now_ms);

// The policy every connection to a relay carries out (tls/policy.h).
TlsPolicy RelayTlsPolicy(const RelayConfig& relay);

// The relay refused our credentials (SessionFailure::auth_failed): closes its gate and, for
// the first worker to see it, prints the operator's line. `reply` is the server's reply.
void ReportRelayAuthFailure(const RelayConfig& relay, absl::string_view reply, int64_t now_ms,
                            bool quiet);

// Reads `path` for relay.NAME.password_file: a regular file (no symbolic link), not readable or
// writable by group or others, one non-empty line (a final newline is allowed). Errors start
// with the path and never quote the contents.
absl::Status ReadPasswordFile(const std::string& path, std::string* password);

}  // namespace mxb
