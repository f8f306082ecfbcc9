// Outcome journal: segment files, group commit, recovery scan. Format and rules in journal.h.
#include "queue/file_io.h"
#include "queue/journal.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace mxb {
namespace {

constexpr absl::string_view kSegmentHeader = "MXBJNL1\n";
constexpr absl::string_view kSegmentSuffix = ".log";
constexpr size_t kSegmentDigits = 12;
constexpr uint8_t kTypeFinal = 1;
constexpr uint8_t kTypeRetired = 2;
constexpr uint8_t kTypeLogTail = 3;
constexpr uint8_t kTypeAux = 4;
constexpr size_t kTailFixed = 16;     // log offset, log inode
constexpr size_t kMaxTail = 1u << 30; // a batch's log bytes; no writer comes near it
constexpr size_t kPrefixBytes = 8;  // crc + length
constexpr size_t kFixedBody = 12;   // type, class, name length, generation, recipient
constexpr size_t kMaxName = 255;    // NAME_MAX

using file_io::ErrnoError;

constexpr std::array<uint32_t, 256> MakeCrcTable() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    t[i] = c;
  }
  return t;
}
constexpr std::array<uint32_t, 256> kCrcTable = MakeCrcTable();

void PutU16(std::string* out, uint16_t v) {
  out->push_back(static_cast<char>(v & 0xff));
  out->push_back(static_cast<char>(v >> 8));
}
void PutU32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutU64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void SetU32(char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
uint16_t GetU16(const char* p) {
  return static_cast<uint16_t>(static_cast<unsigned char>(p[0]) |
                               (static_cast<unsigned char>(p[1]) << 8));
}
uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}
uint64_t GetU64(const char* p) {
  return static_cast<uint64_t>(GetU32(p)) | (static_cast<uint64_t>(GetU32(p + 4)) << 32);
}

using file_io::FsyncDir;

absl::Status WriteAll(int fd, absl::string_view data, const std::string& path) {
  while (!data.empty()) {
    const ssize_t n = write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, "write", path);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

// `first` then `second` with as few write(2) calls as the kernel allows (usually one writev).
absl::Status WriteAll2(int fd, absl::string_view first, absl::string_view second,
                       const std::string& path) {
  while (!first.empty()) {
    iovec iov[2] = {{const_cast<char*>(first.data()), first.size()},
                    {const_cast<char*>(second.data()), second.size()}};
    const ssize_t n = writev(fd, iov, second.empty() ? 1 : 2);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, "write", path);
    }
    size_t done = static_cast<size_t>(n);
    const size_t from_first = std::min(done, first.size());
    first.remove_prefix(from_first);
    second.remove_prefix(done - from_first);
  }
  return WriteAll(fd, second, path);
}

