// Command line of mxburst-sink (the SMTP test and bench peer of the engine).
//
// ParseSinkOptions() is pure (no files are opened, nothing is bound): it turns argv into a
// SinkOptions or an error whose message is the one line main prints before exiting with 2.
// Called once, by main, before any thread starts.
//
//   auto opts = mxb::sink::ParseSinkOptions(argc, argv);
//   if (!opts.ok()) { fprintf(stderr, "mxburst-sink: %s\n", ...); return 2; }
//
// Listener syntax: ADDR:PORT[/opt[/opt]...], repeatable and comma-separated, where ADDR is an
// IPv4 literal, "[v6]" or "localhost", and opt is implicit-tls | no-starttls | cert=FILE |
// key=FILE. A cert=/key= path may contain '/', it ends at the next "/<known option>".
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace mxb::sink {

struct ListenerSpec {
  std::string host;  // numeric address without brackets ("127.0.0.1", "::1")
  uint16_t port = 0;  // 0 = kernel picks; all threads then share the port the first bind got
  bool implicit_tls = false;  // TLS from the first byte (SMTPS, RFC 8314 §3.3)
  bool no_starttls = false;   // do not advertise or accept STARTTLS
  bool requiretls = false;    // advertise REQUIRETLS (RFC 8689 §3) in EHLO replies inside TLS
  std::string cert_file;      // empty = the global certificate
  std::string key_file;
};

struct SinkOptions {
  std::vector<ListenerSpec> listeners;  // default 127.0.0.1:2525
  std::string cert_file;                // PEM; empty = generate a self-signed ECDSA cert
  std::string key_file;
  std::vector<std::string> cert_names = {"localhost"};  // SANs of the generated cert; [0] is CN
  std::string write_cert_file;  // write the (generated or given) certificate PEM here
  std::string out_dir;          // empty = count messages, store nothing
  int threads = 1;
  std::string tempfail_rcpt;    // RCPT containing this -> 451 4.7.1
  std::string reject_rcpt;      // RCPT containing this -> 550 5.1.1
  uint64_t tempfail_data_every = 0;  // every Nth final DATA reply -> 451 (0 = never)
  uint32_t max_rcpts = 0;            // > N recipients per transaction -> 452 4.5.3 (0 = no limit)
  std::string reject_data_from;      // MAIL FROM containing this -> 552 5.3.4 after the data
  std::string refuse_data_from;      // MAIL FROM containing this -> 554 5.7.1 to DATA
  std::string shutdown_rcpt;         // RCPT containing this -> 421 4.3.2 and close
  uint32_t reply_delay_ms = 0;       // delay every SMTP reply by this much
  std::string banner;                // text after "220 <host> ESMTP mxburst-sink" (e.g. a
                                     // strict-tls= pin, tls/banner_pin.h)
  std::string stats_file;
  std::string ready_file;
  bool chunking = false;         // advertise CHUNKING, take BDAT (RFC 3030)
  bool chunking_broken = false;  // advertise CHUNKING, answer BDAT "502 5.5.2" (a broken server)
  bool quiet = false;
  bool help = false;
};

[[nodiscard]] absl::StatusOr<SinkOptions> ParseSinkOptions(int argc, char** argv);

// Text printed by --help.
const char* SinkUsage();

// "127.0.0.1:2525" or "[::1]:2525".
std::string FormatHostPort(const std::string& host, uint16_t port);

}  // namespace mxb::sink
