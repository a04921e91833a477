#!/usr/bin/env python3
"""Generates what follows from the route table (shared/src/http/routes.rs), so that a new route is one
line there plus its IAM grants in infra/iam.json:

- functions/<name>/ — the function crate (only when missing);
- the [workspace.metadata.lambda.watch.router] section of Cargo.toml (cargo lambda watch's routes);
- the function resources of infra/template.yaml, between the BEGIN/END FUNCTIONS markers.

tests/tests/layout.rs checks that all three agree with the route table, so a forgotten run fails CI.
Run: python3 infra/scripts/gen_functions.py
"""
import collections
import json
import os
import re

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# Each function's IAM grants (resource -> actions): infra/iam.json, which infra/iam/check.py holds against
# what the functions used on the enforcing local stack (docs/iam.md).
IAM = json.load(open(os.path.join(ROOT, "infra", "iam.json")))["functions"]
BLOCK_FUNCTIONS = "${BlockFunctionArns}"


def resource_yaml(r):
    if re.fullmatch(r"\$\{[A-Za-z0-9]+\.Arn\}", r):
        return "!GetAtt " + r[2:-1]
    return f'!Sub "{r}"'


def policy_yaml(fn):
    """The function's Policies: one statement per set of actions, over the resources granted it; the
    block functions only when the stack lists some (HasBlockFunctions)."""
    groups = collections.OrderedDict()
    for resource, actions in IAM[fn]["grants"].items():
        groups.setdefault(tuple(actions), []).append(resource)
    if not groups:
        # A function that calls no AWS service (server-info): only the logging policy SAM adds.
        return "      Policies: []"
    out = ["      Policies:", '        - Version: "2012-10-17"', "          Statement:"]
    for actions, resources in groups.items():
        acts = "\n".join(f"                - {a}" for a in actions)
        if resources == [BLOCK_FUNCTIONS]:
            out.append(f"""            - !If
              - HasBlockFunctions
              - Effect: Allow
                Action:
{acts.replace("                - ", "                  - ")}
                Resource: !Ref BlockFunctionArns
              - !Ref AWS::NoValue""")
            continue
        if BLOCK_FUNCTIONS in resources:
            raise SystemExit(f"{fn}: grant the block functions in a statement of their own")
        res = "\n".join(f"                - {resource_yaml(r)}" for r in resources)
        out.append(f"""            - Effect: Allow
              Action:
{acts}
              Resource:
{res}""")
    return "\n".join(out)


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

#[tokio::main(flavor = "current_thread")]
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
{policy_yaml(fn)}""")
    out.append(f"""
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
          KICKOFF_PUBLIC_URL: !Sub "https://${{HttpApi}}.execute-api.${{AWS::Region}}.${{AWS::URLSuffix}}"
          # Resolved from Secrets Manager when the stack deploys; never a template parameter.
          KICKOFF_WEBHOOK_SECRET: !Sub "{{{{resolve:secretsmanager:${{WebhookSigningSecret}}:SecretString}}}}"
      # Its own share of the account's concurrency, so that a flood of triggers cannot starve it.
      ReservedConcurrentExecutions: !If [HasWorkerReservation, !Ref WorkerReservedConcurrency, !Ref AWS::NoValue]
      Events:
        Queue:
          Type: SQS
          Properties:
            Queue: !GetAtt RunQueue.Arn
            BatchSize: 10
            FunctionResponseTypes:
              - ReportBatchItemFailures
{policy_yaml("worker")}""")
    out.append(f"""
  Scheduler:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: ../target/lambda/scheduler/bootstrap.zip
      Description: The one-minute tick (EventBridge); fires due time schedules, sweeps runs
      Timeout: 60
      Environment:
        Variables:
          KICKOFF_FUNCTION: scheduler
      ReservedConcurrentExecutions: !If [HasSchedulerReservation, !Ref SchedulerReservedConcurrency, !Ref AWS::NoValue]
      Events:
        Tick:
          Type: Schedule
          Properties:
            Schedule: rate(1 minute)
{policy_yaml("scheduler")}""")
    p = os.path.join(ROOT, "infra/template.yaml")
    s = open(p).read()
    begin, end = "  # BEGIN FUNCTIONS (infra/scripts/gen_functions.py)\n", "  # END FUNCTIONS\n"
    head, rest = s.split(begin, 1)
    _, tail = rest.split(end, 1)
    open(p, "w").write(head + begin + "".join(out).lstrip("\n") + "\n" + end + tail)


if __name__ == "__main__":
    rs = routes()
    missing = [fn for fn in [fn for fn, _, _ in rs] + list(OTHER_FUNCTIONS) if fn not in IAM]
    if missing:
        raise SystemExit(f"add IAM grants for {missing} to infra/iam.json")
    write_crates(rs)
    write_router(rs)
    write_template(rs)
    print(f"{len(rs)} functions")
