// mxburst-inject: writes generated (or given .eml) messages into a spool directory with
// InjectFile (tmp/ -> fsync -> rename into incoming/, DESIGN.md "Spool directory API"). Used by
// tests, demos and benchmarks to produce load; deterministic with --seed.
//
//   mxburst-inject --spool /var/spool/mxburst --count 10000 --size 20000 --domains 50 --no-fsync
//
// Every generated message is a valid RFC 5322 message (From, To, Subject, Date, Message-ID,
// MIME-Version, Content-Type, Content-Transfer-Encoding) with CRLF line ends and body lines of at
// most 78 characters (RFC 5322 §2.1.1), so it can be sent as-is by a client that dot-stuffs.
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "queue/envelope.h"
#include "queue/spool.h"

namespace {

constexpr char kUsage[] = R"(Usage: mxburst-inject --spool DIR [options]

Writes messages into the spool DIR (tmp/ -> fsync -> rename into incoming/).

  --spool DIR                    spool directory (required; subdirectories are created)
  --count N                      number of messages (default 1; with --eml: one per file)
  --size BYTES                   body size of generated messages (default 2000)
  --size-range MIN-MAX           body size drawn uniformly from MIN..MAX per message
  --domains N                    recipient domains d1.example .. dN.example
  --domain-list A,B,...          recipient domains given explicitly (default dest.example)
  --recipients-per-message K     recipients per message, all in one domain (default 1)
  --rcpt-local-prefix P          recipient local part prefix (default "user": user1@...)
  --sender ADDR                  envelope sender (default bounce@esp.example; "<>" = null)
  --job ID                       x-job campaign id
  --eight-bit-every N            every Nth message carries 8-bit UTF-8 text (8BITMIME)
  --dot-lines                    include body lines starting with '.' (and "." / "..")
  --seed S                       deterministic recipients, bodies and Message-IDs
  --eml FILE...                  use these .eml files as message bodies (cycled if --count)
  --no-fsync                     skip fsync of files and of incoming/ (benchmarks only)
  --help                         this text

Messages go to domains round-robin; recipient numbers are unique within a run. With --seed the
output is reproducible except for the Date header (the injection time).
Prints "injected N messages (X MB) into DIR in S s" on success; a progress bar on stderr when
stderr is a terminal.
)";

constexpr size_t kMaxBodySize = size_t{256} << 20;

struct Options {
  std::string spool;
  uint64_t count = 1;
  bool count_given = false;
  uint64_t size_min = 2000;
  uint64_t size_max = 2000;
  std::vector<std::string> domains;
  bool domains_generated = false;  // --domains N (or the default), not --domain-list
  uint64_t rcpts_per_message = 1;
  std::string rcpt_prefix = "user";
  std::string sender = "bounce@esp.example";
  std::string job;
  uint64_t eight_bit_every = 0;
  bool dot_lines = false;
  std::optional<uint64_t> seed;
  std::vector<std::string> eml_files;
  bool fsync = true;
};

// splitmix64: small, fast and fully determined by its seed, which is all a load generator needs.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [lo, hi]; the modulo bias is irrelevant for test data.
  uint64_t Between(uint64_t lo, uint64_t hi) { return lo + Next() % (hi - lo + 1); }

 private:
  uint64_t state_;
};

[[noreturn]] void UsageError(absl::string_view message) {
  absl::FPrintF(stderr, "mxburst-inject: %s (see --help)\n", message);
  std::exit(2);
}

[[noreturn]] void Fail(absl::string_view message) {
  absl::FPrintF(stderr, "mxburst-inject: %s\n", message);
  std::exit(1);
}

uint64_t ParseCount(absl::string_view option, absl::string_view value, uint64_t min,
                    uint64_t max) {
  uint64_t n = 0;
  if (value.empty() || value[0] == '-' || value[0] == '+' || !absl::SimpleAtoi(value, &n) ||
      n < min || n > max) {
    UsageError(absl::StrFormat("%s: expected an integer in %d..%d, got '%s'", option, min, max,
                               value));
  }
  return n;
}

