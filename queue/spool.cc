// Spool directory operations with plain POSIX calls (the spool is not on the io_uring path).
//
// Durability rules (DESIGN.md "Spool directory API"):
//  - A file appears in incoming/ or deferred/ only by rename() of a complete, fsync'ed file from
//    tmp/ (the Maildir rule), so a reader never sees a partial file.
//  - POSIX makes a rename durable only once the target directory is fsync'ed; InjectFile and
//    Defer do that before reporting success (Defer before it unlinks active/NAME, so a crash
//    leaves the message in active/ or deferred/, never in neither).
//  - Claim and Requeue renames are not fsync'ed: if a crash undoes one, the message is simply
//    back where it came from (at-least-once).
//  - Renames into incoming/ and active/ use RENAME_NOREPLACE so a name collision is an error,
//    never a silently overwritten message.
#include "queue/file_io.h"
#include "queue/spool.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/random.h>
#include <sys/xattr.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace mxb {
namespace {

constexpr absl::string_view kTmp = "tmp";
constexpr absl::string_view kIncoming = "incoming";
constexpr absl::string_view kActive = "active";
constexpr absl::string_view kDeferred = "deferred";
constexpr absl::string_view kBad = "bad";
constexpr absl::string_view kBounces = "bounces";
constexpr absl::string_view kWhySuffix = ".why";
constexpr const char* kRetryAttr = "user.mxburst.retry";
// NAME_MAX (255) minus room for ".why" in bad/ and the ".defer." prefix in tmp/.
constexpr size_t kMaxNameLength = 240;

using file_io::ErrnoError;

// Names are single path components we created or listed: reject anything that could escape
// the spool directory or that the listing would never return (dotfiles).
absl::Status CheckName(absl::string_view name) {
  if (name.empty()) return absl::InvalidArgumentError("spool file name is empty");
  if (name.size() > kMaxNameLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("spool file name longer than ", kMaxNameLength, " octets: ", name));
  }
  if (name.front() == '.' || absl::StrContains(name, "/") ||
      name.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad spool file name (dotfile, '/' or NUL): ", name));
  }
  return absl::OkStatus();
}

absl::Status MakeDir(const std::string& path) {
  if (mkdir(path.c_str(), 0750) != 0 && errno != EEXIST) {
    return ErrnoError(errno, "mkdir", path);
  }
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return ErrnoError(errno, "stat", path);
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(path, ": exists and is not a directory"));
  }
  return absl::OkStatus();
}

// rename(2) that refuses to replace an existing target where the file system supports it.
int RenameNoReplace(const std::string& from, const std::string& to) {
  if (renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) return 0;
  if (errno != EINVAL && errno != ENOSYS) return -1;
  // File systems without RENAME_NOREPLACE (some network and FUSE file systems): best effort.
  if (access(to.c_str(), F_OK) == 0) {
    errno = EEXIST;
    return -1;
  }
  return rename(from.c_str(), to.c_str());
}

using file_io::FsyncDir;
using file_io::ReadFile;

// Writes `contents` to `path` (created with `open_flags` added to O_WRONLY|O_CREAT), optionally
// fsyncs it. On failure the partial file is removed.
absl::Status WriteFile(const std::string& path, absl::string_view contents, int open_flags,
                       bool do_fsync) {
  // O_NOFOLLOW: every target is a name we chose in a spool directory; a symbolic link planted
  // there (say bad/NAME.why, quarantined from incoming/) must not redirect our write.
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | open_flags, 0640);
  if (fd < 0) return ErrnoError(errno, "create", path);
  const char* p = contents.data();
  size_t left = contents.size();
  absl::Status status;
  while (left > 0) {
    const ssize_t n = write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      status = ErrnoError(errno, "write", path);
      break;
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  if (status.ok() && do_fsync && fsync(fd) != 0) status = ErrnoError(errno, "fsync", path);
  // close() can report a deferred write error (NFS); it is the last chance to see it.
  if (close(fd) != 0 && status.ok()) status = ErrnoError(errno, "close", path);
  if (!status.ok()) unlink(path.c_str());
  return status;
}

enum class ListFilter { kAll, kSkipWhy };

// Visits the names in `dir` that are not dotfiles until `visit` returns false. Every file type
// is listed: a symbolic link, directory or FIFO a producer left in incoming/ must reach Claim,
// which refuses to read it (file_io::ReadFile) so the engine can quarantine it, instead of
// sitting there unnoticed forever. Errors opening the directory are reported as an empty
// listing: the callers are status queries and scans that retry on their next round.
template <typename Visit>
void ForEachName(const std::string& dir, ListFilter filter, Visit visit) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return;
  while (const dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    const absl::string_view name(e->d_name);
    if (filter == ListFilter::kSkipWhy && absl::EndsWith(name, kWhySuffix)) continue;
    if (!visit(name)) break;
  }
  closedir(d);
}

