// The parsed DKIM private keys, kept for the life of the process so that libopendkim does not
// parse them again for every signature.
//
// Why: libopendkim (2.11) takes the key as PEM text in every dkim_sign() and calls OpenSSL's
// PEM_read_bio_PrivateKey for each message. Debian 12's OpenSSL 3.0 spends ~0.9 ms of CPU in
// that call (its decoder framework: lock round trips and a search over every decoder; measured
// on the 2-core dev box, bench/dkim_bench.cc), which was two thirds of an RSA-2048 signature and
// three quarters of an Ed25519 one. The library has no call that takes a parsed key, so this file
// defines PEM_read_bio_PrivateKey itself: the executable's definition is the one libopendkim's
// call binds to (ELF symbol interposition). It answers from the cache only for a memory BIO
// whose bytes are exactly a PEM text Remember() was given, without password callback or reuse
// pointer — i.e. libopendkim reading one of our keys — and hands everything else to OpenSSL's own
// function (dlsym RTLD_NEXT). The caller gets its own reference (EVP_PKEY_up_ref) and frees it.
//
// Thread: any (a mutex guards the table; only the scanner signs).
//
//   EVP_PKEY* k = mxb::dkim::RememberKey(pem);   // parsed once, kept; nullptr if not a key
#pragma once

#include <cstdint>
#include <string>

typedef struct evp_pkey_st EVP_PKEY;

namespace mxb::dkim {

// Parses `pem` with OpenSSL (once per distinct text) and keeps the key; the returned pointer
// stays owned by the cache. nullptr when OpenSSL cannot read it.
EVP_PKEY* RememberKey(const std::string& pem);

// How many PEM reads were answered from the cache (tests and the bench check the interposition
// is in effect).
uint64_t KeyCacheHits();

}  // namespace mxb::dkim
