// FormatSummary (engine/engine_summary.cc): the end-of-run line. A run of a few messages used to
// say "finished in 0.00 s" and a scanner CPU per message that was its start-up cost divided by 5.
#include <string>

#include "absl/strings/match.h"
#include "absl/time/time.h"
#include "engine/engine.h"
#include "gtest/gtest.h"

namespace mxb {
namespace {

TEST(FormatSummary, ATinyRunGetsMillisecondsAndTotalsNotRates) {
  EngineSummary s;
  s.messages = 5;
  s.delivered = 5;
  s.elapsed = absl::Milliseconds(4);
  s.scanner_cpu = absl::Milliseconds(12);
  s.claim_cpu = absl::Microseconds(500);
  s.claim_threads = 1;
  const std::string line = FormatSummary(s);
  EXPECT_TRUE(absl::StrContains(line, "5 messages finished in 0.004 s;")) << line;
  EXPECT_FALSE(absl::StrContains(line, "msgs/s")) << line;
  EXPECT_FALSE(absl::StrContains(line, "us/msg")) << line;
  EXPECT_TRUE(absl::StrContains(line, "scanner CPU 12.5 ms in all (scanner thread 12.0, 1 claim "
                                      "thread(s) 0.5)"))
      << line;
}

TEST(FormatSummary, ARealRunGetsRatesPerMessage) {
  EngineSummary s;
  s.messages = 20000;
  s.delivered = 20000;
  s.elapsed = absl::Milliseconds(2500);
  s.scanner_cpu = absl::Milliseconds(800);
  s.claim_cpu = absl::Milliseconds(200);
  s.claim_threads = 1;
  s.wheel_peak = 12;
  const std::string line = FormatSummary(s);
  EXPECT_TRUE(absl::StrContains(line, "20000 messages finished in 2.500 s (8000 msgs/s);"))
      << line;
  EXPECT_TRUE(absl::StrContains(line, "scanner CPU 50.0 us/msg (scanner thread 40.0, 1 claim "
                                      "thread(s) 10.0)"))
      << line;
  EXPECT_TRUE(absl::StrContains(line, "timer wheel peak 12 entries")) << line;
}

TEST(FormatSummary, NothingFinishedSaysNoRates) {
  EngineSummary s;
  const std::string line = FormatSummary(s);
  EXPECT_TRUE(absl::StrContains(line, "0 messages finished in 0.000 s;")) << line;
  EXPECT_FALSE(absl::StrContains(line, "scanner CPU")) << line;
}

}  // namespace
}  // namespace mxb