std::vector<std::string> ListNames(const std::string& dir, size_t max) {
  std::vector<std::string> names;
  if (max == 0) return names;
  ForEachName(dir, ListFilter::kAll, [&](absl::string_view name) {
    names.emplace_back(name);
    return names.size() < max;
  });
  return names;
}

size_t CountNames(const std::string& dir, ListFilter filter) {
  size_t n = 0;
  ForEachName(dir, filter, [&](absl::string_view) {
    ++n;
    return true;
  });
  return n;
}

std::string PathIn(absl::string_view root, absl::string_view sub, absl::string_view name) {
  return absl::StrCat(root, "/", sub, "/", name);
}

std::string DirOf(absl::string_view root, absl::string_view sub) {
  return absl::StrCat(root, "/", sub);
}

// splitmix64 (a public-domain mixing function); spreads counter values over 64 bits.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t ProcessSeed() {
  uint64_t seed = 0;
  if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != static_cast<ssize_t>(sizeof(seed))) {
    // No entropy yet (early boot): time and address-space layout still differ per process.
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    seed = Mix(static_cast<uint64_t>(ts.tv_nsec) ^ reinterpret_cast<uintptr_t>(&seed));
  }
  return seed;
}

}  // namespace

absl::StatusOr<Spool> Spool::Open(const std::string& root) {
  if (root.empty()) return absl::InvalidArgumentError("spool root is empty");
  std::string clean = root;
  while (clean.size() > 1 && clean.back() == '/') clean.pop_back();
  if (absl::Status s = MakeDir(clean); !s.ok()) return s;
  for (absl::string_view sub : {kTmp, kIncoming, kActive, kDeferred, kBad, kBounces}) {
    if (absl::Status s = MakeDir(DirOf(clean, sub)); !s.ok()) return s;
  }
  return Spool(std::move(clean));
}

std::vector<std::string> Spool::ListIncoming(size_t max) const {
  return ListNames(DirOf(root_, kIncoming), max);
}

std::vector<std::string> Spool::ListIncoming(
    size_t max, absl::FunctionRef<bool(absl::string_view)> skip) const {
  std::vector<std::string> names;
  if (max == 0) return names;
  ForEachName(DirOf(root_, kIncoming), ListFilter::kAll, [&](absl::string_view name) {
    if (!skip(name)) names.emplace_back(name);
    return names.size() < max;
  });
  return names;
}

std::vector<std::string> Spool::ListActive() const {
  return ListNames(DirOf(root_, kActive), SIZE_MAX);
}

std::vector<std::string> Spool::ListDeferred() const {
  return ListNames(DirOf(root_, kDeferred), SIZE_MAX);
}

namespace {

// incoming/name (deferred/name) -> active/name; the active/ path.
absl::StatusOr<std::string> ClaimRename(const Spool& spool, const std::string& name,
                                        bool from_deferred) {
  std::string from, to;
  if (absl::Status s = spool.ClaimPaths(name, from_deferred, &from, &to); !s.ok()) return s;
  // rename(2) is atomic: of several claimers exactly one succeeds, the others get ENOENT.
  if (RenameNoReplace(from, to) != 0) return Spool::ClaimError(errno, from_deferred, from, to);
  return to;
}

std::optional<RetryMark> ParseRetryMark(absl::string_view value) {
  std::vector<absl::string_view> parts = absl::StrSplit(value, ' ');
  RetryMark m;
  if (parts.size() != 3 || !absl::SimpleAtoi(parts[0], &m.attempts) ||
      !absl::SimpleAtoi(parts[1], &m.first_attempt) ||
      !absl::SimpleAtoi(parts[2], &m.next_attempt) || m.first_attempt < 0 ||
      m.next_attempt < 0) {
    return std::nullopt;  // not ours or damaged: the envelope's fields apply
  }
  return m;
}

absl::StatusOr<SpoolRead> ReadWithMark(const std::string& path, std::string* scratch,
                                       size_t max_bytes = SIZE_MAX, int dir_fd = AT_FDCWD,
                                       const std::string* name = nullptr) {
  std::string mark;
  absl::StatusOr<absl::string_view> bytes = file_io::ReadFileIntoAt(
      dir_fd, name != nullptr ? *name : path, path, scratch, max_bytes, kRetryAttr, &mark);
  if (!bytes.ok()) return bytes.status();
  SpoolRead out;
  out.contents = *bytes;
  if (!mark.empty()) out.mark = ParseRetryMark(mark);
  return out;
}

}  // namespace

