#include "engine/control_plane.h"

#include <dirent.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "control/http_server.h"
#include "engine/destination.h"
#include "engine/message_lookup.h"
#include "engine/worker.h"
#include "nlohmann/json.hpp"

namespace mxb {
namespace {

using control::HttpRequest;
using control::HttpResponse;
using control::Labels;
using control::PrometheusText;

int64_t MonotonicMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// Files in SPOOL/sub (queue depth by state), bounded so a huge backlog stays a cheap scrape.
double CountFiles(const std::string& dir) {
  constexpr size_t kMax = 10'000'000;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return 0;
  size_t n = 0;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    if (++n >= kMax) break;
  }
  closedir(d);
  return static_cast<double>(n);
}

size_t SourceIndex(absl::string_view source) {
  for (size_t i = 0; i + 1 < EngineCounters::kSources; ++i) {
    if (source == EngineCounters::kSourceNames[i]) return i;
  }
  return EngineCounters::kSources - 1;
}

const char* StateName(const Destination& d, bool suspended, int64_t now_ms) {
  if (suspended) return "suspended";
  if (d.dead_until_ms() > now_ms) return "dead";
  switch (d.state()) {
    case Destination::State::kUnresolved: return "unresolved";
    case Destination::State::kResolving: return "resolving";
    case Destination::State::kReady: return "ready";
  }
  return "unknown";
}

HttpResponse Json(int status, const nlohmann::json& j) {
  return HttpResponse{status, control::kJsonType, j.dump()};
}

HttpResponse JsonError(int status, const std::string& what) {
  return Json(status, nlohmann::json{{"error", what}});
}

// "20m", "90s", "2h", "1d" or plain seconds; absl::ParseDuration does not know days.
bool ParseSuspendDuration(const std::string& text, absl::Duration* out) {
  if (text.empty()) {
    *out = absl::Hours(1);
    return true;
  }
  if (absl::EndsWith(text, "d")) {
    int days = 0;
    if (!absl::SimpleAtoi(text.substr(0, text.size() - 1), &days) || days <= 0) return false;
    *out = absl::Hours(24) * days;
    return true;
  }
  int secs = 0;
  if (absl::SimpleAtoi(text, &secs)) {
    *out = absl::Seconds(secs);
    return secs > 0;
  }
  return absl::ParseDuration(text, out) && *out > absl::ZeroDuration();
}

}  // namespace

// --- worker side ---------------------------------------------------------------------------

// Suspensions: engine/suspensions.cc.

WorkerSnapshot* TakeSnapshot(uint32_t worker, int64_t now_ms, absl::Time now,
                             const std::vector<const Destination*>& dests,
                             const Suspensions& suspensions, size_t open_connections,
                             const Resolver* resolver, const std::string& policy_jsonl) {
  auto* s = new WorkerSnapshot;
  s->worker = worker;
  s->open_connections = open_connections;
  if (resolver != nullptr) s->dns = resolver->stats();
  s->policy_jsonl = policy_jsonl;
  s->destinations.reserve(dests.size());
  for (const Destination* d : dests) {
    DestinationView v;
    v.domain = d->domain();
    v.pool = d->pool();
    v.worker = worker;
    v.queued = d->queued();
    v.connections = d->connections();
    const Suspensions::Entry* sus = d->Suspension();
    const bool suspended = sus != nullptr;
    v.held = d->held();
    v.state = StateName(*d, suspended, now_ms);
    v.last_error = d->last_failure();
    if (d->queued() > 0) v.oldest_age_seconds = absl::ToDoubleSeconds(now - d->oldest_queued_at());
    if (d->dead_until_ms() > now_ms) v.dead_for_seconds = (d->dead_until_ms() - now_ms) / 1000.0;
    if (suspended) {
      v.suspended_for_seconds = (sus->until_ms - now_ms) / 1000.0;
      v.suspend_reason = sus->reason;
    }
    s->destinations.push_back(std::move(v));
  }
  s->suspensions = suspensions.DumpJson(now_ms);
  return s;
}

