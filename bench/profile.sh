#!/usr/bin/env bash
# Profile hookproxy under load with py-spy (same pinning as run_baseline.sh).
#
#   bench/profile.sh                          # nonstream c=64 and stream c=1 (50 chunks, 0 ms)
#   SCENARIOS="nonstream64 stream1 stream64paced" SECONDS_PER=12 bench/profile.sh
#   HOOKPROXY_REF=worktree bench/profile.sh   # the working tree instead of a HEAD snapshot
#   HOOKPROXY_CONFIG=bench/config-messages/config.yaml MODEL=fake-anthropic:fake LOAD_ARGS="--api messages" \
#     bench/profile.sh                        # the Anthropic front end (here: relayed to an anthropic backend)
#
# Needs bench/run.sh (or setup.sh) to have built .venv-bench; installs py-spy into it.
# Output: bench/results/profile-<timestamp>/<scenario>.{collapsed.txt,summary.txt,load.txt}
# collapsed.txt is py-spy's raw (folded stacks) format: speedscope and flamegraph.pl read it;
# summary.txt is profile_summary.py's breakdown (own code vs frameworks).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
cd "$HERE"
LOADGEN_CPUS=${LOADGEN_CPUS:-0}
PROXY_CPUS=${PROXY_CPUS:-1}
UPSTREAM_PORT=${UPSTREAM_PORT:-8001}
HOOKPROXY_PORT=${HOOKPROXY_PORT:-9300}
HOOKPROXY_REF=${HOOKPROXY_REF:-HEAD}
HOOKPROXY_PY=${HOOKPROXY_PY:-$REPO/.venv/bin/python}
CONFIG=${HOOKPROXY_CONFIG:-$HERE/config/config.yaml}
SCENARIOS=${SCENARIOS:-"nonstream64 stream1"}
MODEL=${MODEL:-fake}
LOAD_ARGS=${LOAD_ARGS:-}
SECONDS_PER=${SECONDS_PER:-10}
RATE=${RATE:-250}
BENCH_PY=$HERE/.venv-bench/bin/python
OUT=${OUT:-$HERE/results/profile-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
[ -x "$BENCH_PY" ] || SKIP_LITELLM=1 bash "$HERE/setup.sh"
[ -x "$HERE/.venv-bench/bin/py-spy" ] || "$HERE/.venv-bench/bin/pip" install -q py-spy
PYSPY=$HERE/.venv-bench/bin/py-spy

PYPATH=""
if [ "$HOOKPROXY_REF" != worktree ]; then
  COMMIT=$(git -C "$REPO" rev-parse "$HOOKPROXY_REF")
  mkdir -p "$OUT/hookproxy-src"
  git -C "$REPO" archive "$COMMIT" core plugins | tar -x -C "$OUT/hookproxy-src"
  PYPATH=$OUT/hookproxy-src/core
  for pkg in "$OUT"/hookproxy-src/plugins/*/hookproxy_*/__init__.py; do
    [ -e "$pkg" ] && PYPATH=$PYPATH:$(dirname "$(dirname "$pkg")")
  done
  echo "profiling hookproxy at commit $COMMIT" | tee "$OUT/source.txt"
else
  echo "profiling the working tree (HEAD $(git -C "$REPO" rev-parse HEAD))" | tee "$OUT/source.txt"
fi

export UPSTREAM_URL=http://127.0.0.1:$UPSTREAM_PORT UPSTREAM_KEY=sk-fake
PIDS=()
cleanup() { local p; for p in "${PIDS[@]:-}"; do kill -TERM -- "-$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
wait_up() { for _ in $(seq 1 100); do curl -sf -o /dev/null -H 'Authorization: Bearer sk-bench' "$1" && return 0; sleep 0.2; done; return 1; }

( cd "$HERE" && FAKE_PORT=$UPSTREAM_PORT exec setsid taskset -c "$LOADGEN_CPUS" "$BENCH_PY" fake_upstream.py >"$OUT/upstream.log" 2>&1 ) &
PIDS+=($!)
wait_up "$UPSTREAM_URL/v1/models"
( PYTHONPATH=$PYPATH exec setsid taskset -c "$PROXY_CPUS" "$HOOKPROXY_PY" -m hookproxy --config "$CONFIG" \
    --port "$HOOKPROXY_PORT" >"$OUT/hookproxy.log" 2>&1 ) &
HP=$!
PIDS+=($HP)
wait_up "http://127.0.0.1:$HOOKPROXY_PORT/v1/models"
echo "upstream pid=${PIDS[0]} hookproxy pid=$HP"

for sc in $SCENARIOS; do
  case "$sc" in
    nonstream64)   args=(--scenarios nonstream --conc 64 --client wrk) ;;
    nonstream1)    args=(--scenarios nonstream --conc 1 --client wrk) ;;
    stream1)       args=(--scenarios stream --stream-spec 1:50:0) ;;
    stream64paced) args=(--scenarios stream --stream-spec 64:50:10) ;;
    *) echo "unknown scenario $sc"; continue ;;
  esac
  echo "== $sc"
  taskset -c "$LOADGEN_CPUS" "$BENCH_PY" load.py --base-url "http://127.0.0.1:$HOOKPROXY_PORT" --model "$MODEL" $LOAD_ARGS \
      --api-key sk-bench --label "profile-$sc" --max-seconds $((SECONDS_PER + 6)) --requests 10000000 \
      --stream-requests 10000000 --proxy-pid "$HP" --upstream-admin "$UPSTREAM_URL" "${args[@]}" \
      >"$OUT/$sc.load.txt" 2>&1 &
  LP=$!
  sleep 4   # past the warm-up
  taskset -c "$LOADGEN_CPUS" "$PYSPY" record --pid "$HP" --rate "$RATE" --duration "$SECONDS_PER" \
      --full-filenames ${PYSPY_ARGS:-} --format raw -o "$OUT/$sc.collapsed.txt" >"$OUT/$sc.pyspy.log" 2>&1 || cat "$OUT/$sc.pyspy.log"
  wait "$LP" || true
  "$BENCH_PY" "$HERE/profile_summary.py" "$OUT/$sc.collapsed.txt" | tee "$OUT/$sc.summary.txt" | head -60
done
echo "profiles: $OUT"
