#include "engine/privileges.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "queue/spool.h"

namespace mxb {
namespace {

struct Account {
  uid_t uid = 0;
  gid_t gid = 0;
};

absl::Status Lookup(const std::string& name, Account* out) {
  errno = 0;
  const passwd* pw = getpwnam(name.c_str());
  if (pw == nullptr) {
    return absl::NotFoundError(absl::StrCat("user: no such user '", name, "'",
                                            errno != 0 ? absl::StrCat(" (", std::strerror(errno), ")") : ""));
  }
  if (pw->pw_uid == 0) {
    return absl::InvalidArgumentError(absl::StrCat("user: '", name, "' is root; name an unprivileged user"));
  }
  out->uid = pw->pw_uid;
  out->gid = pw->pw_gid;
  return absl::OkStatus();
}

// lchown when the owner differs: a link is never followed (a link planted in the spool must not
// make us give away /etc/shadow).
absl::Status Own(const std::string& path, const Account& a) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();  // claimed or removed meanwhile
    return absl::UnavailableError(absl::StrCat("cannot stat ", path, ": ", std::strerror(errno)));
  }
  if (st.st_uid == a.uid && st.st_gid == a.gid) return absl::OkStatus();
  if (lchown(path.c_str(), a.uid, a.gid) != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot give ", path, " to uid ", a.uid, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status PrepareSpoolForUser(const EngineConfig& config) {
  if (geteuid() != 0) return absl::OkStatus();
  if (config.user.empty()) {
    if (config.allow_root) return absl::OkStatus();
    return absl::FailedPreconditionError(
        "refusing to run as root: set `user = \"mxburst\"` in the config (or --user NAME) to "
        "drop privileges after start-up, or pass --allow-root");
  }
  Account a;
  if (absl::Status s = Lookup(config.user, &a); !s.ok()) return s;
  absl::StatusOr<Spool> spool = Spool::Open(config.spool_dir);  // creates what is missing
  if (!spool.ok()) return spool.status();
  // The lock file too (SpoolLock opens it O_RDWR): a later run started as the user needs it.
  const std::string lock = absl::StrCat(config.spool_dir, "/lock");
  if (int fd = open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644); fd >= 0) {
    close(fd);
  }
  if (absl::Status s = Own(config.spool_dir, a); !s.ok()) return s;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(
           config.spool_dir, std::filesystem::directory_options::skip_permission_denied, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (absl::Status s = Own(it->path().string(), a); !s.ok()) return s;
  }
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot walk spool ", config.spool_dir, ": ", ec.message()));
  }
  // Producers in the user's group write into tmp/ and rename into incoming/: group-writable,
  // setgid so their files carry the group.
  for (const char* sub : {"tmp", "incoming"}) {
    const std::string dir = absl::StrCat(config.spool_dir, "/", sub);
    if (chmod(dir.c_str(), 02770) != 0) {
      return absl::UnavailableError(absl::StrCat("cannot chmod ", dir, ": ", std::strerror(errno)));
    }
  }
  return absl::OkStatus();
}

absl::Status DropPrivileges(const EngineConfig& config) {
  if (geteuid() == 0 && !config.user.empty()) {
    Account a;
    if (absl::Status s = Lookup(config.user, &a); !s.ok()) return s;
    // Groups first: after setuid we could not change them any more.
    if (initgroups(config.user.c_str(), a.gid) != 0 || setgid(a.gid) != 0 ||
        setuid(a.uid) != 0) {
      return absl::UnavailableError(
          absl::StrCat("cannot become user ", config.user, ": ", std::strerror(errno)));
    }
    if (setuid(0) == 0) {  // must be impossible now
      return absl::InternalError(absl::StrCat("dropped to ", config.user, " but could regain root"));
    }
  }
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return absl::UnavailableError(
        absl::StrCat("prctl(PR_SET_NO_NEW_PRIVS): ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace mxb
