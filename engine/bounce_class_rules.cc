// The built-in bounce classification rules (engine/bounce_class.h), in the format of a user's
// rules file. README "Bounce classes" shows them as a table; keep the two together.
#include "engine/bounce_class.h"

namespace mxb {

absl::string_view BuiltinBounceRules() {
  return R"toml(
# --- 1. RFC 3463 codes that say what happened (RFC 3463 section 3, RFC 5248 registry) ---
[[code]]
enhanced = "X.1.1"   # bad destination mailbox address
class = "invalid-recipient"
[[code]]
enhanced = "X.1.3"   # bad destination mailbox address syntax
class = "invalid-recipient"
[[code]]
enhanced = "X.1.6"   # destination mailbox has moved
class = "invalid-recipient"
[[code]]
enhanced = "X.2.1"   # mailbox disabled
class = "invalid-recipient"
[[code]]
enhanced = "X.2.2"   # mailbox full
class = "mailbox-full"
[[code]]
enhanced = "X.1.2"   # bad destination system address
class = "dns"
[[code]]
enhanced = "X.1.10"  # recipient domain has a null MX (RFC 7505)
class = "dns"
[[code]]
enhanced = "X.4.3"   # directory server failure (our DNS failures)
class = "dns"
[[code]]
enhanced = "X.4.4"   # unable to route
class = "dns"
[[code]]
enhanced = "X.4.5"   # mail system congestion (and our paused / rate-capped destinations)
class = "rate-limit"
[[code]]
enhanced = "X.7.28"  # mail flood detected
class = "rate-limit"
[[code]]
enhanced = "X.7.4"   # security features not supported (no STARTTLS)
class = "tls"
[[code]]
enhanced = "X.7.5"   # cryptographic failure (certificate, handshake)
class = "tls"
[[code]]
enhanced = "X.7.10"  # encryption needed
class = "tls"
[[code]]
enhanced = "X.7.30"  # REQUIRETLS needed (RFC 8689)
class = "tls"
[[code]]
enhanced = "X.2.3"   # message length exceeds administrative limit
class = "policy"
[[code]]
enhanced = "X.3.4"   # message too big for system
class = "policy"
[[code]]
enhanced = "X.6.*"   # message content or media
class = "policy"
[[code]]
enhanced = "X.7.20"  # no passing DKIM signature (RFC 7372)
class = "policy"
[[code]]
enhanced = "X.7.21"
class = "policy"
[[code]]
enhanced = "X.7.22"
class = "policy"
[[code]]
enhanced = "X.7.23"  # SPF validation failed
class = "policy"
[[code]]
enhanced = "X.7.24"
class = "policy"
[[code]]
enhanced = "X.7.25"  # reverse DNS validation failed
class = "policy"
[[code]]
enhanced = "X.7.26"  # multiple authentication checks failed (DMARC)
class = "policy"
[[code]]
enhanced = "X.4.1"   # no answer from host
class = "server-error"
[[code]]
enhanced = "X.4.2"   # bad connection
class = "server-error"
[[code]]
enhanced = "X.3.1"   # mail system full
class = "server-error"
[[code]]
enhanced = "X.3.3"
class = "server-error"
[[code]]
enhanced = "X.3.5"   # system incorrectly configured
class = "server-error"
[[code]]
enhanced = "X.5.*"   # protocol errors
class = "server-error"
[[code]]
enhanced = "X.3.2"   # system not accepting messages (ours: engine shutting down)
class = "other"

# --- 2. reply text (generic codes: X.0.0, X.7.0, X.7.1, X.1.0, X.2.0, ...) ---
[[text]]
contains = ["spam", "blocklist", "blacklist", "block list", "black list", "listed at",
            "listed in", "spamhaus", "barracuda", "spamcop", "sorbs", "dnsbl", "rbl",
            "reputation", "junk mail", "bulk mail"]
class = "spam-block"
[[text]]
contains = ["too many", "rate limit", "ratelimit", "throttl", "try again later", "try later",
            "slow down", "exceeded the rate", "temporarily deferred", "receiving mail at a rate"]
class = "rate-limit"
[[text]]
contains = ["mailbox full", "mailbox is full", "over quota", "quota exceeded",
            "exceeded storage", "insufficient storage", "out of storage", "mailbox size limit"]
class = "mailbox-full"
[[text]]
contains = ["user unknown", "unknown user", "no such user", "no such mailbox",
            "mailbox unavailable", "mailbox not found", "does not exist", "invalid recipient",
            "recipient rejected", "address rejected", "unknown recipient", "not a valid mailbox",
            "account disabled", "account has been disabled", "inactive"]
class = "invalid-recipient"
[[text]]
contains = ["starttls", "tls", "certificate", "handshake", "dane", "tlsa", "mta-sts",
            "requiretls"]
class = "tls"
[[text]]
contains = ["servfail", "nxdomain", "dns", "mx record", "host not found", "domain not found",
            "name service"]
class = "dns"
[[text]]
contains = ["spf", "dkim", "dmarc", "not authorized", "not permitted", "relay",
            "policy", "administrative"]
class = "policy"
[[text]]
contains = ["timed out", "connection refused", "connection reset", "no route", "unreachable",
            "lost connection", "protocol error", "internal error"]
class = "server-error"

# --- 3. what is left of a generic code ---
[[code]]
enhanced = "X.4.7"   # delivery time expired: the last error's text (step 2) decides first
class = "other"
after_text = true
[[code]]
reply = 421          # service not available, closing (RFC 5321 section 3.8): throttling in practice
class = "rate-limit"
after_text = true
[[code]]
enhanced = "X.7.*"   # security or policy status
class = "policy"
after_text = true
[[code]]
enhanced = "X.3.*"   # mail system status
class = "server-error"
after_text = true
[[code]]
enhanced = "X.4.*"   # network and routing status
class = "server-error"
after_text = true
)toml";
}

}  // namespace mxb
