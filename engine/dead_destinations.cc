// DeadDestinations (engine/dead_destinations.h): which destinations the workers found dead.
#include "engine/dead_destinations.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/shaping.h"

namespace mxb {

std::string DeadDestinations::KeyOf(absl::string_view domain, const Envelope& env) const {
  const int pool =
      shaping_ == nullptr ? -1 : shaping_->PoolFor(env.job, DomainOf(env.sender));
  return pool < 0 ? std::string(domain) : absl::StrCat(domain, " ", pool);
}

void DeadDestinations::Learn(const DeliveryJob& job) {
  if (job.dead_until == absl::InfinitePast() || job.message == nullptr) return;
  auto [it, added] = dead_.try_emplace(KeyOf(job.domain, job.message->envelope));
  if (added) ++version_;
  Dead& d = it->second;
  if (job.dead_until >= d.until) d = {job.dead_until, job.dead_reason};
}

std::vector<std::string> DeadDestinations::Domains() const {
  std::vector<std::string> out;
  out.reserve(dead_.size());
  for (const auto& [key, d] : dead_) {
    const size_t space = key.find(' ');  // "domain POOL"
    out.push_back(space == std::string::npos ? key : key.substr(0, space));
  }
  return out;
}

std::optional<std::string> DeadDestinations::NotTried(const Envelope& env, absl::Time now) {
  if (dead_.empty() || env.recipients.empty()) return std::nullopt;
  const Dead* first = nullptr;
  std::string last_domain;
  for (const std::string& rcpt : env.recipients) {
    std::string domain = DomainOf(rcpt);
    if (first != nullptr && domain == last_domain) continue;  // the usual: one domain
    auto it = dead_.find(KeyOf(domain, env));
    if (it == dead_.end()) return std::nullopt;
    if (it->second.until <= now) {
      dead_.erase(it);  // lapsed: the worker tries the hosts again
      ++version_;
      return std::nullopt;
    }
    if (first == nullptr) first = &it->second;
    last_domain = std::move(domain);
  }
  return NotTriedText(first->reason);
}

void DeadDestinations::Postpone(PostponedFile f) {
  held_.insert(f.name);
  postponed_.push_back(std::move(f));
}

PostponedFile DeadDestinations::PopPostponed() {
  PostponedFile f = std::move(postponed_.front());
  postponed_.pop_front();
  return f;
}

}  // namespace mxb
