// Parsing of the mxburst-sink command line (see sink_options.h).
#include "tools/sink/sink_options.h"

#include <arpa/inet.h>

#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace mxb::sink {
namespace {

constexpr absl::string_view kListenerOptions[] = {"implicit-tls", "no-starttls", "requiretls",
                                                   "cert=", "key="};

bool StartsWithListenerOption(absl::string_view s) {
  for (absl::string_view opt : kListenerOptions) {
    if (absl::StartsWith(s, opt)) return true;
  }
  return false;
}

bool IsNumericAddress(const std::string& host) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

absl::StatusOr<ListenerSpec> ParseListener(absl::string_view text) {
  ListenerSpec spec;
  // Split ADDR:PORT from the options: the first '/' that begins a known option.
  size_t opts_at = absl::string_view::npos;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '/' && StartsWithListenerOption(text.substr(i + 1))) {
      opts_at = i;
      break;
    }
  }
  absl::string_view hostport = text.substr(0, opts_at);
  if (hostport.find('/') != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("--listen '", text,
        "': unknown listener option (want implicit-tls, no-starttls, requiretls, cert=FILE, "
        "key=FILE)"));
  }
  absl::string_view host;
  absl::string_view port_text;
  if (absl::StartsWith(hostport, "[")) {
    size_t close = hostport.find(']');
    if (close == absl::string_view::npos || close + 1 >= hostport.size() ||
        hostport[close + 1] != ':') {
      return absl::InvalidArgumentError(absl::StrCat("--listen '", text, "': want [V6ADDR]:PORT"));
    }
    host = hostport.substr(1, close - 1);
    port_text = hostport.substr(close + 2);
  } else {
    size_t colon = hostport.rfind(':');
    if (colon == absl::string_view::npos || colon == 0) {
      return absl::InvalidArgumentError(absl::StrCat("--listen '", text, "': want ADDR:PORT"));
    }
    host = hostport.substr(0, colon);
    port_text = hostport.substr(colon + 1);
  }
  uint32_t port = 0;
  if (!absl::SimpleAtoi(port_text, &port) || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--listen '", text, "': bad port '", port_text, "'"));
  }
  spec.port = static_cast<uint16_t>(port);
  spec.host = std::string(host == "localhost" ? "127.0.0.1" : host);
  if (!IsNumericAddress(spec.host)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--listen '", text, "': '", host, "' is not a numeric IP address"));
  }

  // Options: each starts right after a '/' that begins a known option; a value runs to the next
  // such '/', so cert=/etc/ssl/x.pem works.
  absl::string_view rest =
      opts_at == absl::string_view::npos ? absl::string_view() : text.substr(opts_at + 1);
  while (!rest.empty()) {
    size_t end = absl::string_view::npos;
    for (size_t i = 0; i < rest.size(); ++i) {
      if (rest[i] == '/' && StartsWithListenerOption(rest.substr(i + 1))) {
        end = i;
        break;
      }
    }
    absl::string_view opt = rest.substr(0, end);
    rest = end == absl::string_view::npos ? absl::string_view() : rest.substr(end + 1);
    if (opt == "implicit-tls") {
      spec.implicit_tls = true;
    } else if (opt == "no-starttls") {
      spec.no_starttls = true;
    } else if (opt == "requiretls") {
      spec.requiretls = true;
    } else if (absl::ConsumePrefix(&opt, "cert=") && !opt.empty()) {
      spec.cert_file = std::string(opt);
    } else if (absl::ConsumePrefix(&opt, "key=") && !opt.empty()) {
      spec.key_file = std::string(opt);
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("--listen '", text, "': bad listener option '", opt, "'"));
    }
  }
  if (spec.cert_file.empty() != spec.key_file.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--listen '", text, "': cert= and key= must be given together"));
  }
  return spec;
}