absl::Status Spool::ClaimPaths(const std::string& name, bool from_deferred, std::string* from,
                              std::string* to) const {
  if (absl::Status s = CheckName(name); !s.ok()) return s;
  *from = PathIn(root_, from_deferred ? kDeferred : kIncoming, name);
  *to = PathIn(root_, kActive, name);
  return absl::OkStatus();
}

absl::Status Spool::ClaimError(int err, bool from_deferred, const std::string& from,
                               const std::string& to) {
  if (err == ENOENT) {
    return absl::NotFoundError(absl::StrCat(
        from, from_deferred ? ": not found" : ": not found (claimed by another process?)"));
  }
  if (err == EEXIST && !from_deferred) {
    return absl::AlreadyExistsError(absl::StrCat(to, ": already exists; not claiming ", from));
  }
  return ErrnoError(err, absl::StrCat("rename to ", to), from);
}

absl::StatusOr<std::string> Spool::Claim(const std::string& name) {
  absl::StatusOr<std::string> to = ClaimRename(*this, name, false);
  if (!to.ok()) return to.status();
  // On a read error the file stays in active/; recovery (ListActive + ReadActive) retries it.
  return ReadFile(*to);
}

absl::StatusOr<SpoolRead> Spool::Claim(const std::string& name, std::string* scratch) {
  absl::StatusOr<std::string> to = ClaimRename(*this, name, false);
  if (!to.ok()) return to.status();
  return ReadWithMark(*to, scratch);
}

absl::StatusOr<SpoolRead> Spool::ClaimDeferred(const std::string& name, std::string* scratch) {
  absl::StatusOr<std::string> to = ClaimRename(*this, name, true);
  if (!to.ok()) return to.status();
  return ReadWithMark(*to, scratch);
}

absl::StatusOr<SpoolRead> Spool::ReadActive(const std::string& name, std::string* scratch) const {
  if (absl::Status s = CheckName(name); !s.ok()) return s;
  return ReadWithMark(PathIn(root_, kActive, name), scratch);
}

absl::StatusOr<std::string> Spool::ReadActive(const std::string& name) const {
  if (absl::Status s = CheckName(name); !s.ok()) return s;
  return ReadFile(PathIn(root_, kActive, name));
}

absl::StatusOr<std::string> Spool::ReadDeferred(const std::string& name,
                                                size_t max_bytes) const {
  if (absl::Status s = CheckName(name); !s.ok()) return s;
  if (max_bytes == 0) return std::string();
  return ReadFile(PathIn(root_, kDeferred, name), max_bytes);
}

absl::StatusOr<SpoolRead> Spool::ReadHead(absl::string_view subdir, const std::string& name,
                                          size_t max_bytes, std::string* scratch) const {
  if (absl::Status s = CheckName(name); !s.ok()) return s;
  return ReadWithMark(PathIn(root_, subdir, name), scratch, max_bytes);
}

absl::StatusOr<SpoolRead> Spool::ReadHeadAt(int dir_fd, absl::string_view subdir,
                                            const std::string& name, size_t max_bytes,
                                            std::string* scratch) const {
  if (absl::Status s = CheckName(name); !s.ok()) return s;
  return ReadWithMark(PathIn(root_, subdir, name), scratch, max_bytes, dir_fd, &name);
}

absl::Status Spool::RewriteActive(const std::string& name, absl::string_view contents) {
  if (absl::Status s = CheckName(name); !s.ok()) return s;
  const std::string tmp = PathIn(root_, kTmp, absl::StrCat(".rewrite.", name));
  const std::string target = PathIn(root_, kActive, name);
  if (absl::Status s = WriteFile(tmp, contents, O_TRUNC, /*do_fsync=*/true); !s.ok()) return s;
  if (rename(tmp.c_str(), target.c_str()) != 0) {
    const int err = errno;
    unlink(tmp.c_str());
    return ErrnoError(err, absl::StrCat("rename to ", target), tmp);
  }
  return FsyncDir(DirOf(root_, kActive));
}

