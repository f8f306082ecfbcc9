// Connection (engine/connection.h), the TLS step: a client session per the hop's policy with
// resumption from the policy cache, the handshake over the connection's buffers, and the
// implicit-TLS (smtps-, port 26) fallback. The policy itself is decided in tls/hop_policy.h;
// this only carries it out. Like Postfix's smtp_tls.c next to smtp_proto.c.
#include <cstdio>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "dns/static_routes.h"
#include "engine/config.h"
#include "engine/connection.h"
#include "engine/tlsrpt_reporter.h"
#include "engine/worker.h"

namespace mxb {

// A client TLS session for the MX host: verification per policy, resumption when the policy
// cache holds a session for this host.
bool Connection::NewTls() {
  SessionParams params;
  params.verify = spec_.policy.verify;
  params.log_only = spec_.policy.log_only;  // verify, but let the handshake finish
  params.dane = spec_.policy.dane;  // RFC 7672: TLSA records authenticate, SNI is the MX host
  if (announced_pin_ && !params.verify && params.dane == nullptr) {
    // The greeting announced a banner pin: check the certificate without enforcing it, so the
    // pin can be recorded if (and only if) it verifies (engine/connection_pin.cc).
    params.verify = true;
    params.log_only = true;
  }
  PolicyEntry* e = env_->policy_cache->Find(spec_.mx);
  if (env_->config->tls_resumption && e != nullptr && e->session != nullptr) {
    params.resume = e->session.get();
  }
  tls_ = env_->tls_client->NewSession(spec_.mx, params);
  return tls_ != nullptr;
}

void Connection::DriveHandshake() {
  TlsStatus st = tls_->Handshake();
  MoveCiphertext();
  FlushSend();
  if (st == TlsStatus::kOk) {
    phase_ = Phase::kSmtp;
    if (spec_.policy.log_only && tls_->failure() != TlsFailure::kNone) {
      violation_ = ToString(tls_->failure());  // log-only: logged, not enforced
    }
    env_->stats->tls_sessions.fetch_add(1, std::memory_order_relaxed);
    if (tls_->resumed()) {
      env_->stats->tls_resumed.fetch_add(1, std::memory_order_relaxed);
      if (PolicyEntry* e = env_->policy_cache->Find(spec_.mx)) ++e->resumed;
    }
    if (spec_.implicit_tls) {
      // TLS from the first byte: the greeting comes next, inside TLS.
      ArmDeadline(DefaultReplyTimeout(SmtpState::kGreeting));
      return;
    }
    Handle(session_->OnTlsReady());
  } else if (st != TlsStatus::kWantIo) {
    TlsFailure f = tls_->failure();
    if (ImplicitFallback() && f == TlsFailure::kHandshakeFailed) {
      ImplicitTlsFailed(tls_->last_error());
      return;
    }
    if (PolicyEntry* e = env_->policy_cache->Find(spec_.mx)) {
      e->last_failure = f;  // counted in recent_failures when the session closes (NoteHopFailure)
      e->session.reset();  // never resume into a session that just failed
    }
    // The TLS layer's text may already start with the label: say it once.
    const std::string label = ToString(f);
    const std::string& detail = tls_->last_error();
    Handle(session_->OnTlsFailed(absl::StartsWith(detail, label)
                                     ? detail
                                     : absl::StrCat(label, ": ", detail)));
  }
}

// The implicit-TLS port (26) refused, reset, timed out or did not speak TLS: remember it in
// the policy cache (negative entry with expiry); the owner goes to port 25 with mandatory
// STARTTLS for the same host right away — never plaintext, and not a failure of the hop.
void Connection::ImplicitTlsFailed(absl::string_view why) {
  const EngineConfig& config = *env_->config;
  if (PolicyEntry* e = env_->policy_cache->Find(spec_.mx)) {
    e->implicit_tls_failed_until = absl::Now() + config.tls_global.implicit_tls_negative_ttl;
  }
  if (!config.quiet) {
    std::fprintf(stderr, "mxburst: %s port %u (implicit TLS) failed: %s; using STARTTLS on %u\n",
                 spec_.mx.c_str(), config.tls_global.smtps_port, std::string(why).c_str(),
                 config.tls_global.smtp_port);
  }
  ConnectionOwner* owner = owner_;
  StartClose();
  owner->OnImplicitTlsFailed(slot_);
}

void Connection::NoteHopFailure(absl::string_view reason) {
  if (PolicyEntry* e = env_->policy_cache->Find(spec_.mx)) {
    ++e->recent_failures;
    e->last_error = std::string(reason);
  }
}

// RFC 8460 §4.3: one count per session, under the recipient domain's policy. A session that
// became ready without the TLS its policy asked for (log-only / MTA-STS testing violation, or
// no STARTTLS at all) is a failure of that type; a TLS failure before ready is one too; a
// refused connection or a 4xx greeting is no TLS negotiation and is not counted.
void Connection::RecordTlsRpt(bool ready, absl::string_view reason) {
  if (env_->tlsrpt == nullptr || spec_.tlsrpt == nullptr) return;
  std::optional<TlsRptResult> result = spec_.tlsrpt->preset;
  std::string code;
  if (!result && ready) {
    if (spec_.policy.name == "dane-unusable") {
      // RFC 7672 §2.2: TLSA records, none usable: encrypted, but not the DANE it asked for
      // (tls/tlsrpt.h maps this to tlsa-invalid, RFC 8460 §4.3.2.1).
      code = "tlsa-unusable";
      result = TlsRptResultForFailure(code);
    } else if (!violation_.empty()) {
      result = TlsRptResultForFailure(violation_);
      code = violation_;
    } else if (spec_.policy.requirement != TlsRequirement::kDisabled &&
               (tls_ == nullptr || !tls_->handshake_done())) {
      result = TlsRptResult::kStartTlsNotSupported;
      code = "starttls-not-offered";
    }
  } else if (!result) {
    result = TlsRptResultForFailure(reason);
    if (!result) return;
    code = std::string(reason.substr(0, reason.find(':')));
  }
  TlsRptSession s;
  s.policy = spec_.tlsrpt->policy;
  s.success = !result.has_value();
  if (result) s.result = *result;
  s.reason_code = std::move(code);
  s.receiving_mx = spec_.mx;
  s.receiving_ip = SockaddrIp(spec_.addr);
  if (spec_.source) s.sending_ip = SockaddrIp(*spec_.source);  // else the reporter finds it
  env_->tlsrpt->Record(std::move(s));
}

}  // namespace mxb
