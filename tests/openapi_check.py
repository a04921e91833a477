"""Validates recorded exchanges against Kickoff's OpenAPI document (tests/tests/openapi.rs).

usage: openapi_check.py <openapi.json> <exchanges.json>

Each exchange is {method, route, status, request, answer}: the answer must validate against the
document's schema for that route, method and status, and the request body (if any, on a 2xx) against
the operation's request schema (JSON Schema 2020-12, as OpenAPI 3.1 uses it). Prints each failure and
"<n> answers valid" when there is none.
"""
import json
import sys

from jsonschema import Draft202012Validator


def pointer(*parts):
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def main():
    doc = json.load(open(sys.argv[1]))
    exchanges = json.load(open(sys.argv[2]))
    failures = []

    def check(value, ref, what):
        schema = dict(doc)
        schema["$ref"] = ref
        errors = sorted(Draft202012Validator(schema).iter_errors(value), key=lambda e: list(e.path))
        for e in errors[:5]:
            failures.append(f"{what}: at {'/'.join(map(str, e.path)) or '(root)'}: {e.message[:300]}")

    for x in exchanges:
        method = x["method"].lower()
        op = doc["paths"].get(x["route"], {}).get(method)
        what = f'{x["method"]} {x["route"]} {x["status"]}'
        if op is None:
            failures.append(f"{what}: no such operation in the document")
            continue
        status = str(x["status"])
        if status not in op["responses"]:
            failures.append(f"{what}: status {status} is not documented")
            continue
        check(x["answer"], pointer("paths", x["route"], method, "responses", status, "content",
                                   "application/json", "schema"), what + " answer")
        if x["request"] is not None and x["status"] < 300:
            if "requestBody" not in op:
                failures.append(f"{what}: a body was sent but the operation takes none")
            else:
                check(x["request"], pointer("paths", x["route"], method, "requestBody", "content",
                                            "application/json", "schema"), what + " request")
    for f in failures:
        print(f)
    if failures:
        print(f"{len(failures)} failures")
        sys.exit(1)
    print(f"{len(exchanges)} answers valid")


if __name__ == "__main__":
    main()
