#!/usr/bin/env bash
# Live cockpit cost against the simulated cluster: CPU share, RSS and bytes written to the
# terminal per second, with the cockpit in a 200x60 tmux pane reading the sim's relay.
# Needs tmux and `script` (util-linux); build first: cargo build --release.
# Usage: benches/cockpit-live.sh SCENARIO SPEED SECONDS   (extra tui flags in $EXTRA)
#   benches/cockpit-live.sh cilium-installed 67 20   # ~20,000 flows/s (300 flows/s × speed)
#   benches/cockpit-live.sh fresh 1 20               # idle: no Cilium, no flows
set -u
SC=${1:-cilium-installed}; SP=${2:-67}; SECS=${3:-20}
R=$(cd "$(dirname "$0")/.." && pwd)/target/release/cutover
TMP=$(mktemp -d)
"$R" sim --scenario "$SC" --speed "$SP" > "$TMP/sim.json" 2>/dev/null &
SIMPID=$!
trap 'kill $SIMPID 2>/dev/null; tmux kill-session -t cutover-bench 2>/dev/null; rm -rf "$TMP"' EXIT
sleep 2
KC=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['kubeconfig_http'])" "$TMP/sim.json")
RELAY=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['hubble_relay'])" "$TMP/sim.json")
tmux new-session -d -s cutover-bench -x 200 -y 60 \
  "script -q -f $TMP/ts -c '$R --kubeconfig $KC --hubble-server $RELAY --log-file $TMP/log tui ${EXTRA:-}'"
sleep 8
PID=$(pgrep -f "^$R --kubeconfig $KC" | head -1)
TCK=$(getconf CLK_TCK)
t0=$(awk '{print $14+$15}' "/proc/$PID/stat"); s0=$(stat -c %s "$TMP/ts"); sleep "$SECS"
t1=$(awk '{print $14+$15}' "/proc/$PID/stat"); s1=$(stat -c %s "$TMP/ts")
python3 - "$SC" "$SP" "$t0" "$t1" "$TCK" "$SECS" "$s0" "$s1" "$(awk '/VmRSS/ {print $2}' /proc/$PID/status)" <<'PY'
import sys
sc, sp, t0, t1, tck, secs, s0, s1, rss = sys.argv[1:]
cpu = (int(t1) - int(t0)) / int(tck) / int(secs) * 100
print(f"{sc} speed {sp}: cockpit CPU {cpu:.1f}% of a core, RSS {int(rss)/1024:.1f} MiB, "
      f"terminal output {(int(s1)-int(s0))/int(secs)/1024:.1f} KiB/s")
PY
tmux capture-pane -t cutover-bench -p | grep -E "flows ·" | head -1