Options ParseArgs(int argc, char** argv) {
  Options opt;
  bool size_given = false, range_given = false, domains_given = false, list_given = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::optional<std::string> inline_value;
    if (absl::StartsWith(arg, "--")) {
      if (const size_t eq = arg.find('='); eq != std::string::npos) {
        inline_value = arg.substr(eq + 1);
        arg.resize(eq);
      }
    } else {
      UsageError(absl::StrCat("unexpected argument '", arg, "'"));
    }
    auto value = [&]() -> std::string {
      if (inline_value) return *inline_value;
      if (i + 1 >= argc) UsageError(absl::StrCat(arg, " needs a value"));
      return argv[++i];
    };
    auto no_value = [&] {
      if (inline_value) UsageError(absl::StrCat(arg, " takes no value"));
    };
    if (arg == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (arg == "--spool") {
      opt.spool = value();
      if (opt.spool.empty()) UsageError("--spool: empty directory name");
    } else if (arg == "--count") {
      opt.count = ParseCount(arg, value(), 1, uint64_t{1} << 40);
      opt.count_given = true;
    } else if (arg == "--size") {
      opt.size_min = opt.size_max = ParseCount(arg, value(), 0, kMaxBodySize);
      size_given = true;
    } else if (arg == "--size-range") {
      const std::string v = value();
      std::vector<std::string> parts = absl::StrSplit(v, '-');
      if (parts.size() != 2) UsageError(absl::StrCat("--size-range: expected MIN-MAX, got '", v, "'"));
      opt.size_min = ParseCount(arg, parts[0], 0, kMaxBodySize);
      opt.size_max = ParseCount(arg, parts[1], 0, kMaxBodySize);
      if (opt.size_min > opt.size_max) {
        UsageError(absl::StrCat("--size-range: MIN > MAX in '", v, "'"));
      }
      range_given = true;
    } else if (arg == "--domains") {
      const uint64_t n = ParseCount(arg, value(), 1, 1'000'000);
      opt.domains.clear();
      for (uint64_t d = 1; d <= n; ++d) opt.domains.push_back(absl::StrCat("d", d, ".example"));
      domains_given = true;
      opt.domains_generated = true;
    } else if (arg == "--domain-list") {
      const std::string v = value();
      std::vector<std::string> list = absl::StrSplit(v, ',', absl::SkipWhitespace());
      opt.domains = std::move(list);
      if (opt.domains.empty()) UsageError("--domain-list: no domains given");
      list_given = true;
    } else if (arg == "--recipients-per-message") {
      opt.rcpts_per_message = ParseCount(arg, value(), 1, mxb::kMaxRecipients);
    } else if (arg == "--rcpt-local-prefix") {
      opt.rcpt_prefix = value();
    } else if (arg == "--sender") {
      opt.sender = value();
    } else if (arg == "--job") {
      opt.job = value();
    } else if (arg == "--eight-bit-every") {
      opt.eight_bit_every = ParseCount(arg, value(), 1, uint64_t{1} << 40);
    } else if (arg == "--dot-lines") {
      no_value();
      opt.dot_lines = true;
    } else if (arg == "--seed") {
      opt.seed = ParseCount(arg, value(), 0, UINT64_MAX);
    } else if (arg == "--no-fsync") {
      no_value();
      opt.fsync = false;
    } else if (arg == "--eml") {
      if (inline_value) opt.eml_files.push_back(*inline_value);
      while (i + 1 < argc && !absl::StartsWith(argv[i + 1], "--")) opt.eml_files.emplace_back(argv[++i]);
      if (opt.eml_files.empty()) UsageError("--eml needs at least one FILE");
    } else {
      UsageError(absl::StrCat("unknown option '", arg, "'"));
    }
  }
  if (opt.spool.empty()) UsageError("--spool DIR is required");
  if (size_given && range_given) UsageError("--size and --size-range are exclusive");
  if (domains_given && list_given) UsageError("--domains and --domain-list are exclusive");
  if (opt.domains.empty()) {
    opt.domains.push_back("dest.example");
    opt.domains_generated = true;
  }
  if (opt.sender == "<>") opt.sender.clear();
  if (!opt.eml_files.empty() && !opt.count_given) opt.count = opt.eml_files.size();
  return opt;
}

