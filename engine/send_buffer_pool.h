// SendBufferPool: the drained send buffers of one worker, kept for the next flight. Without it
// every message allocated a fresh buffer for its bytes — over TLS its ciphertext, in plaintext
// its copy of the DATA wire — and freed it once sent; a 20 KB buffer allocated and freed on a
// worker thread's malloc arena costs the page faults of the arena shrinking and growing again
// (issue 17). The pool keeps at most kMaxKept buffers of at most kMaxCapacity bytes each, so a
// worker pins at most ~4 MiB however many sessions it holds; an idle session holds none (its
// SendQueue hands its buffers back when drained).
//
// Owns: the kept buffers (empty strings with capacity).
// Thread: the worker thread that owns it (ConnectionEnv::send_buffers), for everything.
//
//   std::string buf = pool.Take();        // empty; capacity of a kept buffer, if any
//   buf.append(bytes);  ... the kernel sends it ...
//   pool.Give(std::move(buf));           // kept if it fits, else freed
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace mxb {

class SendBufferPool {
 public:
  static constexpr size_t kMaxKept = 16;
  static constexpr size_t kMaxCapacity = 256 * 1024;

  std::string Take() {
    if (kept_.empty()) return std::string();
    std::string buf = std::move(kept_.back());
    kept_.pop_back();
    return buf;
  }

  void Give(std::string&& buf) {
    // A short string's capacity is its inline one: nothing worth keeping.
    if (buf.capacity() < 1024 || buf.capacity() > kMaxCapacity || kept_.size() >= kMaxKept) {
      std::string().swap(buf);
      return;
    }
    buf.clear();
    kept_.push_back(std::move(buf));
  }

  size_t kept() const { return kept_.size(); }

 private:
  std::vector<std::string> kept_;
};

}  // namespace mxb