// Segment numbers in `dir`, ascending. A missing directory is an empty list.
absl::StatusOr<std::vector<uint64_t>> ListSegments(const std::string& dir) {
  std::vector<uint64_t> out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) {
    if (errno == ENOENT) return out;
    return ErrnoError(errno, "opendir", dir);
  }
  while (const dirent* e = readdir(d)) {
    absl::string_view name(e->d_name);
    if (name.size() != kSegmentDigits + kSegmentSuffix.size() ||
        name.substr(kSegmentDigits) != kSegmentSuffix) {
      continue;
    }
    uint64_t n = 0;
    if (absl::SimpleAtoi(name.substr(0, kSegmentDigits), &n) && n > 0) out.push_back(n);
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

bool ValidClass(uint8_t c) { return c >= 1 && c <= 3; }

// Applies one segment's records to `r`.
void ScanSegment(absl::string_view data, RecoveredJournal* r) {
  if (data.size() < kSegmentHeader.size()) {
    // Crash between create and the header write: nothing in it.
    r->torn_bytes += data.size();
    return;
  }
  if (data.substr(0, kSegmentHeader.size()) != kSegmentHeader) {
    ++r->corrupted_records;
    return;
  }
  size_t pos = kSegmentHeader.size();
  while (pos < data.size()) {
    const size_t left = data.size() - pos;
    if (left < kPrefixBytes + kFixedBody) {
      r->torn_bytes += left;
      return;
    }
    const char* p = data.data() + pos;
    const uint32_t crc = GetU32(p);
    const uint32_t len = GetU32(p + 4);
    const bool tail = static_cast<uint8_t>(p[kPrefixBytes]) == kTypeLogTail;
    const bool aux = static_cast<uint8_t>(p[kPrefixBytes]) == kTypeAux;
    if (len < kFixedBody ||
        len > (tail  ? kFixedBody + kTailFixed + kMaxTail
               : aux ? kFixedBody + kMaxTail
                     : kFixedBody + kMaxName) ||
        (tail && len < kFixedBody + kTailFixed)) {
      // A length no writer produces: the rest of the segment cannot be framed.
      if (len == 0 && crc == 0) {
        r->torn_bytes += left;  // zero fill after a crash (ext4 may extend before data lands)
      } else {
        ++r->corrupted_records;
        r->torn_bytes += left;
      }
      return;
    }
    if (left < kPrefixBytes + len) {
      r->torn_bytes += left;
      return;
    }
    const absl::string_view body(p + 4, 4 + len);  // length field + body
    pos += kPrefixBytes + len;
    if (Crc32c(body) != crc) {
      ++r->corrupted_records;
      continue;
    }
    const char* b = p + kPrefixBytes;
    const uint8_t type = static_cast<uint8_t>(b[0]);
    const uint8_t cls = static_cast<uint8_t>(b[1]);
    const uint16_t name_len = GetU16(b + 2);
    const uint32_t generation = GetU32(b + 4);
    const uint32_t recipient = GetU32(b + 8);
    if (type == kTypeLogTail) {
      ++r->records;
      LogTail t;
      t.offset = GetU64(b + kFixedBody);
      t.inode = GetU64(b + kFixedBody + 8);
      t.bytes.assign(b + kFixedBody + kTailFixed, len - kFixedBody - kTailFixed);
      r->log_tail = std::move(t);
      continue;
    }
    if (type == kTypeAux) {
      ++r->records;
      r->aux.push_back({cls, std::string(b + kFixedBody, len - kFixedBody)});
      continue;
    }
    if (name_len == 0 || kFixedBody + name_len != len ||
        (type == kTypeFinal && !ValidClass(cls)) || (type != kTypeFinal && type != kTypeRetired)) {
      ++r->corrupted_records;
      continue;
    }
    ++r->records;
    std::string name(b + kFixedBody, name_len);
    if (type == kTypeRetired) {
      auto it = r->messages.find(name);
      if (it != r->messages.end() && it->second.generation <= generation) r->messages.erase(it);
      continue;
    }
    FinalSet& set = r->messages[name];
    if (set.recipients.empty() || generation > set.generation) {
      // A newer generation's file was written only after the older records were committed and
      // the file rewritten: older indexes are obsolete.
      set.recipients.clear();
      set.generation = generation;
    } else if (generation < set.generation) {
      continue;
    }
    set.recipients[recipient] = static_cast<FinalClass>(cls);
  }
}

}  // namespace

absl::string_view ToString(FinalClass c) {
  switch (c) {
    case FinalClass::kDelivered:
      return "delivered";
    case FinalClass::kBounced:
      return "bounced";
    case FinalClass::kExpired:
      return "expired";
  }
  return "unknown";
}

namespace {

uint32_t Crc32cTable(absl::string_view data, uint32_t crc) {
  for (char ch : data) crc = kCrcTable[(crc ^ static_cast<unsigned char>(ch)) & 0xff] ^ (crc >> 8);
  return crc;
}

#if defined(__x86_64__)
// SSE4.2's crc32 instruction computes exactly this CRC (Castagnoli, reflected), 8 bytes per
// instruction: the table loop cost ~1.5 ns per byte, i.e. ~1 us per message for the log bytes
// every batch carries (issue 17 item 3). Chosen at run time; the table is the fallback.
__attribute__((target("sse4.2"))) uint32_t Crc32cSse42(absl::string_view data, uint32_t crc) {
  const char* p = data.data();
  size_t n = data.size();
  uint64_t c = crc;
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    c = __builtin_ia32_crc32di(c, w);
  }
  uint32_t c32 = static_cast<uint32_t>(c);
  for (; n > 0; ++p, --n) c32 = __builtin_ia32_crc32qi(c32, static_cast<unsigned char>(*p));
  return c32;
}
#endif

}  // namespace

uint32_t Crc32c(absl::string_view data, uint32_t crc) {
#if defined(__x86_64__)
  static const bool sse42 = __builtin_cpu_supports("sse4.2");
  if (sse42) return ~Crc32cSse42(data, ~crc);
#endif
  return ~Crc32cTable(data, ~crc);
}

std::string JournalSegmentName(uint64_t n) {
  return absl::StrFormat("%012d%s", n, kSegmentSuffix);
}

absl::StatusOr<RecoveredJournal> Journal::Recover(const std::string& dir) {
  RecoveredJournal r;
  absl::StatusOr<std::vector<uint64_t>> segments = ListSegments(dir);
  if (!segments.ok()) return segments.status();
  for (uint64_t n : *segments) {
    absl::StatusOr<std::string> data = file_io::ReadFile(absl::StrCat(dir, "/", JournalSegmentName(n)));
    if (!data.ok()) return data.status();
    ScanSegment(*data, &r);
    ++r.segments;
    r.last_segment = n;
  }
  return r;
}

Journal::Journal(std::string dir, JournalOptions options)
    : dir_(std::move(dir)), options_(std::move(options)) {}

