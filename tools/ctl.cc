// mxburstctl: look at a spool and the engine's policy cache, and flush deferred mail.
//
//   mxburstctl queue  --spool DIR            counts per spool directory, deferred per domain
//   mxburstctl policy --spool DIR            the TLS policy cache (written by each worker), pins
//   mxburstctl shaping --spool DIR           traffic-shaping budgets: connections, rate, back-off
//   mxburstctl flush  --spool DIR [--domain D]  deferred messages back to incoming/ now
//
// It works on the files the engine keeps (no control socket yet): `policy` shows the cache as of
// the workers' last dump (every 30 s and at exit); `shaping` the same for the shaping budgets.
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "engine/tlsrpt_reporter.h"
#include "queue/envelope.h"
#include "queue/journal.h"
#include "queue/spool.h"
#include "tls/banner_pin.h"
#include "tls/mta_sts.h"
#include "tls/tlsrpt.h"

namespace {

const char kUsage[] = R"(usage: mxburstctl COMMAND --spool DIR [options]

  queue            messages per spool directory, and deferred recipients per domain
  policy           the TLS policy cache per MX host (JSON lines, from SPOOL/log/policy-w*.jsonl)
                   and the learned banner strict-tls pins ("source":"banner-pin", from
                   SPOOL/policy/banner-pins.json)
  shaping          the traffic-shaping budgets: open connections, message rate and back-off
                   (throttle) state per [[shaping]] rule (JSON lines, from SPOOL/log/shaping.jsonl)
  sts DOMAIN       DOMAIN's cached MTA-STS policy (RFC 8461): mode, mx patterns, id, fetched and
                   expiry time (one JSON object, from SPOOL/policy/mta-sts/DOMAIN)
  tlsrpt           today's TLS-RPT (RFC 8460) counters per policy domain: successful and failed
                   sessions per policy and result type (JSON lines, from SPOOL/tlsrpt and the
                   journal)
    --send-now     ask the running engine to build and send the reports now (every day held,
                   today's so far); waits until they are in SPOOL/tlsrpt/outbox.*
  flush            move deferred messages back to incoming/ for an immediate retry
    --domain D     only messages with a recipient at domain D
  --help           this text
)";

int Fail(const std::string& msg) {
  std::fprintf(stderr, "mxburstctl: %s\n", msg.c_str());
  return 2;
}

std::string ReadAll(const std::string& path) {
  std::string out;
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return out;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  std::fclose(f);
  return out;
}

int Queue(const mxb::Spool& spool) {
  std::printf("incoming %zu\nactive   %zu\ndeferred %zu\nbad      %zu\n", spool.CountIncoming(),
              spool.CountActive(), spool.CountDeferred(), spool.CountBad());
  std::map<std::string, size_t> per_domain;
  for (const std::string& name : spool.ListDeferred()) {
    absl::StatusOr<mxb::Envelope> env =
        mxb::ParseEnvelope(ReadAll(spool.root() + "/deferred/" + name));
    if (!env.ok()) continue;
    for (const std::string& r : env->recipients) ++per_domain[mxb::DomainOf(r)];
  }
  if (!per_domain.empty()) std::printf("deferred recipients per domain:\n");
  for (const auto& [domain, n] : per_domain) std::printf("  %-40s %zu\n", domain.c_str(), n);
  return 0;
}

int Policy(const mxb::Spool& spool) {
  bool any = false;
  for (int w = 0; w < 1024; ++w) {
    std::string text = ReadAll(absl::StrCat(spool.root(), "/log/policy-w", w, ".jsonl"));
    if (text.empty()) continue;
    any = true;
    std::fputs(text.c_str(), stdout);
  }
  // Banner strict-tls pins (tls/banner_pin.h), process-wide rather than per worker: one line
  // each with "source":"banner-pin", straight from SPOOL/policy/banner-pins.json.
  absl::StatusOr<std::vector<mxb::BannerPin>> pins =
      mxb::BannerPinStore::ReadFile(spool.root() + "/policy");
  if (pins.ok()) {
    for (const mxb::BannerPin& p : *pins) {
      std::printf("%s\n", mxb::BannerPinStore::PinJson(p, absl::Now()).c_str());
    }
  } else if (!absl::IsNotFound(pins.status())) {
    std::fprintf(stderr, "mxburstctl: %s/policy/%s: %s\n", spool.root().c_str(),
                 mxb::BannerPinStore::kFileName, std::string(pins.status().message()).c_str());
  }
  if (!any && !(pins.ok() && !pins->empty())) {
    std::fprintf(stderr, "mxburstctl: no policy dump yet in %s/log\n", spool.root().c_str());
  }
  return 0;
}

int Shaping(const mxb::Spool& spool) {
  std::string text = ReadAll(spool.root() + "/log/shaping.jsonl");
  if (text.empty()) {
    std::fprintf(stderr, "mxburstctl: no shaping dump in %s/log (no [[shaping]] rules, or the "
                 "engine has not written one yet)\n", spool.root().c_str());
    return 1;
  }
  std::fputs(text.c_str(), stdout);
  return 0;
}

int Sts(const mxb::Spool& spool, const std::string& domain) {
  if (domain.empty()) return Fail("sts: a DOMAIN is required (mxburstctl sts DOMAIN --spool DIR)");
  absl::StatusOr<mxb::StsPolicy> p =
      mxb::StsPolicyStore::ReadFile(spool.root() + "/policy/mta-sts", domain);
  if (!p.ok()) {
    return Fail(absl::StrCat("sts: no cached MTA-STS policy for ", domain, " (",
                             p.status().message(), ")"));
  }
  std::string json = mxb::StsPolicyStore::ToJson(domain, *p);
  json.pop_back();  // add whether it is still in force
  std::printf("%s,\"expired\":%s}\n", json.c_str(), p->Expired(absl::Now()) ? "true" : "false");
  return 0;
}

// The counters as the engine left them: its snapshot plus the journal's newer deltas (the same
// reading the engine does at start-up).
int TlsRpt(const mxb::Spool& spool, bool send_now) {
  const std::string dir = spool.root() + "/tlsrpt";
  if (send_now) {
    // The engine holds an exclusive flock on SPOOL/lock while it runs (queue/spool_lock.h).
    const int fd = open((spool.root() + "/lock").c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || flock(fd, LOCK_SH | LOCK_NB) == 0) {
      if (fd >= 0) close(fd);
      return Fail(absl::StrCat("tlsrpt --send-now: no mxburst is running on ", spool.root(),
                               " (reports are built and sent by the engine, with [tlsrpt] "
                               "enabled = true)"));
    }
    close(fd);
    const std::string trigger = dir + "/send-now";
    FILE* f = std::fopen(trigger.c_str(), "w");
    if (f == nullptr) return Fail(absl::StrCat(trigger, ": cannot create (is [tlsrpt] enabled?)"));
    std::fclose(f);
    struct stat st;
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    while (stat(trigger.c_str(), &st) == 0) {
      if (absl::Now() > deadline) {
        return Fail(absl::StrCat("tlsrpt --send-now: the engine did not take ", trigger,
                                 " within 60 s (is [tlsrpt] enabled?)"));
      }
      usleep(20000);
    }
    std::printf("reports built; delivery is logged in %s/sent.jsonl\n", dir.c_str());
    return 0;
  }
  absl::StatusOr<mxb::RecoveredJournal> old = mxb::Journal::Recover(spool.root() + "/journal");
  if (!old.ok()) return Fail(std::string(old.status().message()));
  std::vector<std::string> deltas;
  for (const mxb::RecoveredJournal::Aux& a : old->aux) {
    if (a.kind == mxb::kJournalAuxTlsRpt) deltas.push_back(a.bytes);
  }
  absl::StatusOr<mxb::TlsRptState> st =
      mxb::LoadTlsRptState(ReadAll(dir + "/counters.json"), deltas);
  if (!st.ok()) return Fail(absl::StrCat(dir, "/counters.json: ", st.status().message()));
  auto day = st->counters.days().find(mxb::TlsRptDay(absl::Now()));
  if (day == st->counters.days().end()) return 0;
  for (const auto& [domain, policies] : day->second) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& [policy, counts] : policies) {
      nlohmann::json failures = nlohmann::json::object();
      for (const auto& [key, n] : counts.failures) {
        failures[mxb::ToString(key.result)] = failures.value(mxb::ToString(key.result), 0) + n;
      }
      list.push_back({{"policy-type", mxb::ToString(policy.type)},
                      {"successful", counts.successes},
                      {"failed", counts.failure_total()},
                      {"failures", failures}});
    }
    nlohmann::json line = {{"domain", domain},
                           {"day", mxb::TlsRptDayString(day->first)},
                           {"policies", list}};
    std::printf("%s\n", line.dump().c_str());
  }
  return 0;
}

