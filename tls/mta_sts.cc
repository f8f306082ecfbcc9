// MTA-STS parsers, MX matching, cache decision and the spool-backed store (tls/mta_sts.h).
#include "tls/mta_sts.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "tls/durable_file.h"

namespace mxb {
namespace {

bool IsWsp(char c) { return c == ' ' || c == '\t'; }

absl::string_view TrimWsp(absl::string_view s) {
  while (!s.empty() && IsWsp(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsWsp(s.back())) s.remove_suffix(1);
  return s;
}

// RFC 5321 §4.1.2 Ldh-str / sub-domain: letters, digits, hyphens, not starting or ending with '-'.
bool IsLdhLabel(absl::string_view l) {
  if (l.empty() || l.size() > 63 || l.front() == '-' || l.back() == '-') return false;
  for (char c : l) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
  }
  return true;
}

bool IsDomainName(absl::string_view d) {
  if (d.empty() || d.size() > 253) return false;
  for (absl::string_view label : absl::StrSplit(d, '.')) {
    if (!IsLdhLabel(label)) return false;
  }
  return true;
}

// §3.2 sts-policy-mx-value = ["*."] Domain.
bool IsMxPattern(absl::string_view p) {
  absl::ConsumePrefix(&p, "*.");
  return IsDomainName(p);
}

absl::string_view StripDot(absl::string_view host) {
  absl::ConsumeSuffix(&host, ".");
  return host;
}

std::string UtcTime(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

}  // namespace

const char* ToString(StsMode m) {
  switch (m) {
    case StsMode::kNone:
      return "none";
    case StsMode::kTesting:
      return "testing";
    case StsMode::kEnforce:
      return "enforce";
  }
  return "unknown";
}

const char* ToString(StsLookup::State s) {
  switch (s) {
    case StsLookup::State::kPending:
      return "pending";
    case StsLookup::State::kNoPolicy:
      return "no-policy";
    case StsLookup::State::kPolicy:
      return "policy";
  }
  return "unknown";
}

const char* ToString(StsCacheAction a) {
  switch (a) {
    case StsCacheAction::kNoPolicy:
      return "no-policy";
    case StsCacheAction::kUseCached:
      return "use-cached";
    case StsCacheAction::kUseCachedRefresh:
      return "use-cached-refresh";
    case StsCacheAction::kFetch:
      return "fetch";
  }
  return "unknown";
}

bool StsMxPatternMatches(absl::string_view pattern, absl::string_view mx_host) {
  pattern = StripDot(pattern);
  mx_host = StripDot(mx_host);
  if (absl::ConsumePrefix(&pattern, "*.")) {
    // §4.1: the wildcard stands for exactly one label: strip the MX host's first label and
    // compare the rest; "example.com" has no label to strip for "*.example.com".
    const size_t dot = mx_host.find('.');
    if (dot == absl::string_view::npos || dot == 0) return false;
    return absl::EqualsIgnoreCase(mx_host.substr(dot + 1), pattern);
  }
  return absl::EqualsIgnoreCase(mx_host, pattern);
}

bool StsPolicy::MatchesMx(absl::string_view mx_host) const {
  for (const std::string& p : mx) {
    if (StsMxPatternMatches(p, mx_host)) return true;
  }
  return false;
}

bool IsValidStsDomain(absl::string_view domain) { return IsDomainName(StripDot(domain)); }

absl::StatusOr<StsPolicy> ParseStsPolicy(absl::string_view body) {
  StsPolicy p;
  bool have_version = false, have_mode = false, have_max_age = false;
  int line_no = 0;
  // §3.2: sts-policy-term = LF / CRLF.
  for (absl::string_view line : absl::StrSplit(body, '\n')) {
    ++line_no;
    absl::ConsumeSuffix(&line, "\r");
    if (TrimWsp(line).empty()) continue;  // the optional final terminator, or a stray blank line
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("line ", line_no, ": no ':' in \"",
                                                     absl::CEscape(line.substr(0, 80)), "\""));
    }
    const absl::string_view key = line.substr(0, colon);
    const absl::string_view value = TrimWsp(line.substr(colon + 1));
    // Field names are case-sensitive in the ABNF ("version", "mode", ...).
    if (key == "version") {
      if (have_version) continue;  // §3.2: the first occurrence of a non-repeated field is used
      if (value != "STSv1") {
        return absl::InvalidArgumentError(
            absl::StrCat("line ", line_no, ": version \"", absl::CEscape(value), "\" is not STSv1"));
      }
      have_version = true;
    } else if (key == "mode") {
      if (have_mode) continue;
      if (value == "enforce") {
        p.mode = StsMode::kEnforce;
      } else if (value == "testing") {
        p.mode = StsMode::kTesting;
      } else if (value == "none") {
        p.mode = StsMode::kNone;
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("line ", line_no, ": unknown mode \"", absl::CEscape(value), "\""));
      }
      have_mode = true;
    } else if (key == "max_age") {
      if (have_max_age) continue;
      // sts-policy-max-age-value = 1*10DIGIT
      uint64_t v = 0;
      if (value.empty() || value.size() > 10 ||
          !std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
          !absl::SimpleAtoi(value, &v)) {
        return absl::InvalidArgumentError(
            absl::StrCat("line ", line_no, ": max_age \"", absl::CEscape(value), "\" is not 1-10 digits"));
      }
      p.max_age_s = static_cast<int64_t>(std::min<uint64_t>(v, kStsMaxAgeCap));
      have_max_age = true;
    } else if (key == "mx") {
      if (!IsMxPattern(value)) {
        return absl::InvalidArgumentError(
            absl::StrCat("line ", line_no, ": bad mx pattern \"", absl::CEscape(value), "\""));
      }
      p.mx.push_back(absl::AsciiStrToLower(value));
    } else {
      continue;  // §3.2: unknown fields are ignored (and not part of policy-string)
    }
    p.lines.push_back(absl::StrCat(key, ": ", value));
  }
  if (!have_version) return absl::InvalidArgumentError("no version field");
  if (!have_mode) return absl::InvalidArgumentError("no mode field");
  if (!have_max_age) return absl::InvalidArgumentError("no max_age field");
  if (p.mode != StsMode::kNone && p.mx.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("mode ", ToString(p.mode), " without mx"));
  }
  return p;
}

