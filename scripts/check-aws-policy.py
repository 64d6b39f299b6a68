#!/usr/bin/env python3
"""The fleet's IAM policy (compose/aws/fleet-resources.yaml) allows exactly the AWS actions the code sends.

1. Every function of an AWS client (Sources/AWSClient/<Service>/) is read for the actions it sends
   (`call("X"`, `query(.ec2, action: "X"`, `paginate("X"`, `Action=X` forms, the JSON target operation).
2. The functions the rest of Sources/ calls (`.name(`) are the roots; calls between functions of the same
   client (waiters, `upsertARecord` -> `changeResourceRecordSets`) are followed. Matching is by name, so it
   over-approximates (a name shared with another type counts as a call): safe for this check.
3. Every reachable action must be in the policy, unless listed in EXCLUDED with the reason and the only
   files allowed to reach it; and every action in the policy must be reachable, unless it is only
   authorised, never sent (AUTHORISATION_ONLY).
Exit 1 with the differences otherwise.

Usage: check-aws-policy.py [template] (from the repository root).
"""
import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
TEMPLATE = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "compose/aws/fleet-resources.yaml"
CLIENTS = {"CloudWatch": "cloudwatch", "DynamoDB": "dynamodb", "EC2": "ec2", "Route53": "route53",
           "SES": "ses", "SNS": "sns", "SSM": "ssm"}

# Reachable from Sources/ but deliberately not granted to the fleet: (reason, files allowed to reach it,
# patterns that must not appear elsewhere in Sources/ because they would make the workers send it).
TARGET_CONFIG = "Sources/FleetWorkers/Shared/TargetConfigTable.swift"
EXCLUDED = {
    "dynamodb:CreateTable": ("TargetConfigTable.create(), for tests; the template creates the table",
                             {TARGET_CONFIG}, [r"\.create\(\)"]),
    "dynamodb:DescribeTable": ("waitUntilTableActive after TargetConfigTable.create()",
                               {TARGET_CONFIG}, [r"\.create\(\)", r"waitUntilTableActive\("]),
}
# Authorised with what the code sends, never sent itself.
AUTHORISATION_ONLY = {
    "iam:PassRole": "RunInstances with an instance profile",
    "kms:GenerateDataKey": "sns:Publish to a topic with a customer managed key",
    "kms:Decrypt": "SNS or EBS customer managed keys",
    "kms:DescribeKey": "EBS customer managed keys",
    "kms:GenerateDataKeyWithoutPlaintext": "EBS customer managed keys",
    "kms:ReEncryptFrom": "EBS customer managed keys",
    "kms:ReEncryptTo": "EBS customer managed keys",
    "kms:CreateGrant": "StartInstances/RunInstances with EBS customer managed keys",
}

FUNC = re.compile(r"^[ \t]*(?:(?:public|private|internal|fileprivate|static|nonisolated|mutating|override|@\w+)\s+)*func\s+(\w+)",
                  re.M)
SENDS = [
    re.compile(r'\b(?:call|paginate|stateChanges)\(\s*"([A-Z][A-Za-z0-9]+)"'),
    re.compile(r'\b(?:query|json)\(\s*\.\w+\s*,\s*(?:action|operation):\s*"([A-Z][A-Za-z0-9]+)"'),
    re.compile(r'\.set\("Action",\s*"([A-Z][A-Za-z0-9]+)"\)'),
]
CALL = re.compile(r"\b(\w+)\(")


