// Spool: the on-disk queue directory (DESIGN.md "Spool directory API").
//
//   spool/tmp/        producers write here, fsync, then rename into incoming/
//   spool/incoming/   complete files waiting to be claimed
//   spool/active/     claimed by this engine (rename = claim)
//   spool/deferred/   messages with recipients waiting for a retry (only the pending recipients)
//   spool/bad/        malformed files, each with a NAME.why file saying why
//   spool/bounces/    delivery status notifications (RFC 3464) for the senders (queue/dsn.h)
//   spool/journal/    the outcome journal's segments (queue/journal.h; not created here)
//
// Owned by the scanner (main) thread; none of its methods are called from workers. Claim,
// ClaimDeferred, ReadActive and ReadRetryMark keep no state (one rename, open, read, close,
// getxattr each): the scanner's claim threads (engine/scanner.h) call them concurrently.
// Names are single path components: empty names, dotfiles (in-progress by convention, never
// listed) and names with '/' are rejected with InvalidArgument. Errors carry the full path and
// the errno text ("/spool/incoming/x.eml: open: No such file or directory").
//
//   auto spool = mxb::Spool::Open("/var/spool/mxburst");   // creates missing subdirectories
//   for (auto& name : spool->ListIncoming(1000)) {
//     auto claimed = spool->Claim(name);                      // incoming/name -> active/name
//     ...
//     spool->Complete(name);                                  // unlink active/name
//   }
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mxb {

// The retry state of a message deferred without a rewrite (Spool::DeferUnchanged): kept in the
// file's extended attribute "user.mxburst.retry" ("ATTEMPTS FIRST NEXT", decimal), because only
// the schedule changed and rewriting plus fsyncing the whole file per deferral made a dead
// destination's backlog fsync-bound (issue 10). Same fields as the envelope's x-attempts,
// x-first-attempt, x-next-attempt; a later rewrite (new inode) carries them in the envelope.
struct RetryMark {
  uint32_t attempts = 0;      // delivery passes so far
  int64_t first_attempt = 0;  // Unix seconds
  int64_t next_attempt = 0;   // Unix seconds
};

// A claimed or re-read spool file as the scanner reads it (Spool::Claim etc. with a scratch
// buffer): the bytes, a view into the caller's buffer valid until it is used again, and the
// retry mark read on the same open file.
struct SpoolRead {
  absl::string_view contents;
  std::optional<RetryMark> mark;
};

class Spool {
 public:
  // Opens (creating tmp/incoming/active/deferred/bad/bounces if missing) the spool at `root`.
  [[nodiscard]] static absl::StatusOr<Spool> Open(const std::string& root);

  const std::string& root() const { return root_; }

  // Up to `max` file names (not paths) in incoming/, oldest-first is not promised. Skips dotfiles.
  std::vector<std::string> ListIncoming(size_t max) const;
  // The same, without the names `skip` is true for (they do not count against `max`).
  std::vector<std::string> ListIncoming(size_t max,
                                        absl::FunctionRef<bool(absl::string_view)> skip) const;
  // Names in active/ (left over from a previous run: re-queued at start).
  std::vector<std::string> ListActive() const;
  // Names in deferred/.
  std::vector<std::string> ListDeferred() const;

  // Renames incoming/name -> active/name and returns the whole file content.
  // NotFound if another process claimed it first; AlreadyExists if active/name exists (the
  // incoming file is then left alone rather than overwriting a claimed message).
  [[nodiscard]] absl::StatusOr<std::string> Claim(const std::string& name);
  // Reads active/name (recovery of files left in active/).
  [[nodiscard]] absl::StatusOr<std::string> ReadActive(const std::string& name) const;
  // Reads deferred/name, at most `max_bytes` of it (the retry loader needs only the envelope).
  [[nodiscard]] absl::StatusOr<std::string> ReadDeferred(const std::string& name,
                                                         size_t max_bytes = SIZE_MAX) const;
  // The first `max_bytes` of `subdir`/name ("incoming" or "deferred") into `scratch`, with its
  // retry mark read on the same descriptor: the scanner's look at the envelope of a file it may
  // postpone (engine/dead_destinations.h) — one open, one read, no allocation per file.
  [[nodiscard]] absl::StatusOr<SpoolRead> ReadHead(absl::string_view subdir,
                                                   const std::string& name, size_t max_bytes,
                                                   std::string* scratch) const;
  // The same relative to `dir_fd`, the caller's descriptor of `subdir` (engine/envelope_looker.h:
  // thousands of looks in one directory; no path walk from the root per file).
  [[nodiscard]] absl::StatusOr<SpoolRead> ReadHeadAt(int dir_fd, absl::string_view subdir,
                                                     const std::string& name, size_t max_bytes,
                                                     std::string* scratch) const;
  // Moves deferred/name back into incoming/ (retry; mxburstctl flush).
  [[nodiscard]] absl::Status Requeue(const std::string& name);
  // Claims a due retry straight from deferred/ (deferred/name -> active/name) and returns its
  // content, so retries never queue in incoming/ in front of fresh mail. NotFound if it is gone
  // (flushed to incoming/ by hand).
  [[nodiscard]] absl::StatusOr<std::string> ClaimDeferred(const std::string& name);

  // Claim, ClaimDeferred and ReadActive for the scanner's claims: the file is read into
  // `scratch` (file_io::ReadFileInto; reused from message to message) and its retry mark read on
  // the open descriptor — no allocation and one path lookup less per message.
  [[nodiscard]] absl::StatusOr<SpoolRead> Claim(const std::string& name, std::string* scratch);
  [[nodiscard]] absl::StatusOr<SpoolRead> ClaimDeferred(const std::string& name,
                                                        std::string* scratch);
  [[nodiscard]] absl::StatusOr<SpoolRead> ReadActive(const std::string& name,
                                                     std::string* scratch) const;

  // For a caller that renames through its own io_uring (queue/spool_ring.h, engine/scanner.h):
  // the paths of Claim's rename (from_deferred: ClaimDeferred's), after the name check, and the
  // status they return for a rename that failed with `err`.
  [[nodiscard]] absl::Status ClaimPaths(const std::string& name, bool from_deferred,
                                        std::string* from, std::string* to) const;
  [[nodiscard]] static absl::Status ClaimError(int err, bool from_deferred,
                                               const std::string& from, const std::string& to);
  // The path Complete unlinks (the name checked).
  [[nodiscard]] absl::StatusOr<std::string> ActivePath(const std::string& name) const;

  // Every recipient is final and logged: unlink active/name.
  [[nodiscard]] absl::Status Complete(const std::string& name);
  // Some recipients are still pending: writes `contents` (envelope with only the pending
  // recipients + body) to tmp/, fsyncs, renames to deferred/name, then unlinks active/name.
  [[nodiscard]] absl::Status Defer(const std::string& name, absl::string_view contents);
  // Nothing but the schedule changed (no recipient became final): records `mark` on
  // active/name and renames it to deferred/name. No data is written and nothing is fsynced: a
  // crash that undoes the rename leaves the message in active/ (delivered again at start-up,
  // at-least-once); one that undoes the attribute makes the retry come earlier. Unimplemented
  // when the file system has no user extended attributes (the caller then uses Defer).
  // `from` "incoming" defers a message never claimed (its destination is dead: one rename,
  // incoming/ to deferred/); "deferred" only moves the mark of a file that stays there.
  [[nodiscard]] absl::Status DeferUnchanged(const std::string& name, const RetryMark& mark,
                                            absl::string_view from = "active");
  // The mark of `subdir`/name ("active" or "deferred"), if it has one.
  std::optional<RetryMark> ReadRetryMark(absl::string_view subdir, const std::string& name) const;
  // Recovery: replaces active/name with `contents` (tmp/, fsync, rename over, fsync active/), so
  // a crash leaves either the old or the new file, never a partial one.
  [[nodiscard]] absl::Status RewriteActive(const std::string& name, absl::string_view contents);
  // fsyncs incoming/, active/ and deferred/: makes earlier Claim/Complete/Requeue renames and
  // unlinks durable (they are not synced one by one). The journal runs it before deleting a
  // segment whose records justified those operations.
  [[nodiscard]] absl::Status SyncDirs() const;
  // Malformed: active/name (or incoming/name if not yet claimed) -> bad/name, and writes
  // bad/name.why containing `reason` plus a newline. Works on any file type (a symbolic link is
  // moved, not followed). If it cannot be moved it is removed and DataLoss says so.
  // Claim/ReadActive/ReadDeferred return FailedPrecondition for anything that is not a regular
  // file (symbolic links are never followed): the caller quarantines it with that message.
  [[nodiscard]] absl::Status Quarantine(const std::string& name, absl::string_view reason);

  // Counts for status output.
  size_t CountIncoming() const;
  size_t CountActive() const;
  size_t CountDeferred() const;
  size_t CountBad() const;

 private:
  explicit Spool(std::string root) : root_(std::move(root)) {}
  std::string root_;
};

// Writes `contents` into <spool>/tmp/<name>, fsyncs it, and renames it into <spool>/incoming/<name>
// (the Maildir rule). Used by mxburst-inject and by tests. With fsync_file, the incoming/
// directory is fsync'ed after the rename too (POSIX: the rename is durable only then). Refuses to
// overwrite an existing tmp/ or incoming/ file of the same name (AlreadyExists). The spool
// subdirectories must exist (Spool::Open creates them). Any thread.
[[nodiscard]] absl::Status InjectFile(const std::string& spool_root, const std::string& name,
                                      absl::string_view contents, bool fsync_file = true);

// InjectFile for batches (the AMQP input, input/amqp_input.h): the file is fsync'ed before the
// rename, incoming/ is not; the caller runs SyncIncoming() once per batch, and only then may it
// treat the batch as durable (one directory fsync per batch instead of one per file). Any thread.
[[nodiscard]] absl::Status InjectFileBatched(const std::string& spool_root,
                                             const std::string& name, absl::string_view contents);
[[nodiscard]] absl::Status SyncIncoming(const std::string& spool_root);

// Atomically creates or replaces <spool>/<subdir>/<name> with `contents`: writes tmp/.put.<name>,
// fsyncs, renames over the target and fsyncs <subdir>. Used for DSN files (queue/dsn.h). `subdir`
// must exist. Any thread (names must differ between concurrent callers).
[[nodiscard]] absl::Status ReplaceSpoolFile(const std::string& spool_root, absl::string_view subdir,
                                            const std::string& name, absl::string_view contents);

// A unique file name for injection: "<unix-seconds>.<pid>.<counter>.<random>.eml", unique across
// threads (atomic counter) and processes (pid + 48 random bits). Any thread.
std::string NewSpoolFileName();

}  // namespace mxb
