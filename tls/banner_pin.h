// The banner "strict-tls" pin (experimental, `[tls] banner_pins = "learn"`, off by default): a
// receiver announces in its 220 greeting that its MX hosts must be reached over verified TLS,
// and mxburst remembers that like a browser remembers HSTS (RFC 6797) — trust on first use.
// This is NOT a standard: it is a proposal from the NANOG discussion of the `starttls-` MX name
// prefix. Greeting syntax (directives separated by ';', names case-insensitive, as HSTS §6.1):
//
//   220 mx1.example.com ESMTP strict-tls=*.example.com; max-age=86400; includeSubDomains
//
// Owns: the pure parser of that greeting text, the scope rule (a host may pin only names under
// its own parent domain, and only patterns that cover itself), the policy a pin imposes
// (required + verify, like a `starttls-` prefix; source "banner-pin"), and BannerPinStore, the
// process-wide set of learned pins persisted in SPOOL/policy/banner-pins.json.
//
// The engine records an announcement only after the SAME connection completed TLS with a
// certificate PKIX-verified for the MX name (engine/connection_pin.cc): the greeting itself is
// plaintext before STARTTLS, so an unauthenticated banner must never create or extend a pin. A
// pin is never removed by a plaintext banner; it ends when max-age runs out, or when a verified
// connection's banner announces the same pattern with max-age=0. Known limit of the proposal:
// the STARTTLS greeting is not covered by the TLS that follows, so an attacker on the path of a
// host that really has a valid certificate can alter the announced pattern or max-age — within
// the scope rule — but cannot make a host pinned that it cannot also serve over verified TLS.
//
// Thread: the parser and matchers are pure (any thread). BannerPinStore is shared by every
// worker: Match() takes a mutex for a scan of the (few) pins, empty()/generation() are atomics
// for the hot path; Learn() writes the file (tmp + fsync + rename) on the calling worker, only
// when a pin is new, removed, changed, or its expiry moved by more than a tenth of max-age.
//
//   absl::StatusOr<BannerPinAnnouncement> a = ParseBannerPin("mx1.example.com ESMTP "
//       "strict-tls=*.example.com; max-age=86400");
//   auto store = BannerPinStore::Open(spool + "/policy");
//   (*store)->Learn("mx1.example.com", *a, absl::Now());   // only after verified TLS
//   if (std::optional<BannerPin> pin = (*store)->Match("mx2.example.com", absl::Now()))
//     policy = ApplyBannerPin(policy);
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "tls/policy.h"

