// TlsRptReporter (engine/tlsrpt_reporter.h): durable counters, the daily reports and their
// delivery.
#include "engine/tlsrpt_reporter.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "engine/config.h"
#include "engine/tlsrpt_message.h"
#include "queue/file_io.h"
#include "queue/spool.h"

namespace mxb {
namespace {

using Json = nlohmann::json;

constexpr char kSnapshot[] = "counters.json";
constexpr char kTrigger[] = "send-now";
constexpr char kOutboxPrefix[] = "outbox.";
constexpr int kMaxReportAttempts = 8;  // per report: lookups and POSTs, then it is given up

// The address the kernel would send from to `ip` (no packet leaves: connect() on a UDP socket
// only picks the route and source). RFC 8460 §4.4 sending-mta-ip when no source was bound.
std::string RouteSource(const std::string& ip) {
  sockaddr_storage dst{};
  socklen_t len = 0;
  std::string bare(absl::StripSuffix(absl::StripPrefix(ip, "["), "]"));
  if (inet_pton(AF_INET, bare.c_str(), &reinterpret_cast<sockaddr_in&>(dst).sin_addr) == 1) {
    dst.ss_family = AF_INET;
    reinterpret_cast<sockaddr_in&>(dst).sin_port = htons(25);
    len = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, bare.c_str(),
                       &reinterpret_cast<sockaddr_in6&>(dst).sin6_addr) == 1) {
    dst.ss_family = AF_INET6;
    reinterpret_cast<sockaddr_in6&>(dst).sin6_port = htons(25);
    len = sizeof(sockaddr_in6);
  } else {
    return "";
  }
  const int fd = socket(dst.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  std::string out;
  sockaddr_storage src{};
  socklen_t slen = sizeof src;
  if (connect(fd, reinterpret_cast<sockaddr*>(&dst), len) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&src), &slen) == 0) {
    char buf[INET6_ADDRSTRLEN] = {};
    const void* a = src.ss_family == AF_INET
                        ? static_cast<const void*>(&reinterpret_cast<sockaddr_in&>(src).sin_addr)
                        : static_cast<const void*>(&reinterpret_cast<sockaddr_in6&>(src).sin6_addr);
    if (inet_ntop(src.ss_family, a, buf, sizeof buf) != nullptr) out = buf;
  }
  close(fd);
  return out;
}

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

std::string ReadOrEmpty(const std::string& path) {
  absl::StatusOr<std::string> s = file_io::ReadFile(path, 64u << 20);
  return s.ok() ? *std::move(s) : std::string();
}

std::vector<std::string> TlsRptDeltas(const RecoveredJournal& old) {
  std::vector<std::string> out;
  for (const RecoveredJournal::Aux& a : old.aux) {
    if (a.kind == kJournalAuxTlsRpt) out.push_back(a.bytes);
  }
  return out;
}

}  // namespace

TlsRptOptions TlsRptOptionsFor(const EngineConfig& c) {
  TlsRptOptions o;
  o.spool_dir = c.spool_dir;
  o.quiet = c.quiet;
  o.submitter = c.tlsrpt_submitter.empty() ? c.helo_name : c.tlsrpt_submitter;
  o.from = c.tlsrpt_from.empty() ? absl::StrCat("tlsrpt-noreply@", o.submitter) : c.tlsrpt_from;
  o.organization_name = c.tlsrpt_organization.empty() ? o.submitter : c.tlsrpt_organization;
  o.contact_info =
      c.tlsrpt_contact.empty() ? absl::StrCat("postmaster@", o.submitter) : c.tlsrpt_contact;
  return o;
}

TlsRptReporter::TlsRptReporter(TlsRptOptions opts, TlsRptNetwork* net)
    : opts_(std::move(opts)), net_(net) {}

