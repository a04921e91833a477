#!/usr/bin/env python3
"""Least privilege, both ways: holds what the functions used on the enforcing local stack (the records
enforcer.py wrote during the test suite) against what infra/template.yaml grants them.

Fails on
- a denied call: a function needed an action its role lacks (it would fail the same way on AWS);
- a grant no test used, unless infra/iam.json lists it under the function's `unused` with the reason no
  test reaches it; and a listed reason for a grant that was used after all (the list stays true);
- a function of the template that made no call at all while it has grants;
- a template whose grants differ from infra/iam.json (the generator was not run after an edit).

Usage: check.py RECORD_DIR   (every *.jsonl file in it; the test command passes target/iam-usage)
"""
import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import policies  # noqa: E402


def granted(template):
    """Function -> set of (action, symbolic resource) the template allows."""
    refs, attrs = policies.symbolic_context(template)
    out = {}
    for fn, statements in policies.function_policies(template, policies.Resolver(template, refs, attrs)).items():
        out[fn] = {(a, r) for s in statements if s["Effect"] == "Allow" for a in s["Action"] for r in s["Resource"]}
    return out


def main(record_dir):
    template = policies.load_template()
    iam = policies.load_actions()["functions"]
    grants = granted(template)
    failures, passed = [], 0

    for fn in sorted(set(grants) | set(iam)):
        want = {(a, r) for r, acts in iam.get(fn, {}).get("grants", {}).items() for a in acts}
        if grants.get(fn, set()) != want:
            failures.append(f"{fn}: infra/template.yaml grants {sorted(grants.get(fn, set()))} but infra/iam.json "
                            f"says {sorted(want)}: run python3 infra/scripts/gen_functions.py")
        else:
            passed += 1

    records = []
    files = sorted(glob.glob(os.path.join(record_dir, "*.jsonl")))
    for path in files:
        with open(path) as f:
            records.extend(json.loads(line) for line in f if line.strip())
    if not records:
        failures.append(f"no enforcer records in {record_dir}: did the end-to-end tests run?")

    used = {}
    for r in records:
        if r["decision"] != "allow":
            failures.append(f"{r['function']} was denied {r['action']} on {r['resource']}: grant it in infra/iam.json")
        else:
            used.setdefault(r["function"], set()).add((r["action"], r["resource"]))
    for fn, pairs in sorted(grants.items()):
        unused_ok = iam.get(fn, {}).get("unused", {})
        calls = used.get(fn, set())
        for action, pattern in sorted(pairs):
            hit = any(policies.match(action, a, case_insensitive=True) and policies.match(pattern, r)
                      for a, r in calls)
            key = f"{action} {pattern}"
            if hit and key in unused_ok:
                failures.append(f"{fn}: {key} is listed as unused in infra/iam.json but a test used it")
            elif not hit and key not in unused_ok:
                failures.append(f"{fn}: granted {key} but no test used it: remove the grant, or list it under "
                                f"`unused` in infra/iam.json with the reason no test reaches it")
            else:
                passed += 1
        for key in unused_ok:
            action, _, pattern = key.partition(" ")
            if (action, pattern) not in pairs:
                failures.append(f"{fn}: `unused` names {key}, which the template does not grant")

    print(f"least privilege: {len(files)} record files, {len(records)} distinct calls, "
          f"{sum(len(v) for v in grants.values())} grants of {len(grants)} functions")
    for f in failures:
        print(f"  FAIL {f}")
    print(f"least privilege: {passed} checks passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    sys.exit(main(sys.argv[1]))