def strip_comments(text):
    """Swift source without comments (doc comments name other functions: ``getChange(_:)``)."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"^\s*//.*$", "", text, flags=re.M)


def client_functions():
    """{(service, function): (actions, called names)} for every client function."""
    out = {}
    for directory, prefix in CLIENTS.items():
        for path in sorted((ROOT / "Sources/AWSClient" / directory).glob("*.swift")):
            text = strip_comments(path.read_text())
            starts = [(m.start(), m.group(1)) for m in FUNC.finditer(text)]
            for i, (start, name) in enumerate(starts):
                body = text[start:starts[i + 1][0] if i + 1 < len(starts) else len(text)]
                actions = {a for pattern in SENDS for a in pattern.findall(body)}
                entry = out.setdefault((prefix, name), (set(), set()))
                entry[0].update(actions)
                entry[1].update(set(CALL.findall(body)) - {name})
    return out


def reachable_actions(functions):
    """{action: set of files outside AWSClient whose calls reach it}."""
    outside = [p for p in (ROOT / "Sources").rglob("*.swift") if "Sources/AWSClient/" not in str(p)]
    names = {name for _, name in functions}
    callers = {}
    for path in outside:
        for name in set(re.findall(r"\.(\w+)\(", strip_comments(path.read_text()))) & names:
            callers.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    reached = {}
    for (prefix, root), _ in functions.items():
        if root not in callers:
            continue
        seen, todo = set(), [(prefix, root)]
        while todo:
            key = todo.pop()
            if key in seen or key not in functions:
                continue
            seen.add(key)
            actions, called = functions[key]
            for action in actions:
                reached.setdefault(f"{key[0]}:{action}", set()).update(callers[root])
            todo += [(key[0], c) for c in called]  # within the same client only
    return reached


class CFNLoader(yaml.SafeLoader):
    pass


def _intrinsic(loader, suffix, node):
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


CFNLoader.add_multi_constructor("!", _intrinsic)


def policy_actions(template):
    """Every Action of every IAM policy document in the template (both branches of Fn::If)."""
    actions = set()

    def statements(node):
        if isinstance(node, dict):
            if "Fn::If" in node:
                for branch in node["Fn::If"][1:]:
                    yield from statements(branch)
            elif "Effect" in node:
                yield node
        elif isinstance(node, list):
            for item in node:
                yield from statements(item)

    for resource in template["Resources"].values():
        document = resource.get("Properties", {}).get("PolicyDocument")
        if resource["Type"] not in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy") or not document:
            continue
        for statement in statements(document["Statement"]):
            if statement["Effect"] != "Allow":
                continue
            value = statement.get("Action", [])
            actions.update([value] if isinstance(value, str) else value)
    return actions


def main():
    functions = client_functions()
    reached = reachable_actions(functions)
    allowed = policy_actions(yaml.load(TEMPLATE.read_text(), Loader=CFNLoader))
    problems = []
    if any("*" in a for a in allowed):
        problems.append(f"wildcard actions in the policy: {sorted(a for a in allowed if '*' in a)}")

    sources = [p for p in (ROOT / "Sources").rglob("*.swift") if "Sources/AWSClient/" not in str(p)]
    for action, (reason, files, patterns) in EXCLUDED.items():
        if action not in reached:
            problems.append(f"{action} is listed as excluded but no code reaches it any more: drop it from EXCLUDED")
            continue
        if not reached[action] <= files:
            problems.append(f"{action} ({reason}) is now reached from {sorted(reached[action] - files)}: grant it or change the code")
        for path in sources:
            rel = str(path.relative_to(ROOT))
            if rel in files:
                continue
            for pattern in patterns:
                if re.search(pattern, strip_comments(path.read_text())):
                    problems.append(f"{rel} matches {pattern!r}: the workers may now send {action} ({reason})")

    for action in sorted(set(reached) - set(EXCLUDED) - allowed):
        problems.append(f"the code sends {action} (from {', '.join(sorted(reached[action]))}) but the policy does not allow it")
    for action in sorted(allowed - set(reached) - set(AUTHORISATION_ONLY)):
        problems.append(f"the policy allows {action}, which no code sends")
    for action in sorted(allowed & set(EXCLUDED)):
        problems.append(f"the policy allows {action}, which is EXCLUDED ({EXCLUDED[action][0]})")

    if problems:
        for p in problems:
            print(f"check: {p}")
        return 1
    sent = sorted(set(reached) - set(EXCLUDED))
    unused = sorted(f"{p}:{a}" for (p, _), (acts, _) in functions.items() for a in acts
                    if f"{p}:{a}" not in reached)
    print(f"check: the fleet policy allows exactly the {len(sent)} actions the workers send "
          f"({len(EXCLUDED)} reachable only from table helpers are not granted; "
          f"{len(set(unused))} client actions no worker calls are not granted)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
