// File output of mxburst-sink (see message_store.h).
#include "tools/sink/message_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace mxb::sink {
namespace {

absl::Status WriteAll(int fd, absl::string_view bytes, const std::string& path) {
  while (!bytes.empty()) {
    ssize_t n = write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(absl::StrCat(path, ": write: ", strerror(errno)));
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

// Writes to `tmp`, then renames over `path`; the reader sees either nothing or all of it.
absl::Status WriteViaTemp(const std::string& tmp, const std::string& path,
                          absl::string_view bytes) {
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return absl::InternalError(absl::StrCat(tmp, ": open: ", strerror(errno)));
  absl::Status st = WriteAll(fd, bytes, tmp);
  if (close(fd) != 0 && st.ok()) {
    st = absl::InternalError(absl::StrCat(tmp, ": close: ", strerror(errno)));
  }
  if (st.ok() && rename(tmp.c_str(), path.c_str()) != 0) {
    st = absl::InternalError(absl::StrCat(tmp, " -> ", path, ": rename: ", strerror(errno)));
  }
  if (!st.ok()) unlink(tmp.c_str());
  return st;
}

}  // namespace

absl::Status MessageStore::WriteAtomically(const std::string& name,
                                           absl::string_view bytes) const {
  return WriteViaTemp(absl::StrCat(out_dir_, "/.", name, ".tmp"),
                      absl::StrCat(out_dir_, "/", name), bytes);
}

absl::Status MessageStore::Store(uint64_t seq, absl::string_view body,
                                 absl::string_view envelope) const {
  absl::Status st = WriteAtomically(absl::StrCat(seq, ".eml"), body);
  if (!st.ok()) return st;
  return WriteAtomically(absl::StrCat(seq, ".env"), envelope);
}

absl::Status WriteFileAtomically(const std::string& path, absl::string_view bytes) {
  size_t slash = path.rfind('/');
  std::string tmp = slash == std::string::npos
                        ? absl::StrCat(".", path, ".tmp")
                        : absl::StrCat(path.substr(0, slash + 1), ".", path.substr(slash + 1),
                                       ".tmp");
  return WriteViaTemp(tmp, path, bytes);
}

}  // namespace mxb::sink