template <typename T>
absl::Status ParseNumber(absl::string_view flag, absl::string_view value, T min, T max, T* out) {
  uint64_t v = 0;
  if (!absl::SimpleAtoi(value, &v) || v < static_cast<uint64_t>(min) ||
      v > static_cast<uint64_t>(max)) {
    return absl::InvalidArgumentError(absl::StrCat(flag, " '", value, "': want an integer in [",
                                                   min, ", ", max, "]"));
  }
  *out = static_cast<T>(v);
  return absl::OkStatus();
}

bool IsValueFlag(absl::string_view flag) {
  static constexpr absl::string_view kFlags[] = {
      "--listen", "--cert", "--key", "--cert-names", "--write-cert", "--out-dir", "--threads",
      "--tempfail-rcpt", "--reject-rcpt", "--tempfail-data-every", "--max-rcpts",
      "--reject-data-from", "--refuse-data-from", "--shutdown-rcpt",
      "--reply-delay-ms", "--stats-file", "--ready-file", "--banner"};
  for (absl::string_view f : kFlags) {
    if (f == flag) return true;
  }
  return false;
}

}  // namespace

std::string FormatHostPort(const std::string& host, uint16_t port) {
  if (host.find(':') != std::string::npos) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

const char* SinkUsage() {
  return R"(Usage: mxburst-sink [options]
An io_uring SMTP server: the test and bench peer of mxburst.

Listeners:
  --listen ADDR:PORT[/opt[/opt]]   repeatable or comma-separated (default 127.0.0.1:2525).
        ADDR is numeric ("127.0.0.1", "[::1]"); PORT 0 picks a free port. Options:
        implicit-tls   TLS from the first byte, then 220 inside TLS (port 465/26 style)
        no-starttls    do not offer STARTTLS
        requiretls     offer REQUIRETLS (RFC 8689) after STARTTLS; the .env file records the
                       MAIL parameters ("mail-params: REQUIRETLS")
        cert=FILE      per-listener certificate chain (PEM), with key=FILE
        key=FILE       per-listener private key (PEM)
TLS:
  --cert FILE --key FILE   global certificate and key (PEM)
  --cert-names a,b         SANs of the generated self-signed ECDSA certificate when --cert is
                           absent (default "localhost"; the first is also the CN)
  --write-cert FILE        write the certificate PEM (to use as a CA in tests)
Delivery:
  --out-dir DIR            store DIR/<seq>.eml (un-dot-stuffed, CRLF) and DIR/<seq>.env; the
                           .env is renamed into place last, after the .eml
  --tempfail-rcpt SUBSTR   RCPT whose address contains SUBSTR -> 451 4.7.1
  --reject-rcpt SUBSTR     RCPT whose address contains SUBSTR -> 550 5.1.1
  --tempfail-data-every N  every Nth final DATA reply -> 451 4.3.0
  --max-rcpts N            more than N recipients per transaction -> 452 4.5.3
  --reject-data-from SUBSTR   MAIL FROM containing SUBSTR: final reply after the data
                           -> 552 5.3.4 (nothing stored)
  --refuse-data-from SUBSTR   MAIL FROM containing SUBSTR: the DATA command -> 554 5.7.1
  --shutdown-rcpt SUBSTR   RCPT whose address contains SUBSTR -> 421 4.3.2, then close
  --reply-delay-ms N       delay every SMTP reply by N ms (slow server)
  --banner TEXT            append TEXT to the 220 greeting, e.g. "strict-tls=*.example.com;
                           max-age=86400" (the banner pin, tls/banner_pin.h)
  --chunking               offer CHUNKING (RFC 3030) and take BDAT; a message that came by BDAT
                           has "transfer: bdat" in its .env
  --chunking-broken        offer CHUNKING but answer BDAT "502 5.5.2 command not recognized" and
                           read the chunk as commands (a server that lies about CHUNKING)
Process:
  --threads N              worker threads, one io_uring each (default 1)
  --stats-file F           write the stats JSON here on exit
  --ready-file F           create F (one line per listener) once all listeners are bound
  --quiet                  no per-event diagnostics on stderr
  --help                   this text
On SIGINT/SIGTERM the sink stops and prints one JSON line of counters to stdout.
)";
}

