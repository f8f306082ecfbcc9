#include "engine/message_lookup.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "queue/envelope.h"

namespace mxb {
namespace {

// The head of a spool file: envelope lines come first and are short.
bool ReadHead(const std::string& path, std::string* out) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return false;
  out->resize(64 * 1024);
  ssize_t n = read(fd, out->data(), out->size());
  close(fd);
  if (n < 0) return false;
  out->resize(static_cast<size_t>(n));
  return true;
}

// The last `max` bytes of the log, from a line start.
std::string ReadTail(const std::string& path, size_t max, size_t* read_bytes) {
  std::string out;
  *read_bytes = 0;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  struct stat st;
  if (fstat(fd, &st) == 0) {
    const size_t size = static_cast<size_t>(st.st_size);
    const size_t from = size > max ? size - max : 0;
    out.resize(size - from);
    ssize_t n = pread(fd, out.data(), out.size(), static_cast<off_t>(from));
    out.resize(n > 0 ? static_cast<size_t>(n) : 0);
    if (from > 0) {
      size_t nl = out.find('\n');
      out.erase(0, nl == std::string::npos ? out.size() : nl + 1);
    }
    *read_bytes = out.size();
  }
  close(fd);
  return out;
}

}  // namespace

MessageLookup LookUpMessage(const std::string& spool_dir, const std::string& log_path,
                            const std::string& id) {
  MessageLookup m;
  if (id.empty() || id == "." || id == ".." || id.find_first_of("/\\\"\r\n") != std::string::npos) {
    m.status = 400;
    m.json = {{"error", "id: expected a spool file name (the log's msgid)"}};
    return m;
  }
  // Where the file is; "done" when it is gone and the log knows it.
  static constexpr const char* kDirs[][2] = {{"active", "in-flight"},
                                             {"incoming", "incoming"},
                                             {"deferred", "deferred"},
                                             {"bad", "bad"}};
  std::string location, head;
  for (const auto& [dir, name] : kDirs) {
    if (ReadHead(absl::StrCat(spool_dir, "/", dir, "/", id), &head)) {
      location = name;
      break;
    }
  }
  // The newest log record per recipient (the log is in time order).
  size_t scanned = 0;
  std::map<std::string, nlohmann::json> last;
  if (log_path != "-") {
    const std::string needle = absl::StrCat("\"msgid\":\"", id, "\"");
    const std::string tail = ReadTail(log_path, kLogTailBytes, &scanned);
    for (absl::string_view line : absl::StrSplit(tail, '\n', absl::SkipEmpty())) {
      if (!absl::StrContains(line, needle)) continue;
      nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded() || !j.contains("rcpt")) continue;
      std::string rcpt = j["rcpt"].get<std::string>();  // before the move (C++17 order)
      last[rcpt] = std::move(j);
    }
  }
  if (location.empty() && last.empty()) {
    m.json = {{"error", absl::StrCat("no message ", id, " in the spool or the last ",
                                     scanned >> 20, " MiB of the accounting log")}};
    return m;
  }
  m.status = 200;
  nlohmann::json& j = m.json;
  j["id"] = id;
  j["location"] = location.empty() ? "done" : location;
  j["log_bytes_scanned"] = scanned;
  absl::StatusOr<Envelope> env;
  if (!location.empty() && location != "bad") env = ParseEnvelope(head);
  if (env.ok()) {
    j["sender"] = env->sender;
    if (!env->job.empty()) j["job"] = env->job;
    if (!env->envid.empty()) j["envid"] = env->envid;
    j["attempts"] = env->attempts;
    if (env->next_attempt > 0) j["next_attempt"] = env->next_attempt;
  }
  nlohmann::json rcpts = nlohmann::json::array();
  auto add = [&](const std::string& rcpt, std::string state) {
    nlohmann::json r = {{"rcpt", rcpt}};
    auto it = last.find(rcpt);
    if (it != last.end()) {
      const nlohmann::json& rec = it->second;
      // A recipient still in the file is not final, whatever an earlier attempt logged.
      r["state"] = state.empty() ? rec.value("status", "") : state;
      r["last_status"] = rec.value("status", "");
      for (const char* k : {"time", "code", "enhanced", "text", "class", "mx", "attempt"}) {
        if (rec.contains(k)) r[k] = rec[k];
      }
      last.erase(it);
    } else {
      r["state"] = state.empty() ? "unknown" : state;
    }
    rcpts.push_back(std::move(r));
  };
  if (env.ok()) {
    for (const std::string& rcpt : env->recipients) add(rcpt, location == "in-flight" ? "in-flight" : location == "incoming" ? "queued" : "deferred");
  }
  // Recipients no longer in the file: final, as the log says.
  while (!last.empty()) add(last.begin()->first, "");
  j["recipients"] = std::move(rcpts);
  return m;
}

}  // namespace mxb