absl::StatusOr<std::unique_ptr<TlsRptReporter>> TlsRptReporter::Open(TlsRptOptions opts,
                                                                      const RecoveredJournal& old,
                                                                      TlsRptNetwork* net) {
  std::unique_ptr<TlsRptReporter> r(new TlsRptReporter(std::move(opts), net));
  if (mkdir(r->Dir().c_str(), 0750) != 0 && errno != EEXIST) {
    return file_io::ErrnoError(errno, "mkdir", r->Dir());
  }
  const std::string snap_path = absl::StrCat(r->Dir(), "/", kSnapshot);
  absl::StatusOr<TlsRptState> st = LoadTlsRptState(ReadOrEmpty(snap_path), TlsRptDeltas(old));
  if (!st.ok()) {
    return absl::DataLossError(absl::StrCat(snap_path, ": ", st.status().message(),
                                            " (move it away to start the counts afresh)"));
  }
  r->state_ = *std::move(st);
  if (r->state_.skipped > 0) {
    std::fprintf(stderr, "mxburst: TLS-RPT: %zu unreadable counter record(s) in the journal skipped\n",
                 r->state_.skipped);
  }
  // The previous run's journal segments are dropped by the recovery that follows: their deltas
  // must be in the snapshot first.
  r->snapshot_seq_ = UINT64_MAX;
  if (absl::Status s = r->Snapshot(); !s.ok()) return s;

  const std::string outbox = r->Dir();
  if (DIR* d = opendir(outbox.c_str())) {
    while (const dirent* e = readdir(d)) {
      absl::string_view name = e->d_name;
      if (!absl::ConsumePrefix(&name, kOutboxPrefix) || !absl::ConsumeSuffix(&name, ".json")) {
        continue;
      }
      const Json j = Json::parse(ReadOrEmpty(absl::StrCat(outbox, "/", e->d_name)), nullptr, false);
      if (!j.is_object() || !j.contains("json") || !j["json"].is_string()) {
        std::fprintf(stderr, "mxburst: TLS-RPT: ignoring unreadable %s/%s\n", outbox.c_str(),
                     e->d_name);
        continue;
      }
      Outbox o;
      o.id = std::string(name);
      o.domain = j.value("domain", "");
      o.file_name = j.value("file_name", "");
      o.json = j["json"].get<std::string>();
      o.start = absl::FromUnixSeconds(j.value("start", int64_t{0}));
      o.end = absl::FromUnixSeconds(j.value("end", int64_t{0}));
      o.looked_up = j.contains("rua") && j["rua"].is_array();
      if (o.looked_up) o.rua = j["rua"].get<std::vector<std::string>>();
      o.attempts = j.value("attempts", 0);
      r->outbox_.push_back(std::move(o));
    }
    closedir(d);
  }
  return r;
}

void TlsRptReporter::Record(TlsRptSession s) {
  if (!queue_.TryPush(std::make_unique<TlsRptSession>(std::move(s)))) {
    dropped_.fetch_add(1, std::memory_order_relaxed);
  }
}

std::string TlsRptReporter::SendingIpFor(const std::string& receiving_ip) {
  auto it = source_for_.find(receiving_ip);
  if (it != source_for_.end()) return it->second;
  std::string src = RouteSource(receiving_ip);
  if (source_for_.size() < 100000) source_for_[receiving_ip] = src;
  return src;
}

void TlsRptReporter::Drain(Journal* journal, absl::Time now) {
  TlsRptCounters delta;
  std::unique_ptr<TlsRptSession> s;
  while (queue_.TryPop(s)) {
    if (!s->success && s->sending_ip.empty()) s->sending_ip = SendingIpFor(s->receiving_ip);
    delta.Add(*s, now);
  }
  if (delta.empty()) return;
  state_.counters.Merge(delta);
  journal->AppendAux(kJournalAuxTlsRpt, TlsRptDeltaJson(++state_.seq, delta, +1));
}

void TlsRptReporter::Close() {
  if (absl::Status s = Snapshot(); !s.ok()) {
    std::fprintf(stderr, "mxburst: TLS-RPT: %s\n", std::string(s.message()).c_str());
  }
}

absl::Status TlsRptReporter::Snapshot() {
  if (snapshot_seq_ == state_.seq) return absl::OkStatus();
  absl::Status s = ReplaceSpoolFile(opts_.spool_dir, "tlsrpt", kSnapshot, TlsRptSnapshotJson(state_));
  if (s.ok()) snapshot_seq_ = state_.seq;
  return s;
}

absl::Status TlsRptReporter::WriteOutbox(const Outbox& o) {
  Json j = {{"domain", o.domain},
            {"report_id", o.id},
            {"file_name", o.file_name},
            {"start", absl::ToUnixSeconds(o.start)},
            {"end", absl::ToUnixSeconds(o.end)},
            {"attempts", o.attempts},
            {"json", o.json}};
  if (o.looked_up) j["rua"] = o.rua;
  return ReplaceSpoolFile(opts_.spool_dir, "tlsrpt", absl::StrCat(kOutboxPrefix, o.id, ".json"),
                          j.dump());
}