bool ControlPlane::TakeFlush(bool* all, std::vector<std::string>* domains) {
  if (!flush_.pending.load(std::memory_order_acquire)) return false;
  std::lock_guard<std::mutex> lock(flush_.mu);
  if (absl::Now() - flush_.at < absl::Milliseconds(250)) return false;
  *all = flush_.all;
  *domains = std::move(flush_.domains);
  flush_.all = false;
  flush_.domains.clear();
  flush_.pending.store(false, std::memory_order_relaxed);
  return true;
}

// --- scanner side --------------------------------------------------------------------------

void EngineCounters::OnOutcome(const RecipientOutcome& o, absl::string_view status_override,
                               absl::Duration queue_time_d, BounceClass klass) {
  Outcome k = kDeferred;
  if (status_override == "expired") {
    k = kExpired;
  } else if (o.klass == DeliveryClass::kDelivered) {
    k = kDelivered;
  } else if (o.klass == DeliveryClass::kBounced) {
    k = kBounced;
  }
  recipients[k].fetch_add(1, std::memory_order_relaxed);
  by_source[k][SourceIndex(o.attempt.policy_source)].fetch_add(1, std::memory_order_relaxed);
  if (!o.attempt.tls_version.empty()) over_tls[k].fetch_add(1, std::memory_order_relaxed);
  if (k != kDelivered) by_class[k][static_cast<size_t>(klass)].fetch_add(1, std::memory_order_relaxed);
  if (k != kDeferred) queue_time.Observe(absl::ToDoubleSeconds(queue_time_d));
}

ControlPlane::ControlPlane(const EngineConfig& config, size_t workers) : config_(config) {
  for (size_t i = 0; i < workers; ++i) channels_.push_back(std::make_unique<WorkerChannel>());
  latest_.resize(workers);
}

ControlPlane::~ControlPlane() {
  Stop();
  for (auto& ch : channels_) {
    ControlCommand* c;
    while (ch->commands.TryPop(c)) delete c;
    WorkerSnapshot* s;
    while (ch->snapshots.TryPop(s)) delete s;
  }
}

std::string ControlPlane::url() const {
  if (!http_) return "";
  return absl::StrCat("http://", http_->host(), ":", http_->port(), "/");
}

void ControlPlane::Stop() {
  if (http_) http_->Stop();
}

