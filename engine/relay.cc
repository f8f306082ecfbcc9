// Smarthost relays: see engine/relay.h.
#include "engine/relay.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace mxb {

bool RelayGate::CloseUntil(int64_t now_ms, int64_t until_ms) {
  int64_t seen = closed_until_ms_.load(std::memory_order_relaxed);
  while (seen <= now_ms) {  // open (or expired): this caller closes it
    if (closed_until_ms_.compare_exchange_weak(seen, until_ms, std::memory_order_relaxed)) {
      return true;
    }
  }
  return false;  // another worker closed it already
}

int64_t RelayGate::ClosedUntil(int64_t now_ms) const {
  const int64_t until = closed_until_ms_.load(std::memory_order_relaxed);
  return until > now_ms ? until : 0;
}

const RelayConfig* FindRelay(const std::vector<RelayConfig>& relays, absl::string_view name) {
  if (name.empty()) return nullptr;
  for (const RelayConfig& r : relays) {
    if (r.name == name) return &r;
  }
  return nullptr;
}

std::string RelayPausedText(const RelayConfig& relay, int64_t until_ms, int64_t now_ms) {
  return absl::StrCat("relay ", relay.name, " refused our credentials (operator error); not "
                      "tried again for ", (until_ms - now_ms + 999) / 1000, " s");
}

bool RelayGate::MayConnect(bool* probe) {
  *probe = false;
  int s = state_.load(std::memory_order_acquire);
  if (s == kAuthenticated) return true;
  if (s == kUnknown && state_.compare_exchange_strong(s, kProbing, std::memory_order_acq_rel)) {
    *probe = true;
    return true;
  }
  return s == kAuthenticated;
}

void RelayGate::ProbeDone(bool authenticated) {
  state_.store(authenticated ? kAuthenticated : kUnknown, std::memory_order_release);
}

std::string RelayConfig::HopSpec() const { return absl::StrCat(host, ":", port); }

TlsPolicy RelayTlsPolicy(const RelayConfig& relay) {
  TlsPolicy p;
  // RFC 8314 §3.3/§5.1 (and the operator's own relay): never plaintext, never an unverified
  // certificate — the credentials go to whoever holds the certificate for `host`.
  p.requirement = TlsRequirement::kRequired;
  p.verify = true;
  p.source = PolicySource::kConfig;
  p.name = absl::StrCat("relay-", relay.name);
  return p;
}

void ReportRelayAuthFailure(const RelayConfig& relay, absl::string_view reply, int64_t now_ms,
                            bool quiet) {
  if (!relay.gate->CloseUntil(now_ms, now_ms + kRelayAuthPauseMs) || quiet) return;
  // One line per pause, also naming where to look; the credentials themselves never.
  std::fprintf(stderr,
               "mxburst: relay %s: authentication as %s failed (%s): operator error, check "
               "relay.%s.username and relay.%s.password_file; its mail is deferred, no new "
               "attempt for %lld s\n",
               relay.name.c_str(), relay.credentials.username.c_str(),
               std::string(reply.empty() ? "mechanism not offered" : reply).c_str(),
               relay.name.c_str(), relay.name.c_str(),
               static_cast<long long>(kRelayAuthPauseMs / 1000));
}

absl::Status ReadPasswordFile(const std::string& path, std::string* password) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  }
  struct stat st {};
  std::string text;
  absl::Status s;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    s = absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  } else if ((st.st_mode & 077) != 0) {
    s = absl::PermissionDeniedError(absl::StrCat(
        path, ": readable or writable by group or others (mode ",
        absl::StrFormat("%04o", st.st_mode & 07777), "): chmod 600 it"));
  } else {
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0 && text.size() < 64 * 1024) text.append(buf, n);
    if (n < 0) s = absl::InvalidArgumentError(absl::StrCat(path, ": read error"));
  }
  close(fd);
  if (!s.ok()) return s;
  if (!text.empty() && text.back() == '\n') text.pop_back();
  if (!text.empty() && text.back() == '\r') text.pop_back();
  if (text.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": empty"));
  if (text.find_first_of("\r\n") != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": more than one line (expected the password alone)"));
  }
  *password = std::move(text);
  return absl::OkStatus();
}

}  // namespace mxb
