#!/usr/bin/env bash
# Fuzzes the embedded server from its own OpenAPI document with schemathesis (PyPI, in
# .tools/schemathesis-venv): one run with a write key, one with no credential. Every check runs but
# positive_data_acceptance (the document gives shapes; value rules — a cron expression, a time zone, a
# step the build has, an integer written as 1.0 — are the handlers' to refuse with a 422 naming the
# field): no 5xx, every status and body as documented, a 405 with its Allow header, invalid input
# refused, no answer without a credential. Prints how many cases ran and fails under 1,000.
#
#   bash infra/scripts/fuzz.sh        (KICKOFF_FUZZ_SEED, KICKOFF_FUZZ_EXAMPLES change the seed and the
#                                      cases per operation; the tools must be installed: tools.sh)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
st="$root/.tools/schemathesis-venv/bin/schemathesis"
[ -x "$st" ] || { echo "error: schemathesis is not installed: bash infra/scripts/tools.sh"; exit 1; }
seed=${KICKOFF_FUZZ_SEED:-20261123}
examples=${KICKOFF_FUZZ_EXAMPLES:-30}
logs="$root/target/fuzz"
mkdir -p "$logs"
cargo build -q -p kickoff-local --bins
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
KICKOFF_DEV_API_KEY=fuzz-key KICKOFF_TABLE='' KICKOFF_QUEUE_URL='' \
  "$root/target/debug/kickoff-local" --port "$port" >"$logs/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  sleep 0.1
done

total=0
run() { # name [schemathesis options...]: one run; adds its cases to total
  local name=$1; shift
  local out="$logs/$name.log"
  local status=0
  (cd "$logs" && timeout 900 "$st" run "http://127.0.0.1:$port/openapi.json" --seed "$seed" -n "$examples" \
    --checks all --exclude-checks positive_data_acceptance --no-shrink "$@") >"$out" 2>&1 || status=$?
  local cases
  cases=$(grep -oE '[0-9]+ generated' "$out" | tail -n1 | grep -oE '[0-9]+' || echo 0)
  echo "schemathesis, $name: $cases cases ($(grep -E '^ *[0-9]+ generated' "$out" | tail -n1 | sed 's/^ *//'))"
  if [ "$status" -ne 0 ]; then
    sed -n '/FAILURES\|ERRORS/,$p' "$out"
    echo "schemathesis found problems ($name); the whole log: $out"
    exit 1
  fi
  total=$((total + cases))
}
run authenticated -H 'Authorization: Bearer fuzz-key'
run unauthenticated
kill -0 "$server" 2>/dev/null || { echo "the server died under fuzzing; its log: $logs/server.log"; exit 1; }
echo "schemathesis: $total cases in all, no 5xx, every answer as documented (target: at least 1,000)"
[ "$total" -ge 1000 ] || { echo "too few cases"; exit 1; }