absl::StatusOr<std::string> ParseStsTxt(absl::string_view txt) {
  // §3.1: sts-text-record = sts-version 1*(sts-field-delim sts-field) [sts-field-delim],
  // sts-version = "v=STSv1" first, sts-field-delim = *WSP ";" *WSP, sts-id = 1*32(ALPHA/DIGIT).
  if (!absl::StartsWith(txt, "v=STSv1")) {
    return absl::InvalidArgumentError("TXT record does not start with v=STSv1");
  }
  std::vector<absl::string_view> fields = absl::StrSplit(txt, ';');
  if (TrimWsp(fields[0]) != "v=STSv1") {
    return absl::InvalidArgumentError(absl::StrCat("bad version field \"", absl::CEscape(fields[0]), "\""));
  }
  std::optional<std::string> id;
  for (size_t i = 1; i < fields.size(); ++i) {
    absl::string_view f = TrimWsp(fields[i]);
    if (f.empty()) {
      if (i + 1 == fields.size()) break;  // the optional trailing delimiter
      return absl::InvalidArgumentError("empty field in TXT record");
    }
    const size_t eq = f.find('=');
    if (eq == absl::string_view::npos || eq == 0) {
      return absl::InvalidArgumentError(absl::StrCat("field \"", absl::CEscape(f), "\" has no name="));
    }
    const absl::string_view name = f.substr(0, eq), value = f.substr(eq + 1);
    if (name != "id") continue;  // extensions are ignored
    if (id.has_value()) continue;
    if (value.empty() || value.size() > 32 ||
        !std::all_of(value.begin(), value.end(),
                     [](char c) { return absl::ascii_isalnum(static_cast<unsigned char>(c)); })) {
      return absl::InvalidArgumentError(absl::StrCat("id \"", absl::CEscape(value), "\" is not 1-32 letters/digits"));
    }
    id = std::string(value);
  }
  if (!id.has_value()) return absl::InvalidArgumentError("TXT record without id");
  return *id;
}

