// The banner "strict-tls" pin (tls/banner_pin.h).
#include "tls/banner_pin.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "tls/durable_file.h"
#include "tls/mta_sts.h"

namespace mxb {
namespace {

constexpr size_t kMaxFileBytes = 1 << 20;

bool IsWsp(char c) { return c == ' ' || c == '\t'; }

absl::string_view TrimWsp(absl::string_view s) {
  while (!s.empty() && IsWsp(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsWsp(s.back())) s.remove_suffix(1);
  return s;
}

std::string Lower(absl::string_view host) {
  absl::ConsumeSuffix(&host, ".");
  return absl::AsciiStrToLower(host);
}

size_t Labels(absl::string_view name) {
  return name.empty() ? 0 : static_cast<size_t>(std::count(name.begin(), name.end(), '.')) + 1;
}

// The pattern without its "*." (what includeSubDomains extends below).
absl::string_view BaseOf(absl::string_view pattern) {
  absl::ConsumePrefix(&pattern, "*.");
  return pattern;
}

// ["*."] domain with at least two labels: a pin of a TLD or of everything is never valid.
bool IsPinPattern(absl::string_view p) {
  const absl::string_view base = BaseOf(p);
  return IsValidStsDomain(base) && !absl::EndsWith(base, ".") && Labels(base) >= 2;
}

// HSTS §6.1 allows a directive value as a quoted-string; a pin value has no quotes inside.
absl::string_view Unquote(absl::string_view v) {
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') return v.substr(1, v.size() - 2);
  return v;
}

absl::StatusOr<BannerPinAnnouncement> ParseDirectives(absl::string_view list) {
  BannerPinAnnouncement a;
  bool have_pattern = false, have_max_age = false, have_sub = false;
  bool last = false;
  while (!last && !list.empty()) {
    const size_t semi = list.find(';');
    absl::string_view piece = TrimWsp(list.substr(0, semi));
    list = semi == absl::string_view::npos ? absl::string_view() : list.substr(semi + 1);
    if (piece.empty()) continue;  // "a;;b" or a trailing ';'
    // White space after a directive's value ends the list: the greeting's own text follows.
    if (const size_t ws = piece.find_first_of(" \t"); ws != absl::string_view::npos) {
      piece = piece.substr(0, ws);
      last = true;
    }
    const size_t eq = piece.find('=');
    const std::string name = absl::AsciiStrToLower(piece.substr(0, eq));
    const bool has_value = eq != absl::string_view::npos;
    const absl::string_view value = has_value ? Unquote(piece.substr(eq + 1)) : absl::string_view();
    if (name == "strict-tls") {
      if (have_pattern) return absl::InvalidArgumentError("strict-tls given twice");
      std::string p = Lower(value);
      if (!IsPinPattern(p)) {
        return absl::InvalidArgumentError(
            absl::StrCat("strict-tls: \"", absl::CEscape(value),
                         "\" is not a host name or *.domain of at least two labels"));
      }
      a.pattern = std::move(p);
      have_pattern = true;
    } else if (name == "max-age") {
      if (have_max_age) return absl::InvalidArgumentError("max-age given twice");
      if (value.empty() || value.size() > 18 ||
          !std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        return absl::InvalidArgumentError(
            absl::StrCat("max-age: \"", absl::CEscape(value), "\" is not a number of seconds"));
      }
      int64_t s = 0;
      if (!absl::SimpleAtoi(value, &s)) return absl::InvalidArgumentError("max-age: not a number");
      a.max_age_s = std::min(s, kBannerPinMaxAgeCap);
      have_max_age = true;
    } else if (name == "includesubdomains") {
      if (has_value) return absl::InvalidArgumentError("includeSubDomains takes no value");
      if (have_sub) return absl::InvalidArgumentError("includeSubDomains given twice");
      a.include_subdomains = have_sub = true;
    }
    // Other directives are ignored, as HSTS §6.1 does (room for extensions).
  }
  if (!have_max_age) return absl::InvalidArgumentError("strict-tls without max-age");
  return a;
}

}  // namespace

const char* ToString(BannerPinMode m) { return m == BannerPinMode::kLearn ? "learn" : "off"; }

absl::StatusOr<BannerPinAnnouncement> ParseBannerPin(absl::string_view greeting) {
  for (absl::string_view line : absl::StrSplit(greeting, '\n')) {
    absl::ConsumeSuffix(&line, "\r");
    const std::string lower = absl::AsciiStrToLower(line);
    for (size_t pos = lower.find("strict-tls="); pos != std::string::npos;
         pos = lower.find("strict-tls=", pos + 1)) {
      // A word of its own ("xstrict-tls=" is not the directive).
      if (pos > 0 && !IsWsp(lower[pos - 1])) continue;
      return ParseDirectives(line.substr(pos));
    }
  }
  return absl::NotFoundError("no strict-tls in the greeting");
}

bool BannerPinCovers(const BannerPinAnnouncement& pin, absl::string_view host_in) {
  const std::string host = Lower(host_in);
  if (StsMxPatternMatches(pin.pattern, host)) return true;
  if (!pin.include_subdomains) return false;
  return absl::EndsWith(host, absl::StrCat(".", BaseOf(pin.pattern)));
}

absl::Status CheckBannerPinScope(const BannerPinAnnouncement& pin, absl::string_view mx_host) {
  const std::string host = Lower(mx_host);
  if (!IsPinPattern(pin.pattern)) {
    return absl::InvalidArgumentError(absl::StrCat("\"", pin.pattern, "\" is not a pin pattern"));
  }
  if (!BannerPinCovers(pin, host)) {
    return absl::PermissionDeniedError(
        absl::StrCat(host, " announced strict-tls=", pin.pattern, ", which does not cover it"));
  }
  const absl::string_view base = BaseOf(pin.pattern);
  const size_t dot = host.find('.');
  const absl::string_view parent =
      dot == std::string::npos ? absl::string_view() : absl::string_view(host).substr(dot + 1);
  if (base != host && base != parent) {
    return absl::PermissionDeniedError(absl::StrCat(
        host, " announced strict-tls=", pin.pattern,
        ": a host may pin only itself or names under its parent domain ", parent));
  }
  return absl::OkStatus();
}

TlsPolicy ApplyBannerPin(TlsPolicy base) {
  if (!base.defer_reason.empty()) return base;  // not tried at all (TLSA lookup failed)
  if (base.source == PolicySource::kDane && base.dane != nullptr) return base;  // DANE wins
  if (base.requirement == TlsRequirement::kRequired && base.verify && !base.log_only) return base;
  TlsPolicy p = std::move(base);
  p.requirement = TlsRequirement::kRequired;
  p.verify = true;  // PKIX chain + RFC 6125 name, exactly like the starttls- prefix
  p.log_only = false;
  p.dane = nullptr;
  p.implicit_dane = nullptr;
  p.source = PolicySource::kBannerPin;
  p.name = "banner-pin";
  return p;
}

// ---------------------------------------------------------------------------------------------
// BannerPinStore

absl::StatusOr<std::unique_ptr<BannerPinStore>> BannerPinStore::Open(std::string dir,
                                                                     std::string* warning) {
  if (absl::Status s = MakeDirs(dir); !s.ok()) return s;
  std::unique_ptr<BannerPinStore> store(new BannerPinStore(dir));
  absl::StatusOr<std::vector<BannerPin>> pins = ReadFile(dir);
  if (!pins.ok()) {
    if (!absl::IsNotFound(pins.status()) && warning != nullptr) {
      *warning = absl::StrCat(dir, "/", kFileName, ": ignored: ", pins.status().message());
    }
    return store;
  }
  const absl::Time now = absl::Now();
  std::lock_guard<std::mutex> lock(store->mu_);
  for (BannerPin& p : *pins) {
    if (p.expires <= now) continue;
    Entry& e = store->pins_[p.rule.pattern];
    e.persisted_expires = p.expires;
    e.pin = std::move(p);
  }
  store->PublishLocked();
  return store;
}

std::optional<BannerPin> BannerPinStore::Match(absl::string_view mx_host, absl::Time now) const {
  if (empty()) return std::nullopt;
  std::lock_guard<std::mutex> lock(mu_);
  const BannerPin* best = nullptr;
  for (const auto& [pattern, e] : pins_) {
    if (e.pin.expires <= now || !BannerPinCovers(e.pin.rule, mx_host)) continue;
    if (best == nullptr || e.pin.expires > best->expires) best = &e.pin;
  }
  if (best == nullptr) return std::nullopt;
  return *best;
}

absl::StatusOr<BannerPinStore::Learned> BannerPinStore::Learn(absl::string_view mx_host,
                                                              const BannerPinAnnouncement& a,
                                                              absl::Time now) {
  if (absl::Status s = CheckBannerPinScope(a, mx_host); !s.ok()) return s;
  std::lock_guard<std::mutex> lock(mu_);
  bool pruned = false;
  for (auto it = pins_.begin(); it != pins_.end();) {
    if (it->second.pin.expires <= now) {
      pins_.erase(it++);
      pruned = true;
    } else {
      ++it;
    }
  }
  auto it = pins_.find(a.pattern);
  Learned what;
  bool write = pruned;
  if (a.max_age_s == 0) {
    // HSTS §6.1.1 analogue: max-age=0 from a verified connection ends the pin.
    if (it == pins_.end()) {
      if (pruned) {
        PublishLocked();
        if (absl::Status s = PersistLocked(now); !s.ok()) return s;
      }
      return Learned::kNothing;
    }
    pins_.erase(it);
    what = Learned::kRemoved;
    write = true;
  } else {
    const absl::Time expires = now + absl::Seconds(std::min(a.max_age_s, kBannerPinMaxAgeCap));
    if (it == pins_.end()) {
      Entry& e = pins_[a.pattern];
      e.pin.rule = a;
      what = Learned::kAdded;
      write = true;
      it = pins_.find(a.pattern);
    } else {
      what = Learned::kRefreshed;
      if (it->second.pin.rule.include_subdomains != a.include_subdomains ||
          it->second.pin.rule.max_age_s != a.max_age_s) {
        write = true;
      }
      it->second.pin.rule = a;
    }
    Entry& e = it->second;
    e.pin.learned_from = Lower(mx_host);
    e.pin.learned = now;
    e.pin.expires = expires;
    // Every verified connection re-announces: write only when the file's expiry lags by more
    // than a tenth of max-age, so a busy host costs no fsync per connection.
    if (expires - e.persisted_expires > absl::Seconds(a.max_age_s) / 10) write = true;
  }
  if (what != Learned::kRefreshed || write) PublishLocked();
  if (write) {
    if (absl::Status s = PersistLocked(now); !s.ok()) return s;
  }
  return what;
}

void BannerPinStore::PublishLocked() {
  count_.store(pins_.size(), std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_acq_rel);
}

absl::Status BannerPinStore::PersistLocked(absl::Time now) {
  std::vector<BannerPin> all;
  for (const auto& [pattern, e] : pins_) {
    if (e.pin.expires > now) all.push_back(e.pin);
  }
  std::sort(all.begin(), all.end(),
            [](const BannerPin& x, const BannerPin& y) { return x.rule.pattern < y.rule.pattern; });
  if (absl::Status s = WriteFileDurably(dir_, kFileName, ToJson(all)); !s.ok()) return s;
  for (auto& [pattern, e] : pins_) e.persisted_expires = e.pin.expires;
  return absl::OkStatus();
}

std::vector<BannerPin> BannerPinStore::List(absl::Time now) const {
  std::vector<BannerPin> out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [pattern, e] : pins_) {
      if (e.pin.expires > now) out.push_back(e.pin);
    }
  }
  std::sort(out.begin(), out.end(),
            [](const BannerPin& x, const BannerPin& y) { return x.rule.pattern < y.rule.pattern; });
  return out;
}

