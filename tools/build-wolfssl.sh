#!/usr/bin/env bash
# Builds wolfSSL from Debian's source package with mxburst's configure flags and installs it
# (static library, headers, pkg-config file) into PREFIX. Used by CMake for MXB_WOLFSSL=bundled;
# runs by hand too:
#
#   tools/build-wolfssl.sh PREFIX            # build + install unless PREFIX holds this exact build
#   tools/build-wolfssl.sh --print-flags     # the configure flags and CFLAGS it uses
#
# The source comes from `apt-get source wolfssl` (Debian 12: 5.5.4 with Debian's security
# patches; tools/setup.sh adds the deb-src entry), fetched once into $MXB_WOLFSSL_CACHE
# (default: PREFIX/../wolfssl-src). PREFIX/.mxb-build-stamp records the Debian version and the
# flags: a second run with the same ones does nothing, other flags rebuild. Concurrent runs on
# the same PREFIX (two presets configuring at once) wait for each other (flock).
set -euo pipefail

WOLFSSL_UPSTREAM_VERSION=5.5.4

# What mxburst uses (tls/, tools/sink/, tests/): custom I/O callbacks, TLS 1.2 + 1.3, session
# tickets and resumption (wolfSSL_get_session/SESSION_dup/set_session), SNI, supported groups
# X25519/P-256/P-384, a verify callback for every certificate that reads store->certs,
# store->current_cert and the ex_data of the store (OPENSSL_EXTRA), the SAN list through
# X509_get_ext_d2i, system CA loading, ECDSA P-256 certificate and key generation for the sink
# and the test CAs (certgen, keygen, certext), AES-GCM and ChaCha20-Poly1305 suites, and RSA/DHE
# for opportunistic STARTTLS to old MTAs.
#
# Speed: AES-NI + AVX2 assembly (aesni, intelasm: AES-GCM, ChaCha20/Poly1305, SHA-2) and the
# single-precision math with x86_64 assembly (sp, sp-asm: P-256/P-384, X25519, RSA-2048/3072/4096,
# DH-2048/3072/4096).
#
# Memory: no OPENSSL_ALL (OPENSSL_EXTRA is enough for our calls), hence no SESSION_CERTS (a copy
# of the peer's chain in every WOLFSSL_SESSION), no peer-certificate chain stored for the
# application, no TLS < 1.2, DTLS, DES, RC4, Camellia, OCSP/CRL, PKCS#7/#12, SHA-3, ALPN, ...
# Record buffers stay dynamic (no LARGE_STATIC_BUFFERS): wolfSSL shrinks them after each record,
# so an idle session holds none. Per idle TLS session (bench/README.md, "bytes per session"):
#  - no copy of the peer certificate kept in every WOLFSSL: OPENSSL_EXTRA forces KEEP_PEER_CERT
#    in settings.h (a WOLFSSL_X509 of 3,536 bytes inside each WOLFSSL plus ~1.3 KB of decoded
#    names and DER on the heap), which only wolfSSL_get_peer_certificate() needs after the
#    handshake and mxburst never calls; the verify callback still gets store->current_cert
#    (a temporary copy per certificate). settings.h has no switch for it, so the build copies
#    the source and adds one (MXB_NO_KEEP_PEER_CERT, see patch_source below);
#  - --enable-aesgcm=small: no 512-byte GHASH table (GCM_TABLE_4BIT's M0) in each of the two
#    Aes key states of a session. With AES-NI (haveAESNI) wolfSSL never builds or reads it: the
#    AES-NI/AVX2 assembly computes GHASH from H. Without AES-NI, GCM falls back to the slow
#    bitwise GHASH, but then ChaCha20-Poly1305 is our first choice anyway (TlsPrefersAesGcm).
CONFIGURE_FLAGS=(
  --enable-static --disable-shared --with-pic
  --disable-examples --disable-crypttests --disable-benchmark --disable-jobserver
  --enable-asm --enable-aesni --enable-intelasm
  --enable-sp --enable-sp-asm --enable-sp-math-all
  --enable-tls13 --enable-tlsv12 --disable-oldtls --disable-sslv3 --disable-dtls
  --enable-session-ticket --enable-sni --enable-supportedcurves --enable-extended-master
  --enable-ecc --enable-curve25519 --enable-rsa --enable-dh --enable-rsapss
  --enable-aesgcm=small --enable-chacha --enable-poly1305 --enable-hkdf --enable-aescbc
  --enable-opensslextra --disable-opensslall --disable-sessioncerts
  --enable-certgen --enable-keygen --enable-certext
  --enable-sys-ca-certs --enable-altcertchains --enable-errorstrings
  --disable-sha3 --disable-sha224 --disable-des3 --disable-arc4 --disable-md4
  --disable-ocsp --disable-crl --disable-pkcs7 --disable-pkcs12 --disable-pwdbased
  --disable-alpn --disable-earlydata --disable-psk
)
# -D flags end up in the installed wolfssl/options.h, so our code sees the same settings.
EXTRA_DEFINES=(
  -DWOLFSSL_ALWAYS_VERIFY_CB      # the verify callback runs for good certificates too
  -DWOLFSSL_VERIFY_CB_ALL_CERTS   # ... and for every certificate of the chain, not only the leaf
  -DHAVE_EX_DATA                  # wolfSSL_X509_STORE_CTX_get_ex_data: the WOLFSSL of a store
  -DWOLFSSL_ALT_NAMES             # certgen: Cert::altNames (SAN list) and explicit validity dates
  -DMXB_NO_KEEP_PEER_CERT         # patch_source: no peer certificate copy per WOLFSSL (above)
)
CFLAGS_BUILD="-O2 -g -fstack-protector-strong -D_FORTIFY_SOURCE=2 ${EXTRA_DEFINES[*]}"