// Checks the addresses the run will use with the spool's own parser, so a bad --sender, domain
// or prefix fails before anything is written, with the parser's message.
void ValidateAddresses(const Options& opt) {
  auto check = [](absl::string_view what, const std::string& line) {
    absl::StatusOr<mxb::Envelope> env =
        mxb::ParseEnvelope(absl::StrCat(line, "\nSubject: x\n\nx\n"));
    if (!env.ok()) UsageError(absl::StrCat(what, ": ", env.status().message()));
  };
  check("--sender", absl::StrCat("x-sender: <", opt.sender, ">\nx-receiver: <a@b.example>"));
  // Generated dN.example names are valid by construction; check the first for the prefix only.
  const size_t domains_to_check = opt.domains_generated ? 1 : opt.domains.size();
  for (size_t i = 0; i < domains_to_check; ++i) {
    const std::string& d = opt.domains[i];
    check("recipient domain",
          absl::StrCat("x-sender: <>\nx-receiver: <", opt.rcpt_prefix, "1@", d, ">"));
  }
  if (!opt.job.empty()) check("--job", absl::StrCat("x-sender: <>\nx-receiver: <a@b.example>\nx-job: ", opt.job));
}

// ASCII filler text: words from a small vocabulary, no '.', so a line starts with '.' only when
// --dot-lines asks for it.
std::string MakeTextPool(Rng& rng) {
  static constexpr absl::string_view kWords[] = {
      "the",      "delivery", "message",  "queue",     "spool",     "recipient", "domain",
      "server",   "retry",    "policy",   "transport", "secure",    "bulk",      "mail",
      "sender",   "header",   "body",     "encoding",  "session",   "pipeline",  "connection",
      "exchange", "record",   "timeout",  "response",  "status",    "report",    "journal",
      "offer",    "account",  "campaign", "newsletter", "invoice",  "reminder",  "update",
      "weekly",   "summary",  "welcome",  "order",     "shipping",  "tracking",  "support",
      "a",        "of",       "and",      "to",        "in",        "for",       "with",
      "on",       "by",       "from",     "at",        "is",        "are",       "was",
  };
  constexpr size_t kPoolSize = 64 * 1024;
  std::string pool;
  pool.reserve(kPoolSize + 16);
  while (pool.size() < kPoolSize) {
    {
      const absl::string_view w = kWords[rng.Next() % std::size(kWords)];
      pool.append(w.data(), w.size());
    }
    pool.push_back(rng.Next() % 11 == 0 ? ',' : ' ');
    if (pool.back() == ',') pool.push_back(' ');
  }
  return pool;
}

// UTF-8 phrases for 8-bit messages; appended whole, so lines stay valid UTF-8.
constexpr absl::string_view kUtf8Phrases[] = {
    "Gr\xc3\xbc\xc3\x9f" "e aus K\xc3\xb6ln",         // Grüße aus Köln
    "caf\xc3\xa9 cr\xc3\xa8me",                       // café crème
    "na\xc3\xafve fa\xc3\xa7" "ade",                  // naïve façade
    "sm\xc3\xb6rg\xc3\xa5sbord",                      // smörgåsbord
    "\xce\x95\xce\xbb\xce\xbb\xce\xb7\xce\xbd\xce\xb9\xce\xba\xce\xac",  // Ελληνικά
    "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82",                  // Привет
    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",                              // 日本語
    "\xe2\x82\xac 42,00",                                                // € 42,00
};