Journal::~Journal() {
  if (fd_ >= 0) close(fd_);
}

absl::StatusOr<std::unique_ptr<Journal>> Journal::Open(const std::string& dir,
                                                      JournalOptions options) {
  if (dir.empty()) return absl::InvalidArgumentError("journal directory is empty");
  if (mkdir(dir.c_str(), 0750) != 0 && errno != EEXIST) return ErrnoError(errno, "mkdir", dir);
  absl::StatusOr<std::vector<uint64_t>> segments = ListSegments(dir);
  if (!segments.ok()) return segments.status();
  std::unique_ptr<Journal> j(new Journal(dir, std::move(options)));
  const uint64_t first = segments->empty() ? 1 : segments->back() + 1;
  j->first_own_ = first;
  if (absl::Status s = j->StartSegment(first); !s.ok()) return s;
  return j;
}

absl::Status Journal::StartSegment(uint64_t number) {
  const std::string path = absl::StrCat(dir_, "/", JournalSegmentName(number));
  // O_EXCL: a number is used once; O_APPEND: every write lands at the end even after a
  // failed write was truncated away.
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0640);
  if (fd < 0) return ErrnoError(errno, "create", path);
  absl::Status s = WriteAll(fd, kSegmentHeader, path);
  if (s.ok() && fdatasync(fd) != 0) s = ErrnoError(errno, "fdatasync", path);
  // The new name must be durable before records in it are relied on (POSIX: fsync the directory).
  if (s.ok()) s = FsyncDir(dir_);
  if (!s.ok()) {
    close(fd);
    unlink(path.c_str());
    return s;
  }
  if (fd_ >= 0) close(fd_);
  fd_ = fd;
  current_ = number;
  current_size_ = kSegmentHeader.size();
  segment_live_.emplace(number, 0);
  return absl::OkStatus();
}

void Journal::AppendRecord(uint8_t type, FinalClass c, absl::string_view name,
                           uint32_t generation, uint32_t recipient) {
  // Names come from the spool (CheckName: <= 240 octets); a longer one is a caller bug.
  ABSL_HARDENING_ASSERT(!name.empty() && name.size() <= kMaxName);
  const size_t start = buffer_.size();
  buffer_.append(4, '\0');  // crc, filled below
  PutU32(&buffer_, static_cast<uint32_t>(kFixedBody + name.size()));
  buffer_.push_back(static_cast<char>(type));
  buffer_.push_back(static_cast<char>(type == kTypeFinal ? static_cast<uint8_t>(c) : 0));
  PutU16(&buffer_, static_cast<uint16_t>(name.size()));
  PutU32(&buffer_, generation);
  PutU32(&buffer_, recipient);
  buffer_.append(name.data(), name.size());
  const uint32_t crc = Crc32c(absl::string_view(buffer_).substr(start + 4));
  SetU32(buffer_.data() + start, crc);
}

void Journal::SetLogTail(uint64_t offset, uint64_t inode, absl::string_view bytes) {
  tail_.clear();
  if (bytes.empty()) return;
  PutTail(offset, inode, bytes);
}

void Journal::MarkLogEnd(uint64_t offset, uint64_t inode) {
  tail_.clear();
  PutTail(offset, inode, "");
}

void Journal::PutTail(uint64_t offset, uint64_t inode, absl::string_view bytes) {
  ABSL_HARDENING_ASSERT(bytes.size() <= kMaxTail);
  tail_.append(4, '\0');  // crc, filled below
  PutU32(&tail_, static_cast<uint32_t>(kFixedBody + kTailFixed + bytes.size()));
  tail_.push_back(static_cast<char>(kTypeLogTail));
  tail_.push_back('\0');
  PutU16(&tail_, 0);
  PutU32(&tail_, 0);
  PutU32(&tail_, 0);
  PutU64(&tail_, offset);
  PutU64(&tail_, inode);
  tail_.append(bytes.data(), bytes.size());
  SetU32(tail_.data(), Crc32c(absl::string_view(tail_).substr(4)));
}

void Journal::AppendAux(uint8_t kind, absl::string_view bytes) {
  ABSL_HARDENING_ASSERT(bytes.size() <= kMaxTail);
  const size_t start = buffer_.size();
  buffer_.append(4, '\0');  // crc, filled below
  PutU32(&buffer_, static_cast<uint32_t>(kFixedBody + bytes.size()));
  buffer_.push_back(static_cast<char>(kTypeAux));
  buffer_.push_back(static_cast<char>(kind));
  PutU16(&buffer_, 0);
  PutU32(&buffer_, 0);
  PutU32(&buffer_, 0);
  buffer_.append(bytes.data(), bytes.size());
  SetU32(buffer_.data() + start, Crc32c(absl::string_view(buffer_).substr(start + 4)));
}

