// MTA-STS (RFC 8461): what a recipient domain's published policy says, and the durable cache of
// those policies in the spool.
//
// Owns: the pure parsers — the `_mta-sts.<domain>` TXT record (§3.1) and the policy file served
// at https://mta-sts.<domain>/.well-known/mta-sts.txt (§3.2) — the MX pattern match (§4.1), the
// §5.1 cache decision (use the cached policy, fetch, or use it and refresh in the background),
// and StsPolicyStore, which keeps one file per domain under SPOOL/policy/mta-sts/ so a restart
// keeps every policy until its max_age runs out. A policy belongs to the recipient DOMAIN, never
// to an MX host: two domains sharing MX hosts have independent entries.
//
// Thread: the parsers and matchers are pure (any thread). StsPolicyStore is shared by the fetcher
// thread (Put) and the workers (Get): a mutex guards a map of immutable shared_ptr<const
// StsPolicy> snapshots, held only for a map lookup or swap — a worker never waits on I/O or on a
// fetch. Put() writes the file (tmp + fsync + rename) before publishing.
//
//   absl::StatusOr<StsPolicy> p = ParseStsPolicy("version: STSv1\nmode: enforce\n"
//                                                "mx: *.mail.example\nmax_age: 86400\n");
//   if (p.ok() && p->MatchesMx("mx1.mail.example")) ...
//   auto store = StsPolicyStore::Open(spool + "/policy/mta-sts");
//   (*store)->Put("example.com", *p);      // survives a restart
//   std::shared_ptr<const StsPolicy> cached = (*store)->Get("example.com");
#pragma once

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

enum class StsMode { kNone, kTesting, kEnforce };
const char* ToString(StsMode m);  // "none", "testing", "enforce"

// RFC 8461 §3.2: max_age is at most 31557600 seconds (about a year); larger values are capped.
inline constexpr int64_t kStsMaxAgeCap = 31557600;
// §3.3: the policy body is small; anything past this is refused by the fetcher.
inline constexpr size_t kStsMaxPolicyBytes = 64 * 1024;

struct StsPolicy {
  StsMode mode = StsMode::kNone;
  std::vector<std::string> mx;  // lower-case patterns, "*." allowed as the first label only
  int64_t max_age_s = 0;        // already capped at kStsMaxAgeCap
  std::string id;               // the TXT record's id when this policy was fetched (§3.1)
  absl::Time fetched = absl::InfinitePast();
  // The policy's fields as RFC 8460 §4.4 "policy-string" wants them: one entry per line, in order.
  std::vector<std::string> lines;

  absl::Time expires() const { return fetched + absl::Seconds(max_age_s); }
  bool Expired(absl::Time now) const { return now >= expires(); }
  // §4.1: the MX host (trailing dot ignored, case-insensitive) matches one of the patterns.
  bool MatchesMx(absl::string_view mx_host) const;
};

// §3.2 policy file. Unknown fields are ignored; of a repeated non-mx field the first counts.
// Missing/invalid version, mode or max_age, a bad mx pattern, or no mx with mode testing/enforce
// -> InvalidArgument naming the line (the caller treats it as "no policy" and reports
// sts-policy-invalid). `id` and `fetched` are left for the caller.
absl::StatusOr<StsPolicy> ParseStsPolicy(absl::string_view body);

// §3.1 one TXT record: "v=STSv1; id=<1-32 alnum>;" (extensions ignored). Returns the id.
absl::StatusOr<std::string> ParseStsTxt(absl::string_view txt);
// §3.1 all TXT strings at _mta-sts.<domain>: records not starting with "v=STSv1" are discarded;
// exactly one must remain and parse, else there is no (live) policy -> nullopt.
std::optional<std::string> StsIdFromTxtRecords(const std::vector<std::string>& records);

// §4.1: "mx1.example.com" matches itself; "*.example.com" matches exactly one extra leftmost
// label ("a.example.com", not "a.b.example.com" nor "example.com"). Case-insensitive.
bool StsMxPatternMatches(absl::string_view pattern, absl::string_view mx_host);

