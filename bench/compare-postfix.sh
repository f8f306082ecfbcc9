#!/usr/bin/env bash
# mxburst vs Postfix (and, with --peer haraka, Haraka) on the same messages, the same
# mxburst-sink, the same destinations. Measures, never asserts. Only 127.0.0.0/8 is used.
# Installs Postfix from Debian if missing (no system instance), then runs bench/compare.py.
#
#   bench/compare-postfix.sh --messages 20000                        # TLS, 1 run, mxburst + Postfix
#   bench/compare-postfix.sh --peer haraka --modes tls,plain,onemsg --runs 3
#
# Options (bench/compare.py --help): --peers LIST | --peer NAME, --modes tls,plain,onemsg,
# --runs N, --messages N (20000), --size BYTES (20000), --domains N (1000), --addresses K (4),
# --max-connections C (mxburst per domain, 2), --pf-concurrency C (Postfix per next hop, 25),
# --haraka-concurrency C (100), --haraka-dir DIR (npm work dir, /tmp/mxb-haraka-npm),
# --sink-threads T (1), --workdir DIR, --out FILE. Settings and figures: bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in -h|--help) sed -n '2,13p' "$0"; exit 0 ;; esac
B="${MXB_BUILD_DIR:-build/release}"
for x in "$B/engine/mxburst" "$B/tools/mxburst-sink" "$B/tools/mxburst-inject"; do
  [ -x "$x" ] || { echo "compare-postfix: $x missing: run tools/build.sh release" >&2; exit 1; }
done
if ! command -v postfix >/dev/null 2>&1; then
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q postfix >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q postfix >/dev/null; }
fi
ulimit -n "$(ulimit -Hn)"
exec python3 bench/compare.py "$@"
