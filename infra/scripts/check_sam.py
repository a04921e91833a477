#!/usr/bin/env python3
"""The SAM template as AWS sees it: translates infra/template.yaml with the SAM translator (PyPI
`aws-sam-translator`, the library `sam deploy` runs) and checks the CloudFormation it becomes:

- every function is an AWS::Lambda::Function with a role of its own, and that role carries exactly the
  function's policy statements of the SAM template (so the enforcer and check.py judged what AWS gets);
- the worker's SQS event source mapping reports batch item failures, with batch size 10 and no batching
  window (docs/worker.md: a message is handed over at once, in batches of up to 10);
- the HTTP API's routes are the route table's (shared/src/http/routes.rs), each to its own function;
- the scheduler's rule is `rate(1 minute)` and targets the scheduler;
- every function behind the HTTP API stops before API Gateway's 30 s, and the waiting ones outlast
  the longest `?wait=` (shared/src/http/wait.rs);
- every environment variable a function reads is set on it (KICKOFF_TABLE, KICKOFF_QUEUE_URL and
  KICKOFF_FUNCTION everywhere — App::for_lambda, infra/lambda; the worker's KICKOFF_PUBLIC_URL and
  KICKOFF_WEBHOOK_SECRET — worker/lambda.rs).

Writes the translated template to the path given (for cfn-lint) and prints how many checks passed and failed.
Usage: check_sam.py OUT.json
"""
import json
import os
import re
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen_functions  # noqa: E402

ROOT = gen_functions.ROOT
EVERY_FUNCTION_READS = {"KICKOFF_TABLE", "KICKOFF_QUEUE_URL", "KICKOFF_FUNCTION"}
READS = {"worker": {"KICKOFF_PUBLIC_URL", "KICKOFF_WEBHOOK_SECRET"}}


class NoManagedPolicies:
    """The translator asks IAM for managed policy ARNs by name only when a function names one; ours use
    inline documents, so there is nothing to look up (and no network here)."""

    def load(self):
        return {}


