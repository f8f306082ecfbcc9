// Micro costs of queue/: MpscQueue hand-off, envelope parsing, journal group commit.
// Measures only; nothing here asserts a time.
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "queue/envelope.h"
#include "queue/journal.h"
#include "queue/mpsc_queue.h"

namespace mxb {
namespace {

void BM_MpscPushPopSingleThread(benchmark::State& state) {
  MpscQueue<uint64_t> q(4096);
  uint64_t v = 0, out = 0;
  for (auto _ : state) {
    bool pushed = q.TryPush(v++);
    bool popped = q.TryPop(out);
    benchmark::DoNotOptimize(pushed);
    benchmark::DoNotOptimize(popped);
  }
  benchmark::DoNotOptimize(out);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MpscPushPopSingleThread);

// Two producer threads push flat out; the benchmark thread is the single consumer and counts
// items it popped.
void BM_MpscTwoProducers(benchmark::State& state) {
  MpscQueue<uint64_t> q(1 << 16);
  std::atomic<bool> stop{false};
  std::vector<std::thread> producers;
  for (int p = 0; p < 2; ++p) {
    producers.emplace_back([&q, &stop] {
      uint64_t v = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        if (!q.TryPush(v)) {
          std::this_thread::yield();
          continue;
        }
        ++v;
      }
    });
  }
  uint64_t popped = 0, out = 0;
  for (auto _ : state) {
    while (!q.TryPop(out)) {
    }
    ++popped;
  }
  stop.store(true);
  for (auto& t : producers) t.join();
  while (q.TryPop(out)) {
  }
  state.SetItemsProcessed(static_cast<int64_t>(popped));
}
BENCHMARK(BM_MpscTwoProducers)->UseRealTime();

void BM_ParseEnvelopeThreeRecipients(benchmark::State& state) {
  const std::string file =
      "x-sender: <bounce+1234@esp.example>\r\n"
      "x-receiver: <alice@gmail.example>\r\n"
      "x-receiver: <bob@outlook.example>\r\n"
      "x-receiver: <carol@yahoo.example>\r\n"
      "x-envid: campaign-42-000017\r\n"
      "x-job: spring-sale\r\n"
      "From: Shop <news@esp.example>\r\n"
      "To: undisclosed-recipients:;\r\n"
      "Subject: Spring sale\r\n"
      "Message-ID: <1234@esp.example>\r\n"
      "\r\n" +
      std::string(4000, 'b') + "\r\n";
  for (auto _ : state) {
    absl::StatusOr<Envelope> env = ParseEnvelope(file);
    benchmark::DoNotOptimize(env);
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(file.size()));
}
BENCHMARK(BM_ParseEnvelopeThreeRecipients);

// One group commit of 256 outcome records: Append x256, Commit (one write + one fdatasync).
// The temp dir is under $TMPDIR (default /tmp); on tmpfs fdatasync is nearly free, so run with
// TMPDIR on a real disk to see the fsync cost.
void BM_JournalCommit256(benchmark::State& state) {
  const char* tmp = std::getenv("TMPDIR");
  std::string dir = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/mxb-journal-bench-XXXXXX");
  if (mkdtemp(dir.data()) == nullptr) {
    state.SkipWithError("mkdtemp failed");
    return;
  }
  absl::StatusOr<std::unique_ptr<Journal>> j = Journal::Open(dir + "/journal");
  if (!j.ok()) {
    state.SkipWithError(std::string(j.status().message()).c_str());
    return;
  }
  uint64_t n = 0;
  for (auto _ : state) {
    for (int i = 0; i < 256; ++i, ++n) {
      (*j)->AppendFinal({absl::StrCat("1700000000.4242.", n / 3, ".00c0ffee.eml"), 0,
                         static_cast<uint32_t>(n % 3), FinalClass::kDelivered});
    }
    if (!(*j)->Commit().ok()) {
      state.SkipWithError("commit failed");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * 256);
  j->reset();
  const std::string cmd = absl::StrCat("rm -rf '", dir, "'");
  if (std::system(cmd.c_str()) != 0) state.SkipWithError("cleanup failed");
}
BENCHMARK(BM_JournalCommit256)->UseRealTime();

}  // namespace
}  // namespace mxb