absl::Status Spool::SyncDirs() const {
  for (absl::string_view sub : {kIncoming, kActive, kDeferred}) {
    if (absl::Status s = FsyncDir(DirOf(root_, sub)); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status Spool::Requeue(const std::string& name) {
  if (absl::Status s = CheckName(name); !s.ok()) return s;
  const std::string from = PathIn(root_, kDeferred, name);
  const std::string to = PathIn(root_, kIncoming, name);
  if (RenameNoReplace(from, to) != 0) {
    return ErrnoError(errno, absl::StrCat("rename to ", to), from);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Spool::ClaimDeferred(const std::string& name) {
  absl::StatusOr<std::string> to = ClaimRename(*this, name, true);
  if (!to.ok()) return to.status();
  return ReadFile(*to);
}

absl::Status Spool::DeferUnchanged(const std::string& name, const RetryMark& mark,
                                   absl::string_view from) {
  if (absl::Status s = CheckName(name); !s.ok()) return s;
  const std::string active = PathIn(root_, from, name);
  const std::string target = PathIn(root_, kDeferred, name);
  const std::string value =
      absl::StrFormat("%d %d %d", mark.attempts, mark.first_attempt, mark.next_attempt);
  if (lsetxattr(active.c_str(), kRetryAttr, value.data(), value.size(), 0) != 0) {
    const int err = errno;
    if (err == ENOTSUP || err == EPERM) {
      return absl::UnimplementedError(
          absl::StrCat(active, ": no user extended attributes here (", std::strerror(err), ")"));
    }
    return ErrnoError(err, "setxattr", active);
  }
  if (from == kDeferred) return absl::OkStatus();
  if (rename(active.c_str(), target.c_str()) != 0) {
    return ErrnoError(errno, absl::StrCat("rename to ", target), active);
  }
  return absl::OkStatus();
}

std::optional<RetryMark> Spool::ReadRetryMark(absl::string_view subdir,
                                              const std::string& name) const {
  if (!CheckName(name).ok()) return std::nullopt;
  char buf[96];
  const std::string path = PathIn(root_, subdir, name);
  const ssize_t n = lgetxattr(path.c_str(), kRetryAttr, buf, sizeof(buf) - 1);
  if (n <= 0) return std::nullopt;
  return ParseRetryMark(absl::string_view(buf, static_cast<size_t>(n)));
}

absl::StatusOr<std::string> Spool::ActivePath(const std::string& name) const {
  if (absl::Status s = CheckName(name); !s.ok()) return s;
  return PathIn(root_, kActive, name);
}

absl::Status Spool::Complete(const std::string& name) {
  if (absl::Status s = CheckName(name); !s.ok()) return s;
  const std::string path = PathIn(root_, kActive, name);
  if (unlink(path.c_str()) != 0) return ErrnoError(errno, "unlink", path);
  return absl::OkStatus();
}

absl::Status Spool::Defer(const std::string& name, absl::string_view contents) {
  if (absl::Status s = CheckName(name); !s.ok()) return s;
  // A distinct tmp name so a rewrite never collides with an injector writing tmp/NAME; O_TRUNC
  // because a crash may have left a stale one.
  const std::string tmp = PathIn(root_, kTmp, absl::StrCat(".defer.", name));
  const std::string target = PathIn(root_, kDeferred, name);
  const std::string active = PathIn(root_, kActive, name);
  if (absl::Status s = WriteFile(tmp, contents, O_TRUNC, /*do_fsync=*/true); !s.ok()) return s;
  if (rename(tmp.c_str(), target.c_str()) != 0) {
    const int err = errno;
    unlink(tmp.c_str());
    return ErrnoError(err, absl::StrCat("rename to ", target), tmp);
  }
  if (absl::Status s = FsyncDir(DirOf(root_, kDeferred)); !s.ok()) return s;
  // If active/NAME is already gone the deferred copy is still kept: it is the only record of the
  // pending recipients. The caller gets NotFound to log the inconsistency.
  if (unlink(active.c_str()) != 0) return ErrnoError(errno, "unlink", active);
  return absl::OkStatus();
}

absl::Status Spool::Quarantine(const std::string& name, absl::string_view reason) {
  if (absl::Status s = CheckName(name); !s.ok()) return s;
  const std::string target = PathIn(root_, kBad, name);
  std::string from = PathIn(root_, kActive, name);
  // rename(2) moves a symbolic link itself, never what it points to.
  if (rename(from.c_str(), target.c_str()) != 0) {
    int err = errno;
    if (err == ENOENT) {
      from = PathIn(root_, kIncoming, name);
      if (rename(from.c_str(), target.c_str()) == 0) err = 0;
      else err = errno;
      if (err == ENOENT) {
        return absl::NotFoundError(absl::StrCat(name, ": neither in ", DirOf(root_, kActive),
                                                " nor in ", DirOf(root_, kIncoming)));
      }
    }
    struct stat st;
    if (err != 0 && lstat(from.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
      // Not a message and cannot be moved (bad/NAME is a directory of that name, say): remove
      // it rather than leave it to be listed again forever. remove_all deletes links, never
      // their targets. A regular file is never removed here: it may be a message.
      std::error_code ec;
      std::filesystem::remove_all(from, ec);
      if (ec) return ErrnoError(err, absl::StrCat("rename to ", target), from);
      return absl::DataLossError(absl::StrCat(from, ": could not be moved to ", target, " (",
                                              std::strerror(err), "): removed; ", reason));
    }
    if (err != 0) return ErrnoError(err, absl::StrCat("rename to ", target), from);
  }
  const std::string why = absl::StrCat(target, kWhySuffix);
  return WriteFile(why, absl::StrCat(reason, "\n"), O_TRUNC, /*do_fsync=*/false);
}

size_t Spool::CountIncoming() const {
  return CountNames(DirOf(root_, kIncoming), ListFilter::kAll);
}
size_t Spool::CountActive() const { return CountNames(DirOf(root_, kActive), ListFilter::kAll); }
size_t Spool::CountDeferred() const {
  return CountNames(DirOf(root_, kDeferred), ListFilter::kAll);
}
size_t Spool::CountBad() const { return CountNames(DirOf(root_, kBad), ListFilter::kSkipWhy); }

namespace {

// tmp/name (fsync'ed when asked) renamed into incoming/name; no directory fsync.
absl::Status PlaceInIncoming(const std::string& spool_root, const std::string& name,
                             absl::string_view contents, bool fsync_file) {
  if (absl::Status s = CheckName(name); !s.ok()) return s;
  const std::string tmp = PathIn(spool_root, kTmp, name);
  const std::string target = PathIn(spool_root, kIncoming, name);
  // O_EXCL: a name collision with another injector is an error, not a shared file.
  if (absl::Status s = WriteFile(tmp, contents, O_EXCL, fsync_file); !s.ok()) return s;
  if (RenameNoReplace(tmp, target) != 0) {
    const int err = errno;
    unlink(tmp.c_str());
    return ErrnoError(err, absl::StrCat("rename to ", target), tmp);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status InjectFile(const std::string& spool_root, const std::string& name,
                        absl::string_view contents, bool fsync_file) {
  if (absl::Status s = PlaceInIncoming(spool_root, name, contents, fsync_file); !s.ok()) return s;
  if (fsync_file) return FsyncDir(DirOf(spool_root, kIncoming));
  return absl::OkStatus();
}

absl::Status InjectFileBatched(const std::string& spool_root, const std::string& name,
                               absl::string_view contents) {
  return PlaceInIncoming(spool_root, name, contents, /*fsync_file=*/true);
}

absl::Status SyncIncoming(const std::string& spool_root) {
  return FsyncDir(DirOf(spool_root, kIncoming));
}

absl::Status ReplaceSpoolFile(const std::string& spool_root, absl::string_view subdir,
                              const std::string& name, absl::string_view contents) {
  if (absl::Status s = CheckName(name); !s.ok()) return s;
  if (absl::Status s = CheckName(subdir); !s.ok()) return s;
  const std::string tmp = PathIn(spool_root, kTmp, absl::StrCat(".put.", name));
  const std::string target = PathIn(spool_root, subdir, name);
  if (absl::Status s = WriteFile(tmp, contents, O_TRUNC, /*do_fsync=*/true); !s.ok()) return s;
  if (rename(tmp.c_str(), target.c_str()) != 0) {
    const int err = errno;
    unlink(tmp.c_str());
    return ErrnoError(err, absl::StrCat("rename to ", target), tmp);
  }
  return FsyncDir(DirOf(spool_root, subdir));
}

std::string NewSpoolFileName() {
  // pid separates processes on one host; the counter separates threads and calls in a process;
  // the random part separates processes that share a pid (containers sharing a spool, pid reuse
  // within the same second). O_EXCL + RENAME_NOREPLACE in InjectFile catch the impossible rest.
  static const uint64_t seed = ProcessSeed();
  static std::atomic<uint64_t> counter{0};
  const uint64_t n = counter.fetch_add(1, std::memory_order_relaxed);
  const uint64_t random = Mix(seed ^ Mix(n)) & 0xffffffffffffULL;  // 48 bits
  return absl::StrFormat("%d.%d.%d.%012x.eml", static_cast<int64_t>(time(nullptr)),
                         static_cast<int>(getpid()), n, random);
}

}  // namespace mxb
