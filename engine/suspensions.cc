// Suspensions and ControlCommand (engine/control_plane.h): what an operator suspended, by
// recipient domain, MX suffix or job, kept per worker.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/control_plane.h"
#include "engine/shaping.h"
#include "nlohmann/json.hpp"

namespace mxb {
namespace {

const Suspensions::Entry* Live(const absl::flat_hash_map<std::string, Suspensions::Entry>& m,
                               absl::string_view key, int64_t now_ms) {
  if (m.empty()) return nullptr;
  auto it = m.find(key);
  return it != m.end() && it->second.until_ms > now_ms ? &it->second : nullptr;
}

}  // namespace

std::string ControlCommand::Target() const {
  if (!domain.empty()) return absl::StrCat("domain ", domain);
  if (!mx_suffix.empty()) return absl::StrCat("mx ", mx_suffix);
  if (!job.empty()) return absl::StrCat("job ", job);
  return "all";
}

bool Suspensions::Suspended(absl::string_view domain, int64_t now_ms) const {
  return ForDomain(domain, now_ms) != nullptr;
}

const Suspensions::Entry* Suspensions::ForDomain(absl::string_view domain, int64_t now_ms) const {
  return Live(by_domain_, domain, now_ms);
}

const Suspensions::Entry* Suspensions::ForMx(absl::string_view mx_host, int64_t now_ms) const {
  for (const auto& [suffix, e] : by_mx_) {
    if (e.until_ms > now_ms && MxSuffixMatches(suffix, mx_host)) return &e;
  }
  return nullptr;
}

const Suspensions::Entry* Suspensions::ForJob(absl::string_view job, int64_t now_ms) const {
  return Live(by_job_, job, now_ms);
}

void Suspensions::Apply(const ControlCommand& c) {
  if (c.kind != ControlCommand::Kind::kSuspend && c.kind != ControlCommand::Kind::kResume) return;
  absl::flat_hash_map<std::string, Entry>* m = nullptr;
  const std::string* key = nullptr;
  if (!c.domain.empty()) {
    m = &by_domain_;
    key = &c.domain;
  } else if (!c.mx_suffix.empty()) {
    m = &by_mx_;
    key = &c.mx_suffix;
  } else if (!c.job.empty()) {
    m = &by_job_;
    key = &c.job;
  } else {
    return;
  }
  if (c.kind == ControlCommand::Kind::kSuspend) {
    (*m)[*key] = Entry{c.until_ms, c.reason};
  } else {
    m->erase(*key);
  }
}

bool Suspensions::Expire(int64_t now_ms) {
  bool any = false;
  for (auto* m : {&by_domain_, &by_mx_, &by_job_}) {
    for (auto it = m->begin(); it != m->end();) {
      if (it->second.until_ms <= now_ms) {
        any = true;
        m->erase(it++);
      } else {
        ++it;
      }
    }
  }
  return any;
}

std::vector<std::string> Suspensions::DumpJson(int64_t now_ms) const {
  std::vector<std::string> out;
  const std::pair<const char*, const absl::flat_hash_map<std::string, Entry>*> kinds[] = {
      {"domain", &by_domain_}, {"mx", &by_mx_}, {"job", &by_job_}};
  for (const auto& [kind, m] : kinds) {
    for (const auto& [key, e] : *m) {
      if (e.until_ms <= now_ms) continue;
      out.push_back(nlohmann::json{{"kind", kind},
                                   {"target", key},
                                   {"seconds_left", (e.until_ms - now_ms) / 1000.0},
                                   {"reason", e.reason}}
                        .dump());
    }
  }
  return out;
}

}  // namespace mxb
