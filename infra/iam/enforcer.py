#!/usr/bin/env python3
"""The local stack's IAM enforcer: an endpoint in front of DynamoDB Local, the SQS emulator and the Lambda
Invoke API that holds each caller to its function's own policy in infra/template.yaml, as AWS would.

Neither emulator checks a permission, so without this a function whose role lacks an action passes every
local test and fails in the account. Each function binary signs its calls with its own name as the access
key id (`KICKOFF_IAM_IDENTITY=function`, shared/src/aws.rs); `admin` is the admin commands' identity and may
do anything; any other key is refused as AWS refuses an unknown one.

Authorization follows AWS's documented rules per operation:
- DynamoDB: the operation's own action on the table's ARN; Query and Scan with IndexName on the index's
  ARN; BatchGetItem/BatchWriteItem on every table they name; TransactWriteItems per item (Put -> PutItem,
  Update -> UpdateItem, Delete -> DeleteItem, ConditionCheck -> ConditionCheckItem) and TransactGetItems
  per item (GetItem) — there is no Transact* IAM action.
- SQS (JSON and query protocols): the action on the queue's ARN; the *Batch forms need the single action.
- Lambda: lambda:InvokeFunction on the function's ARN, qualified when a version or alias is named.
A refused call is answered as AWS answers it (AccessDeniedException, status and JSON shape per service).

It also refuses what AWS refuses and the emulators let through: an SQS DelaySeconds over 900 and a
message over 256 KiB (InvalidParameterValue).

Every decision is recorded, once per (function, action, resource), as a JSON line in --record, with the
resource written symbolically (`${Table.Arn}/index/GSI1`) so that check.py can compare the record of a
whole test suite with the template's grants.

Usage: enforcer.py --table NAME --queue RunQueue=URL [--queue ...] --dynamodb URL --sqs URL
       [--lambda URL] [--parameter BlockFunctionArns=ARN,...] [--template PATH] [--record FILE]
Prints one JSON line {"dynamodb": URL, "sqs": URL, "lambda": URL} when it listens (and writes it to
--ready FILE); stops on SIGTERM.
"""
import argparse
import http.client
import json
import os
import re
import signal
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import policies  # noqa: E402

ADMIN = "admin"
SQS_MAX_DELAY_S = 900
SQS_MAX_MESSAGE_BYTES = 262_144


class Denied(Exception):
    def __init__(self, action, resource):
        self.action, self.resource = action, resource


class Refused(Exception):
    """A call AWS refuses for another reason than IAM: (status, code, message)."""

    def __init__(self, status, code, message):
        self.status, self.code, self.message = status, code, message


def table_arn(name):
    if name.startswith("arn:"):
        return name
    return f"arn:aws:dynamodb:{policies.REGION}:{policies.ACCOUNT}:table/{name}"


def dynamodb_checks(op, body):
    """The (action, resource) pairs one DynamoDB call needs."""
    if op in ("TransactWriteItems", "TransactGetItems"):
        kinds = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                 "ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}
        out = []
        for item in body.get("TransactItems", []):
            for kind, spec in item.items():
                out.append((f"dynamodb:{kinds[kind]}", table_arn(spec["TableName"])))
        return out
    if op in ("BatchGetItem", "BatchWriteItem"):
        return [(f"dynamodb:{op}", table_arn(t)) for t in body.get("RequestItems", {})]
    if op == "ListTables":
        return [("dynamodb:ListTables", "*")]
    if "TableName" not in body:
        raise Refused(400, "ValidationException", f"the enforcer does not know DynamoDB's {op}")
    arn = table_arn(body["TableName"])
    if op in ("Query", "Scan") and body.get("IndexName"):
        arn = f"{arn}/index/{body['IndexName']}"
    return [(f"dynamodb:{op}", arn)]


SQS_ACTIONS = {"SendMessageBatch": "SendMessage", "DeleteMessageBatch": "DeleteMessage",
               "ChangeMessageVisibilityBatch": "ChangeMessageVisibility"}


def queue_arn(url=None, name=None):
    if url:
        name = urllib.parse.urlparse(url).path.rstrip("/").rsplit("/", 1)[-1]
    return f"arn:aws:sqs:{policies.REGION}:{policies.ACCOUNT}:{name}"


def sqs_checks(op, params):
    if op == "ListQueues":
        return [("sqs:ListQueues", "*")]
    arn = queue_arn(url=params.get("QueueUrl"), name=params.get("QueueName"))
    return [(f"sqs:{SQS_ACTIONS.get(op, op)}", arn)]


