// What an SMTP reply means to SmtpSession (engine/smtp_session.h): which codes RFC 5321 §4.3.2
// counts as success for a command, the one-line summary used in failure reasons, and the RFC
// 3463 enhanced code a verdict carries. Pure functions, any thread; private to the session's
// files (smtp_session.cc, smtp_transaction.cc).
#pragma once

#include <string>

#include "engine/smtp_reply.h"
#include "engine/smtp_session.h"

namespace mxb::smtp_verdict {

// RFC 5321 §4.3.2 lists the success replies of each command; only those count. A 2xx the RFC
// does not allow (a 250 to DATA, a 251 to the final ".") is the server breaking the protocol,
// and the client must not guess what it meant — a message is never taken as delivered on one.
inline bool IsPositive(const SmtpReply& r) { return r.code == 250; }  // EHLO HELO MAIL RSET "."
inline bool IsRcptPositive(const SmtpReply& r) { return r.code == 250 || r.code == 251; }  // RCPT

// "421 4.3.2 busy" — the first line, for failure reasons.
std::string Summary(const SmtpReply& r);

// RFC 3463 §3.1 generic codes when the server gave none (or one of another class).
std::string EnhancedFor(DeliveryClass klass, const SmtpReply& r);

}  // namespace mxb::smtp_verdict
