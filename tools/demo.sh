#!/usr/bin/env bash
# The main job, end to end on loopback: build, start mxburst-sink (STARTTLS, generated
# certificate), inject messages into a fresh spool, run mxburst until the spool is drained, and
# print the summary. Only 127.0.0.0/8 is used.
#
#   tools/demo.sh                        # 10,000 x 20 KB messages to 50 domains
#   MXB_DEMO_MESSAGES=100000 MXB_DEMO_SIZE=5000 tools/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

N="${MXB_DEMO_MESSAGES:-10000}"
SIZE="${MXB_DEMO_SIZE:-20000}"
DOMAINS="${MXB_DEMO_DOMAINS:-50}"
SINK_LISTEN="${MXB_DEMO_SINK:-127.0.0.2:0}"   # port 0: the sink picks a free one

tools/setup.sh
tools/build.sh release
B=build/release

work="$PWD/demo-run"
rm -rf "$work"
mkdir -p "$work"

"$B/tools/mxburst-sink" --listen "$SINK_LISTEN" --quiet \
  --ready-file "$work/sink.ready" --stats-file "$work/sink-stats.json" >"$work/sink.out" 2>"$work/sink.err" &
sink=$!
cleanup() { kill "$sink" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 100); do [ -e "$work/sink.ready" ] && break; sleep 0.05; done
[ -e "$work/sink.ready" ] || { echo "demo: mxburst-sink did not start:"; cat "$work/sink.err"; exit 1; }
SINK_ADDR=$(head -n1 "$work/sink.ready" | cut -d' ' -f1)

echo "== injecting $N messages of $SIZE bytes for $DOMAINS domains into $work/spool"
"$B/tools/mxburst-inject" --spool "$work/spool" --count "$N" --size "$SIZE" \
  --domains "$DOMAINS" --no-fsync

echo "== delivering to mxburst-sink at $SINK_ADDR (STARTTLS, opportunistic policy)"
"$B/engine/mxburst" --spool "$work/spool" --route "*=$SINK_ADDR" --drain \
  --log "$work/accounting.jsonl" --helo demo.mxburst.example | tee "$work/summary.txt"

kill -TERM "$sink"
wait "$sink" || true
trap - EXIT
echo "== sink received: $(cat "$work/sink-stats.json" 2>/dev/null || echo '(no stats)')"
left=$(find "$work/spool/incoming" "$work/spool/active" "$work/spool/deferred" -type f | wc -l)
echo "== spool files left: $left; accounting log: $work/accounting.jsonl ($(wc -l <"$work/accounting.jsonl") records)"
