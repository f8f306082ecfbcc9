// SMTP AUTH client (RFC 4954): see engine/smtp_auth.h. The SmtpSession part runs between the
// EHLO inside TLS and the first transaction (state kAuth).
#include "engine/smtp_auth.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/smtp_session.h"

namespace mxb {

const char* ToString(AuthMechanism m) {
  switch (m) {
    case AuthMechanism::kPlain:
      return "PLAIN";
    case AuthMechanism::kLogin:
      return "LOGIN";
  }
  return "?";
}

std::string AuthPlainResponse(absl::string_view username, absl::string_view password) {
  std::string raw;
  raw.reserve(username.size() + password.size() + 2);
  raw.push_back('\0');  // empty authorization identity: act as the authenticated one
  raw.append(username.data(), username.size());
  raw.push_back('\0');
  raw.append(password.data(), password.size());
  return absl::Base64Escape(raw);
}

bool OffersMechanism(absl::string_view mechanisms, AuthMechanism m) {
  for (absl::string_view offered : absl::StrSplit(mechanisms, ' ', absl::SkipEmpty())) {
    if (offered == ToString(m)) return true;
  }
  return false;
}

// ---- SmtpSession: AUTH between hello and the first transaction -------------------------------

Action SmtpSession::StartAuth() {
  const SmtpCredentials& c = *opts_.auth;
  if (!tls_active_) {
    // RFC 4616 §6, RFC 4954 §4: PLAIN and LOGIN carry the password in the clear, so they go
    // inside TLS only — whatever the server offers.
    std::string why = absl::StrCat("relay ", c.relay, ": refusing AUTH without TLS");
    return Fail(0, why, "", Deferral{0, "4.7.0", why});
  }
  if (!OffersMechanism(caps_.auth_mechanisms, c.mechanism)) {
    std::string why = absl::StrCat("relay ", c.relay, " does not offer AUTH ",
                                   ToString(c.mechanism), " (offers: ",
                                   caps_.auth_mechanisms.empty() ? "none" : caps_.auth_mechanisms,
                                   ")");
    failure_.auth_failed = true;  // a configuration mismatch: the operator's to fix
    return Fail(0, why, "", Deferral{0, "4.7.0", why});
  }
  auth_step_ = 0;
  if (c.mechanism == AuthMechanism::kPlain) {
    // RFC 4954 §4: the initial response saves a round trip.
    return Send(absl::StrCat("AUTH PLAIN ", AuthPlainResponse(c.username, c.password), "\r\n"),
                SmtpState::kAuth);
  }
  return Send("AUTH LOGIN\r\n", SmtpState::kAuth);
}

Action SmtpSession::OnAuthReply(const SmtpReply& reply) {
  const SmtpCredentials& c = *opts_.auth;
  if (reply.code == 235) return NeedTransaction();  // RFC 4954 §6: authentication succeeded
  if (reply.code == 334 && c.mechanism == AuthMechanism::kLogin && auth_step_ < 2) {
    // LOGIN: the server asks for the user name, then the password (base64 each).
    ++auth_step_;
    return Send(absl::StrCat(absl::Base64Escape(auth_step_ == 1 ? c.username : c.password),
                             "\r\n"),
                SmtpState::kAuth);
  }
  std::string summary = absl::StrCat(reply.code, reply.lines.empty() ? "" : " ",
                                     reply.lines.empty() ? "" : reply.lines.front());
  if (reply.code == 334) {
    // A challenge this mechanism does not have: the server's protocol error, not ours to answer.
    std::string why = absl::StrCat("relay ", c.relay, ": unexpected AUTH challenge: ", summary);
    return Fail(reply.code, why, summary, Deferral{0, "4.5.0", why});
  }
  // 535 5.7.8 credentials invalid, 534 mechanism too weak, 538 encryption required (RFC 4954
  // §6): the operator's configuration is wrong, and no recipient is to blame — deferred, never
  // bounced (as Postfix's smtp_sasl_auth_soft_bounce). A 4xx (454) is the relay's trouble.
  failure_.auth_failed = reply.klass() == 5;
  std::string why = absl::StrCat("relay ", c.relay, ": SASL authentication failed; server said: ",
                                 summary);
  return Fail(reply.code, why, summary, Deferral{0, "4.7.0", why});
}

}  // namespace mxb
