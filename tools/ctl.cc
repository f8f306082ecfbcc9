// mxburstctl: the operator's client of a running mxburst (its control endpoint, issue 14), and a
// reader of the spool's files when no engine runs.
//
//   mxburstctl status|queue|policy|shaping             live: tables (or --json) from the API
//                                                      (policy --spool DIR: the files, banner pins too)
//   mxburstctl message ID                              where a message is, its recipients' states
//   mxburstctl suspend|resume --domain D|--mx S|--job J [--duration 20m] [--reason TEXT]
//   mxburstctl bounce --domain D|--job J [--reason TEXT]
//   mxburstctl flush [--domain D]                      retry deferred mail now
//   mxburstctl sts DOMAIN --spool DIR                  the cached MTA-STS policy (a file)
//   mxburstctl tlsrpt [--send-now] --spool DIR         today's TLS-RPT counters (files)
//
// Which engine: --url, else the [http] listen of --config (default /etc/mxburst/mxburst.toml,
// which also names the spool and the token file). With only --spool DIR it reads that spool's
// files, as before the control endpoint existed (queue counts, policy/shaping dumps, flush moves
// deferred/ files to incoming/). When the engine does not answer, queue/policy/shaping/message/
// flush fall back to the files and say so on stderr; suspend/resume/bounce need the engine.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
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
#include "engine/config.h"
#include "engine/message_lookup.h"
#include "engine/tlsrpt_reporter.h"
#include "httplib.h"
#include "queue/envelope.h"
#include "queue/journal.h"
#include "queue/spool.h"
#include "tls/banner_pin.h"
#include "tls/mta_sts.h"
#include "tls/tlsrpt.h"

namespace {

const char kUsage[] = R"(usage: mxburstctl COMMAND [options]

  status           version, uptime, totals (live)
  queue            destinations by queue: queued, connections, state, oldest, last error;
                   without an engine: messages per spool directory, deferred per domain
  message ID       where a message is (incoming, in-flight, deferred, bad, done) and each
                   recipient's state and last reply (ID = the log's msgid, the spool file name)
  policy           the TLS policy cache per MX host (with --spool alone also the learned banner
                   strict-tls pins, from SPOOL/policy/banner-pins.json)
  shaping          the traffic-shaping budgets: connections, rate and back-off per rule
  suspend          --domain D | --mx SUFFIX | --job JOB  [--duration 20m] [--reason TEXT]
  resume           --domain D | --mx SUFFIX | --job JOB
  bounce           --domain D | --job JOB  [--reason TEXT]  (what is queued: 5.0.0 + DSN)
  flush            [--domain D]  retry deferred mail now (without an engine: move the files
                   from deferred/ back to incoming/)
  sts DOMAIN       DOMAIN's cached MTA-STS policy (RFC 8461, from SPOOL/policy/mta-sts/)
  tlsrpt           today's TLS-RPT (RFC 8460) counters per policy domain: successful and failed
                   sessions per policy and result type (JSON lines, from SPOOL/tlsrpt and the
                   journal)
    --send-now     ask the running engine to build and send the reports now (every day held,
                   today's so far); waits until they are in SPOOL/tlsrpt/outbox.*

  --url URL        the engine's control endpoint (default: [http] listen of the config)
  --config FILE    mxburst.toml for listen, spool and token_file (default
                   /etc/mxburst/mxburst.toml when it exists)
  --spool DIR      the spool (alone: read its files, do not ask an engine)
  --token-file F   bearer token for suspend/resume/bounce/flush (default: [http] token_file)
  --json           the API's JSON instead of a table
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

// --- tables ------------------------------------------------------------------------------

std::string Cell(const nlohmann::json& v) {
  if (v.is_null()) return "";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_float()) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.1f", v.get<double>());
    return buf;
  }
  return v.dump();
}

// An array of objects as a table: the given columns, or every key of the first row.
void PrintTable(const nlohmann::json& rows, std::vector<std::string> columns = {}) {
  if (!rows.is_array() || rows.empty()) {
    std::printf("(none)\n");
    return;
  }
  if (columns.empty()) {
    for (const auto& [k, v] : rows.front().items()) columns.push_back(k);
  }
  std::vector<size_t> width(columns.size());
  std::vector<std::vector<std::string>> cells;
  for (size_t c = 0; c < columns.size(); ++c) width[c] = columns[c].size();
  for (const nlohmann::json& r : rows) {
    std::vector<std::string> line;
    for (size_t c = 0; c < columns.size(); ++c) {
      std::string v = r.contains(columns[c]) ? Cell(r[columns[c]]) : "";
      if (v.size() > 60 && c + 1 < columns.size()) v = v.substr(0, 57) + "...";
      width[c] = std::max(width[c], v.size());
      line.push_back(std::move(v));
    }
    cells.push_back(std::move(line));
  }
  auto print = [&](const std::vector<std::string>& line) {
    std::string out;
    for (size_t c = 0; c < line.size(); ++c) {
      out += line[c];
      if (c + 1 < line.size()) out += std::string(width[c] - line[c].size() + 2, ' ');
    }
    std::printf("%s\n", out.c_str());
  };
  std::vector<std::string> head;
  for (const std::string& c : columns) {
    std::string h = c;
    for (char& ch : h) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    head.push_back(h);
  }
  print(head);
  for (const auto& line : cells) print(line);
}