// Appends a body of exactly `size` octets: CRLF lines of at most 78 characters.
void AppendBody(std::string& out, uint64_t size, bool eight_bit, bool dot_lines,
                const std::string& pool, Rng& rng) {
  constexpr size_t kMaxLine = 78;
  uint64_t rem = size;
  for (int line = 0; rem > 0; ++line) {
    if (rem == 1) {  // only a 1-octet body ends without CRLF (RFC 5322 allows it)
      out.push_back('x');
      break;
    }
    // Lone "." and ".." lines exercise dot-stuffing (RFC 5321 §4.5.2) hardest.
    if (dot_lines && (line == 5 || line == 9) && rem > kMaxLine + 6) {
      const absl::string_view dots = line == 5 ? ".\r\n" : "..\r\n";
      out.append(dots.data(), dots.size());
      rem -= dots.size();
      continue;
    }
    // Either the last line, or a line that leaves at least 3 octets (never a stray 1).
    const size_t len = rem <= kMaxLine + 2 ? static_cast<size_t>(rem - 2)
                                           : static_cast<size_t>(rng.Between(40, 76));
    const size_t start = out.size();
    size_t fill = len;
    const bool dot_line = dot_lines && line % 7 == 3 && len > 0;
    if (eight_bit && line % 3 == 1 && !dot_line) {
      const absl::string_view phrase = kUtf8Phrases[rng.Next() % std::size(kUtf8Phrases)];
      if (phrase.size() + 1 <= len) {
        out.append(phrase.data(), phrase.size());
        out.push_back(' ');
        fill -= phrase.size() + 1;
      }
    }
    // Start just after a space so lines begin with a whole word (words are < 16 octets).
    size_t from = rng.Next() % (pool.size() - fill - 16);
    from = pool.find(' ', from) + 1;
    out.append(pool, from, fill);
    if (dot_line) out[start] = '.';
    out.append("\r\n");
    rem -= len + 2;
  }
}

std::string RfcDate(time_t t) {
  // RFC 5322 §3.3; strftime's %a/%b are English in the C locale, which we never change.
  tm tm_utc;
  gmtime_r(&t, &tm_utc);
  char buf[64];
  strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S +0000", &tm_utc);
  return buf;
}

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": ", std::strerror(errno)));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read error"));
  return ss.str();
}

class ProgressBar {
 public:
  explicit ProgressBar(uint64_t total) : total_(total), enabled_(isatty(STDERR_FILENO) == 1) {}
  void Update(uint64_t done) {
    if (!enabled_ || (done % 64 != 0 && done != total_)) return;
    timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    const int64_t ms = int64_t{now.tv_sec} * 1000 + now.tv_nsec / 1'000'000;
    if (done != total_ && ms - last_ms_ < 100) return;
    last_ms_ = ms;
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(kWidth * done / total_);
    absl::FPrintF(stderr, "\r%3d%% [%s%s] %d/%d", static_cast<int>(100 * done / total_),
                  std::string(filled, '#'), std::string(kWidth - filled, ' '), done, total_);
    std::fflush(stderr);
  }
  void Finish() {
    if (enabled_) std::fputs("\r\033[K", stderr);
  }

 private:
  uint64_t total_;
  bool enabled_;
  int64_t last_ms_ = 0;
};

