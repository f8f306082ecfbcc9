#!/usr/bin/env bash
# Installs mxburst's build and test dependencies from Debian 12 packages, and a deb-src entry for
# tools/build-wolfssl.sh (`apt-get source wolfssl`, the presets' bundled wolfSSL). Idempotent:
# packages already present are not touched, and apt-get runs only when a package or the source
# index is missing.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config
  liburing-dev libwolfssl-dev libc-ares-dev libabsl-dev
  libbenchmark-dev libgtest-dev libgmock-dev
  libtomlplusplus-dev nlohmann-json3-dev libidn2-dev
  # engine/sts_fetcher: MTA-STS policy fetches (RFC 8461 §3.3) over HTTPS
  libcurl4-openssl-dev
  # engine/tlsrpt_message: TLS-RPT reports are gzip-compressed (RFC 8460 §5.2)
  zlib1g-dev
  # tests/fuzz (the `fuzz` preset, run by tools/test.sh): clang with the libFuzzer runtime
  clang libclang-rt-14-dev
  openssl ca-certificates python3
  unbound nsd ldnsutils
  # tests/integration/postfix_*: a private Postfix 3.7 instance as a real (OpenSSL) receiver
  postfix
  # tests/integration/relay_test: Postfix submissions with Cyrus SASL (sasldb; PLAIN, LOGIN)
  sasl2-bin libsasl2-modules libsasl2-modules-db
  # control/: the HTTP control plane (cpp-httplib); its metrics test parses with the reference
  # Prometheus parser
  libcpp-httplib-dev python3-prometheus-client
  # dkim/: DKIM signing with libopendkim (RSA and Ed25519); tests verify with python3-dkim
  # (Ed25519 through python3-nacl, keys from the test zone through python3-dnspython)
  libopendkim-dev python3-dkim python3-nacl python3-dnspython
  # issue 15, past one node: input/ (RabbitMQ, rabbitmq-c) and cluster/ (Redis, hiredis); the
  # tests start a private rabbitmq-server (with its own epmd from erlang-base) and redis-server
  librabbitmq-dev libhiredis-dev rabbitmq-server redis-server
  # bench/cluster.py publishes with pika
  python3-pika
  # dist/: the man pages (scdoc), and tests/integration/service_test.cc checks the installed
  # unit with systemd-analyze verify (which runs kill(1) from procps and man(1) from man-db for
  # the unit's ExecReload and Documentation lines; no systemd PID 1 is needed or started) and
  # the logrotate snippet with logrotate --debug
  scdoc systemd logrotate procps man-db
  # tools/build-wolfssl.sh (MXB_WOLFSSL=bundled): `apt-get source wolfssl` and its configure
  dpkg-dev autoconf automake libtool
)
# The status page's browser test (tests/integration/control_test.cc) drives Debian's chromium
# headless, so CI installs it by default (~130 packages, 290 MB; 44 s for the whole setup on a
# fresh 2-core machine with a near mirror, up to 8 minutes seen on a slow one).
# MXB_SETUP_CHROMIUM=0 leaves it out; that test then skips and says why.
if [ "${MXB_SETUP_CHROMIUM:-1}" != 0 ]; then PACKAGES+=(chromium); fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

# `apt-get source wolfssl` needs a deb-src entry. Debian 12 lists its archives in deb822 form
# (/etc/apt/sources.list.d/debian.sources, "Types: deb"); we add the same archives as deb-src in
# a file of our own, once, and only when no deb-src entry is configured at all.
SRC_LIST=/etc/apt/sources.list.d/mxburst-deb-src.sources
need_update=""
if ! grep -qsE '^[[:space:]]*(Types:.*deb-src|deb-src[[:space:]])' \
     /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; then
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    sed -E 's/^Types:[[:space:]]*deb([[:space:]].*)?$/Types: deb-src/' \
      /etc/apt/sources.list.d/debian.sources | $SUDO tee "$SRC_LIST" >/dev/null
  else
    printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      | $SUDO tee "$SRC_LIST" >/dev/null
  fi
  echo "setup: added deb-src entries ($SRC_LIST)"
fi
# The source index is fetched by the next apt-get update (once; later runs find it).
if ! ls /var/lib/apt/lists/*_source_Sources* >/dev/null 2>&1; then need_update=1; fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ] && [ -z "$need_update" ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi

$SUDO apt-get update -qq
if [ ${#missing[@]} -gt 0 ]; then
  # Debian's postfix asks for a mailer type: none. The tests run their own instance with its own
  # configuration directory; the system's Postfix stays unconfigured and stopped.
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
  echo "setup: installing ${missing[*]}"
  # rabbitmq-server and redis-server must not start as system services (RabbitMQ and epmd
  # would listen on every interface): the tests run private instances on 127.0.0.1. A
  # policy-rc.d that says 101 ("action forbidden") keeps invoke-rc.d from starting them.
  own_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
  fi
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  if [ -n "$own_policy" ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
fi
