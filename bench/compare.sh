#!/usr/bin/env bash
# Compare hookproxy builds or settings in ONE interleaved run (same machine state, same floor).
#
#   bench/compare.sh before=86f52cf after=HEAD
#   bench/compare.sh aiohttp main=main    # "aiohttp" adds the naive FastAPI+aiohttp yardstick
#   bench/compare.sh obs_off=HEAD:--no-metrics obs_on="HEAD:--access-log json"
#
# Each argument is NAME=REF[:FLAGS]: a snapshot of REF's core/ and plugins/ (git archive, first on
# PYTHONPATH, as run.sh does) started with bench/config/config.yaml plus FLAGS. The direct floor
# runs too. REPEATS (default 3), MAX_SECONDS, LOAD_ARGS, PROXY_CPUS, LOADGEN_CPUS pass through to
# run_baseline.sh; tables land in results/<timestamp>/tables.md. NAME_ENV (upper-cased NAME), when
# set, is put before the command as environment assignments, e.g. B_ENV="PYTHONMALLOC=malloc";
# NAME_MODEL (default fake) and NAME_ARGS (load.py arguments, e.g. "--api messages") pass through.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
[ $# -ge 1 ] || { echo "usage: bench/compare.sh NAME=REF[:FLAGS] ..." >&2; exit 2; }
export REPEATS=${REPEATS:-3}
export OUT=${OUT:-$HERE/results/$(date +%Y%m%d-%H%M%S)-compare}
PY=${HOOKPROXY_PY:-$REPO/.venv/bin/python}
CONFIG=${HOOKPROXY_CONFIG:-$HERE/config/config.yaml}
SKIP_LITELLM=1 bash "$HERE/setup.sh"
mkdir -p "$OUT"
targets="direct"
port=9400
for spec in "$@"; do
  if [ "$spec" = aiohttp ]; then  # the naive FastAPI+aiohttp proxy: the yardstick of the targets
    AIOHTTP_PORT=${AIOHTTP_PORT:-9010}
    export AIOHTTP_URL=http://127.0.0.1:$AIOHTTP_PORT
    export AIOHTTP_CMD="UPSTREAM_BASE=http://127.0.0.1:${UPSTREAM_PORT:-8001} UPSTREAM_API_KEY=sk-fake exec $HERE/.venv-bench/bin/uvicorn naive_proxy_aiohttp:app --host 127.0.0.1 --port $AIOHTTP_PORT --loop uvloop --http httptools --no-access-log --log-level warning --workers 1"
    targets="$targets aiohttp"
    continue
  fi
  name=${spec%%=*}; rest=${spec#*=}; ref=${rest%%:*}; flags=""
  [[ "$rest" == *:* ]] && flags=${rest#*:}
  [[ "$name" =~ ^[a-z][a-z0-9_]*$ ]] || { echo "bad target name $name (lower case, digits, _)" >&2; exit 2; }
  snap=$OUT/src-$name
  mkdir -p "$snap"
  git -C "$REPO" archive "$(git -C "$REPO" rev-parse "$ref")" core plugins | tar -x -C "$snap"
  pypath=$snap/core
  for pkg in "$snap"/plugins/*/hookproxy_*/__init__.py; do
    [ -e "$pkg" ] && pypath=$pypath:$(dirname "$(dirname "$pkg")")
  done
  T=${name^^}
  modelvar=${T}_MODEL
  export "${T}_URL=http://127.0.0.1:$port" "${T}_MODEL=${!modelvar:-fake}" "${T}_KEY=sk-bench"
  envvar=${T}_ENV
  export "${T}_CMD=PYTHONPATH=$pypath ${!envvar:-} exec $PY -m hookproxy --config $CONFIG --port $port $flags"
  echo "$name: $ref ($(git -C "$REPO" rev-parse --short "$ref")) $flags" | tee -a "$OUT/compare.txt"
  targets="$targets $name"
  port=$((port + 1))
done
TARGETS=$targets bash "$HERE/run_baseline.sh"
