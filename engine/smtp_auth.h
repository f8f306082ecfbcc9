// SMTP AUTH as a client (RFC 4954), for smarthost relays (engine/relay.h): the credentials a
// session may present, and the part of SmtpSession's dialog that presents them (smtp_auth.cc).
// Pure data and functions; any thread.
//
// A session given credentials (SessionOptions::auth) authenticates right after the EHLO that
// follows TLS — implicit TLS (RFC 8314 §3) or STARTTLS — and before its first transaction. It
// never sends them without TLS (the engine also hands credentials only to sessions whose policy
// verifies the relay's certificate). Mechanisms: PLAIN (RFC 4616, sent as the initial response)
// and LOGIN (the de-facto "Username:"/"Password:" exchange, draft-murchison-sasl-login).
// Credentials never appear in a log, a failure reason or an Action other than the AUTH bytes.
//
//   SmtpCredentials c{.relay = "smarthost", .mechanism = AuthMechanism::kPlain,
//                     .username = "mx@esp.example", .password = "..."};
//   SessionOptions o; o.implicit_tls = true; o.auth = &c;   // c outlives the session
#pragma once

#include <string>

#include "absl/strings/string_view.h"

namespace mxb {

enum class AuthMechanism { kPlain, kLogin };
const char* ToString(AuthMechanism m);  // "PLAIN", "LOGIN" (the SASL names)

struct SmtpCredentials {
  std::string relay;  // the relay's name, for failure reasons
  AuthMechanism mechanism = AuthMechanism::kPlain;
  std::string username;
  std::string password;
};

// RFC 4616 §2: base64(authzid NUL authcid NUL passwd) with an empty authzid.
std::string AuthPlainResponse(absl::string_view username, absl::string_view password);

// `mechanisms` as EhloCapabilities::auth_mechanisms ("PLAIN LOGIN"): offers `m`?
bool OffersMechanism(absl::string_view mechanisms, AuthMechanism m);

}  // namespace mxb
