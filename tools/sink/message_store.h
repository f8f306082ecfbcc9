// Where mxburst-sink puts accepted messages, and the process-wide counters that decide their
// numbers and which DATA gets a 451.
//
// One MessageStore is created by main and shared by all worker threads: NextSeq() and
// NextDataTempfails() are atomic, Store() writes only files named after its own seq. Files are
// written under a dot-prefixed temporary name and renamed into place, the .eml first and the .env
// last, so a reader that sees DIR/<seq>.env can read a complete DIR/<seq>.eml.
//
//   uint64_t seq = store.NextSeq();
//   absl::Status st = store.Store(seq, body, "mail-from: a@b\nrcpt-to: c@d\n...");
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace mxb::sink {

class MessageStore {
 public:
  // `out_dir` empty: messages are counted but not stored. `tempfail_data_every` 0: never.
  MessageStore(std::string out_dir, uint64_t tempfail_data_every)
      : out_dir_(std::move(out_dir)), tempfail_data_every_(tempfail_data_every) {}

  bool storing() const { return !out_dir_.empty(); }
  // Queue id of the next accepted message: 1, 2, 3, ... across all threads.
  uint64_t NextSeq() { return seq_.fetch_add(1, std::memory_order_relaxed) + 1; }
  // Counts one final DATA reply; true when it is the Nth (--tempfail-data-every).
  bool NextDataTempfails() {
    if (tempfail_data_every_ == 0) return false;
    uint64_t n = data_replies_.fetch_add(1, std::memory_order_relaxed) + 1;
    return n % tempfail_data_every_ == 0;
  }
  // Writes DIR/<seq>.eml (`body` exactly) then DIR/<seq>.env (`envelope`).
  [[nodiscard]] absl::Status Store(uint64_t seq, absl::string_view body,
                                   absl::string_view envelope) const;

 private:
  [[nodiscard]] absl::Status WriteAtomically(const std::string& name,
                                             absl::string_view bytes) const;

  const std::string out_dir_;
  const uint64_t tempfail_data_every_;
  std::atomic<uint64_t> seq_{0};
  std::atomic<uint64_t> data_replies_{0};
};

// Writes `bytes` to `path` via "<dir>/.<base>.tmp" + rename (used for the stats and ready files).
[[nodiscard]] absl::Status WriteFileAtomically(const std::string& path, absl::string_view bytes);

}  // namespace mxb::sink