namespace mxb {

enum class BannerPinMode { kOff, kLearn };
const char* ToString(BannerPinMode m);  // "off", "learn"

// max-age is capped like MTA-STS's (RFC 8461 §3.2): about a year.
inline constexpr int64_t kBannerPinMaxAgeCap = 31557600;

struct BannerPinAnnouncement {
  std::string pattern;  // lower case, no trailing dot; "*." as the first label allowed
  int64_t max_age_s = 0;  // 0 = remove the pin of this pattern; capped at kBannerPinMaxAgeCap
  bool include_subdomains = false;
};

// The greeting's text (SmtpReply::text: every line after "220-"/"220 ", joined with "\n").
// NotFound: no `strict-tls=` in it (the usual case). InvalidArgument naming what is wrong: a
// bad pattern, no or a bad max-age, a directive given twice. The directive list ends at the end
// of its line or at white space after a directive's value ("max-age=600 ready" is max-age 600).
absl::StatusOr<BannerPinAnnouncement> ParseBannerPin(absl::string_view greeting);

// Whether the pin applies to `host` (case-insensitive, trailing dot ignored): the pattern as an
// MTA-STS mx pattern (RFC 8461 §4.1: "*." is exactly one label), and with includeSubDomains
// also every name below the pattern's base (the pattern without "*.").
bool BannerPinCovers(const BannerPinAnnouncement& pin, absl::string_view host);

// Whether the verified host `mx_host` may announce `pin`: the pin must cover `mx_host` itself
// and its base must be `mx_host` or its parent domain, with at least two labels — so
// mx1.example.com can pin itself, *.example.com and (includeSubDomains) names under
// example.com, never *.com or another operator's hosts. The error says why not.
absl::Status CheckBannerPinScope(const BannerPinAnnouncement& pin, absl::string_view mx_host);

// The policy for an MX host a valid pin covers: STARTTLS required with a PKIX-valid certificate
// for the MX name, exactly like a `starttls-` prefix (implicit TLS first is kept from an
// `smtps-` prefix), name "banner-pin", source kBannerPin. A policy that already requires a
// verified certificate (prefix, config, MTA-STS enforce) or is DANE-authenticated stays as it
// is; DANE's unauthenticated "dane-unusable" and everything weaker is raised.
TlsPolicy ApplyBannerPin(TlsPolicy base);

// A learned pin.
struct BannerPin {
  BannerPinAnnouncement rule;
  std::string learned_from;  // the MX host whose verified connection announced it (last time)
  absl::Time learned = absl::InfinitePast();  // last time a verified banner announced it
  absl::Time expires = absl::InfinitePast();
};

class BannerPinStore {
 public:
  // Loads `dir`/banner-pins.json (creating `dir` when missing); expired pins are dropped. A
  // corrupt file stops nothing: it is ignored with its name and the reason in `*warning`, and
  // rewritten on the next Learn().
  static absl::StatusOr<std::unique_ptr<BannerPinStore>> Open(std::string dir,
                                                              std::string* warning = nullptr);
  static constexpr const char* kFileName = "banner-pins.json";

  // The unexpired pin covering `mx_host` (the latest-expiring one when several do).
  std::optional<BannerPin> Match(absl::string_view mx_host, absl::Time now) const;

  enum class Learned { kAdded, kRefreshed, kRemoved, kNothing };
  // An announcement seen on a connection to `mx_host` whose certificate was verified for that
  // name (the caller checks that). max_age 0 removes the pin of that pattern. An announcement
  // outside CheckBannerPinScope() is refused with that error; a failed write keeps the pin in
  // memory and returns the write error.
  absl::StatusOr<Learned> Learn(absl::string_view mx_host, const BannerPinAnnouncement& a,
                                absl::Time now);

  // Hot-path checks without the mutex: no pin at all / changes whenever a pin is added,
  // changed or removed (expiry only ever weakens the set, so it needs no generation).
  bool empty() const { return count_.load(std::memory_order_acquire) == 0; }
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

  // Every unexpired pin, sorted by pattern (`mxburstctl policy`, the policy dump).
  std::vector<BannerPin> List(absl::Time now) const;
  const std::string& dir() const { return dir_; }

  // The file: {"pins":[{"pattern","include_subdomains","max_age","learned_from","learned",
  // "expires","expires_utc"}]} with times in Unix seconds. One JSON object per pin (same keys,
  // plus "expired") is what `mxburstctl policy` prints.
  static std::string ToJson(const std::vector<BannerPin>& pins);
  static std::string PinJson(const BannerPin& pin, absl::Time now);
  static absl::StatusOr<std::vector<BannerPin>> FromJson(absl::string_view json);
  // `mxburstctl policy`: the pins of a spool without opening the store (NotFound: none yet).
  static absl::StatusOr<std::vector<BannerPin>> ReadFile(const std::string& dir);

 private:
  struct Entry {
    BannerPin pin;
    absl::Time persisted_expires = absl::InfinitePast();  // what the file says
  };
  explicit BannerPinStore(std::string dir) : dir_(std::move(dir)) {}
  absl::Status PersistLocked(absl::Time now);  // mu_ held
  void PublishLocked();                        // count_ and generation_ after a change

  std::string dir_;
  mutable std::mutex mu_;
  absl::flat_hash_map<std::string, Entry> pins_;  // key: pattern
  std::atomic<size_t> count_{0};
  std::atomic<uint64_t> generation_{0};
};

}  // namespace mxb