double MonotonicSeconds() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  const Options opt = ParseArgs(argc, argv);
  ValidateAddresses(opt);

  std::vector<std::string> emls;
  for (const std::string& path : opt.eml_files) {
    absl::StatusOr<std::string> data = ReadWholeFile(path);
    if (!data.ok()) Fail(data.status().message());
    if (data->empty()) Fail(absl::StrCat(path, ": empty file"));
    // A message whose first line looks like an envelope line would lose it to the envelope.
    mxb::Envelope probe;
    probe.recipients = {"a@b.example"};
    const std::string probe_file = mxb::SerializeEnvelope(probe, *data);
    absl::StatusOr<mxb::Envelope> parsed = mxb::ParseEnvelope(probe_file);
    if (!parsed.ok() || probe_file.size() - parsed->body_offset != data->size()) {
      Fail(absl::StrCat(path, ": first line is an envelope line (x-sender, x-receiver, x-job, ...)",
                        " or the message is empty; give the bare RFC 5322 message",
                        parsed.ok() ? "" : absl::StrCat(" (", parsed.status().message(), ")")));
    }
    emls.push_back(*std::move(data));
  }

  absl::StatusOr<mxb::Spool> spool = mxb::Spool::Open(opt.spool);
  if (!spool.ok()) Fail(spool.status().message());

  uint64_t seed = 0;
  if (opt.seed) {
    seed = *opt.seed;
  } else {
    std::random_device rd;
    seed = (uint64_t{rd()} << 32) | rd();
  }
  Rng rng(seed);
  const std::string pool = MakeTextPool(rng);
  // Message-IDs are <run.index@domain>: unique within a run, and across runs unless the same
  // --seed is reused (then they repeat on purpose: same input, same output).
  const std::string run_id = absl::StrFormat("%016x", rng.Next());
  const std::string id_domain = opt.sender.empty() ? "esp.example" : mxb::DomainOf(opt.sender);
  const std::string from = opt.sender.empty() ? "<mailer-daemon@esp.example>"
                                              : absl::StrCat("<", opt.sender, ">");
  const std::string date = RfcDate(time(nullptr));

  mxb::Envelope env;
  env.sender = opt.sender;
  env.job = opt.job;
  std::string message;
  ProgressBar progress(opt.count);
  uint64_t bytes = 0;
  uint64_t next_rcpt = 1;
  const double start = MonotonicSeconds();
  for (uint64_t i = 0; i < opt.count; ++i) {
    const std::string& domain = opt.domains[i % opt.domains.size()];
    env.recipients.clear();
    for (uint64_t k = 0; k < opt.rcpts_per_message; ++k) {
      env.recipients.push_back(absl::StrCat(opt.rcpt_prefix, next_rcpt++, "@", domain));
    }
    const uint64_t number = i + 1;
    std::string file;
    if (!emls.empty()) {
      file = mxb::SerializeEnvelope(env, emls[i % emls.size()]);
    } else {
      const bool eight_bit = opt.eight_bit_every != 0 && number % opt.eight_bit_every == 0;
      const uint64_t size = rng.Between(opt.size_min, opt.size_max);
      message.clear();
      message.reserve(size + 512);
      absl::StrAppend(&message, "From: ", from, "\r\n",
                      "To: <", env.recipients[0], ">\r\n",
                      "Subject: mxburst test message ", number, eight_bit ? " (8bit)" : "",
                      opt.job.empty() ? "" : " job ", opt.job, "\r\n",
                      "Date: ", date, "\r\n",
                      "Message-ID: <", run_id, ".", number, "@", id_domain, ">\r\n",
                      "MIME-Version: 1.0\r\n");
      if (eight_bit) {
        message.append("Content-Type: text/plain; charset=utf-8\r\n"
                       "Content-Transfer-Encoding: 8bit\r\n\r\n");
      } else {
        message.append("Content-Type: text/plain; charset=us-ascii\r\n"
                       "Content-Transfer-Encoding: 7bit\r\n\r\n");
      }
      AppendBody(message, size, eight_bit, opt.dot_lines, pool, rng);
      file = mxb::SerializeEnvelope(env, message);
    }
    if (absl::Status s = mxb::InjectFile(spool->root(), mxb::NewSpoolFileName(), file, opt.fsync);
        !s.ok()) {
      progress.Finish();
      Fail(absl::StrCat(s.message(), " (after ", i, " messages)"));
    }
    bytes += file.size();
    progress.Update(number);
  }
  progress.Finish();
  const double elapsed = MonotonicSeconds() - start;
  absl::PrintF("injected %d messages (%.1f MB) into %s in %.2f s\n", opt.count,
               static_cast<double>(bytes) / 1e6, spool->root(), elapsed);
  return 0;
}
