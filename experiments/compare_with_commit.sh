#!/usr/bin/env bash
# Run every shipped experiment kind with this checkout and with an earlier commit, and compare
# their metrics.csv byte for byte (same configs, same overrides, one process each, side by side).
#   experiments/compare_with_commit.sh f8fb901          # the last commit before the one run loop
# Prints: kind | rows | IDENTICAL or DIFFERENT | wall time of both.
set -euo pipefail
REV=${1:?usage: experiments/compare_with_commit.sh REV}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=$ROOT/.venv/bin/python
OLD=$(mktemp -d)
OUT=$(mktemp -d)
trap 'rm -rf "$OLD"' EXIT
git -C "$ROOT" archive "$REV" | tar -x -C "$OLD"
run() {  # name config overrides...
  local name=$1 cfg=$2; shift 2
  local sets=(); for s in "$@"; do sets+=(--set "$s"); done
  local t0 t1 t2
  t0=$(date +%s.%N)
  (cd "$OLD" && PYTHONPATH="$OLD" "$PY" -c "import sys; from neuroprobe.cli import main; sys.exit(main(sys.argv[1:]))" \
     run "$cfg" "${sets[@]}" --set run.progress=false --out "$OUT/old_$name" > "$OUT/old_$name.log" 2>&1)
  t1=$(date +%s.%N)
  (cd "$ROOT" && "$PY" -m neuroprobe.cli run "$cfg" "${sets[@]}" --set run.progress=false --out "$OUT/new_$name" \
     > "$OUT/new_$name.log" 2>&1)
  t2=$(date +%s.%N)
  local same=DIFFERENT
  cmp -s "$OUT/old_$name/metrics.csv" "$OUT/new_$name/metrics.csv" && same=IDENTICAL
  printf '%s | %d rows | %s | old %.1f s, new %.1f s\n' "$name" $(($(wc -l < "$OUT/new_$name/metrics.csv") - 1)) \
    "$same" "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t1" | bc)"
}
run nrl_cartpole experiments/nrl_cartpole.toml task.episodes=300
run rmhl_acrobot experiments/rmhl_acrobot.toml task.episodes=100
run bp_reaching experiments/bp_reaching.toml task.episodes=200
run cet_digits experiments/cet_digits.toml
run probe_cartpole experiments/probe_cartpole.toml task.episodes=100
run probe_digits experiments/probe_digits.toml task.steps=2000
run distal_reward experiments/distal_reward.toml task.duration=20 rule.order=6 rule.delay=2.0
run spiking_cartpole experiments/spiking_cartpole.toml task.episodes=40
echo "runs kept in $OUT"
