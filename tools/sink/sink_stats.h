// Counters of mxburst-sink, one instance per worker thread (plain integers: only the owning
// thread writes them; main sums them after the workers have joined).
//
//   SinkStats total; for (auto& w : workers) total.Add(w->stats());
//   std::string line = total.ToJson();   // printed on SIGINT/SIGTERM, written to --stats-file
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

namespace mxb::sink {

struct SinkStats {
  uint64_t connections = 0;      // accepted TCP connections
  uint64_t tls_connections = 0;  // connections that completed a TLS handshake (STARTTLS or implicit)
  uint64_t messages = 0;         // messages answered "250 queued"
  uint64_t recipients = 0;       // accepted recipients of those messages
  uint64_t bytes = 0;            // un-dot-stuffed message bytes of those messages
  uint64_t tempfailed_rcpts = 0;  // RCPT answered 451 by --tempfail-rcpt
  uint64_t rejected_rcpts = 0;    // RCPT answered 550 by --reject-rcpt
  // Client mistakes: unknown or out-of-sequence commands, syntax errors, over-long lines, bare LF
  // command terminators, plaintext injected after STARTTLS, DATA with bare CR/LF (once per
  // message), failed TLS handshakes.
  uint64_t protocol_errors = 0;
  uint64_t bare_lf_in_data = 0;   // bare CR or bare LF bytes inside DATA (the engine must send 0)
  uint64_t tempfailed_data = 0;   // DATA answered 451 by --tempfail-data-every
  uint64_t bdat_messages = 0;     // of `messages`, those that came by BDAT (RFC 3030)
  uint64_t tls_failures = 0;      // TLS handshakes or records that failed
  uint64_t store_errors = 0;      // --out-dir writes that failed (answered 451)
  uint64_t stale_completions = 0;  // CQEs for a recycled slot: a bug if ever non-zero
  // Connections open now (accepted, close not yet begun) and the most at any instant. Summed
  // over threads, so peak_connections is exact with --threads 1 and an upper bound otherwise.
  uint64_t open_connections = 0;
  uint64_t peak_connections = 0;

  void Add(const SinkStats& o) {
    connections += o.connections;
    tls_connections += o.tls_connections;
    messages += o.messages;
    recipients += o.recipients;
    bytes += o.bytes;
    tempfailed_rcpts += o.tempfailed_rcpts;
    rejected_rcpts += o.rejected_rcpts;
    protocol_errors += o.protocol_errors;
    bare_lf_in_data += o.bare_lf_in_data;
    tempfailed_data += o.tempfailed_data;
    bdat_messages += o.bdat_messages;
    tls_failures += o.tls_failures;
    store_errors += o.store_errors;
    stale_completions += o.stale_completions;
    open_connections += o.open_connections;
    peak_connections += o.peak_connections;
  }

  // Set by main from the SessionGauge (exact across threads), not summed.
  uint64_t peak_tls_sessions = 0;

  // One line of JSON, no trailing newline. The first eight keys are the documented contract;
  // the rest are extra diagnostics.
  std::string ToJson() const;
};

// TLS sessions open at this instant across all workers, and the most ever open at once: the
// proof that N sessions were really held concurrently (scale tests and bench/e2e.py scenario c).
// Shared by the workers (one relaxed atomic add per handshake and per close).
class SessionGauge {
 public:
  void Up() {
    uint64_t now = open_.fetch_add(1, std::memory_order_relaxed) + 1;
    uint64_t peak = peak_.load(std::memory_order_relaxed);
    while (now > peak && !peak_.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
    }
  }
  void Down() { open_.fetch_sub(1, std::memory_order_relaxed); }
  uint64_t open() const { return open_.load(std::memory_order_relaxed); }
  uint64_t peak() const { return peak_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> open_{0};
  std::atomic<uint64_t> peak_{0};
};

}  // namespace mxb::sink
