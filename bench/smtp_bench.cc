// Micro costs of the SMTP hot path: parsing a pipelined reply batch and encoding a 20 KB body.
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "engine/smtp_data.h"
#include "engine/smtp_reply.h"

namespace mxb {
namespace {

// What a server answers to MAIL + 10 RCPT + DATA in one pipelined group.
std::string PipelinedBatch() {
  std::string s = "250 2.1.0 Ok\r\n";
  for (int i = 0; i < 10; ++i) s += "250 2.1.5 Ok\r\n";
  s += "354 End data with <CR><LF>.<CR><LF>\r\n";
  return s;
}

void BM_ReplyParserPipelinedBatch(benchmark::State& state) {
  const std::string batch = PipelinedBatch();
  std::vector<SmtpReply> out;
  for (auto _ : state) {
    ReplyParser p;
    out.clear();
    absl::Status s = p.Feed(batch, &out);
    benchmark::DoNotOptimize(s);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * batch.size()));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * 12));
}
BENCHMARK(BM_ReplyParserPipelinedBatch);

// The same batch arriving in 16-octet reads (replies split across Feed calls).
void BM_ReplyParserSplitReads(benchmark::State& state) {
  const std::string batch = PipelinedBatch();
  std::vector<SmtpReply> out;
  for (auto _ : state) {
    ReplyParser p;
    out.clear();
    for (size_t i = 0; i < batch.size(); i += 16) {
      absl::Status s = p.Feed(absl::string_view(batch).substr(i, 16), &out);
      benchmark::DoNotOptimize(s);
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * batch.size()));
}
BENCHMARK(BM_ReplyParserSplitReads);

void BM_ReplyParserEhlo(benchmark::State& state) {
  const std::string ehlo =
      "250-mx.dest.example Hello out.esp.example [192.0.2.1]\r\n250-PIPELINING\r\n"
      "250-SIZE 52428800\r\n250-8BITMIME\r\n250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n"
      "250-SMTPUTF8\r\n250 CHUNKING\r\n";
  std::vector<SmtpReply> out;
  for (auto _ : state) {
    ReplyParser p;
    out.clear();
    absl::Status s = p.Feed(ehlo, &out);
    benchmark::DoNotOptimize(s);
    EhloCapabilities caps = ParseEhlo(out.front());
    benchmark::DoNotOptimize(caps);
  }
}
BENCHMARK(BM_ReplyParserEhlo);

// A 20 KB message: headers, then text lines of ~76 octets, some starting with '.'.
// Arg 0: CRLF line ends (already wire-like), 1: LF only (spool files written on Unix).
// mode 0: CRLF lines, every 40th starting with '.'; 1: the same with LF only; 2: CRLF lines and no
// dot (already in wire form, what mxburst-inject writes: AppendDataWire's copy-only path).
std::string Body20K(int mode) {
  const char* eol = mode == 1 ? "\n" : "\r\n";
  std::string b;
  b += std::string("From: Sender <bounce@esp.example>") + eol;
  b += std::string("To: rcpt@dest.example") + eol;
  b += std::string("Subject: Your weekly newsletter") + eol + eol;
  int line = 0;
  while (b.size() < 20 * 1024) {
    if (line % 40 == 39 && mode != 2) b += ".";
    b += "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tem";
    b += eol;
    ++line;
  }
  return b;
}

void BM_AppendDataWire20K(benchmark::State& state) {
  const std::string body = Body20K(static_cast<int>(state.range(0)));
  std::string wire;
  for (auto _ : state) {
    wire.clear();
    AppendDataWire(body, &wire);
    benchmark::DoNotOptimize(wire.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * body.size()));
}
BENCHMARK(BM_AppendDataWire20K)->Arg(0)->Arg(1)->Arg(2)->ArgName("mode");

// Fresh output string each time (includes the allocation the engine pays per message).
void BM_AppendDataWire20KFresh(benchmark::State& state) {
  const std::string body = Body20K(0);
  for (auto _ : state) {
    std::string wire;
    AppendDataWire(body, &wire);
    benchmark::DoNotOptimize(wire.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * body.size()));
}
BENCHMARK(BM_AppendDataWire20KFresh);

}  // namespace
}  // namespace mxb