std::optional<std::string> StsIdFromTxtRecords(const std::vector<std::string>& records) {
  std::optional<std::string> found;
  int candidates = 0;
  for (const std::string& r : records) {
    if (!absl::StartsWith(r, "v=STSv1")) continue;
    ++candidates;
    absl::StatusOr<std::string> id = ParseStsTxt(r);
    if (id.ok()) found = *id;
    else found.reset();
  }
  if (candidates != 1) return std::nullopt;
  return found;
}

StsCacheAction DecideStsAction(const StsPolicy* cached, const std::optional<std::string>& txt_id,
                               absl::Time now) {
  const bool live = cached != nullptr && !cached->Expired(now);
  if (!txt_id.has_value()) {
    // §5.1: no live policy discoverable via DNS, but an unexpired cached one: apply it.
    return live ? StsCacheAction::kUseCached : StsCacheAction::kNoPolicy;
  }
  if (!live || cached->id != *txt_id) return StsCacheAction::kFetch;
  // §10.2 suggests refreshing periodically so a policy never expires while still in use: once a
  // day, or past half its max_age when that is shorter.
  const absl::Duration age = now - cached->fetched;
  if (age >= absl::Hours(24) || age >= absl::Seconds(cached->max_age_s) / 2) {
    return StsCacheAction::kUseCachedRefresh;
  }
  return StsCacheAction::kUseCached;
}

TlsPolicy ApplyStsPolicy(TlsPolicy base, const StsPolicy& sts) {
  if (base.source == PolicySource::kDane || sts.mode == StsMode::kNone) return base;
  TlsPolicy p = base;
  p.source = PolicySource::kMtaSts;
  p.name = absl::StrCat("mta-sts-", ToString(sts.mode), " id=", sts.id);
  p.verify = true;
  if (sts.mode == StsMode::kEnforce) {
    p.requirement = TlsRequirement::kRequired;
    p.log_only = false;
    return p;
  }
  // testing (§5): deliver as the other rules allow, never stricter; verify and log failures.
  if (base.requirement == TlsRequirement::kRequired && !base.log_only) {
    // A configured or prefix requirement stays in force; it keeps its own name and source.
    return base;
  }
  if (p.requirement == TlsRequirement::kDisabled) p.requirement = TlsRequirement::kOpportunistic;
  p.log_only = true;
  return p;
}

std::string StsPolicyStore::ToJson(absl::string_view domain, const StsPolicy& p) {
  nlohmann::json j;
  j["domain"] = std::string(domain);
  j["id"] = p.id;
  j["fetched"] = absl::ToUnixSeconds(p.fetched);
  j["fetched_utc"] = UtcTime(p.fetched);
  j["expires_utc"] = UtcTime(p.expires());
  j["max_age"] = p.max_age_s;
  j["mode"] = ToString(p.mode);
  j["mx"] = p.mx;
  j["lines"] = p.lines;
  return j.dump();
}

