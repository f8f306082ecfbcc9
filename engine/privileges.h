// Privileges: mxburst never delivers mail as root.
//
// Started by root (a systemd unit, an init script), it does what needs root first — take the
// spool lock, raise RLIMIT_NOFILE to the hard limit — then hands the spool to the configured
// unprivileged `user` (directories and files it does not own yet, never following a link) and
// becomes that user for good: supplementary groups, gid, uid, and PR_SET_NO_NEW_PRIVS so no
// exec can regain anything. Root without `user` is refused unless `allow_root` (--allow-root).
// Started by anyone else it only sets PR_SET_NO_NEW_PRIVS.
//
// Producers write into the spool too: `incoming/` and `tmp/` are made group-writable with the
// setgid bit, so members of the user's group can drop files that the engine can claim.
//
// Called once from main(), before any thread starts.
//
//   if (absl::Status s = PrepareSpoolForUser(config); !s.ok()) ...   // root only; chown
//   ... take the spool lock, raise limits ...
//   if (absl::Status s = DropPrivileges(config); !s.ok()) ...        // then run the engine
#pragma once

#include "absl/status/status.h"
#include "engine/config.h"

namespace mxb {

// Root with `user`: creates the spool directories and gives them (and what is in them) to the
// user. Root without `user` and without allow_root: FailedPrecondition with the one line to
// print. Not root: nothing.
[[nodiscard]] absl::Status PrepareSpoolForUser(const EngineConfig& config);

// Root with `user`: becomes the user (and only that). Always: PR_SET_NO_NEW_PRIVS.
[[nodiscard]] absl::Status DropPrivileges(const EngineConfig& config);

}  // namespace mxb
