// Journal: the append-only outcome log that makes "every recipient final before the file goes"
// durable with one fdatasync per batch (group commit) instead of one fsync per message
// (DESIGN.md "Spool directory API": at-least-once across a crash at any instant).
//
// What it records: for a spool file NAME at generation G (the envelope's x-attempts, see
// queue/envelope.h), recipient index I reached a final class (delivered, bounced, expired).
// Deferrals are not journaled: they are written back into the spool file itself (Spool::Defer).
// A "retired" record says that NAME at G no longer has a file in active/ (completed or deferred),
// so its records are not needed any more.
//
// On disk: <dir>/NNNNNNNNNNNN.log segments (12 decimal digits, increasing). A segment starts with
// the 8-byte header "MXBJNL1\n"; then records, each
//
//   u32 crc32c  (Castagnoli, over every byte after this field)
//   u32 length  (of the bytes after this field: 12 + name length)
//   u8  type    (1 = final, 2 = retired)
//   u8  class   (1 delivered, 2 bounced, 3 expired; 0 for retired)
//   u16 name length
//   u32 generation
//   u32 recipient index (0 for retired)
//   name bytes
//
// little-endian. Type 3 ("log tail") carries the accounting-log bytes of its batch instead of a
// name: class, name length, generation and recipient are 0, then u64 log offset (the log's size
// before these bytes), u64 log inode, and the bytes. It is the first record of its batch and the
// log is written only after the journal commit, so the journal is the commit point of both: a
// crash between the two leaves a log shorter than offset + bytes, and the start-up recovery
// appends the missing part (AccountingLog::Repair), so every outcome the journal knows has its
// log record exactly once (issue 10). Only the newest tail can be missing: the log is made
// durable before the next batch is written to the journal.
//
// Type 4 ("aux") carries another component's bytes that must be durable with the batch (the
// TLS-RPT counter deltas, engine/tlsrpt_reporter.h): class = the component's kind, name length,
// generation and recipient 0, then the bytes. Aux records pin no segment: their owner keeps a
// snapshot of its own, written by before_delete, so a deleted segment's aux records are in it.
//
// A record whose length runs past the end of the segment is a torn tail (a crash
// mid-write): it and anything after it are ignored. A record with a bad checksum is skipped and
// counted (ignoring a final record only means that recipient is delivered again: at-least-once).
//
// Group commit: Append*() only buffer. Commit() writes the buffer with one write() and makes it
// durable with one fdatasync(); the engine calls it once per batch *before* it touches any spool
// file for that batch. A failed Commit (disk full, I/O error) keeps the batch buffered, and
// calling Commit again is the retry: a failed write is cut off the segment again, and after a
// failed fdatasync (when the kernel may already have dropped the dirty pages, so a second
// fdatasync could report success for data that never reached the disk) the batch is written
// into a new segment instead. Nothing of a failed batch counts as committed.
//
// Segments: a segment is sealed when it grows past JournalOptions::segment_bytes (rotation
// happens between batches, so a batch never spans two segments). Sealed segments are deleted
// oldest first, as long as every NAME each one mentions has been retired (a prefix, as in any
// write-ahead log: a retire record in a later segment must outlive the finals it cancels in an
// earlier one). A message in flight pins its segment and the later ones; in-flight time is
// bounded by the SMTP timeouts, so the pinned tail stays short. Before deleting, JournalOptions::before_delete
// runs (the engine passes Spool::SyncDirs, so the unlink/rename that finished each message is
// durable before the records that justify it disappear). Segments present at Open() (a previous
// run's) are kept until DropRecoveredSegments(), which the startup recovery (queue/recovery.h)
// calls once the spool reflects them.
//
// Thread: one owner (the engine's scanner thread). Not thread-safe.
//
//   absl::StatusOr<RecoveredJournal> old = Journal::Recover(dir);   // read-only
//   auto journal = Journal::Open(dir, {.before_delete = [&] { return spool.SyncDirs(); }});
//   RecoverSpool(spool, *old, journal->get());                        // queue/recovery.h
//   ... per batch:
//   journal->AppendFinal({name, env.attempts, idx, FinalClass::kDelivered});
//   journal->Commit();                 // one write + one fdatasync
//   spool.Complete(name);  journal->AppendRetired(name, env.attempts);   // durable next batch
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mxb {

// A recipient's final outcome class as journaled. Deferred is not final and never journaled.
enum class FinalClass : uint8_t {
  kDelivered = 1,
  kBounced = 2,   // 5xx (RFC 5321 §4.2.1) or policy: a DSN is due unless the sender is null
  kExpired = 3,   // gave up after the maximum queue age (RFC 5321 §4.5.4.1): DSN due too
};
absl::string_view ToString(FinalClass c);

struct JournalRecord {
  std::string name;        // spool file name (single path component)
  uint32_t generation = 0; // the envelope's x-attempts when the outcome was reached
  uint32_t recipient = 0;  // index into that generation's x-receiver list
  FinalClass final_class = FinalClass::kDelivered;
};

// The final recipients of one spool file at one generation.
struct FinalSet {
  uint32_t generation = 0;
  absl::flat_hash_map<uint32_t, FinalClass> recipients;  // index -> class
};

// The accounting-log bytes of one committed batch (see the type-3 record above).
struct LogTail {
  uint64_t offset = 0;  // log size before `bytes` were appended
  uint64_t inode = 0;   // the log file's inode then (a rotated log is not repaired)
  std::string bytes;
};

struct RecoveredJournal {
  // Per spool file name, the final recipients of its newest journaled generation that has not
  // been retired. Names whose newest generation was retired are absent.
  absl::flat_hash_map<std::string, FinalSet> messages;
  size_t segments = 0;
  size_t records = 0;            // valid records read
  size_t corrupted_records = 0;  // skipped: checksum mismatch or malformed body
  size_t torn_bytes = 0;         // ignored bytes at the end of segments (crash mid-write)
  uint64_t last_segment = 0;     // highest segment number found (0 = none)
  std::optional<LogTail> log_tail;  // the newest batch's log bytes, if it carried any
  struct Aux {
    uint8_t kind = 0;
    std::string bytes;
  };
  std::vector<Aux> aux;  // type-4 records, in journal order
};

struct JournalOptions {
  // A segment is sealed (and a new one started) once it reaches this size.
  size_t segment_bytes = 64u << 20;
  // Runs before sealed segments are deleted; an error keeps them (retried after a later commit).
  std::function<absl::Status()> before_delete;
};

class Journal {
 public:
  // Reads every segment in `dir` (which may be missing: nothing to recover). Read-only.
  [[nodiscard]] static absl::StatusOr<RecoveredJournal> Recover(const std::string& dir);

  // Creates `dir` if missing and starts a new segment numbered after the existing ones (which
  // stay, untracked, until DropRecoveredSegments).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Journal>> Open(const std::string& dir,
                                                                    JournalOptions options = {});
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // Buffers a final outcome (durable only after the next successful Commit).
  void AppendFinal(const JournalRecord& record);
  // Buffers "NAME at generation no longer in active/". Call after the spool operation that
  // finished the message (Complete, Defer, Quarantine) succeeded.
  void AppendRetired(absl::string_view name, uint32_t generation);
  // Buffers opaque bytes of component `kind` (type 4), durable with the next Commit.
  void AppendAux(uint8_t kind, absl::string_view bytes);
  // The accounting-log bytes this batch will append at `offset` of the log with `inode`; written
  // as the batch's first record by the next Commit (so a batch torn by a crash never keeps a
  // final record without its log bytes). Replaces an earlier call in the same batch.
  void SetLogTail(uint64_t offset, uint64_t inode, absl::string_view bytes);
  // At a clean stop, after the log's last bytes are durable: a tail with no bytes at `offset`,
  // the log's end, written by the next Commit. The next start then has nothing to repair, also
  // when the log was emptied in between (the last batch's tail, at offset 0 of a log that was
  // empty before it, would otherwise look like a log the crash left short: it was appended
  // again).
  void MarkLogEnd(uint64_t offset, uint64_t inode);

  // One write() + one fdatasync() for everything buffered; then rotation and deletion of fully
  // retired sealed segments. No-op when nothing is buffered. Errors name the segment path and
  // errno; the batch stays buffered (more may be appended) and the next Commit retries it.
  [[nodiscard]] absl::Status Commit();

  // Deletes the segments that existed before Open() (after running before_delete) and fsyncs the
  // directory. Call only when no spool file depends on them any more (queue/recovery.h).
  [[nodiscard]] absl::Status DropRecoveredSegments();

  const std::string& dir() const { return dir_; }
  uint64_t current_segment() const { return current_; }
  size_t buffered_bytes() const { return buffer_.size() + tail_.size(); }
  // Sealed + current segments this instance created and still holds.
  size_t live_segments() const { return segment_live_.size(); }

 private:
  Journal(std::string dir, JournalOptions options);
  [[nodiscard]] absl::Status StartSegment(uint64_t number);
  [[nodiscard]] absl::Status DeleteDeadSegments();
  void AppendRecord(uint8_t type, FinalClass c, absl::string_view name, uint32_t generation,
                    uint32_t recipient);
  void PutTail(uint64_t offset, uint64_t inode, absl::string_view bytes);

  std::string dir_;
  JournalOptions options_;
  int fd_ = -1;
  uint64_t current_ = 0;          // number of the segment being appended to
  uint64_t first_own_ = 0;        // first segment this instance created
  size_t current_size_ = 0;       // committed bytes in the current segment
  std::string buffer_;            // records appended since the last Commit
  std::string tail_;              // the batch's type-3 record (SetLogTail), written first
  bool abandon_ = false;          // a failed commit left the segment in doubt: start a new one
  // Segment number -> number of names mentioned in it and not yet retired.
  absl::flat_hash_map<uint64_t, size_t> segment_live_;
  // Name -> segments mentioning it (a name's records usually sit in one or two segments).
  absl::flat_hash_map<std::string, std::vector<uint64_t>> name_segments_;
};

// CRC-32C (Castagnoli, reflected, as in iSCSI/ext4); exposed for tests.
uint32_t Crc32c(absl::string_view data, uint32_t crc = 0);

// Segment file name for number n: "%012u.log".
std::string JournalSegmentName(uint64_t n);

}  // namespace mxb