def main(out):
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # the translator's pseudo parameters
    with open(os.path.join(ROOT, "infra", "template.yaml")) as f:
        sam = yaml_parse(f.read())
    # As `sam deploy` does before it translates: each local CodeUri becomes the S3 object it uploaded.
    for r in sam["Resources"].values():
        if r["Type"] == "AWS::Serverless::Function":
            r["Properties"]["CodeUri"] = "s3://kickoff-artifacts/" + r["Properties"]["CodeUri"].lstrip("./")
    cfn = transform(sam, {"BlockFunctionArns": ""}, NoManagedPolicies())
    with open(out, "w") as f:
        json.dump(cfn, f, indent=1)
    res = cfn["Resources"]
    passed, failures = 0, []

    def check(ok, what):
        nonlocal passed
        if ok:
            passed += 1
        else:
            failures.append(what)

    functions = {lid: r for lid, r in sam["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}
    roles = set()
    for lid, r in functions.items():
        fn = res.get(lid, {})
        check(fn.get("Type") == "AWS::Lambda::Function", f"{lid} becomes an AWS::Lambda::Function")
        role = fn.get("Properties", {}).get("Role", {}).get("Fn::GetAtt", [None])[0]
        check(role is not None and role not in roles, f"{lid} has a role of its own (not {role})")
        roles.add(role)
        policies = res.get(role, {}).get("Properties", {}).get("Policies", [])
        statements = [s for p in policies for s in p["PolicyDocument"]["Statement"]]
        want = [s for p in r["Properties"]["Policies"] for s in p["Statement"]]
        check(statements == want, f"{lid}'s role carries its statements: {statements} != {want}")
        managed = res.get(role, {}).get("Properties", {}).get("ManagedPolicyArns", [])
        check(all("AWSLambdaBasicExecutionRole" in json.dumps(m) or "AWSLambdaSQSQueueExecutionRole" in json.dumps(m)
                  for m in managed), f"{lid}'s role has only the logging (and SQS polling) managed policies: {managed}")
        env = set(fn.get("Properties", {}).get("Environment", {}).get("Variables", {}))
        name = r["Properties"]["Environment"]["Variables"]["KICKOFF_FUNCTION"]
        missing = (EVERY_FUNCTION_READS | READS.get(name, set())) - env
        check(not missing, f"{lid} has every variable it reads; missing {sorted(missing)}")

    # API Gateway ends an HTTP API integration at 30 s: a function behind it must stop before that, and
    # one that waits (?wait=, shared/src/http/wait.rs) must outlast its longest wait.
    with open(os.path.join(ROOT, "shared", "src", "http", "wait.rs")) as f:
        max_wait = int(re.search(r"pub const MAX_WAIT_S: u64 = (\d+);", f.read()).group(1))
    timeout_default = sam.get("Globals", {}).get("Function", {}).get("Timeout", 3)
    for lid, r in functions.items():
        props = r["Properties"]
        if not any(e.get("Type") == "HttpApi" for e in props.get("Events", {}).values()):
            continue
        timeout = props.get("Timeout", timeout_default)
        name = props["Environment"]["Variables"]["KICKOFF_FUNCTION"]
        check(timeout <= 29, f"{lid} stops before API Gateway's 30 s (Timeout {timeout})")
        if name in gen_functions.WAITING:
            check(timeout >= max_wait + 2, f"{lid} outlasts a {max_wait} s wait (Timeout {timeout})")

    # Lambda's SQS poller (ReceiveMessage, DeleteMessage, GetQueueAttributes) uses the managed policy
    # SAM attaches for an SQS event; the worker's own statements cover what the local feed does.
    worker_role = res.get("WorkerRole", {}).get("Properties", {}).get("ManagedPolicyArns", [])
    check(any("AWSLambdaSQSQueueExecutionRole" in json.dumps(m) for m in worker_role),
          f"the worker's role has the SQS poller's managed policy: {worker_role}")

    mappings = [r for r in res.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    check(len(mappings) == 1, f"one event source mapping, not {len(mappings)}")
    for m in mappings:
        p = m["Properties"]
        check(p.get("FunctionName") == {"Ref": "Worker"}, f"the mapping feeds the worker: {p.get('FunctionName')}")
        check(p.get("EventSourceArn") == {"Fn::GetAtt": ["RunQueue", "Arn"]}, "the mapping reads the run queue")
        check(p.get("FunctionResponseTypes") == ["ReportBatchItemFailures"], "partial batch failures are reported")
        check(p.get("BatchSize") == 10, f"batch size 10, not {p.get('BatchSize')}")
        check(p.get("MaximumBatchingWindowInSeconds", 0) == 0, "no batching window")

    apis = [r for r in res.values() if r["Type"] == "AWS::ApiGatewayV2::Api"]
    check(len(apis) == 1, f"one HTTP API, not {len(apis)}")
    routes = set()
    for api in apis:
        for path, item in api["Properties"]["Body"]["paths"].items():
            for method, op in item.items():
                uri = op["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]
                # ".../functions/${ListPipelines.Arn}/invocations"
                routes.add((method.upper(), path, uri.rsplit("${", 1)[1].split(".Arn", 1)[0]))
    table = {(m, p, gen_functions.camel(fn)) for fn, m, p in gen_functions.routes()}
    check(routes == table, f"the HTTP API's routes are the route table's: only in the API {sorted(routes - table)}, "
                           f"only in the table {sorted(table - routes)}")

    rules = [r for r in res.values() if r["Type"] == "AWS::Events::Rule"]
    check(len(rules) == 1, f"one EventBridge rule, not {len(rules)}")
    for rule in rules:
        p = rule["Properties"]
        check(p.get("ScheduleExpression") == "rate(1 minute)", f"the tick is rate(1 minute): {p.get('ScheduleExpression')}")
        check([t["Arn"] for t in p.get("Targets", [])] == [{"Fn::GetAtt": ["Scheduler", "Arn"]}], "the rule invokes the scheduler")

    # Issue #19: the template protects the functions. Default route throttling on the HTTP API's stage,
    # concurrency reserved for the worker and the scheduler, and no secret as a template parameter.
    stages = [r for r in res.values() if r["Type"] == "AWS::ApiGatewayV2::Stage"]
    for stage in stages:
        route = stage["Properties"].get("DefaultRouteSettings", {})
        check(route.get("ThrottlingRateLimit") == {"Ref": "ApiRateLimit"}
              and route.get("ThrottlingBurstLimit") == {"Ref": "ApiBurstLimit"},
              f"the HTTP API's stage throttles every route: {route}")
    check(len(stages) == 1, f"one HTTP API stage, not {len(stages)}")
    for lid, parameter in [("Worker", "WorkerReservedConcurrency"), ("Scheduler", "SchedulerReservedConcurrency")]:
        reserved = res.get(lid, {}).get("Properties", {}).get("ReservedConcurrentExecutions")
        check(isinstance(reserved, dict) and {"Ref": parameter} in reserved.get("Fn::If", []),
              f"{lid} has reserved concurrency ({parameter}): {reserved}")
    secret_env = res.get("Worker", {}).get("Properties", {}).get("Environment", {}).get("Variables", {}).get("KICKOFF_WEBHOOK_SECRET")
    check("resolve:secretsmanager" in json.dumps(secret_env), f"the signing secret comes from Secrets Manager: {secret_env}")
    check(res.get("WebhookSigningSecret", {}).get("Type") == "AWS::SecretsManager::Secret", "the template makes the signing secret")
    plain = [n for n, p in sam.get("Parameters", {}).items() if p.get("NoEcho") or "secret" in n.lower()]
    check(not plain, f"no secret is a template parameter: {plain}")

    for f in failures:
        print(f"  FAIL {f}")
    print(f"sam translation: {passed} checks passed, {len(failures)} failed ({len(functions)} functions, {len(routes)} routes)")
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    sys.exit(main(sys.argv[1]))
