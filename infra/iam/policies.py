"""The IAM policies of infra/template.yaml as AWS evaluates them, for the local stack's enforcer
(enforcer.py) and the least-privilege check (check.py).

- `load_template` reads the SAM template with its short-form intrinsics (!Ref, !GetAtt, !Sub, !If, ...).
- `Resolver` evaluates intrinsics against a context: concrete ARNs (the enforcer, for one deployment's
  table and queue) or symbolic ones (the check: `${Table.Arn}`, `${RunQueue.Arn}`), so that a grant
  reads the same in both.
- `function_policies` gives each function (by its KICKOFF_FUNCTION name) its Allow/Deny statements.
- `authorize` is IAM's identity-policy evaluation for one (action, resource): an explicit Deny wins, then
  an Allow whose Action and Resource patterns match (`*` and `?` wildcards, case-insensitive actions),
  else the implicit deny. Conditions, NotAction and NotResource are refused at load: the template uses
  none, and an enforcer that ignored them would allow what AWS denies.
"""
import json
import os
import re

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TEMPLATE = os.path.join(ROOT, "infra", "template.yaml")
ACTIONS = os.path.join(ROOT, "infra", "iam.json")
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account; DynamoDB Local has none


class Tagged:
    """A short-form intrinsic (`!Ref X`) as read from YAML: its long-form name and argument."""

    def __init__(self, name, value):
        self.name, self.value = name, value


def _loader():
    class Loader(yaml.SafeLoader):
        pass

    for tag in ("Ref", "GetAtt", "Sub", "If", "Not", "Equals", "Join", "Select", "Split", "Condition",
                "And", "Or", "FindInMap", "Base64", "GetAZs", "ImportValue"):
        def construct(loader, node, tag=tag):
            if isinstance(node, yaml.ScalarNode):
                value = loader.construct_scalar(node)
                if tag == "GetAtt":
                    value = value.split(".", 1)
            elif isinstance(node, yaml.SequenceNode):
                value = loader.construct_sequence(node, deep=True)
            else:
                value = loader.construct_mapping(node, deep=True)
            return Tagged("Fn::" + tag if tag not in ("Ref", "Condition") else tag, value)

        Loader.add_constructor("!" + tag, construct)
    return Loader


def load_template(path=TEMPLATE):
    with open(path) as f:
        return yaml.load(f, Loader=_loader())


def load_actions(path=ACTIONS):
    with open(path) as f:
        return json.load(f)


NO_VALUE = object()


class Resolver:
    """Evaluates intrinsics. `refs`: what `!Ref X` gives for resources and parameters; `attrs`:
    what `!GetAtt X.Y` gives, keyed "X.Y". Pseudo parameters are the local stack's."""

    def __init__(self, template, refs, attrs):
        self.template = template
        self.refs = dict(refs)
        self.refs.update({"AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::Partition": "aws",
                          "AWS::URLSuffix": "amazonaws.com"})
        self.attrs = attrs
        self.conditions = template.get("Conditions", {})

    def ref(self, name):
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.refs:
            return self.refs[name]
        raise KeyError(f"!Ref {name}: no value in this context")

    def condition(self, name):
        return bool(self.resolve(self.conditions[name]))

    def resolve(self, v):
        if isinstance(v, dict) and len(v) == 1:
            (k, arg), = v.items()
            if k == "Ref" or k.startswith("Fn::") or k == "Condition":
                v = Tagged(k, arg)
        if isinstance(v, Tagged):
            return self._intrinsic(v.name, v.value)
        if isinstance(v, list):
            out = [self.resolve(x) for x in v]
            return [x for x in out if x is not NO_VALUE]
        if isinstance(v, dict):
            out = {k: self.resolve(x) for k, x in v.items()}
            return {k: x for k, x in out.items() if x is not NO_VALUE}
        return v

    def _intrinsic(self, name, arg):
        if name == "Ref":
            return self.ref(arg)
        if name == "Condition":
            return self.condition(arg)
        if name == "Fn::GetAtt":
            key = ".".join(arg) if isinstance(arg, list) else arg
            if key not in self.attrs:
                raise KeyError(f"!GetAtt {key}: no value in this context")
            return self.attrs[key]
        if name == "Fn::Sub":
            text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))

            def sub(m):
                key = m.group(1)
                if key in extra:
                    return str(extra[key])
                if "." in key:
                    return str(self._intrinsic("Fn::GetAtt", key))
                return str(self.ref(key))

            return re.sub(r"\$\{([^}!]+)\}", sub, text)
        if name == "Fn::If":
            cond, yes, no = arg
            return self.resolve(yes if self.condition(cond) else no)
        if name == "Fn::Not":
            return not self.resolve(arg[0])
        if name == "Fn::Equals":
            a, b = self.resolve(arg)
            return a == b
        if name == "Fn::Join":
            sep, items = arg
            items = self.resolve(items)
            return sep.join(str(x) for x in items)
        raise ValueError(f"intrinsic {name} is not supported by the local IAM enforcer")