// --- the live API --------------------------------------------------------------------------

struct Options {
  std::string command, arg, url, config, spool, token_file, domain, mx, job, duration, reason;
  bool json = false;
  bool send_now = false;    // tlsrpt --send-now
  bool spool_only = false;  // only --spool given: files, no engine
};

struct Live {
  std::string host;
  int port = 0;
  std::string token;
  std::string why_not;  // set when the engine did not answer
};

bool ParseUrl(const std::string& url, Live* l) {
  std::string u = url;
  if (u.rfind("http://", 0) == 0) u = u.substr(7);
  while (!u.empty() && u.back() == '/') u.pop_back();
  const size_t colon = u.rfind(':');
  if (colon == std::string::npos) return false;
  l->host = u.substr(0, colon);
  if (l->host.size() > 2 && l->host.front() == '[') l->host = l->host.substr(1, l->host.size() - 2);
  try {
    l->port = std::stoi(u.substr(colon + 1));
  } catch (...) {
    return false;
  }
  return l->port > 0 && l->port < 65536;
}

// GET/POST; nullopt (and why_not) when nothing answers.
std::optional<httplib::Result> Call(Live* l, const std::string& method, const std::string& path,
                                    const httplib::Params& form = {}) {
  httplib::Client c(l->host, l->port);
  c.set_connection_timeout(2, 0);
  c.set_read_timeout(10, 0);
  httplib::Result r = method == "GET" ? c.Get(path.c_str())
                                      : c.Post(path.c_str(),
                                               httplib::Headers{{"Authorization", "Bearer " + l->token}},
                                               form);
  if (!r) {
    l->why_not = httplib::to_string(r.error());
    return std::nullopt;
  }
  return r;
}

int PrintBody(const Options& o, int status, const std::string& body, const std::string& what) {
  nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
  if (status != 200) {
    std::string err = !j.is_discarded() && j.contains("error") ? Cell(j["error"]) : body;
    return Fail(absl::StrCat(what, ": HTTP ", status, ": ", err));
  }
  if (o.json || j.is_discarded()) {
    std::printf("%s\n", body.c_str());
    return 0;
  }
  if (what == "status") {
    for (const auto& [k, v] : j.items()) std::printf("%-24s %s\n", k.c_str(), Cell(v).c_str());
  } else if (what == "queue") {
    PrintTable(j["destinations"], {"domain", "queued", "connections", "state", "oldest_age_seconds",
                                   "last_error"});
    if (!j["suspensions"].empty()) {
      std::printf("\nsuspended:\n");
      PrintTable(j["suspensions"], {"kind", "target", "seconds_left", "reason"});
    }
  } else if (what == "policy") {
    PrintTable(j["policies"]);
  } else if (what == "shaping") {
    PrintTable(j);
  } else if (what == "message") {
    for (const char* k : {"id", "location", "sender", "job", "attempts", "next_attempt"}) {
      if (j.contains(k)) std::printf("%-10s %s\n", k, Cell(j[k]).c_str());
    }
    PrintTable(j["recipients"], {"rcpt", "state", "code", "enhanced", "class", "text"});
  } else {
    for (const auto& [k, v] : j.items()) std::printf("%s=%s ", k.c_str(), Cell(v).c_str());
    std::printf("\n");
  }
  return 0;
}

