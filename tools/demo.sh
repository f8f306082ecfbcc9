#!/usr/bin/env bash
# The main job, end to end on loopback: build; start a local unbound serving the demo zone (MX
# records for the recipient domains, MX hosts named starttls-…, smtps-… and plain); start
# mxburst-sink on 127.0.0.2 with STARTTLS on one port and implicit TLS on another, with a
# certificate for *.mx.demo.example; inject messages into a fresh spool; run mxburst with DNS
# routing until the spool is drained; print the summary. Only 127.0.0.0/8 is used.
#
#   tools/demo.sh                        # 10,000 x 20 KB messages to 50 domains
#   MXB_DEMO_MESSAGES=100000 MXB_DEMO_SIZE=5000 tools/demo.sh
#   MXB_DEMO_ROUTE='*=127.0.0.2:2525' tools/demo.sh   # static route instead of DNS
#   MXB_DEMO_LIVE=1 tools/demo.sh        # keep running (slow receiver): watch the dashboard,
#                                        # suspend a domain there; Ctrl-C stops
#
# The engine's control endpoint listens on 127.0.0.1 (a free port); the script prints the
# dashboard URL and the token for its suspend/resume buttons.
set -euo pipefail
cd "$(dirname "$0")/.."

N="${MXB_DEMO_MESSAGES:-10000}"
SIZE="${MXB_DEMO_SIZE:-20000}"
DOMAINS="${MXB_DEMO_DOMAINS:-50}"

tools/setup.sh
tools/build.sh release
B=build/release

work="$PWD/demo-run"
rm -rf "$work"
mkdir -p "$work"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SMTP_PORT=$(free_port)
SMTPS_PORT=$(free_port)
DNS_PORT=$(free_port)

# The demo zone: dN.example MX -> starttls-mxN / smtps-mxN / mxN .mx.demo.example -> 127.0.0.2.
{
  cat <<CONF
server:
  username: ""
  chroot: ""
  directory: "$work"
  pidfile: ""
  use-syslog: no
  logfile: "$work/unbound.log"
  verbosity: 0
  interface: 127.0.0.1@$DNS_PORT
  port: $DNS_PORT
  do-ip6: no
  access-control: 127.0.0.0/8 allow
  num-threads: 1
  module-config: "iterator"
  local-zone: "." refuse
  local-zone: "example." static
  local-data: "example. 3600 IN SOA ns.example. host.example. 1 3600 600 86400 60"
  local-zone: "demo.example." static
  local-data: "demo.example. 3600 IN SOA ns.demo.example. host.demo.example. 1 3600 600 86400 60"
CONF
  for i in $(seq 1 "$DOMAINS"); do   # mxburst-inject names them d1..dN
    case $((i % 3)) in
      0) mx="starttls-mx$i.mx.demo.example" ;;
      1) mx="smtps-mx$i.mx.demo.example" ;;
      2) mx="mx$i.mx.demo.example" ;;
    esac
    echo "  local-data: \"d$i.example. 300 IN MX 10 $mx.\""
    echo "  local-data: \"$mx. 300 IN A 127.0.0.2\""
  done
  printf 'remote-control:\n  control-enable: no\n'
} > "$work/unbound.conf"
unbound -d -c "$work/unbound.conf" 2>"$work/unbound.err" &
pids+=($!)

# Live mode: the receiver answers each reply after MXB_DEMO_DELAY_MS, so the run lasts minutes.
delay=(); [ "${MXB_DEMO_LIVE:-}" = 1 ] && delay=(--reply-delay-ms "${MXB_DEMO_DELAY_MS:-20}")
"$B/tools/mxburst-sink" "${delay[@]}" \
  --listen "127.0.0.2:$SMTP_PORT,127.0.0.2:$SMTPS_PORT/implicit-tls" \
  --cert-names '*.mx.demo.example' --write-cert "$work/ca.pem" --quiet \
  --ready-file "$work/sink.ready" --stats-file "$work/sink-stats.json" \
  >"$work/sink.out" 2>"$work/sink.err" &
pids+=($!)
sink=${pids[-1]}
for _ in $(seq 100); do [ -e "$work/sink.ready" ] && break; sleep 0.05; done
[ -e "$work/sink.ready" ] || { echo "demo: mxburst-sink did not start:"; cat "$work/sink.err"; exit 1; }

echo "== injecting $N messages of $SIZE bytes for $DOMAINS domains into $work/spool"
"$B/tools/mxburst-inject" --spool "$work/spool" --count "$N" --size "$SIZE" \
  --domains "$DOMAINS" --no-fsync

if [ -n "${MXB_DEMO_ROUTE:-}" ]; then
  routing=(--route "$MXB_DEMO_ROUTE")
  echo "== delivering with the static route $MXB_DEMO_ROUTE"
else
  # The demo zone's MX hosts live on 127.0.0.2: a lab setup, so private MX targets are allowed.
  # The demo unbound does not validate (no signed zone), so DANE is inert here by design:
  # --dnssec-probe "" skips the start-up probe that would say so.
  routing=(--dns "127.0.0.1:$DNS_PORT" --allow-private-mx --dnssec-probe "")
  echo "== delivering by MX (unbound on 127.0.0.1:$DNS_PORT) to mxburst-sink on 127.0.0.2" \
       "(STARTTLS :$SMTP_PORT, implicit TLS :$SMTPS_PORT)"
fi
# The control endpoint (status page, /metrics, API) on loopback, with a token for commands.
HTTP_PORT=$(free_port)
python3 -c 'import secrets; print(secrets.token_hex(16))' >"$work/token"
chmod 600 "$work/token"
printf '[http]\nlisten = "127.0.0.1:%s"\ntoken_file = "%s"\n' "$HTTP_PORT" "$work/token" \
  >"$work/mxburst.toml"
echo "== dashboard: http://127.0.0.1:$HTTP_PORT/   (token for its buttons: $(cat "$work/token"))"
echo "   metrics:   curl -s http://127.0.0.1:$HTTP_PORT/metrics"
echo "   commands:  $B/tools/mxburstctl queue --url 127.0.0.1:$HTTP_PORT"
echo "              $B/tools/mxburstctl suspend --domain d1.example --duration 10m --url 127.0.0.1:$HTTP_PORT --token-file $work/token"
# mxburst refuses to run as root without a `user` to drop to; the demo is a lab run.
root_flag=(); [ "$(id -u)" = 0 ] && root_flag=(--allow-root)
mode=(--drain)
if [ "${MXB_DEMO_LIVE:-}" = 1 ]; then
  mode=()
  echo "== live mode: the engine keeps running; Ctrl-C stops it"
  trap 'kill -TERM "$engine" 2>/dev/null || true' INT
fi
"$B/engine/mxburst" --config "$work/mxburst.toml" --spool "$work/spool" "${routing[@]}" \
  "${root_flag[@]}" "${mode[@]}" \
  --smtp-port "$SMTP_PORT" --smtps-port "$SMTPS_PORT" --ca-file "$work/ca.pem" \
  --log "$work/accounting.jsonl" --helo demo.mxburst.example >"$work/summary.txt" &
engine=$!
wait "$engine" || wait "$engine" || true
trap - INT
cat "$work/summary.txt"

kill -TERM "$sink"
wait "$sink" || true
echo "== sink received: $(cat "$work/sink-stats.json" 2>/dev/null || echo '(no stats)')"
left=$(find "$work/spool/incoming" "$work/spool/active" "$work/spool/deferred" -type f | wc -l)
echo "== spool files left: $left; accounting log: $work/accounting.jsonl ($(wc -l <"$work/accounting.jsonl") records)"
