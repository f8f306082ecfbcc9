#include "dkim/key_cache.h"

#include <dlfcn.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

namespace mxb::dkim {
namespace {

struct CachedKey {
  std::string pem;
  EVP_PKEY* key;
};

std::mutex& Mutex() {
  static std::mutex* m = new std::mutex;
  return *m;
}
std::vector<CachedKey>& Table() {
  static auto* t = new std::vector<CachedKey>;  // never destroyed: keys live as long as the process
  return *t;
}
std::atomic<uint64_t> g_hits{0};
std::atomic<bool> g_any{false};

using ReadFn = EVP_PKEY* (*)(BIO*, EVP_PKEY**, pem_password_cb*, void*);

ReadFn OpenSslRead() {
  static ReadFn real = reinterpret_cast<ReadFn>(dlsym(RTLD_NEXT, "PEM_read_bio_PrivateKey"));
  return real;
}

}  // namespace

EVP_PKEY* RememberKey(const std::string& pem) {
  std::lock_guard<std::mutex> lock(Mutex());
  for (const CachedKey& c : Table()) {
    if (c.pem == pem) return c.key;
  }
  ReadFn real = OpenSslRead();
  if (real == nullptr) return nullptr;
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (bio == nullptr) return nullptr;
  EVP_PKEY* key = real(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (key == nullptr) return nullptr;
  Table().push_back({pem, key});
  g_any.store(true, std::memory_order_release);
  return key;
}

uint64_t KeyCacheHits() { return g_hits.load(std::memory_order_relaxed); }

}  // namespace mxb::dkim

// See key_cache.h: interposes OpenSSL's function of the same name for the whole process.
extern "C" EVP_PKEY* PEM_read_bio_PrivateKey(BIO* bp, EVP_PKEY** x, pem_password_cb* cb,
                                             void* u) {
  using namespace mxb::dkim;
  if (x == nullptr && cb == nullptr && u == nullptr && bp != nullptr &&
      g_any.load(std::memory_order_acquire) && BIO_method_type(bp) == BIO_TYPE_MEM) {
    char* data = nullptr;
    const long n = BIO_get_mem_data(bp, &data);
    if (n > 0 && data != nullptr) {
      std::lock_guard<std::mutex> lock(Mutex());
      for (const CachedKey& c : Table()) {
        if (c.pem.size() == static_cast<size_t>(n) && std::memcmp(c.pem.data(), data, n) == 0) {
          EVP_PKEY_up_ref(c.key);
          g_hits.fetch_add(1, std::memory_order_relaxed);
          return c.key;
        }
      }
    }
  }
  ReadFn real = OpenSslRead();
  return real != nullptr ? real(bp, x, cb, u) : nullptr;
}
