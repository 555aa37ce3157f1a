#!/usr/bin/env python3
"""Validates custom resources against their CustomResourceDefinition's
openAPIV3Schema, strictly, as `kubectl apply` with server-side field
validation does: an unknown field is an error (unless the schema preserves
unknown fields there), and so is a wrong type, a missing required field, a
value outside an enum or an int32 out of range.

    check-crd.py CRD.yaml FILE...     (FILE: YAML, several documents allowed; - for stdin)

Every document whose apiVersion/kind the CRD serves is checked; documents of
other kinds are ignored, but at least one must match. The CRD's CEL rules
(x-kubernetes-validations) need an API server and are not evaluated; their
number is printed so nobody mistakes this for more than it is.

Exit status 0 only if every matching document is valid.
"""
import re
import sys

import jsonschema
import yaml

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}

# What a custom resource's metadata may carry when applied.
METADATA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "maxLength": 253, "pattern": DNS_SUBDOMAIN.pattern},
        "namespace": {"type": "string", "maxLength": 63, "pattern": DNS_LABEL.pattern},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def strict(node, cel):
    """The Kubernetes structural schema as JSON Schema, unknown fields refused."""
    if isinstance(node, list):
        return [strict(n, cel) for n in node]
    if not isinstance(node, dict):
        return node
    cel[0] += len(node.get("x-kubernetes-validations", []))
    out = {k: strict(v, cel) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    out.pop("default", None)
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if node.get("type") == "object" and "properties" in node:
        if not node.get("x-kubernetes-preserve-unknown-fields") and "additionalProperties" not in node:
            out["additionalProperties"] = False
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    fmt = node.get("format")
    if fmt in INT_RANGES and node.get("type") == "integer":
        out["minimum"], out["maximum"] = INT_RANGES[fmt]
    return out


def load_docs(path):
    stream = sys.stdin if path == "-" else open(path, encoding="utf-8")
    with stream:
        return [d for d in yaml.safe_load_all(stream) if d]


def schemas(crd):
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    out, cel = {}, [0]
    for version in crd["spec"]["versions"]:
        if not version.get("served", True):
            continue
        schema = strict(version["schema"]["openAPIV3Schema"], cel)
        schema.setdefault("properties", {})["metadata"] = METADATA
        schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"})
        schema["additionalProperties"] = False
        out[(f"{group}/{version['name']}", kind)] = jsonschema.Draft7Validator(schema)
    return out, cel[0]


def where(error):
    return "." + ".".join(str(p) for p in error.absolute_path) if error.absolute_path else "(top level)"


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    crd = next(d for d in load_docs(argv[1]) if d.get("kind") == "CustomResourceDefinition")
    validators, cel = schemas(crd)
    checked, failures = 0, 0
    for path in argv[2:]:
        for doc in load_docs(path):
            validator = validators.get((doc.get("apiVersion"), doc.get("kind")))
            if validator is None:
                continue
            checked += 1
            name = f"{path}: {doc['kind']} {doc.get('metadata', {}).get('name', '?')}"
            errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
            for e in errors:
                print(f"{name}: {where(e)}: {e.message}", file=sys.stderr)
            failures += bool(errors)
            if not errors:
                print(f"{name}: valid against {crd['metadata']['name']} ({cel} CEL rules not evaluated)")
    if checked == 0:
        sys.exit(f"check-crd: no {crd['spec']['names']['kind']} in {' '.join(argv[2:])}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main(sys.argv)
