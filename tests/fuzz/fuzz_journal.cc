// libFuzzer target: the journal reader (queue/journal.h, Journal::Recover), which reads what a
// crash left on disk: torn tails, bad checksums, garbage.
//
// The input is one segment file (written to a private directory under /dev/shm, or TMPDIR);
// Recover must return a result or an error, never crash, and must not report more final
// recipients than the segment has records.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "queue/journal.h"

namespace {

std::string Dir() {
  static std::string dir = [] {
    const char* base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    std::string t = std::string(base) + "/mxb-fuzz-journal-XXXXXX";
    if (mkdtemp(t.data()) == nullptr) std::abort();
    return t;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = Dir() + "/" + mxb::JournalSegmentName(1);
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  absl::StatusOr<mxb::RecoveredJournal> r = mxb::Journal::Recover(Dir());
  if (r.ok()) {
    size_t finals = 0;
    for (const auto& [name, set] : r->messages) finals += set.recipients.size();
    // Each record costs at least 8 bytes of crc/length and a 12-byte body.
    if (finals > r->records || r->records > size / 20 + 1) std::abort();
  }
  return 0;
}
