#!/usr/bin/env bash
# The Anthropic front end's cost beside the chat-completions path, in one run (bench/README.md).
#
#   bench/messages.sh                    # REPEATS=3, about 6 min
#   REPEATS=1 bench/messages.sh          # quick look
#
# Targets, each a fresh hookproxy on PROXY_CPUS per repeat, all against the same fake upstream:
#   chat         POST /v1/chat/completions, this commit (HOOKPROXY_REF, default HEAD)
#   chatbase     the same at BASE_REF (default 86f52cf, the commit before the front-end seam), core
#                alone: its plugins predate the seam, so they are blocked there and in `chat` alike
#   messages     POST /v1/messages to the openai-compatible backend (translated both ways)
#   passthrough  POST /v1/messages to an `anthropic` backend (relayed untouched)
# Scenarios: non-streaming c=1 and c=64, paced streams c=64 (50 chunks, 10 ms apart). The figure to
# compare is "proxy CPU us/req" in tables.md.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
cd "$HERE"

export REPEATS=${REPEATS:-3}
PORT=${HOOKPROXY_PORT:-9300}
PY=${HOOKPROXY_PY:-$REPO/.venv/bin/python}
REF=${HOOKPROXY_REF:-HEAD}
BASE_REF=${BASE_REF:-86f52cf}
CONFIG=$HERE/config-messages/config.yaml
BASE_CONFIG=$HERE/config/config.yaml
export OUT=${OUT:-$HERE/results/messages-$(date +%Y%m%d-%H%M%S)}
export TARGETS=${TARGETS:-"chat chatbase messages passthrough"}
export LOAD_ARGS=${LOAD_ARGS:-"--conc 1,64 --stream-spec 64:50:10"}

SKIP_LITELLM=1 bash "$HERE/setup.sh"
mkdir -p "$OUT"

snapshot() {  # snapshot REF DIR -> PYTHONPATH for that commit's core and plugins
  local commit path pkg
  commit=$(git -C "$REPO" rev-parse "$1")
  mkdir -p "$2"
  git -C "$REPO" archive "$commit" core plugins | tar -x -C "$2"
  path=$2/core
  for pkg in "$2"/plugins/*/hookproxy_*/__init__.py; do
    [ -e "$pkg" ] && path=$path:$(dirname "$(dirname "$pkg")")
  done
  echo "$path"
}
HEAD_PATH=$(snapshot "$REF" "$OUT/src-head")
BASE_PATH=$(snapshot "$BASE_REF" "$OUT/src-base")
CORE_ONLY=hybrid,qwen-oauth,anthropic,openai-chat
{
  echo "chat, messages, passthrough: $(git -C "$REPO" rev-parse "$REF")"
  echo "chatbase: $(git -C "$REPO" rev-parse "$BASE_REF") with HOOKPROXY_DISABLE_PLUGINS=$CORE_ONLY"
} | tee "$OUT/hookproxy.txt"

run() {  # run PYTHONPATH CONFIG [DISABLED_PLUGINS]
  echo "HOOKPROXY_DISABLE_PLUGINS=${3:-} PYTHONPATH=$1 exec $PY -m hookproxy --config $2 --port $PORT"
}
export CHAT_URL=http://127.0.0.1:$PORT CHAT_MODEL=fake
export CHAT_CMD; CHAT_CMD=$(run "$HEAD_PATH" "$BASE_CONFIG" hybrid,qwen-oauth,anthropic)
export CHATBASE_URL=http://127.0.0.1:$PORT CHATBASE_MODEL=fake
export CHATBASE_CMD; CHATBASE_CMD=$(run "$BASE_PATH" "$BASE_CONFIG" "$CORE_ONLY")
export MESSAGES_URL=http://127.0.0.1:$PORT MESSAGES_MODEL=fake MESSAGES_ARGS="--api messages"
export MESSAGES_CMD; MESSAGES_CMD=$(run "$HEAD_PATH" "$CONFIG" hybrid,qwen-oauth)
export PASSTHROUGH_URL=http://127.0.0.1:$PORT PASSTHROUGH_MODEL=fake-anthropic:fake PASSTHROUGH_ARGS="--api messages"
export PASSTHROUGH_CMD; PASSTHROUGH_CMD=$(run "$HEAD_PATH" "$CONFIG" hybrid,qwen-oauth)
bash "$HERE/run_baseline.sh"