absl::StatusOr<SinkOptions> ParseSinkOptions(int argc, char** argv) {
  SinkOptions opts;
  bool listeners_given = false;
  bool names_given = false;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      opts.help = true;
      continue;
    }
    if (arg == "--quiet") {
      opts.quiet = true;
      continue;
    }
    if (arg == "--chunking" || arg == "--chunking-broken") {
      opts.chunking = true;
      opts.chunking_broken = arg == "--chunking-broken";
      continue;
    }
    if (!absl::StartsWith(arg, "--")) {
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", arg, "'"));
    }
    std::string flag;
    std::string value;
    size_t eq = arg.find('=');
    flag = std::string(arg.substr(0, eq));
    if (!IsValueFlag(flag)) {
      return absl::InvalidArgumentError(absl::StrCat("unknown option '", flag, "' (see --help)"));
    }
    if (eq != absl::string_view::npos) {
      value = std::string(arg.substr(eq + 1));
    } else {
      flag = std::string(arg);
      if (i + 1 >= argc) return absl::InvalidArgumentError(absl::StrCat(flag, " needs a value"));
      value = argv[++i];
    }
    absl::Status st;
    if (flag == "--listen") {
      for (absl::string_view item : absl::StrSplit(value, ',', absl::SkipEmpty())) {
        auto spec = ParseListener(item);
        if (!spec.ok()) return spec.status();
        opts.listeners.push_back(*std::move(spec));
      }
      listeners_given = true;
    } else if (flag == "--cert") {
      opts.cert_file = value;
    } else if (flag == "--key") {
      opts.key_file = value;
    } else if (flag == "--cert-names") {
      opts.cert_names = absl::StrSplit(value, ',', absl::SkipEmpty());
      names_given = true;
    } else if (flag == "--write-cert") {
      opts.write_cert_file = value;
    } else if (flag == "--out-dir") {
      opts.out_dir = value;
    } else if (flag == "--threads") {
      st = ParseNumber<int>(flag, value, 1, 256, &opts.threads);
    } else if (flag == "--tempfail-rcpt") {
      opts.tempfail_rcpt = value;
    } else if (flag == "--reject-rcpt") {
      opts.reject_rcpt = value;
    } else if (flag == "--tempfail-data-every") {
      st = ParseNumber<uint64_t>(flag, value, 0, UINT64_MAX, &opts.tempfail_data_every);
    } else if (flag == "--reject-data-from") {
      opts.reject_data_from = value;
    } else if (flag == "--refuse-data-from") {
      opts.refuse_data_from = value;
    } else if (flag == "--shutdown-rcpt") {
      opts.shutdown_rcpt = value;
    } else if (flag == "--max-rcpts") {
      st = ParseNumber<uint32_t>(flag, value, 0, 1000000, &opts.max_rcpts);
    } else if (flag == "--reply-delay-ms") {
      st = ParseNumber<uint32_t>(flag, value, 0, 3600 * 1000, &opts.reply_delay_ms);
    } else if (flag == "--banner") {
      if (value.find_first_of("\r\n") != std::string::npos) {
        return absl::InvalidArgumentError("--banner: one line, no CR or LF");
      }
      opts.banner = value;
    } else if (flag == "--stats-file") {
      opts.stats_file = value;
    } else if (flag == "--ready-file") {
      opts.ready_file = value;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown option '", flag, "' (see --help)"));
    }
    if (!st.ok()) return st;
    if (value.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(flag, " needs a non-empty value"));
    }
  }
  if (opts.help) return opts;
  if (opts.cert_file.empty() != opts.key_file.empty()) {
    return absl::InvalidArgumentError("--cert and --key must be given together");
  }
  if (names_given && opts.cert_names.empty()) {
    return absl::InvalidArgumentError("--cert-names needs at least one name");
  }
  if (!listeners_given) {
    ListenerSpec spec;
    spec.host = "127.0.0.1";
    spec.port = 2525;
    opts.listeners.push_back(spec);
  }
  if (opts.listeners.empty()) return absl::InvalidArgumentError("--listen: no listener given");
  return opts;
}

}  // namespace mxb::sink