if [ "${1:-}" = "--print-flags" ]; then
  echo "${CONFIGURE_FLAGS[*]} CFLAGS=$CFLAGS_BUILD"
  exit 0
fi
if [ $# -ne 1 ] || [ -z "$1" ]; then
  echo "usage: tools/build-wolfssl.sh PREFIX | --print-flags" >&2
  exit 2
fi

mkdir -p "$1"
PREFIX="$(cd "$1" && pwd)"
CACHE="${MXB_WOLFSSL_CACHE:-$(dirname "$PREFIX")/wolfssl-src}"
STAMP="$PREFIX/.mxb-build-stamp"
log() { echo "build-wolfssl: $*" >&2; }

exec 9>"$PREFIX.lock"
flock 9

# Which Debian source version apt offers now (empty without a deb-src entry).
debian_version() {
  apt-cache showsrc wolfssl 2>/dev/null | awk '/^Version:/ {print $2}' | sort -V | tail -1
}

# The stamp holds the Debian version actually built; without apt (offline) a built PREFIX is
# still good as long as the flags match.
want_flags="flags: ${CONFIGURE_FLAGS[*]} CFLAGS=$CFLAGS_BUILD"
if [ -f "$STAMP" ] && [ -f "$PREFIX/lib/libwolfssl.a" ] && grep -qxF "$want_flags" "$STAMP"; then
  exit 0
fi

mkdir -p "$CACHE"
src_dir=$(find "$CACHE" -maxdepth 1 -type d -name "wolfssl-$WOLFSSL_UPSTREAM_VERSION" | head -1)
if [ -z "$src_dir" ]; then
  ver=$(debian_version)
  if [ -z "$ver" ]; then
    log "no Debian source package for wolfssl: add a deb-src entry (tools/setup.sh does) and" \
        "run apt-get update, or configure with -DMXB_WOLFSSL=system"
    exit 1
  fi
  case "$ver" in
    "$WOLFSSL_UPSTREAM_VERSION"-*) ;;
    *) log "Debian offers wolfssl $ver, this build expects $WOLFSSL_UPSTREAM_VERSION"; exit 1 ;;
  esac
  log "fetching wolfssl $ver source into $CACHE"
  # apt-get source unpacks and applies Debian's patches (dpkg-source -x).
  (cd "$CACHE" && apt-get source -qq "wolfssl=$ver" >/dev/null 2>"$CACHE/apt-get-source.log") || {
    cat "$CACHE/apt-get-source.log" >&2
    log "apt-get source wolfssl=$ver failed"
    exit 1
  }
  src_dir="$CACHE/wolfssl-$WOLFSSL_UPSTREAM_VERSION"
fi
deb_ver=$(dpkg-parsechangelog -l "$src_dir/debian/changelog" -S Version 2>/dev/null || echo unknown)