def sqs_limits(op, params):
    """SQS's own refusals that moto does not make (or makes differently)."""
    entries = params.get("Entries", []) if op == "SendMessageBatch" else [params] if op == "SendMessage" else []
    for e in entries:
        delay = int(e.get("DelaySeconds", 0) or 0)
        if delay < 0 or delay > SQS_MAX_DELAY_S:
            raise Refused(400, "InvalidParameterValue",
                          f"Value {delay} for parameter DelaySeconds is invalid. Reason: must be between 0 and 900.")
        size = len(str(e.get("MessageBody", "")).encode())
        if size > SQS_MAX_MESSAGE_BYTES:
            raise Refused(400, "InvalidParameterValue",
                          "One or more parameters are invalid. Reason: Message must be shorter than 262144 bytes.")


def function_arn(name, qualifier=None):
    name = urllib.parse.unquote(name)
    if name.startswith("arn:"):
        arn = name
    elif re.fullmatch(r"\d{12}:function:.+", name):
        arn = f"arn:aws:lambda:{policies.REGION}:{name}"
    else:
        arn = f"arn:aws:lambda:{policies.REGION}:{policies.ACCOUNT}:function:{name}"
    if qualifier and arn.count(":") == 6:
        arn = f"{arn}:{qualifier}"
    return arn


class Enforcer:
    def __init__(self, template, table, queues, parameters, record):
        refs, attrs = policies.concrete_context(template, table, queues, parameters)
        self.policies = policies.function_policies(template, policies.Resolver(template, refs, attrs))
        # concrete ARN -> its symbol, longest first, for the record
        symbols = {v: "${%s}" % k for k, v in attrs.items() if k.endswith(".Arn")}
        for name, p in template.get("Parameters", {}).items():
            if p.get("Type") == "CommaDelimitedList":
                for arn in str(parameters.get(name, "")).split(","):
                    if arn:
                        symbols[arn] = "${%s}" % name
        self.symbols = sorted(symbols.items(), key=lambda kv: -len(kv[0]))
        self.record_path = record
        self.recorded = set()
        self.lock = threading.Lock()

    def symbolic(self, resource):
        for concrete, symbol in self.symbols:
            if resource == concrete or resource.startswith(concrete + "/") or resource.startswith(concrete + ":"):
                return symbol + resource[len(concrete):]
        return resource

    def record(self, who, action, resource, decision):
        entry = (who, action, self.symbolic(resource), decision)
        with self.lock:
            if entry in self.recorded or not self.record_path:
                return
            self.recorded.add(entry)
            with open(self.record_path, "a") as f:
                f.write(json.dumps(dict(zip(("function", "action", "resource", "decision"), entry))) + "\n")

    def check(self, who, checks):
        if who == ADMIN:
            return
        statements = self.policies.get(who)
        if statements is None:
            raise Refused(400, "UnrecognizedClientException",
                          "The security token included in the request is invalid.")
        for action, resource in checks:
            decision = policies.authorize(statements, action, resource)[0]
            self.record(who, action, resource, decision)
            if decision != "allow":
                raise Denied(action, resource)


def caller(headers):
    auth = headers.get("Authorization", "")
    m = re.search(r"Credential=([^/,\s]+)/", auth)
    return m.group(1) if m else None


