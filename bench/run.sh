#!/usr/bin/env bash
# One command: benchmark hookproxy beside the direct floor, the naive FastAPI+httpx proxy and LiteLLM.
#
#   bench/run.sh                          # REPEATS=3, TARGETS="direct naive aiohttp litellm hookproxy responses"
#   TARGETS="direct aiohttp hookproxy hookproxy_aiohttp" bench/run.sh   # also hookproxy on its aiohttp fallback
#   REPEATS=1 SKIP_LITELLM=1 bench/run.sh # quick look, no LiteLLM (skips its ~750 MiB install)
#   HOOKPROXY_REF=worktree bench/run.sh   # measure the working tree instead of a commit
#   HOOKPROXY_DISABLE_PLUGINS=qwen-oauth,hybrid bench/run.sh   # core alone (plugins stay installed)
#   TARGETS="direct hookproxy hookproxy_w2 hookproxy_redis" bench/run.sh   # scale-out: --workers 2, --state redis
#
# What it does:
#   1. setup.sh: wrk (apt), .venv-bench (fake upstream, naive proxy, load generator) and, unless
#      SKIP_LITELLM=1, .venv-litellm (litellm[proxy]==1.108.7).
#   2. Makes sure hookproxy is installed: HOOKPROXY_PY (default <repo>/.venv/bin/python); if that
#      venv is missing it is created and the repo installed into it (pip install -e <repo>).
#   3. Takes the hookproxy source to measure: by default a snapshot of HOOKPROXY_REF=HEAD's core/
#      and plugins/ (git archive, put first on PYTHONPATH), so edits in progress in core/ don't leak into the
#      figures and the commit hash in the results is exact. HOOKPROXY_REF=worktree runs the
#      installed (editable) tree as it is on disk.
#   4. Runs run_baseline.sh with hookproxy as a generic target (pinned to PROXY_CPUS=1, one
#      uvicorn worker, fake upstream + load generator on LOADGEN_CPUS=0).
# Output: bench/results/<timestamp>/ (tables.md, results.jsonl, env.txt, hookproxy.txt, logs).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
cd "$HERE"

export REPEATS=${REPEATS:-3}
SKIP_LITELLM=${SKIP_LITELLM:-0}
HOOKPROXY_PORT=${HOOKPROXY_PORT:-9300}
HOOKPROXY_REF=${HOOKPROXY_REF:-HEAD}
HOOKPROXY_PY=${HOOKPROXY_PY:-$REPO/.venv/bin/python}
CONFIG=${HOOKPROXY_CONFIG:-$HERE/config/config.yaml}
if [ -z "${TARGETS:-}" ]; then
  TARGETS="direct naive aiohttp litellm hookproxy responses"
  [ "$SKIP_LITELLM" = 1 ] && TARGETS="direct naive aiohttp hookproxy responses"
fi
export TARGETS
export OUT=${OUT:-$HERE/results/$(date +%Y%m%d-%H%M%S)}

# 1. harness
SKIP_LITELLM=$SKIP_LITELLM bash "$HERE/setup.sh"

# 2. hookproxy installed?
if ! "$HOOKPROXY_PY" -c 'import hookproxy.cli' 2>/dev/null; then
  venv=$(dirname "$(dirname "$HOOKPROXY_PY")")
  echo "run.sh: installing hookproxy into $venv"
  [ -x "$HOOKPROXY_PY" ] || "${PYTHON:-python3}" -m venv "$venv"
  "$HOOKPROXY_PY" -m pip install -q -e "$REPO"
fi

# 3. source snapshot
mkdir -p "$OUT"
PYPATH=""
if [ "$HOOKPROXY_REF" != worktree ]; then
  COMMIT=$(git -C "$REPO" rev-parse "$HOOKPROXY_REF")
  SNAP=$OUT/hookproxy-src
  mkdir -p "$SNAP"
  git -C "$REPO" archive "$COMMIT" core plugins | tar -x -C "$SNAP"
  PYPATH=$SNAP/core
  for pkg in "$SNAP"/plugins/*/hookproxy_*/__init__.py; do   # installed plugins, same commit
    [ -e "$pkg" ] && PYPATH=$PYPATH:$(dirname "$(dirname "$pkg")")
  done
  SOURCE="commit $COMMIT (snapshot of core/ and plugins/ in $SNAP)"
else
  COMMIT=$(git -C "$REPO" rev-parse HEAD)
  dirty=$(git -C "$REPO" status --porcelain -- core plugins | wc -l)
  SOURCE="working tree on top of $COMMIT ($dirty changed paths under core/ plugins/)"