void TlsRptReporter::RemoveOutbox(const std::string& id) {
  unlink(absl::StrCat(Dir(), "/", kOutboxPrefix, id, ".json").c_str());
}

// §4.1: one report per policy domain per day, its counts taken out of the counters only once
// the report itself is durable in the outbox.
void TlsRptReporter::BuildReports(Journal* journal, absl::Time now, bool include_today) {
  const int64_t today = TlsRptDay(now);
  TlsRptCounters taken;
  std::vector<std::string> built;
  for (const auto& [day, domains] : state_.counters.days()) {
    if (day > today || (day == today && !include_today)) continue;
    for (const auto& [domain, policies] : domains) {
      Outbox o;
      o.domain = domain;
      o.start = TlsRptDayStart(day);
      // A past day ends at its last second (the RFC's example); today's report ends now.
      o.end = day < today ? TlsRptDayStart(day + 1) - absl::Seconds(1) : now;
      o.id = absl::StrCat(TlsRptDayString(day), "_", domain, "_", absl::ToUnixMicros(now), "_",
                          ++report_serial_);
      const TlsRptCounters one = state_.counters.Extract(day, domain);
      TlsRptReportInfo info{opts_.organization_name, opts_.contact_info, o.id, o.start, o.end};
      o.json = BuildTlsRptReport(info, one);
      o.file_name = TlsRptFileName(opts_.submitter, domain, o.start, o.end, o.id);
      if (absl::Status s = WriteOutbox(o); !s.ok()) {
        std::fprintf(stderr, "mxburst: TLS-RPT: report for %s kept in the counters: %s\n",
                     domain.c_str(), std::string(s.message()).c_str());
        continue;
      }
      taken.Merge(one);
      built.push_back(o.id);
      outbox_.push_back(std::move(o));
    }
  }
  if (taken.empty()) return;
  state_.counters.Merge(taken, -1);
  journal->AppendAux(kJournalAuxTlsRpt, TlsRptDeltaJson(++state_.seq, taken, -1));
  if (!opts_.quiet) {
    std::fprintf(stderr, "mxburst: TLS-RPT: %zu report(s) built\n", built.size());
  }
}

void TlsRptReporter::Tick(Journal* journal, absl::Time now) {
  const int64_t today = TlsRptDay(now);
  if (reported_day_ < today) {
    BuildReports(journal, now, false);
    reported_day_ = today;
  }
  if (now - last_trigger_check_ >= absl::Milliseconds(200)) {
    last_trigger_check_ = now;
    const std::string trigger = absl::StrCat(Dir(), "/", kTrigger);
    if (Exists(trigger)) {
      BuildReports(journal, now, true);
      // mxburstctl waits for the trigger to go: by then the reports are in the outbox.
      unlink(trigger.c_str());
    }
  }
  std::vector<NetResult> results;
  {
    std::lock_guard<std::mutex> lock(net_mu_);
    results.swap(net_results_);
  }
  for (NetResult& r : results) Apply(std::move(r), now);
  Deliver(now);
}

void TlsRptReporter::Sent(const Outbox& o, const std::string& rua, const std::string& result) {
  const Json j = {{"time", absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::Now(), absl::UTCTimeZone())},
                  {"domain", o.domain},
                  {"report_id", o.id},
                  {"rua", rua},
                  {"result", result}};
  const std::string path = Dir() + "/sent.jsonl";
  if (FILE* f = std::fopen(path.c_str(), "a")) {
    std::fprintf(f, "%s\n", j.dump().c_str());
    std::fclose(f);
  }
  if (!opts_.quiet) {
    std::fprintf(stderr, "mxburst: TLS-RPT: report %s for %s to %s: %s\n", o.id.c_str(),
                 o.domain.c_str(), rua.c_str(), result.c_str());
  }
}

void TlsRptReporter::Retry(Outbox& o, absl::Time now, const std::string& why) {
  ++o.attempts;
  if (o.attempts >= kMaxReportAttempts) {
    for (const std::string& rua : o.rua) Sent(o, rua, absl::StrCat("given up: ", why));
    if (o.rua.empty()) Sent(o, "", absl::StrCat("given up: ", why));
    o.rua.clear();
    o.looked_up = true;
    return;
  }
  // 1, 2, 4, ... minutes.
  o.next_try = now + absl::Minutes(1 << std::min(o.attempts - 1, 6));
  (void)WriteOutbox(o);
}