def make_handler(enforcer, service, upstream):
    up = urllib.parse.urlparse(upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def answer(self, status, headers, body):
            self.send_response(status)
            for k, v in headers:
                if k.lower() not in ("transfer-encoding", "content-length", "connection"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def refuse(self, status, code, message, query=False):
            if service == "lambda":
                headers = [("Content-Type", "application/json"), ("x-amzn-ErrorType", code)]
                body = {"Type": "User", "Message": message}
            elif service == "sqs" and query:
                code = "AccessDenied" if code == "AccessDeniedException" else code
                xml = (f"<?xml version=\"1.0\"?><ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>"
                       f"<Message>{message}</Message></Error><RequestId>enforcer</RequestId></ErrorResponse>")
                return self.answer(status, [("Content-Type", "text/xml")], xml.encode())
            else:
                ctype = "application/x-amz-json-1.0"
                headers = [("Content-Type", ctype), ("x-amzn-RequestId", "enforcer")]
                if service == "sqs":
                    # SQS's JSON protocol names the query protocol's code here too.
                    legacy = "AccessDenied" if code == "AccessDeniedException" else code
                    headers.append(("x-amzn-query-error", f"{legacy};Sender"))
                namespace = "com.amazon.coral.service" if code.endswith("Exception") and service == "sqs" \
                    or code in ("AccessDeniedException", "UnrecognizedClientException",
                                "MissingAuthenticationTokenException") \
                    else "com.amazonaws.dynamodb.v20120810" if service == "dynamodb" else "com.amazonaws.sqs"
                full = f"{namespace}#{code}"
                body = {"__type": full, "message" if service == "sqs" else "Message": message}
            self.answer(status, headers, json.dumps(body).encode())

        def handle_any(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            who = caller(self.headers)
            query = False
            try:
                if who is None:
                    raise Refused(400 if service != "lambda" else 403, "MissingAuthenticationTokenException",
                                  "Request is missing Authentication Token")
                target = self.headers.get("X-Amz-Target", "")
                if service == "dynamodb":
                    op = target.rsplit(".", 1)[-1]
                    enforcer.check(who, dynamodb_checks(op, json.loads(body or b"{}")))
                elif service == "sqs":
                    if target:
                        op, params = target.rsplit(".", 1)[-1], json.loads(body or b"{}")
                    else:
                        query = True
                        form = urllib.parse.parse_qs(body.decode())
                        params = {k: v[0] for k, v in form.items()}
                        op = params.get("Action", "")
                        params["Entries"] = []
                    enforcer.check(who, sqs_checks(op, params))
                    sqs_limits(op, params)
                else:
                    parsed = urllib.parse.urlparse(self.path)
                    m = re.fullmatch(r"/2015-03-31/functions/([^/]+)/invocations", parsed.path)
                    if self.command != "POST" or not m:
                        raise Refused(400, "InvalidRequestContentException",
                                      f"the enforcer passes only the Invoke API, not {self.command} {parsed.path}")
                    qualifier = urllib.parse.parse_qs(parsed.query).get("Qualifier", [None])[0]
                    enforcer.check(who, [("lambda:InvokeFunction", function_arn(m.group(1), qualifier))])
            except Denied as d:
                role = f"arn:aws:sts::{policies.ACCOUNT}:assumed-role/kickoff-{who}-role/{who}"
                return self.refuse(
                    400 if service == "dynamodb" else 403, "AccessDeniedException",
                    f"User: {role} is not authorized to perform: {d.action} on resource: {d.resource} "
                    f"because no identity-based policy allows the {d.action} action", query)
            except Refused as r:
                return self.refuse(r.status, r.code, r.message, query)
            except (ValueError, KeyError, TypeError) as e:
                return self.refuse(400, "SerializationException", f"the enforcer could not read the call: {e}")
            conn = http.client.HTTPConnection(up.hostname, up.port, timeout=960)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                headers["Host"] = up.netloc
                # DynamoDB Local takes only alphanumeric access key ids (and checks no signature): the
                # caller's identity stops here.
                for k in [k for k in headers if k.lower() == "authorization"]:
                    headers[k] = re.sub(r"Credential=[^/,\s]+/", "Credential=enforcer/", headers[k])
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.answer(resp.status, resp.getheaders(), data)
            except OSError as e:
                self.refuse(503, "ServiceUnavailable", f"upstream {upstream}: {e}")
            finally:
                conn.close()

        do_POST = do_GET = do_PUT = do_DELETE = handle_any

    return Handler


class Server(ThreadingHTTPServer):
    request_queue_size = 128  # many function instances connect at once
    daemon_threads = True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--template", default=policies.TEMPLATE)
    ap.add_argument("--table", required=True)
    ap.add_argument("--queue", action="append", default=[], help="LogicalId=URL (or LogicalId=name)")
    ap.add_argument("--parameter", action="append", default=[], help="Name=value")
    ap.add_argument("--dynamodb", required=True)
    ap.add_argument("--sqs", required=True)
    ap.add_argument("--lambda", dest="lambda_", default=None)
    ap.add_argument("--record", default=None)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="the DynamoDB port (SQS +1, Lambda +2); 0: any")
    ap.add_argument("--ready", default=None, help="also write the URLs' JSON line to this file")
    a = ap.parse_args()
    template = policies.load_template(a.template)
    queues = dict(q.split("=", 1) for q in a.queue)
    params = dict(p.split("=", 1) for p in a.parameter)
    enforcer = Enforcer(template, a.table, queues, params, a.record)
    urls = {}
    servers = []
    for i, (service, upstream) in enumerate((("dynamodb", a.dynamodb), ("sqs", a.sqs), ("lambda", a.lambda_))):
        if not upstream:
            continue
        server = Server((a.host, a.port + i if a.port else 0), make_handler(enforcer, service, upstream))
        servers.append(server)
        urls[service] = f"http://{a.host}:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print(json.dumps(urls), flush=True)
    if a.ready:
        with open(a.ready + ".tmp", "w") as f:
            f.write(json.dumps(urls))
        os.replace(a.ready + ".tmp", a.ready)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    for s in servers:
        s.shutdown()


if __name__ == "__main__":
    main()
