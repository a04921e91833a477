#!/usr/bin/env python3
"""Generates what follows from the route table (shared/src/http/routes.rs), so that a new route is one
line there plus its IAM actions here:

- functions/<name>/ — the function crate (only when missing);
- the [workspace.metadata.lambda.watch.router] section of Cargo.toml (cargo lambda watch's routes);
- the function resources of infra/template.yaml, between the BEGIN/END FUNCTIONS markers.

tests/tests/layout.rs checks that all three agree with the route table, so a forgotten run fails CI.
Run: python3 infra/scripts/gen_functions.py
"""
import collections
import os
import re

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# One IAM action list per function: exactly the calls its handler makes (every API-key route also
# reads the key with GetItem).
ACTIONS = {
    "list-pipelines": ["dynamodb:GetItem", "dynamodb:Query"],
    "create-pipeline": ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem"],
    "get-pipeline": ["dynamodb:GetItem"],
    "list-builds": ["dynamodb:GetItem", "dynamodb:Query"],
    "create-build": ["dynamodb:GetItem", "dynamodb:PutItem"],
    "get-build": ["dynamodb:GetItem"],
    "trigger-build-run": ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "sqs:SendMessage"],
    "list-runs": ["dynamodb:GetItem", "dynamodb:Query"],
    "get-run": ["dynamodb:GetItem", "dynamodb:Query"],
    "stop-run": ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "sqs:SendMessage"],
    "create-schedule": ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem"],
    "list-pipeline-schedules": ["dynamodb:GetItem", "dynamodb:Query"],
    "list-schedules": ["dynamodb:GetItem", "dynamodb:Query"],
    "get-schedule": ["dynamodb:GetItem"],
    "update-schedule": ["dynamodb:GetItem", "dynamodb:PutItem"],
    "delete-schedule": ["dynamodb:GetItem", "dynamodb:DeleteItem"],
    "trigger-schedule-run": ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "sqs:SendMessage"],
    "api-trigger-schedule-run": ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "sqs:SendMessage"],
    "webhook-schedule-run": ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "sqs:SendMessage"],
    "api-trigger-run-status": ["dynamodb:GetItem", "dynamodb:Query"],
    "run-schedule-now": ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "sqs:SendMessage"],
    "list-schedule-runs": ["dynamodb:GetItem", "dynamodb:Query"],
    "list-pipeline-runs": ["dynamodb:GetItem", "dynamodb:Query"],
    "get-pipeline-run": ["dynamodb:GetItem", "dynamodb:Query"],
    "list-block-runs": ["dynamodb:GetItem", "dynamodb:Query"],
    "update-pipeline-run": ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "sqs:SendMessage"],
    "create-backfill": ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem"],
    "list-backfills": ["dynamodb:GetItem", "dynamodb:Query"],
    "get-backfill": ["dynamodb:GetItem", "dynamodb:Query"],
    "update-backfill": ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "sqs:SendMessage"],
    "delete-backfill": ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:DeleteItem"],
    "block-run-callback": ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "sqs:SendMessage"],
}

# Functions that no HTTP route calls: name -> the `main` body.
OTHER_FUNCTIONS = {
    "worker": ("the SQS-triggered worker that runs queued pipeline runs block by block", "kickoff::worker::lambda::serve().await", "kickoff::worker::lambda::LambdaError"),
    "scheduler": ("the one-minute tick EventBridge invokes: fires the time schedules that are due, and sweeps runs (re-queues those no message looked at in time, marks missed SLAs, ends timed-out runs)", "kickoff::scheduler::lambda::serve().await", "kickoff::scheduler::lambda::LambdaError"),
}


def routes():
    src = open(os.path.join(ROOT, "shared/src/http/routes.rs")).read()
    table = src.split("pub const ROUTES", 1)[1].split("];", 1)[0]
    found = re.findall(r'route\(\s*(\w+),\s*"([a-z-]+)",\s*"(\w+)",\s*"([^"]+)",\s*(\w+),?\s*\)', table)
    return [(fn, method, path) for _, fn, method, path, _ in found]


def camel(fn):
    return "".join(w.capitalize() for w in fn.split("-"))


def write_crate(fn, description, doc, call, error):
    d = os.path.join(ROOT, "functions", fn)
    if os.path.exists(d):
        return
    os.makedirs(os.path.join(d, "src"))
    with open(os.path.join(d, "Cargo.toml"), "w") as f:
        f.write(f'''[package]
name = "{fn}"
description = "Kickoff: {description}"
version.workspace = true
edition.workspace = true
license.workspace = true
publish.workspace = true

[lints]
workspace = true

[dependencies]
kickoff-shared.workspace = true
tokio.workspace = true
''')
    with open(os.path.join(d, "src", "main.rs"), "w") as f:
        f.write(f'''//! {doc}

#[tokio::main]
async fn main() -> Result<(), {error}> {{
    {call}
}}
''')


def write_crates(rs):
    for fn, (doc, call, error) in OTHER_FUNCTIONS.items():
        write_crate(fn, doc, f"The `{fn}` Lambda function: {doc}.", call, error)
    for fn, method, path in rs:
        write_crate(
            fn,
            f"{method} {path}",
            f"`{method} {path}`: the `{fn}` Lambda function. The handler is in `kickoff::http::routes`.",
            f'kickoff::http::lambda::serve("{fn}").await',
            "kickoff::http::lambda::LambdaError",
        )


