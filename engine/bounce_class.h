// BounceClass: what kind of failure a deferred or bounced recipient met — the `class` field of
// its accounting-log record and the `class` label of mxburst_recipients_by_class_total (issue
// 14). A small fixed set, so dashboards and suppression lists can act on it:
//
//   invalid-recipient  the address does not exist or is disabled (X.1.1, X.1.3, X.2.1, ...)
//   mailbox-full       over quota (X.2.2)
//   spam-block         the receiver blocks the message or our address as spam / on a blocklist
//   policy             refused by the receiver's rules: authentication (SPF/DKIM/DMARC), size,
//                      content, relaying, "not authorized" (X.7.x, X.6.x, X.3.4)
//   tls                a TLS requirement was not met: no STARTTLS, certificate, handshake,
//                      DANE, MTA-STS, REQUIRETLS (X.7.4, X.7.5, X.7.10, X.7.30, our TLS texts)
//   dns                the domain or its MX could not be resolved, null MX (X.1.2, X.1.10, X.4.3)
//   rate-limit         the receiver throttles us (421, X.4.5, X.7.28, "too many", "try later")
//   server-error       the receiving system failed: no answer, lost connection, protocol or
//                      mail-system errors (X.3.x, X.4.1, X.4.2, X.5.x)
//   other              nothing above matched
//
// Rules: the RFC 3463 enhanced status code decides first, the reply text second (RFC 3463 §2:
// the code is the machine-readable part; many receivers send only X.0.0 or X.7.1 and say what
// they mean in the text). Tried in this order, first match wins:
//   1. [[code]] rules           (enhanced "5.1.1" / "X.1.1" / "X.7.*", and/or reply = 421)
//   2. [[text]] rules           (any of `contains`, case-insensitive substrings of the text)
//   3. [[code]] rules with after_text = true  (generic codes: X.0.0, X.7.0, X.7.1, 421)
//   4. other
// A user's rules file (`bounce_classes = "FILE"`, same format) comes before the built-in rules
// (engine/bounce_class_rules.cc) in each step, so it can add and override.
//
// Threads: built once (Load), then read-only; Classify may be called from any thread.
//
//   absl::StatusOr<BounceClassifier> c = BounceClassifier::Load("/etc/mxburst/bounce-classes.toml");
//   BounceClass k = c->Classify(550, "5.1.1", "5.1.1 <bob@example.com>: user unknown");
//   ToString(k);  // "invalid-recipient"
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mxb {

enum class BounceClass : uint8_t {
  kInvalidRecipient,
  kMailboxFull,
  kSpamBlock,
  kPolicy,
  kTls,
  kDns,
  kRateLimit,
  kServerError,
  kOther,
};
inline constexpr size_t kBounceClasses = 9;
const char* ToString(BounceClass c);
[[nodiscard]] bool ParseBounceClass(absl::string_view name, BounceClass* out);

// The built-in rules, TOML (engine/bounce_class_rules.cc).
absl::string_view BuiltinBounceRules();

class BounceClassifier {
 public:
  // The rules of `user_file` ("" = none), then the built-in ones. The error is one line naming
  // the file and the rule: "rules.toml: text[2].class: expected one of invalid-recipient, ...".
  [[nodiscard]] static absl::StatusOr<BounceClassifier> Load(const std::string& user_file);
  // Appends the rules of a TOML text (`name` stands for the file in messages).
  [[nodiscard]] absl::Status AddRules(absl::string_view toml, const std::string& name);

  BounceClass Classify(int code, absl::string_view enhanced, absl::string_view text) const;

 private:
  struct CodeRule {
    char klass = 'X';        // '4', '5' or 'X' (either)
    int subject = -1;        // -1 = any
    int detail = -1;         // -1 = any
    bool has_enhanced = false;
    int reply = 0;           // 0 = any basic code
    bool after_text = false;
    BounceClass cls = BounceClass::kOther;
    bool Matches(int code, absl::string_view enhanced) const;
  };
  struct TextRule {
    std::vector<std::string> needles;  // lower case
    BounceClass cls = BounceClass::kOther;
  };
  std::vector<CodeRule> code_;
  std::vector<TextRule> text_;
};

}  // namespace mxb