std::vector<std::shared_ptr<const WorkerSnapshot>> ControlPlane::Snapshots(absl::Duration wait) {
  std::lock_guard<std::mutex> lock(snapshot_mu_);
  const uint64_t serial = ++serial_;
  for (auto& ch : channels_) ch->wanted.store(serial, std::memory_order_relaxed);
  const absl::Time deadline = absl::Now() + wait;
  std::vector<bool> fresh(channels_.size(), false);
  size_t missing = channels_.size();
  while (true) {
    for (size_t i = 0; i < channels_.size(); ++i) {
      WorkerSnapshot* s;
      while (channels_[i]->snapshots.TryPop(s)) {
        if (s->serial == serial && !fresh[i]) {
          fresh[i] = true;
          --missing;
        }
        latest_[i] = std::shared_ptr<const WorkerSnapshot>(s);
      }
    }
    if (missing == 0 || absl::Now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return latest_;
}

void ControlPlane::OnStopping() {
  if (stopping_) return;
  stopping_ = true;
  ControlCommand c;
  c.kind = ControlCommand::Kind::kRelease;
  Broadcast(c);
}

void ControlPlane::Broadcast(const ControlCommand& c) {
  for (size_t i = 0; i < channels_.size(); ++i) {
    auto* copy = new ControlCommand(c);
    // 256 commands waiting on one worker means it is not ticking; refuse rather than block.
    if (!channels_[i]->commands.TryPush(copy)) delete copy;
  }
}

std::string ControlPlane::RenderMetrics() {
  const auto snaps = Snapshots(absl::Milliseconds(300));
  PrometheusText p;
  const EngineCounters& c = counters_;
  auto u = [](const std::atomic<uint64_t>& a) {
    return static_cast<double>(a.load(std::memory_order_relaxed));
  };

  p.Family("mxburst_build_info", "gauge", "Version of the running mxburst.");
  p.Sample("mxburst_build_info", {{"version", MXB_VERSION}}, 1);
  p.Family("mxburst_start_time_seconds", "gauge", "Start of the engine, Unix time.");
  p.Sample("mxburst_start_time_seconds", {}, absl::ToDoubleSeconds(started_ - absl::UnixEpoch()));

  p.Family("mxburst_messages_claimed_total", "counter", "Spool files claimed for delivery.");
  p.Sample("mxburst_messages_claimed_total", {}, u(c.claimed));
  p.Family("mxburst_messages_quarantined_total", "counter", "Spool files moved to bad/.");
  p.Sample("mxburst_messages_quarantined_total", {}, u(c.quarantined));
  p.Family("mxburst_scanner_cpu_seconds_total", "counter",
           "CPU of the scanner thread (journal, log, spool) and of the claim threads (claim, "
           "read, parse, DKIM, encode); per claimed message it is the scanner's cost.");
  p.Sample("mxburst_scanner_cpu_seconds_total", {{"thread", "scanner"}},
           static_cast<double>(c.scanner_cpu_ns.load(std::memory_order_relaxed)) / 1e9);
  p.Sample("mxburst_scanner_cpu_seconds_total", {{"thread", "claim"}},
           static_cast<double>(c.claim_cpu_ns.load(std::memory_order_relaxed)) / 1e9);

  p.Family("mxburst_recipients_total", "counter",
           "Recipient outcomes, one per accounting-log record.");
  for (int k = 0; k < EngineCounters::kOutcomes; ++k) {
    p.Sample("mxburst_recipients_total", {{"outcome", EngineCounters::kOutcomeNames[k]}},
             u(c.recipients[k]));
  }
  p.Family("mxburst_recipients_by_tls_policy_total", "counter",
           "Recipient outcomes by the source of the TLS policy that applied.");
  for (int k = 0; k < EngineCounters::kOutcomes; ++k) {
    for (size_t s = 0; s < EngineCounters::kSources; ++s) {
      p.Sample("mxburst_recipients_by_tls_policy_total",
               {{"outcome", EngineCounters::kOutcomeNames[k]},
                {"source", EngineCounters::kSourceNames[s]}},
               u(c.by_source[k][s]));
    }
  }
  p.Family("mxburst_recipients_over_tls_total", "counter",
           "Recipient outcomes of transactions that ran over TLS.");
  for (int k = 0; k < EngineCounters::kOutcomes; ++k) {
    p.Sample("mxburst_recipients_over_tls_total", {{"outcome", EngineCounters::kOutcomeNames[k]}},
             u(c.over_tls[k]));
  }

  p.Family("mxburst_recipients_by_class_total", "counter",
           "Deferred, bounced and expired recipients by bounce class (README \"Bounce classes\").");
  for (int k = 0; k < EngineCounters::kOutcomes; ++k) {
    if (k == EngineCounters::kDelivered) continue;
    for (size_t b = 0; b < kBounceClasses; ++b) {
      p.Sample("mxburst_recipients_by_class_total",
               {{"outcome", EngineCounters::kOutcomeNames[k]},
                {"class", ToString(static_cast<BounceClass>(b))}},
               u(c.by_class[k][b]));
    }
  }

  p.Family("mxburst_queue_messages", "gauge", "Messages in the spool by state.");
  p.Sample("mxburst_queue_messages", {{"state", "incoming"}},
           CountFiles(config_.spool_dir + "/incoming"));
  p.Sample("mxburst_queue_messages", {{"state", "active"}},
           CountFiles(config_.spool_dir + "/active"));
  p.Sample("mxburst_queue_messages", {{"state", "deferred"}},
           CountFiles(config_.spool_dir + "/deferred"));
  p.Family("mxburst_in_flight_messages", "gauge", "Messages claimed and not yet final.");
  p.Sample("mxburst_in_flight_messages", {},
           static_cast<double>(c.in_flight_messages.load(std::memory_order_relaxed)));
  p.Family("mxburst_in_flight_bytes", "gauge", "Memory held by in-flight messages.");
  p.Sample("mxburst_in_flight_bytes", {},
           static_cast<double>(c.in_flight_bytes.load(std::memory_order_relaxed)));

  p.Family("mxburst_queue_time_seconds", "histogram",
           "Time from claim to a final outcome (delivered, bounced, expired), per recipient.");
  c.queue_time.Write(&p, "mxburst_queue_time_seconds");

  uint64_t conns = 0, tls = 0, resumed = 0, stale = 0, local_waits = 0, port_waits = 0,
           pacing_waits = 0;
  uint64_t failures[WorkerStats::kConnectFailureReasons] = {};
  if (workers_ != nullptr) {
    for (const auto& w : *workers_) {
      const WorkerStats& st = w->stats();
      conns += st.connections.load(std::memory_order_relaxed);
      tls += st.tls_sessions.load(std::memory_order_relaxed);
      resumed += st.tls_resumed.load(std::memory_order_relaxed);
      stale += st.stale_completions.load(std::memory_order_relaxed);
      local_waits += st.local_waits.load(std::memory_order_relaxed);
      port_waits += st.port_budget_waits.load(std::memory_order_relaxed);
      pacing_waits += st.connect_pacing_waits.load(std::memory_order_relaxed);
      for (size_t r = 0; r < WorkerStats::kConnectFailureReasons; ++r) {
        failures[r] += st.connect_failures_by[r].load(std::memory_order_relaxed);
      }
    }
  }
  size_t open = 0;
  uint64_t dns_queries = 0, dns_hits = 0, dns_in_flight = 0;
  for (const auto& s : snaps) {
    if (!s) continue;
    open += s->open_connections;
    dns_queries += s->dns.queries_sent;
    dns_hits += s->dns.cache_hits;
    dns_in_flight += s->dns.in_flight;
  }
  p.Family("mxburst_connections_total", "counter", "SMTP connections opened.");
  p.Sample("mxburst_connections_total", {}, static_cast<double>(conns));
  p.Family("mxburst_connections_open", "gauge", "SMTP connections open now (all workers).");
  p.Sample("mxburst_connections_open", {}, static_cast<double>(open));
  p.Family("mxburst_connection_failures_total", "counter", "Connects that failed, by reason.");
  for (size_t r = 0; r < WorkerStats::kConnectFailureReasons; ++r) {
    p.Sample("mxburst_connection_failures_total",
             {{"reason", WorkerStats::kConnectFailureNames[r]}}, static_cast<double>(failures[r]));
  }
  p.Family("mxburst_connect_local_waits_total", "counter",
           "Connects held back (never a deferral): after a local shortage (EADDRNOTAVAIL, EMFILE, "
           "ENOBUFS, ...), for a spent ephemeral port budget, or pacing (too many sessions to one "
           "address not greeted yet).");
  p.Sample("mxburst_connect_local_waits_total", {{"reason", "shortage"}},
           static_cast<double>(local_waits));
  p.Sample("mxburst_connect_local_waits_total", {{"reason", "port_budget"}},
           static_cast<double>(port_waits));
  p.Sample("mxburst_connect_local_waits_total", {{"reason", "pacing"}},
           static_cast<double>(pacing_waits));
  p.Family("mxburst_tls_sessions_total", "counter", "TLS handshakes completed.");
  p.Sample("mxburst_tls_sessions_total", {}, static_cast<double>(tls));
  p.Family("mxburst_tls_sessions_resumed_total", "counter",
           "TLS handshakes that resumed a session (the resumed ratio is this over "
           "mxburst_tls_sessions_total).");
  p.Sample("mxburst_tls_sessions_resumed_total", {}, static_cast<double>(resumed));
  p.Family("mxburst_stale_completions_total", "counter",
           "io_uring completions for a freed connection slot (always a bug).");
  p.Sample("mxburst_stale_completions_total", {}, static_cast<double>(stale));
  // Per worker: the wheel is one worker's (engine/timer_wheel.h).
  auto per_worker = [&](const char* name, const char* help,
                        const std::atomic<uint64_t> WorkerStats::*field) {
    p.Family(name, "gauge", help);
    if (workers_ == nullptr) return;
    for (size_t i = 0; i < workers_->size(); ++i) {
      p.Sample(name, {{"worker", absl::StrCat(i)}}, u((*workers_)[i]->stats().*field));
    }
  };
  per_worker("mxburst_timer_wheel_entries",
             "Reply and idle deadline entries in a worker's timer wheel (live and stale).",
             &WorkerStats::wheel_entries);
  per_worker("mxburst_timer_wheel_entries_peak",
             "The most timer wheel entries a worker has held since the start.",
             &WorkerStats::wheel_entries_peak);
  p.Family("mxburst_dns_queries_total", "counter", "DNS queries sent.");
  p.Sample("mxburst_dns_queries_total", {}, static_cast<double>(dns_queries));
  p.Family("mxburst_dns_cache_hits_total", "counter", "DNS lookups answered from the cache.");
  p.Sample("mxburst_dns_cache_hits_total", {}, static_cast<double>(dns_hits));
  p.Family("mxburst_dns_queries_in_flight", "gauge", "DNS queries sent and not answered yet.");
  p.Sample("mxburst_dns_queries_in_flight", {}, static_cast<double>(dns_in_flight));

  // Per destination: only the top N by queue, so the series count stays bounded.
  std::vector<const DestinationView*> dests;
  for (const auto& s : snaps) {
    if (!s) continue;
    for (const DestinationView& v : s->destinations) dests.push_back(&v);
  }
  std::sort(dests.begin(), dests.end(), [](const DestinationView* a, const DestinationView* b) {
    return a->queued != b->queued ? a->queued > b->queued : a->domain < b->domain;
  });
  if (dests.size() > config_.http_top_destinations) dests.resize(config_.http_top_destinations);
  // Per-destination series, the top N by queue only (bounded cardinality).
  struct DestSeries {
    const char* name;
    const char* help;
    double (*value)(const DestinationView&);
  };
  static constexpr DestSeries kDestSeries[] = {
      {"mxburst_destination_queued_messages",
       "Jobs waiting at a destination (top destinations by queue only).",
       [](const DestinationView& v) { return static_cast<double>(v.queued); }},
      {"mxburst_destination_connections",
       "Connections of a destination (top destinations by queue only).",
       [](const DestinationView& v) { return static_cast<double>(v.connections); }},
      {"mxburst_destination_oldest_age_seconds",
       "Age of a destination's oldest queued message (top destinations by queue only).",
       [](const DestinationView& v) { return static_cast<double>(v.oldest_age_seconds); }},
  };
  for (const DestSeries& series : kDestSeries) {
    p.Family(series.name, "gauge", series.help);
    for (const DestinationView* v : dests) {
      p.Sample(series.name, {{"domain", v->domain}, {"pool", absl::StrCat(v->pool)}},
               series.value(*v));
    }
  }
  for (const auto& write : metric_writers_) write(&p);
  return p.Take();
}

std::string ControlPlane::RenderDestinations(bool all) {
  const auto snaps = Snapshots(absl::Milliseconds(300));
  std::vector<const DestinationView*> dests;
  for (const auto& s : snaps) {
    if (!s) continue;
    for (const DestinationView& v : s->destinations) dests.push_back(&v);
  }
  std::sort(dests.begin(), dests.end(), [](const DestinationView* a, const DestinationView* b) {
    return a->queued != b->queued ? a->queued > b->queued : a->domain < b->domain;
  });
  if (!all && dests.size() > 1000) dests.resize(1000);
  nlohmann::json out = nlohmann::json::array();
  for (const DestinationView* v : dests) {
    nlohmann::json j = {{"domain", v->domain},       {"pool", v->pool},
                        {"worker", v->worker},       {"queued", v->queued},
                        {"connections", v->connections}, {"state", v->state},
                        {"last_error", v->last_error}, {"oldest_age_seconds", v->oldest_age_seconds}};
    if (v->dead_for_seconds > 0) j["dead_for_seconds"] = v->dead_for_seconds;
    if (v->state == "suspended") {
      j["suspended_for_seconds"] = v->suspended_for_seconds;
      j["suspend_reason"] = v->suspend_reason;
    }
    if (v->held > 0) j["held_by_job_suspension"] = v->held;
    out.push_back(std::move(j));
  }
  // Every worker holds the same suspensions (commands are broadcast): the first one's list.
  nlohmann::json sus = nlohmann::json::array();
  for (const auto& s : snaps) {
    if (!s) continue;
    for (const std::string& e : s->suspensions) sus.push_back(nlohmann::json::parse(e));
    break;
  }
  return nlohmann::json{{"destinations", out}, {"suspensions", sus}}.dump();
}

std::string ControlPlane::RenderPolicy() {
  const auto snaps = Snapshots(absl::Milliseconds(300));
  nlohmann::json out = nlohmann::json::array();
  for (const auto& s : snaps) {
    if (!s) continue;
    for (absl::string_view line : absl::StrSplit(s->policy_jsonl, '\n', absl::SkipEmpty())) {
      nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded()) continue;
      j["worker"] = s->worker;
      out.push_back(std::move(j));
    }
  }
  // Banner strict-tls pins are process-wide: one entry each with "source":"banner-pin", as
  // `mxburstctl policy` prints them from the spool.
  if (banner_pins_ != nullptr) {
    const absl::Time now = absl::Now();
    for (const BannerPin& pin : banner_pins_->List(now)) {
      out.push_back(nlohmann::json::parse(BannerPinStore::PinJson(pin, now)));
    }
  }
  return nlohmann::json{{"policies", out}}.dump();
}

std::string ControlPlane::RenderStatus() {
  const EngineCounters& c = counters_;
  nlohmann::json rec = nlohmann::json::object();
  for (int k = 0; k < EngineCounters::kOutcomes; ++k) {
    rec[EngineCounters::kOutcomeNames[k]] = c.recipients[k].load(std::memory_order_relaxed);
  }
  nlohmann::json by_source = nlohmann::json::object();
  for (size_t s = 0; s < EngineCounters::kSources; ++s) {
    by_source[EngineCounters::kSourceNames[s]] =
        c.by_source[EngineCounters::kDelivered][s].load(std::memory_order_relaxed);
  }
  nlohmann::json j = {
      {"version", MXB_VERSION},
      {"uptime_seconds", absl::ToDoubleSeconds(absl::Now() - started_)},
      {"spool", config_.spool_dir},
      {"workers", channels_.size()},
      {"settings",
       {{"max_connections_per_destination", config_.max_connections_per_destination},
        {"max_messages_per_connection", config_.max_messages_per_connection},
        {"max_messages_in_flight", config_.max_messages_in_flight},
        {"tls", ToString(config_.tls)},
        {"drain", config_.drain}}},
      {"messages_claimed", c.claimed.load(std::memory_order_relaxed)},
      {"in_flight_messages", c.in_flight_messages.load(std::memory_order_relaxed)},
      {"recipients", rec},
      {"delivered_by_tls_policy", by_source},
      {"delivered_over_tls", c.over_tls[EngineCounters::kDelivered].load()},
  };
  return j.dump();
}

absl::Status ControlPlane::Start(const std::vector<std::unique_ptr<Worker>>* workers) {
  workers_ = workers;
  http_ = std::make_unique<control::ControlHttpServer>(control::ControlHttpServer::Options{
      config_.http_listen, config_.http_token_file});
  auto& h = *http_;
  h.set_command_log([](const std::string& line) {
    std::fprintf(stderr, "mxburst: control: %s\n", line.c_str());
  });
  h.Get("/", [](const HttpRequest&) {
    return HttpResponse{200, "text/html; charset=utf-8", std::string(control::DashboardPage())};
  });
  h.Get("/metrics", [this](const HttpRequest&) {
    return HttpResponse{200, control::kPrometheusType, RenderMetrics()};
  });
  h.Get("/api/v1/status", [this](const HttpRequest&) {
    return HttpResponse{200, control::kJsonType, RenderStatus()};
  });
  h.Get("/api/v1/destinations", [this](const HttpRequest& r) {
    return HttpResponse{200, control::kJsonType, RenderDestinations(r.Param("all") == "1")};
  });
  h.Get("/api/v1/policy", [this](const HttpRequest&) {
    return HttpResponse{200, control::kJsonType, RenderPolicy()};
  });
  h.Get("/api/v1/shaping", [this](const HttpRequest&) {
    std::string body = "[";
    const ShapingTable* table = shaping_.load(std::memory_order_acquire);
    if (table == nullptr) table = config_.shaping.get();
    if (table != nullptr) {
      bool first = true;
      for (absl::string_view line :
           absl::StrSplit(table->DumpJson(MonotonicMs()), '\n', absl::SkipEmpty())) {
        absl::StrAppend(&body, first ? "" : ",", line);
        first = false;
      }
    }
    body += "]";
    return HttpResponse{200, control::kJsonType, body};
  });
  // Commands name their target: domain=, mx= (an MX suffix) or job= (an x-job). Bounce takes a
  // domain or a job; flush (retry now) a domain or nothing (everything).
  auto command = [this](ControlCommand::Kind kind) {
    return [this, kind](const HttpRequest& r) {
      ControlCommand c;
      c.kind = kind;
      c.domain = absl::AsciiStrToLower(r.Param("domain"));
      c.mx_suffix = absl::AsciiStrToLower(r.Param("mx"));
      if (absl::StartsWith(c.mx_suffix, "*")) c.mx_suffix.erase(0, 1);
      if (absl::StartsWith(c.mx_suffix, ".")) c.mx_suffix.erase(0, 1);
      c.job = r.Param("job");
      c.reason = r.Param("reason");
      const int targets = !c.domain.empty() + !c.mx_suffix.empty() + !c.job.empty();
      const bool mx_ok = kind == ControlCommand::Kind::kSuspend ||
                         kind == ControlCommand::Kind::kResume;
      if (kind == ControlCommand::Kind::kFlush ? targets > 1 || !c.job.empty() || !c.mx_suffix.empty()
                                               : targets != 1 || (!mx_ok && !c.mx_suffix.empty())) {
        return JsonError(400, kind == ControlCommand::Kind::kFlush
                                  ? "expected domain= or nothing (everything)"
                                  : mx_ok ? "expected exactly one of domain=, mx=, job="
                                          : "expected exactly one of domain=, job=");
      }
      for (const std::string* v : {&c.domain, &c.mx_suffix, &c.job}) {
        if (v->find_first_of(" \t\r\n/") != std::string::npos) {
          return JsonError(400, "target: no spaces or '/' allowed");
        }
      }
      nlohmann::json ok = {{"target", c.Target()}, {"workers", channels_.size()}};
      if (!c.domain.empty()) ok["domain"] = c.domain;
      if (kind == ControlCommand::Kind::kSuspend) {
        absl::Duration d;
        if (!ParseSuspendDuration(r.Param("duration"), &d)) {
          return JsonError(400, "duration: expected e.g. 90s, 20m, 2h, 1d");
        }
        c.until_ms = MonotonicMs() + absl::ToInt64Milliseconds(d);
        if (c.reason.empty()) c.reason = "suspended by the operator";
        ok["action"] = "suspend";
        ok["seconds"] = absl::ToDoubleSeconds(d);
      } else if (kind == ControlCommand::Kind::kResume) {
        ok["action"] = "resume";
      } else if (kind == ControlCommand::Kind::kFlush) {
        ok["action"] = "flush";
        std::lock_guard<std::mutex> lock(flush_.mu);
        flush_.at = absl::Now();
        if (c.domain.empty()) flush_.all = true;
        else flush_.domains.push_back(c.domain);
        flush_.pending.store(true, std::memory_order_release);
      } else {
        if (c.reason.empty()) c.reason = "bounced by the operator";
        ok["action"] = "bounce";
      }
      if (!c.reason.empty()) ok["reason"] = c.reason;
      Broadcast(c);
      return Json(200, ok);
    };
  };
  h.Post("/api/v1/suspend", command(ControlCommand::Kind::kSuspend));
  h.Post("/api/v1/resume", command(ControlCommand::Kind::kResume));
  h.Post("/api/v1/bounce", command(ControlCommand::Kind::kBounce));
  h.Post("/api/v1/flush", command(ControlCommand::Kind::kFlush));
  // One message: where it is and its recipients' states (engine/message_lookup.h).
  h.Get(R"(/api/v1/messages/([^/]+))", [this](const HttpRequest& r) {
    const std::string id = r.path.substr(r.path.rfind('/') + 1);
    MessageLookup found = LookUpMessage(config_.spool_dir, config_.log_path, id);
    return Json(found.status, found.json);
  });
  return h.Start();
}

}  // namespace mxb