def concrete_context(template, table, queues, parameters):
    """Refs and attrs of one local deployment: the table's name, the queues' URLs (logical id -> URL),
    and parameter values (comma-separated for CommaDelimitedList)."""
    table_arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}"
    refs = {"Table": table}
    attrs = {"Table.Arn": table_arn}
    for logical, url in queues.items():
        name = url.rstrip("/").rsplit("/", 1)[-1]
        refs[logical] = url
        attrs[f"{logical}.Arn"] = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"
        attrs[f"{logical}.QueueName"] = name
    _parameters(template, refs, parameters)
    return refs, attrs


def symbolic_context(template):
    """Refs and attrs as placeholders (`${Table.Arn}`), so that grants compare across deployments."""
    refs, attrs = {}, {}
    for logical in template.get("Resources", {}):
        refs[logical] = "${%s}" % logical
        for attr in ("Arn", "QueueName", "QueueUrl"):
            attrs[f"{logical}.{attr}"] = "${%s.%s}" % (logical, attr)
    params = {}
    for name, p in template.get("Parameters", {}).items():
        params[name] = "${%s}" % name
    _parameters(template, refs, params, symbolic=True)
    return refs, attrs


def _parameters(template, refs, values, symbolic=False):
    for name, p in template.get("Parameters", {}).items():
        v = values.get(name, p.get("Default", ""))
        if p.get("Type") == "CommaDelimitedList":
            refs[name] = [v] if symbolic else str(v).split(",")
        else:
            refs[name] = v


def function_names(template):
    """Logical id -> the function's name (its KICKOFF_FUNCTION), for every AWS::Serverless::Function."""
    out = {}
    for logical, res in template["Resources"].items():
        if res.get("Type") != "AWS::Serverless::Function":
            continue
        env = res.get("Properties", {}).get("Environment", {}).get("Variables", {})
        out[logical] = env.get("KICKOFF_FUNCTION", logical)
    return out


def function_policies(template, resolver):
    """Function name -> its statements, resolved: [{"Effect", "Action": [..], "Resource": [..]}]."""
    out = {}
    for logical, name in function_names(template).items():
        props = template["Resources"][logical].get("Properties", {})
        statements = []
        for policy in resolver.resolve(props.get("Policies", [])):
            if not isinstance(policy, dict) or "Statement" not in policy:
                raise ValueError(f"{name}: only inline policy documents are supported, not {policy!r}")
            for s in policy["Statement"]:
                unsupported = {"Condition", "NotAction", "NotResource", "NotPrincipal"} & set(s)
                if unsupported:
                    raise ValueError(f"{name}: statement keys {sorted(unsupported)} are not supported")
                listed = lambda x: [i for i in (x if isinstance(x, list) else [x]) if i != ""]
                resources = []
                for r in listed(s["Resource"]):
                    resources.extend(listed(r))
                statements.append({"Effect": s["Effect"], "Action": listed(s["Action"]), "Resource": resources})
        out[name] = statements
    return out


def match(pattern, value, case_insensitive=False):
    if case_insensitive:
        pattern, value = pattern.lower(), value.lower()
    # IAM wildcards: * any run of characters, ? one character; nothing else is special.
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.DOTALL) is not None


def authorize(statements, action, resource):
    """("allow", statement index, resource index) of the first Allow that matches, or ("deny", i, j)
    for an explicit Deny, or ("deny", None, None) when nothing allows it."""
    allowed = None
    for i, s in enumerate(statements):
        if not any(match(a, action, case_insensitive=True) for a in s["Action"]):
            continue
        for j, pattern in enumerate(s["Resource"]):
            if match(pattern, resource):
                if s["Effect"] == "Deny":
                    return ("deny", i, j)
                if allowed is None:
                    allowed = ("allow", i, j)
    return allowed or ("deny", None, None)