// A domain name safe to use as a file name and in a URL: LDH labels, dots, no leading dot.
bool IsValidStsDomain(absl::string_view domain);

// §5.1 what to do for a domain, given its cached policy (or null) and the TXT id seen now
// (nullopt: no valid TXT record, or the lookup failed).
enum class StsCacheAction {
  kNoPolicy,          // nothing cached and no TXT record: the domain has no MTA-STS
  kUseCached,         // cached, unexpired, TXT absent or same id
  kUseCachedRefresh,  // as kUseCached, but old enough that a background refresh is due (§10.2)
  kFetch,             // TXT present and (no cache, expired, or the id changed): fetch first
};
const char* ToString(StsCacheAction a);
StsCacheAction DecideStsAction(const StsPolicy* cached, const std::optional<std::string>& txt_id,
                               absl::Time now);

// §4/§5 the policy to carry out on an MX host the domain's policy lists (the caller has already
// dropped hosts that do not match in enforce mode). DANE wins (RFC 8461 §2: a DANE TLSA record
// for the MX takes precedence). enforce -> STARTTLS required with a PKIX-valid certificate for
// the MX name (implicit TLS first is kept from an smtps- prefix); testing -> what `base` says,
// but verified and logged (TlsPolicy::log_only) so every failure is recorded; none -> base.
// The name carries mode and id for the log: "mta-sts-enforce id=<id>".
TlsPolicy ApplyStsPolicy(TlsPolicy base, const StsPolicy& sts);

// What delivery knows about a domain's MTA-STS right now (StsSource::Lookup).
struct StsLookup {
  enum class State {
    kPending,   // never checked yet: the check is queued; the caller waits (bounded) or defers
    kNoPolicy,  // checked: no TXT record, or no policy could be fetched and none is cached
    kPolicy,    // `policy` applies (possibly mode none); cached and unexpired
  };
  State state = State::kPending;
  std::shared_ptr<const StsPolicy> policy;
  // RFC 8460 §4.3 result type of the last failed check ("sts-policy-fetch-error",
  // "sts-policy-invalid", "sts-webpki-invalid"), with the detail; empty when it succeeded.
  std::string failure;
};
const char* ToString(StsLookup::State s);  // "pending", "no-policy", "policy"

// Where workers ask for a domain's policy. Lookup() never blocks on the network: it answers from
// what is known and, when a (re)check is due, queues one. Thread: any.
class StsSource {
 public:
  virtual ~StsSource() = default;
  virtual StsLookup Lookup(absl::string_view domain, absl::Time now) = 0;
};

class StsPolicyStore {
 public:
  // Creates `dir` when missing and loads every policy file in it; an unreadable or corrupt file
  // is skipped with its name in `*skipped` (it is refetched on next use).
  static absl::StatusOr<std::unique_ptr<StsPolicyStore>> Open(
      std::string dir, std::vector<std::string>* skipped = nullptr);

  std::shared_ptr<const StsPolicy> Get(absl::string_view domain) const;
  // Persists, then publishes. `domain` must pass IsValidStsDomain.
  absl::Status Put(absl::string_view domain, StsPolicy policy);
  std::vector<std::string> Domains() const;
  const std::string& dir() const { return dir_; }

  // The file format (one JSON object): {"domain","id","fetched","max_age","mode","mx":[...],
  // "lines":[...]}; also what `mxburstctl sts DOMAIN` prints.
  static std::string ToJson(absl::string_view domain, const StsPolicy& p);
  static absl::StatusOr<StsPolicy> FromJson(absl::string_view json);
  // `mxburstctl sts`: reads one domain's file without opening the store.
  static absl::StatusOr<StsPolicy> ReadFile(const std::string& dir, absl::string_view domain);

 private:
  explicit StsPolicyStore(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
  mutable std::mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<const StsPolicy>> map_;
};

}  // namespace mxb