int Offline(const Options& o, const std::string& why) {
  if (!why.empty()) {
    std::fprintf(stderr, "mxburstctl: no engine answers (%s): showing the files in %s\n",
                 why.c_str(), o.spool.c_str());
  }
  if (o.spool.empty()) return Fail("--spool: required without a running engine");
  absl::StatusOr<mxb::Spool> spool = mxb::Spool::Open(o.spool);
  if (!spool.ok()) return Fail(std::string(spool.status().message()));
  if (o.command == "queue") return Queue(*spool);
  if (o.command == "policy") return Policy(*spool);
  if (o.command == "shaping") return Shaping(*spool);
  if (o.command == "flush") return Flush(*spool, o.domain);
  if (o.command == "sts") return Sts(*spool, o.arg);
  if (o.command == "tlsrpt") return TlsRpt(*spool, o.send_now);
  if (o.command == "message") {
    mxb::EngineConfig c;
    std::string log = o.spool + "/log/accounting.jsonl";
    if (!o.config.empty() && mxb::LoadConfigFile(o.config, &c).ok() && !c.log_path.empty()) log = c.log_path;
    mxb::MessageLookup m = mxb::LookUpMessage(o.spool, log, o.arg);
    return PrintBody(o, m.status, m.json.dump(), "message");
  }
  return Fail(absl::StrCat(o.command, ": needs a running engine (", why.empty() ? "--url or --config" : why, ")"));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help") {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  Options o;
  o.command = argv[1];
  int first = 2;
  if ((o.command == "sts" || o.command == "message") && argc > 2 && argv[2][0] != '-') {
    o.arg = argv[first++];
  }
  bool explicit_config = false;
  for (int i = first; i < argc; ++i) {
    std::string a = argv[i];
    std::string* value = nullptr;
    if (a == "--spool") value = &o.spool;
    else if (a == "--domain") value = &o.domain;
    else if (a == "--mx") value = &o.mx;
    else if (a == "--job") value = &o.job;
    else if (a == "--url") value = &o.url;
    else if (a == "--config") value = &o.config;
    else if (a == "--token-file") value = &o.token_file;
    else if (a == "--duration") value = &o.duration;
    else if (a == "--reason") value = &o.reason;
    else if (a == "--json") { o.json = true; continue; }
    else if (a == "--send-now" && o.command == "tlsrpt") { o.send_now = true; continue; }
    else return Fail(absl::StrCat(a, ": unknown option (see --help)"));
    if (i + 1 >= argc) return Fail(absl::StrCat(a, ": missing value"));
    *value = argv[++i];
    if (a == "--config") explicit_config = true;
  }
  if ((o.command == "sts" || o.command == "message") && o.arg.empty()) {
    return Fail(absl::StrCat(o.command, ": an argument is required (see --help)"));
  }
  o.spool_only = !o.spool.empty() && o.url.empty() && !explicit_config;
  Live live;
  if (!o.spool_only) {
    if (o.config.empty() && access("/etc/mxburst/mxburst.toml", R_OK) == 0) {
      o.config = "/etc/mxburst/mxburst.toml";
    }
    mxb::EngineConfig c;
    if (!o.config.empty()) {
      if (absl::Status s = mxb::LoadConfigFile(o.config, &c); !s.ok()) {
        return Fail(std::string(s.message()));
      }
      if (o.spool.empty()) o.spool = c.spool_dir;
      if (o.url.empty()) o.url = c.http_listen;
      if (o.token_file.empty()) o.token_file = c.http_token_file;
    }
  }
  // sts and tlsrpt read the spool's files (tlsrpt --send-now hands the engine a trigger file).
  if (o.spool_only || o.url.empty() || o.command == "sts" || o.command == "tlsrpt") {
    return Offline(o, "");
  }
  if (!ParseUrl(o.url, &live)) return Fail(absl::StrCat("--url: expected [http://]HOST:PORT, got '", o.url, "'"));
  if (!o.token_file.empty()) {
    std::string t = ReadAll(o.token_file);
    while (!t.empty() && (t.back() == '\n' || t.back() == '\r' || t.back() == ' ')) t.pop_back();
    live.token = t;
  }
  const std::string& cmd = o.command;
  std::optional<httplib::Result> r;
  if (cmd == "status" || cmd == "queue" || cmd == "policy" || cmd == "shaping" || cmd == "message") {
    const std::string path = cmd == "status"    ? "/api/v1/status"
                             : cmd == "queue"   ? "/api/v1/destinations"
                             : cmd == "policy"  ? "/api/v1/policy"
                             : cmd == "shaping" ? "/api/v1/shaping"
                                                : "/api/v1/messages/" + o.arg;
    r = Call(&live, "GET", path);
    if (!r) return cmd == "status" ? Fail(absl::StrCat("status: no engine at ", o.url, " (", live.why_not, ")"))
                                   : Offline(o, absl::StrCat(o.url, ": ", live.why_not));
    return PrintBody(o, (*r)->status, (*r)->body, cmd);
  }
  if (cmd == "suspend" || cmd == "resume" || cmd == "bounce" || cmd == "flush") {
    httplib::Params form;
    if (!o.domain.empty()) form.emplace("domain", o.domain);
    if (!o.mx.empty()) form.emplace("mx", o.mx);
    if (!o.job.empty()) form.emplace("job", o.job);
    if (!o.duration.empty()) form.emplace("duration", o.duration);
    if (!o.reason.empty()) form.emplace("reason", o.reason);
    r = Call(&live, "POST", "/api/v1/" + cmd, form);
    if (!r) {
      if (cmd == "flush") return Offline(o, absl::StrCat(o.url, ": ", live.why_not));
      return Fail(absl::StrCat(cmd, ": no engine at ", o.url, " (", live.why_not, ")"));
    }
    return PrintBody(o, (*r)->status, (*r)->body, cmd);
  }
  return Fail(absl::StrCat(cmd, ": unknown command (see --help)"));
}