void Journal::AppendFinal(const JournalRecord& record) {
  AppendRecord(kTypeFinal, record.final_class, record.name, record.generation, record.recipient);
  std::vector<uint64_t>& segs = name_segments_[record.name];
  if (segs.empty() || segs.back() != current_) {
    segs.push_back(current_);
    ++segment_live_[current_];
  }
}

void Journal::AppendRetired(absl::string_view name, uint32_t generation) {
  // A name with no final record in our segments needs no retirement: nothing refers to it.
  auto it = name_segments_.find(name);
  if (it == name_segments_.end()) return;
  AppendRecord(kTypeRetired, FinalClass::kDelivered, name, generation, 0);
  // Released now, in append order (a later AppendFinal of the next generation in the same batch
  // must start a fresh entry); segments are only deleted after Commit made this record durable.
  for (uint64_t seg : it->second) {
    auto live = segment_live_.find(seg);
    if (live != segment_live_.end() && live->second > 0) --live->second;
  }
  name_segments_.erase(it);
}

absl::Status Journal::Commit() {
  if (buffer_.empty() && tail_.empty()) return absl::OkStatus();
  if (abandon_) {
    // The last attempt left the segment in doubt: the batch goes into a fresh one.
    if (absl::Status s = StartSegment(current_ + 1); !s.ok()) return s;
    abandon_ = false;
  }
  const std::string path = absl::StrCat(dir_, "/", JournalSegmentName(current_));
  absl::Status s = tail_.empty() ? WriteAll(fd_, buffer_, path)
                                 : WriteAll2(fd_, tail_, buffer_, path);
  if (!s.ok()) {
    // Cut a partial batch off so the segment stays framed, and keep the batch for the retry
    // (disk full). If even that fails, later records could sit behind a torn one: abandon it.
    if (ftruncate(fd_, static_cast<off_t>(current_size_)) != 0) {
      abandon_ = true;
      s = absl::Status(s.code(), absl::StrCat(s.message(), "; and ftruncate failed: ",
                                              std::strerror(errno)));
    }
    return s;
  }
  if (fdatasync(fd_) != 0) {
    // After a failed fdatasync the kernel may have dropped those dirty pages and marked them
    // clean, so a second fdatasync of the same file could succeed without them. The batch is
    // kept and written again into a new segment by the retry; the records are idempotent, so
    // whatever of this attempt reached the disk does no harm.
    abandon_ = true;
    return ErrnoError(errno, "fdatasync", path);
  }
  current_size_ += buffer_.size() + tail_.size();
  buffer_.clear();
  tail_.clear();
  if (current_size_ >= options_.segment_bytes) {
    if (absl::Status r = StartSegment(current_ + 1); !r.ok()) {
      // Keep appending to the old segment; rotation is retried after the next commit.
      return absl::OkStatus();
    }
  }
  // Deletion failures keep the segments (retried later); they do not fail the commit.
  (void)DeleteDeadSegments();
  return absl::OkStatus();
}

absl::Status Journal::DeleteDeadSegments() {
  // Only a prefix of fully retired sealed segments goes: a retire record in a later segment must
  // outlive the final records it cancels in an earlier one, or Recover() would report them again.
  std::vector<uint64_t> order;
  order.reserve(segment_live_.size());
  for (const auto& [seg, live] : segment_live_) order.push_back(seg);
  std::sort(order.begin(), order.end());
  std::vector<uint64_t> dead;
  for (uint64_t seg : order) {
    if (seg == current_ || segment_live_[seg] != 0) break;
    dead.push_back(seg);
  }
  if (dead.empty()) return absl::OkStatus();
  if (options_.before_delete) {
    if (absl::Status s = options_.before_delete(); !s.ok()) return s;
  }
  for (uint64_t seg : dead) {
    const std::string path = absl::StrCat(dir_, "/", JournalSegmentName(seg));
    if (unlink(path.c_str()) != 0 && errno != ENOENT) return ErrnoError(errno, "unlink", path);
    segment_live_.erase(seg);
  }
  return FsyncDir(dir_);
}

absl::Status Journal::DropRecoveredSegments() {
  absl::StatusOr<std::vector<uint64_t>> segments = ListSegments(dir_);
  if (!segments.ok()) return segments.status();
  bool any = false;
  for (uint64_t n : *segments) any |= n < first_own_;
  if (!any) return absl::OkStatus();
  if (options_.before_delete) {
    if (absl::Status s = options_.before_delete(); !s.ok()) return s;
  }
  for (uint64_t n : *segments) {
    if (n >= first_own_) continue;
    const std::string path = absl::StrCat(dir_, "/", JournalSegmentName(n));
    if (unlink(path.c_str()) != 0 && errno != ENOENT) return ErrnoError(errno, "unlink", path);
  }
  return FsyncDir(dir_);
}

}  // namespace mxb