if [ ! -x "$src_dir/configure" ]; then
  log "autoreconf in $src_dir"
  (cd "$src_dir" && autoreconf -if >"$CACHE/autoreconf.log" 2>&1) || {
    tail -20 "$CACHE/autoreconf.log" >&2
    log "autoreconf failed (apt-get install autoconf automake libtool)"
    exit 1
  }
fi

# A private copy of the (shared, pristine) source with settings.h's forced KEEP_PEER_CERT made
# conditional — `#if defined(OPENSSL_EXTRA) && !defined(NO_CERTS)` gains
# `&& !defined(MXB_NO_KEEP_PEER_CERT)` — and the one function that then no longer compiles,
# wolfSSL_cmp_peer_cert_to_file (reads ssl->peerCert; unused by mxburst), left out without
# KEEP_PEER_CERT. Fails loudly if either line is not there (another wolfSSL version).
patch_source() {
  local settings="$1/wolfssl/wolfcrypt/settings.h" ssl_c="$1/src/ssl.c"
  local guard='^#if defined(OPENSSL_EXTRA) && !defined(NO_CERTS)$'
  local cmp_guard='^#if defined(HAVE_EX_DATA) && !defined(NO_FILESYSTEM)$'
  if [ "$(grep -c "$guard" "$settings")" != 1 ] ||
     [ "$(grep -A1 "$cmp_guard" "$ssl_c" | grep -c '^int wolfSSL_cmp_peer_cert_to_file(')" != 1 ]; then
    log "$1: the KEEP_PEER_CERT lines of settings.h / ssl.c are not where expected"
    return 1
  fi
  sed -i "s/$guard/& \\&\\& !defined(MXB_NO_KEEP_PEER_CERT)/" "$settings"
  sed -i "/$cmp_guard/{N;s/\n\(int wolfSSL_cmp_peer_cert_to_file(\)/ \\&\\& defined(KEEP_PEER_CERT)\n\1/}" \
    "$ssl_c"
  grep -q 'defined(NO_CERTS) && !defined(MXB_NO_KEEP_PEER_CERT)$' "$settings" &&
    grep -B1 '^int wolfSSL_cmp_peer_cert_to_file(' "$ssl_c" | grep -q 'defined(KEEP_PEER_CERT)$'
}

build_dir="$PREFIX.build"
rm -rf "$build_dir"
mkdir -p "$build_dir"
cp -a "$src_dir" "$build_dir/src"
src_dir="$build_dir/src"
patch_source "$src_dir" || exit 1
log "configuring wolfssl $deb_ver for $PREFIX"
start=$(date +%s)
(cd "$build_dir" && "$src_dir/configure" --prefix="$PREFIX" "${CONFIGURE_FLAGS[@]}" \
   CFLAGS="$CFLAGS_BUILD" >configure.log 2>&1) || {
  tail -30 "$build_dir/configure.log" >&2
  log "configure failed (full log: $build_dir/configure.log)"
  exit 1
}
log "compiling ($(nproc) jobs)"
# Installed into a staging copy first and moved into PREFIX only when complete: builds that use
# PREFIX meanwhile (other worktrees share one) keep the old headers and library until then.
stage="$build_dir/stage"
(cd "$build_dir" && make -j"$(nproc)" >make.log 2>&1 &&
   make install DESTDIR="$stage" >install.log 2>&1) || {
  tail -30 "$build_dir/make.log" >&2
  log "make failed (full log: $build_dir/make.log; $PREFIX unchanged)"
  exit 1
}
rm -f "$stage$PREFIX"/lib/*.la
rm -f "$STAMP"
for d in bin include lib share; do
  [ -e "$stage$PREFIX/$d" ] || continue
  rm -rf "$PREFIX/$d.old"
  [ -e "$PREFIX/$d" ] && mv "$PREFIX/$d" "$PREFIX/$d.old"
  mv "$stage$PREFIX/$d" "$PREFIX/$d"
done
rm -rf "$PREFIX"/*.old
{
  echo "debian: $deb_ver"
  echo "$want_flags"
} >"$STAMP"
rm -rf "$build_dir"
log "installed wolfssl $deb_ver into $PREFIX in $(( $(date +%s) - start )) s"