void TlsRptReporter::Apply(NetResult r, absl::Time now) {
  auto it = std::find_if(outbox_.begin(), outbox_.end(),
                         [&](const Outbox& o) { return o.id == r.id; });
  if (it == outbox_.end()) return;
  Outbox& o = *it;
  if (o.inflight > 0) --o.inflight;
  if (r.kind == NetResult::kTxt) {
    std::optional<std::vector<std::string>> rua =
        r.ok ? TlsRptRuaFromTxtRecords(r.records) : std::nullopt;
    if (!r.ok && !r.absent) {
      Retry(o, now, absl::StrCat("_smtp._tls.", o.domain, ": ", r.error));
      return;
    }
    o.looked_up = true;
    if (!rua.has_value()) {
      Sent(o, "", "no TLSRPT record (RFC 8460 §3): not sent");
      return;  // Deliver() removes it
    }
    o.rua = *std::move(rua);
    (void)WriteOutbox(o);
    return;
  }
  if (!r.error.empty()) {
    Retry(o, now, absl::StrCat(r.rua, ": ", r.error));
    return;
  }
  Sent(o, r.rua, "delivered");
  o.rua.erase(std::remove(o.rua.begin(), o.rua.end(), r.rua), o.rua.end());
  if (!o.rua.empty()) (void)WriteOutbox(o);
}

void TlsRptReporter::Deliver(absl::Time now) {
  for (auto it = outbox_.begin(); it != outbox_.end();) {
    Outbox& o = *it;
    if (o.looked_up && o.rua.empty() && o.inflight == 0) {
      RemoveOutbox(o.id);
      it = outbox_.erase(it);
      continue;
    }
    ++it;
    if (o.inflight > 0 || now < o.next_try || net_ == nullptr) continue;
    if (!o.looked_up) {
      ++o.inflight;
      net_->LookupTxt(absl::StrCat("_smtp._tls.", o.domain),
                      [this, id = o.id](bool ok, bool absent, std::vector<std::string> records,
                                        std::string error) {
                        NetResult r;
                        r.id = id;
                        r.kind = NetResult::kTxt;
                        r.ok = ok;
                        r.absent = absent;
                        r.records = std::move(records);
                        r.error = std::move(error);
                        std::lock_guard<std::mutex> lock(net_mu_);
                        net_results_.push_back(std::move(r));
                      });
      continue;
    }
    absl::StatusOr<std::string> gz = GzipTlsRptReport(o.json);
    if (!gz.ok()) {
      Retry(o, now, std::string(gz.status().message()));
      continue;
    }
    std::vector<std::string> left;
    std::string inject_error;
    for (const std::string& rua : o.rua) {
      absl::string_view addr = rua;
      if (absl::ConsumePrefix(&addr, "mailto:") || absl::ConsumePrefix(&addr, "MAILTO:")) {
        // §5.3: the report as mail, delivered by this engine like any other message.
        TlsRptMail m{opts_.from, std::string(addr.substr(0, addr.find('?'))), o.domain,
                     opts_.submitter, o.id, o.file_name, now};
        absl::Status s = InjectFile(opts_.spool_dir, NewSpoolFileName(), TlsRptPickupFile(m, *gz));
        if (s.ok()) {
          Sent(o, rua, "queued in the spool");
        } else {
          left.push_back(rua);  // tried again after the back-off
          inject_error = std::string(s.message());
        }
        continue;
      }
      // §5.2: https POST of the gzip report.
      left.push_back(rua);
      ++o.inflight;
      net_->PostReport(rua, *gz, "application/tlsrpt+gzip",
                       [this, id = o.id, rua](std::string error) {
                         NetResult r;
                         r.id = id;
                         r.kind = NetResult::kPost;
                         r.rua = rua;
                         r.error = std::move(error);
                         std::lock_guard<std::mutex> lock(net_mu_);
                         net_results_.push_back(std::move(r));
                       });
    }
    if (left.size() != o.rua.size()) {
      o.rua = std::move(left);
      (void)WriteOutbox(o);
    }
    if (!inject_error.empty()) Retry(o, now, inject_error);
  }
}

}  // namespace mxb