fi
loaded=$(PYTHONPATH=$PYPATH "$HOOKPROXY_PY" -c '
import importlib, importlib.metadata as md
for ep in md.entry_points(group="hookproxy"):
    print(" ", ep.name, "->", importlib.import_module(ep.value.split(":")[0]).__file__)')
{
  echo "hookproxy source: $SOURCE"
  echo "hookproxy plugins imported from:"; echo "$loaded"
  echo "hookproxy python: $("$HOOKPROXY_PY" --version 2>&1) ($HOOKPROXY_PY)"
  echo "hookproxy venv: $("$HOOKPROXY_PY" -m pip list 2>/dev/null | grep -iE '^(hookproxy|fastapi|starlette|uvicorn|httpx|aiohttp|orjson|uvloop|httptools|pluggy|pydantic) ' | tr -s ' ' | paste -sd, -)"
  echo "HOOKPROXY_DISABLE_PLUGINS=${HOOKPROXY_DISABLE_PLUGINS:-}"
  echo "config: $CONFIG"
  echo "plugins and backends:"
  UPSTREAM_URL=http://127.0.0.1:${UPSTREAM_PORT:-8001} UPSTREAM_KEY=sk-fake PYTHONPATH=$PYPATH \
    "$HOOKPROXY_PY" -m hookproxy plugins --config "$CONFIG" 2>&1 | sed 's/^/  /'
} | tee "$OUT/hookproxy.txt"

# 4. run
export HOOKPROXY_URL=http://127.0.0.1:$HOOKPROXY_PORT HOOKPROXY_MODEL=fake HOOKPROXY_KEY=sk-bench
export HOOKPROXY_CMD="PYTHONPATH=$PYPATH exec $HOOKPROXY_PY -m hookproxy --config $CONFIG --port $HOOKPROXY_PORT"
# hookproxy_aiohttp: the same hookproxy with the fallback client on the proxy path.
export HOOKPROXY_AIOHTTP_URL=http://127.0.0.1:$((HOOKPROXY_PORT + 3)) HOOKPROXY_AIOHTTP_MODEL=fake HOOKPROXY_AIOHTTP_KEY=sk-bench
export HOOKPROXY_AIOHTTP_CMD="PYTHONPATH=$PYPATH exec $HOOKPROXY_PY -m hookproxy --config $CONFIG --port $((HOOKPROXY_PORT + 3)) --upstream-client aiohttp"
# aiohttp: the naive FastAPI proxy with an aiohttp client (the yardstick of the performance targets).
AIOHTTP_PORT=${AIOHTTP_PORT:-9010}
export AIOHTTP_URL=http://127.0.0.1:$AIOHTTP_PORT
export AIOHTTP_CMD="UPSTREAM_BASE=http://127.0.0.1:${UPSTREAM_PORT:-8001} UPSTREAM_API_KEY=sk-fake exec $HERE/.venv-bench/bin/uvicorn naive_proxy_aiohttp:app --host 127.0.0.1 --port $AIOHTTP_PORT --loop uvloop --http httptools --no-access-log --log-level warning --workers 1"
# Scale-out scenario (targets hookproxy_w2 and hookproxy_redis, see README): the same proxy with
# --workers 2, and with --state pointing at a private redis-server started for the run.
W2_PORT=$((HOOKPROXY_PORT + 1)) REDIS_TARGET_PORT=$((HOOKPROXY_PORT + 2)) BENCH_REDIS_PORT=${BENCH_REDIS_PORT:-6390}
export HOOKPROXY_W2_URL=http://127.0.0.1:$W2_PORT HOOKPROXY_W2_MODEL=fake HOOKPROXY_W2_KEY=sk-bench
export HOOKPROXY_W2_CMD="PYTHONPATH=$PYPATH exec $HOOKPROXY_PY -m hookproxy --config $CONFIG --port $W2_PORT --workers 2"
export HOOKPROXY_REDIS_URL=http://127.0.0.1:$REDIS_TARGET_PORT HOOKPROXY_REDIS_MODEL=fake HOOKPROXY_REDIS_KEY=sk-bench
export HOOKPROXY_REDIS_CMD="PYTHONPATH=$PYPATH exec $HOOKPROXY_PY -m hookproxy --config $CONFIG --port $REDIS_TARGET_PORT --state redis://127.0.0.1:$BENCH_REDIS_PORT/0"
REDIS_PID=""
if [[ " $TARGETS " == *" hookproxy_redis "* ]]; then
  command -v redis-server >/dev/null || { echo "run.sh: hookproxy_redis needs redis-server (apt-get install -y redis-server)"; exit 1; }
  taskset -c "${LOADGEN_CPUS:-0}" redis-server --port "$BENCH_REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
      > "$OUT/redis.log" 2>&1 &
  REDIS_PID=$!
fi
# Target `responses`: the same hookproxy, driven through POST /v1/responses (the Responses front
# end): non-streaming c=1/64 and 64 paced streams, to compare its CPU per request with the chat path.
export RESPONSES_URL=$HOOKPROXY_URL RESPONSES_MODEL=fake RESPONSES_KEY=sk-bench RESPONSES_CMD=$HOOKPROXY_CMD
export RESPONSES_ARGS="--api responses --conc 1,64 --stream-spec 64:50:10"
# Other work on the machine (test suites ...) is noise: log every process above 5% CPU every 5 s.
setsid bash -c 'taskset -c "$1" top -b -d 5 -c -w 200 2>/dev/null \
    | awk '"'"'/^top -/ {t=$3} $1 ~ /^[0-9]+$/ && $9+0 > 5 {print t, $0; fflush()}'"'"' > "$2"' \
    _ "${LOADGEN_CPUS:-0}" "$OUT/cpu_noise.log" &
NOISE=$!
trap 'kill -- "-$NOISE" 2>/dev/null || true; [ -z "$REDIS_PID" ] || kill "$REDIS_PID" 2>/dev/null || true' EXIT
bash "$HERE/run_baseline.sh"
echo "other processes above 5% CPU during the run (excluding the harness): $OUT/cpu_noise.log"
grep -vE 'fake_upstream|load\.py|wrk|hookproxy|naive_proxy|litellm|top -b|awk' "$OUT/cpu_noise.log" | head -20 || true