int Flush(mxb::Spool& spool, const std::string& domain) {
  size_t moved = 0;
  for (const std::string& name : spool.ListDeferred()) {
    if (!domain.empty()) {
      absl::StatusOr<mxb::Envelope> env =
          mxb::ParseEnvelope(ReadAll(spool.root() + "/deferred/" + name));
      if (!env.ok()) continue;
      bool match = false;
      for (const std::string& r : env->recipients) match |= mxb::DomainOf(r) == domain;
      if (!match) continue;
    }
    if (absl::Status s = spool.Requeue(name); !s.ok()) {
      std::fprintf(stderr, "mxburstctl: %s\n", std::string(s.message()).c_str());
      continue;
    }
    ++moved;
  }
  std::printf("moved %zu deferred message(s) to incoming/\n", moved);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help") {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  std::string command = argv[1], spool_dir, domain;
  bool send_now = false;
  int first = 2;
  if (command == "sts" && argc > 2 && argv[2][0] != '-') domain = argv[first++];
  for (int i = first; i < argc; ++i) {
    std::string a = argv[i];
    if ((a == "--spool" || a == "--domain") && i + 1 < argc) {
      (a == "--spool" ? spool_dir : domain) = argv[++i];
    } else if (a == "--send-now" && command == "tlsrpt") {
      send_now = true;
    } else {
      return Fail(absl::StrCat(a, ": unknown option (see --help)"));
    }
  }
  if (spool_dir.empty()) return Fail("--spool: required");
  absl::StatusOr<mxb::Spool> spool = mxb::Spool::Open(spool_dir);
  if (!spool.ok()) return Fail(std::string(spool.status().message()));
  if (command == "queue") return Queue(*spool);
  if (command == "policy") return Policy(*spool);
  if (command == "shaping") return Shaping(*spool);
  if (command == "flush") return Flush(*spool, domain);
  if (command == "sts") return Sts(*spool, domain);
  if (command == "tlsrpt") return TlsRpt(*spool, send_now);
  return Fail(absl::StrCat(command, ": unknown command (see --help)"));
}