def write_router(rs):
    by = collections.OrderedDict()
    for fn, method, path in rs:
        by.setdefault(path, []).append((method, fn))
    lines = ["[workspace.metadata.lambda.watch.router]"]
    for path, ms in by.items():
        items = ", ".join(f'{{ method = "{m}", function = "{f}" }}' for m, f in ms)
        lines.append(f'"{path}" = [{items}]')
    p = os.path.join(ROOT, "Cargo.toml")
    s = open(p).read()
    s = re.sub(r"\[workspace\.metadata\.lambda\.watch\.router\]\n(?:.+\n)*", "\n".join(lines) + "\n", s)
    open(p, "w").write(s)


# Functions that take `?wait=` (SPEC §10, up to 25 s): their time-out is API Gateway's 30 s less a second.
WAITING = {"trigger-build-run", "get-run", "trigger-schedule-run", "api-trigger-schedule-run",
           "webhook-schedule-run", "api-trigger-run-status", "run-schedule-now", "get-pipeline-run"}


def write_template(rs):
    out = []
    for fn, method, path in rs:
        actions = ACTIONS[fn]
        ddb = "\n".join(f"                - {a}" for a in actions if a.startswith("dynamodb:"))
        sqs = ""
        if "sqs:SendMessage" in actions:
            sqs = """
            - Effect: Allow
              Action:
                - sqs:SendMessage
              Resource: !GetAtt RunQueue.Arn"""
        timeout = "\n      Timeout: 29" if fn in WAITING else ""
        out.append(f"""
  {camel(fn)}:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: ../target/lambda/{fn}/bootstrap.zip
      Description: {method} {path}{timeout}
      Environment:
        Variables:
          KICKOFF_FUNCTION: {fn}
      Events:
        Api:
          Type: HttpApi
          Properties:
            ApiId: !Ref HttpApi
            Method: {method}
            Path: {path}
      Policies:
        - Version: "2012-10-17"
          Statement:
            - Effect: Allow
              Action:
{ddb}
              Resource:
                - !GetAtt Table.Arn
                - !Sub "${{Table.Arn}}/index/GSI1"{sqs}""")
    out.append("""
  Worker:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: ../target/lambda/worker/bootstrap.zip
      Description: Runs queued pipeline runs block by block (SQS-triggered)
      Timeout: 900
      MemorySize: 256
      Environment:
        Variables:
          KICKOFF_FUNCTION: worker
          KICKOFF_PUBLIC_URL: !Sub "https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}"
          KICKOFF_WEBHOOK_SECRET: !Ref WebhookSecret
      Events:
        Queue:
          Type: SQS
          Properties:
            Queue: !GetAtt RunQueue.Arn
            BatchSize: 10
            FunctionResponseTypes:
              - ReportBatchItemFailures
      Policies:
        - Version: "2012-10-17"
          Statement:
            - Effect: Allow
              Action:
                - dynamodb:GetItem
                - dynamodb:Query
                - dynamodb:PutItem
              Resource:
                - !GetAtt Table.Arn
                - !Sub "${Table.Arn}/index/GSI1"
            - Effect: Allow
              Action:
                - sqs:SendMessage
                - sqs:ReceiveMessage
                - sqs:DeleteMessage
                - sqs:ChangeMessageVisibility
                - sqs:GetQueueAttributes
              Resource: !GetAtt RunQueue.Arn
            - !If
              - HasBlockFunctions
              - Effect: Allow
                Action:
                  - lambda:InvokeFunction
                Resource: !Ref BlockFunctionArns
              - !Ref AWS::NoValue""")
    out.append("""
  Scheduler:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: ../target/lambda/scheduler/bootstrap.zip
      Description: The one-minute tick (EventBridge); fires due time schedules, sweeps runs
      Timeout: 60
      Environment:
        Variables:
          KICKOFF_FUNCTION: scheduler
      Events:
        Tick:
          Type: Schedule
          Properties:
            Schedule: rate(1 minute)
      Policies:
        - Version: "2012-10-17"
          Statement:
            - Effect: Allow
              Action:
                - dynamodb:Query
              Resource:
                - !GetAtt Table.Arn
                - !Sub "${Table.Arn}/index/GSI2"
            - Effect: Allow
              Action:
                - dynamodb:GetItem
                - dynamodb:PutItem
                - dynamodb:UpdateItem
              Resource: !GetAtt Table.Arn
            - Effect: Allow
              Action:
                - sqs:SendMessage
              Resource: !GetAtt RunQueue.Arn""")
    p = os.path.join(ROOT, "infra/template.yaml")
    s = open(p).read()
    begin, end = "  # BEGIN FUNCTIONS (infra/scripts/gen_functions.py)\n", "  # END FUNCTIONS\n"
    head, rest = s.split(begin, 1)
    _, tail = rest.split(end, 1)
    open(p, "w").write(head + begin + "".join(out).lstrip("\n") + "\n" + end + tail)


if __name__ == "__main__":
    rs = routes()
    missing = [fn for fn, _, _ in rs if fn not in ACTIONS]
    if missing:
        raise SystemExit(f"add IAM actions for {missing} to ACTIONS")
    write_crates(rs)
    write_router(rs)
    write_template(rs)
    print(f"{len(rs)} functions")
