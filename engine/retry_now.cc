// Retry now (POST /api/v1/flush, `mxburstctl flush`, issue 14): the scanner makes deferred
// messages due at once — all of them, or those with a recipient at one of the given domains.
// The workers got the same command and forgot their dead destinations, so the retry really
// connects. Scanner thread; reads envelope heads from deferred/ only for a domain flush.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "engine/control_plane.h"
#include "engine/engine.h"
#include "queue/envelope.h"

namespace mxb {

void Engine::ServeRetryNow() {
  bool all = false;
  std::vector<std::string> domains;
  if (!control_ || !control_->TakeFlush(&all, &domains)) return;
  const absl::Time now = absl::Now();
  dead_.Forget();  // else the scanner defers the flushed mail again, untried
  size_t due = 0;
  if (all) {
    due = deferred_.size();
    deferred_.FlushAll(now);
  } else {
    const absl::flat_hash_set<std::string> wanted(domains.begin(), domains.end());
    for (const std::string& name : spool_->ListDeferred()) {
      std::string head(64 * 1024, '\0');
      int fd = open((spool_->root() + "/deferred/" + name).c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
      if (fd < 0) continue;
      ssize_t n = read(fd, head.data(), head.size());
      close(fd);
      if (n <= 0) continue;
      head.resize(static_cast<size_t>(n));
      absl::StatusOr<Envelope> env = ParseEnvelope(head);
      if (!env.ok()) continue;
      for (const std::string& r : env->recipients) {
        if (wanted.contains(DomainOf(r))) {
          deferred_.Schedule(name, now);
          ++due;
          break;
        }
      }
    }
  }
  std::fprintf(stderr, "mxburst: control: retry now: %zu deferred message(s) due\n", due);
}

}  // namespace mxb
