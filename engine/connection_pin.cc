// Connection (engine/connection.h), the banner "strict-tls" pin (tls/banner_pin.h;
// experimental, `[tls] banner_pins = "learn"`): the greeting's announcement is kept until the
// session is ready and recorded only if this same connection's certificate was PKIX-verified
// for the MX name — the greeting is plaintext, so an unauthenticated banner never creates,
// extends or removes a pin. And the other direction: a connection opened before a pin covered
// its MX host carries no more mail unless it has verified TLS (Destination::StartTransaction
// asks MeetsBannerPins() before every transaction, so pooled and parked connections included).
#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "engine/config.h"
#include "engine/connection.h"

namespace mxb {

void Connection::NoteGreeting(const SmtpReply& greeting) {
  if (env_->banner_pins == nullptr || greeting.code != 220) return;
  absl::StatusOr<BannerPinAnnouncement> a = ParseBannerPin(greeting.text);
  if (a.ok()) {
    announced_pin_ = *std::move(a);
    return;
  }
  if (!absl::IsNotFound(a.status()) && !env_->config->quiet) {
    std::fprintf(stderr, "mxburst: %s: banner pin ignored: %s\n", spec_.mx.c_str(),
                 std::string(a.status().message()).c_str());
  }
}

void Connection::LearnBannerPin() {
  if (!announced_pin_ || env_->banner_pins == nullptr) return;
  const BannerPinAnnouncement a = *std::move(announced_pin_);
  announced_pin_.reset();
  const EngineConfig& config = *env_->config;
  const std::string what = absl::StrCat("strict-tls=", a.pattern, "; max-age=", a.max_age_s,
                                        a.include_subdomains ? "; includeSubDomains" : "");
  // PKIX + RFC 6125 name check of this very connection (a resumed session counts when its
  // ticket came from such a check). DANE-EE ignores names, so DANE does not count here.
  std::string why_not;
  if (tls_ == nullptr || !tls_->handshake_done()) {
    why_not = "no TLS on this connection";
  } else if (spec_.policy.dane != nullptr) {
    why_not = "authenticated by DANE, not a PKIX certificate for the name";
  } else if (!tls_->verified()) {
    why_not = absl::StrCat("certificate not verified for ", spec_.mx, " (",
                           ToString(tls_->failure()), ")");
  }
  if (!why_not.empty()) {
    if (!config.quiet) {
      std::fprintf(stderr, "mxburst: %s announced %s; not recorded: %s\n", spec_.mx.c_str(),
                   what.c_str(), why_not.c_str());
    }
    return;
  }
  absl::StatusOr<BannerPinStore::Learned> r = env_->banner_pins->Learn(spec_.mx, a, absl::Now());
  if (!r.ok()) {
    if (!config.quiet) {
      std::fprintf(stderr, "mxburst: %s announced %s; not recorded: %s\n", spec_.mx.c_str(),
                   what.c_str(), std::string(r.status().message()).c_str());
    }
    return;
  }
  if (config.quiet) return;
  if (*r == BannerPinStore::Learned::kAdded) {
    std::fprintf(stderr, "mxburst: banner pin learned from %s over verified TLS: %s\n",
                 spec_.mx.c_str(), what.c_str());
  } else if (*r == BannerPinStore::Learned::kRemoved) {
    std::fprintf(stderr, "mxburst: banner pin %s removed: %s announced max-age=0 over verified TLS\n",
                 a.pattern.c_str(), spec_.mx.c_str());
  }
}

bool Connection::MeetsBannerPins() {
  const BannerPinStore* pins = env_->banner_pins;
  if (pins == nullptr || pins->empty()) return true;
  if (tls_ != nullptr && tls_->verified()) return true;  // what a pin asks for
  // Expiry only removes pins, so a pass stays valid until the set changes.
  const uint64_t gen = pins->generation();
  if (gen == pins_checked_gen_) return true;
  if (std::optional<BannerPin> pin = pins->Match(spec_.mx, absl::Now())) {
    if (!env_->config->quiet) {
      std::fprintf(stderr,
                   "mxburst: %s is pinned (strict-tls=%s, banner pin learned from %s): this "
                   "connection has no verified TLS and closes\n",
                   spec_.mx.c_str(), pin->rule.pattern.c_str(), pin->learned_from.c_str());
    }
    return false;
  }
  pins_checked_gen_ = gen;
  return true;
}

}  // namespace mxb