namespace {

nlohmann::json PinObject(const BannerPin& p) {
  return {{"pattern", p.rule.pattern},
          {"include_subdomains", p.rule.include_subdomains},
          {"max_age", p.rule.max_age_s},
          {"learned_from", p.learned_from},
          {"learned", absl::ToUnixSeconds(p.learned)},
          {"expires", absl::ToUnixSeconds(p.expires)},
          {"expires_utc", absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", p.expires, absl::UTCTimeZone())}};
}

}  // namespace

std::string BannerPinStore::ToJson(const std::vector<BannerPin>& pins) {
  nlohmann::json list = nlohmann::json::array();
  for (const BannerPin& p : pins) list.push_back(PinObject(p));
  return nlohmann::json{{"pins", list}}.dump() + "\n";
}

std::string BannerPinStore::PinJson(const BannerPin& pin, absl::Time now) {
  nlohmann::json j = PinObject(pin);
  j["source"] = "banner-pin";
  j["expired"] = pin.expires <= now;
  return j.dump();
}

absl::StatusOr<std::vector<BannerPin>> BannerPinStore::FromJson(absl::string_view json) {
  const nlohmann::json j = nlohmann::json::parse(json.begin(), json.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("pins") || !j["pins"].is_array()) {
    return absl::InvalidArgumentError("not a {\"pins\": [...]} JSON object");
  }
  std::vector<BannerPin> out;
  for (const nlohmann::json& e : j["pins"]) {
    if (!e.is_object() || !e.contains("pattern") || !e["pattern"].is_string() ||
        !e.contains("expires") || !e["expires"].is_number_integer() ||
        !e.contains("max_age") || !e["max_age"].is_number_integer()) {
      return absl::InvalidArgumentError("a pin without pattern, max_age or expires");
    }
    BannerPin p;
    p.rule.pattern = e["pattern"].get<std::string>();
    if (!IsPinPattern(p.rule.pattern) || p.rule.pattern != Lower(p.rule.pattern)) {
      return absl::InvalidArgumentError(absl::StrCat("bad pattern \"", absl::CEscape(p.rule.pattern), "\""));
    }
    p.rule.max_age_s = std::clamp<int64_t>(e["max_age"].get<int64_t>(), 0, kBannerPinMaxAgeCap);
    p.rule.include_subdomains = e.value("include_subdomains", false);
    p.learned_from = e.value("learned_from", "");
    p.learned = absl::FromUnixSeconds(e.value("learned", int64_t{0}));
    p.expires = absl::FromUnixSeconds(e["expires"].get<int64_t>());
    out.push_back(std::move(p));
  }
  return out;
}

absl::StatusOr<std::vector<BannerPin>> BannerPinStore::ReadFile(const std::string& dir) {
  absl::StatusOr<std::string> text = ReadSmallFile(absl::StrCat(dir, "/", kFileName), kMaxFileBytes);
  if (!text.ok()) return text.status();
  return FromJson(*text);
}

}  // namespace mxb