absl::StatusOr<StsPolicy> StsPolicyStore::FromJson(absl::string_view json) {
  // No exceptions in tls/ (STYLE.md): parse without throwing and check every type by hand.
  const nlohmann::json j = nlohmann::json::parse(json.begin(), json.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return absl::InvalidArgumentError("not a JSON object");
  auto str = [&](const char* k) { return j.contains(k) && j[k].is_string(); };
  auto num = [&](const char* k) { return j.contains(k) && j[k].is_number_integer(); };
  auto strs = [&](const char* k) {
    if (!j.contains(k) || !j[k].is_array()) return false;
    for (const auto& e : j[k]) {
      if (!e.is_string()) return false;
    }
    return true;
  };
  if (!str("id") || !num("fetched") || !num("max_age") || !str("mode") || !strs("mx") ||
      !strs("lines")) {
    return absl::InvalidArgumentError("missing or mistyped field");
  }
  StsPolicy p;
  p.id = j["id"].get<std::string>();
  p.fetched = absl::FromUnixSeconds(j["fetched"].get<int64_t>());
  p.max_age_s = std::clamp<int64_t>(j["max_age"].get<int64_t>(), 0, kStsMaxAgeCap);
  const std::string mode = j["mode"].get<std::string>();
  if (mode == "enforce") {
    p.mode = StsMode::kEnforce;
  } else if (mode == "testing") {
    p.mode = StsMode::kTesting;
  } else if (mode == "none") {
    p.mode = StsMode::kNone;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unknown mode ", mode));
  }
  for (const auto& e : j["mx"]) p.mx.push_back(e.get<std::string>());
  for (const auto& e : j["lines"]) p.lines.push_back(e.get<std::string>());
  return p;
}

absl::StatusOr<StsPolicy> StsPolicyStore::ReadFile(const std::string& dir,
                                                   absl::string_view domain) {
  if (!IsValidStsDomain(domain)) {
    return absl::InvalidArgumentError(absl::StrCat("\"", absl::CEscape(domain), "\" is not a domain name"));
  }
  const std::string path = absl::StrCat(dir, "/", absl::AsciiStrToLower(StripDot(domain)));
  absl::StatusOr<std::string> text = ReadSmallFile(path, 4 * kStsMaxPolicyBytes);
  if (!text.ok()) return text.status();
  absl::StatusOr<StsPolicy> p = FromJson(*text);
  if (!p.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", p.status().message()));
  return p;
}

absl::StatusOr<std::unique_ptr<StsPolicyStore>> StsPolicyStore::Open(
    std::string dir, std::vector<std::string>* skipped) {
  if (absl::Status s = MakeDirs(dir); !s.ok()) return s;
  std::unique_ptr<StsPolicyStore> store(new StsPolicyStore(std::move(dir)));
  DIR* d = opendir(store->dir_.c_str());
  if (d == nullptr) {
    return absl::InternalError(absl::StrCat(store->dir_, ": opendir: ", strerror(errno)));
  }
  while (dirent* e = readdir(d)) {
    const absl::string_view name = e->d_name;
    if (name.empty() || name.front() == '.') continue;  // ".", "..", our ".x.tmp" files
    absl::StatusOr<StsPolicy> p = ReadFile(store->dir_, name);
    if (!p.ok()) {
      if (skipped != nullptr) skipped->push_back(std::string(name));
      continue;
    }
    store->map_[name] = std::make_shared<const StsPolicy>(*std::move(p));
  }
  closedir(d);
  return store;
}

std::shared_ptr<const StsPolicy> StsPolicyStore::Get(absl::string_view domain) const {
  const std::string key = absl::AsciiStrToLower(StripDot(domain));
  std::lock_guard<std::mutex> lock(mu_);
  auto it = map_.find(key);
  return it == map_.end() ? nullptr : it->second;
}

absl::Status StsPolicyStore::Put(absl::string_view domain, StsPolicy policy) {
  if (!IsValidStsDomain(domain)) {
    return absl::InvalidArgumentError(absl::StrCat("\"", absl::CEscape(domain), "\" is not a domain name"));
  }
  const std::string key = absl::AsciiStrToLower(StripDot(domain));
  if (absl::Status s = WriteFileDurably(dir_, key, ToJson(key, policy)); !s.ok()) return s;
  auto snap = std::make_shared<const StsPolicy>(std::move(policy));
  std::lock_guard<std::mutex> lock(mu_);
  map_[key] = std::move(snap);
  return absl::OkStatus();
}

std::vector<std::string> StsPolicyStore::Domains() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out;
  for (const auto& [k, v] : map_) out.push_back(k);
  return out;
}

}  // namespace mxb
