#!/usr/bin/env python3
"""Checks on rendered deployment manifests (`kubectl kustomize` output) that no
schema makes, for scripts/check-deploy.sh:

    check-manifests.py builtin FILE          print the Kubernetes built-in kinds (for kubernetes-validate)
    check-manifests.py wiring FILE IMAGE     the signer's image and its cert-manager wiring agree
    check-manifests.py kamaji-pod FILE       a TCP's or KCP's signer container and volumes as a Pod (JSON)

`wiring` fails, naming what to fix, unless: every signer container runs IMAGE;
every cert-manager Issuer signs from the Secret the signer reads its CA from;
every Certificate's Secret is mounted at /etc/talos-server-crt, names an
Issuer that exists, asks for serverAuth, and has no Ed25519 key (gRPC core
clients cannot handshake with one).
"""
import json
import sys

import yaml

CUSTOM_GROUPS = ("cert-manager.io/", "kamaji.clastix.io/", "controlplane.cluster.x-k8s.io/")
SIGNER_NAMES = ("signer", "talos-csr-signer")


def docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def pod_specs(doc):
    """(containers, volumes) of every pod a document makes."""
    kind = doc["kind"]
    if kind in ("Deployment", "DaemonSet"):
        spec = doc["spec"]["template"]["spec"]
        yield spec["containers"], spec.get("volumes", [])
    elif kind == "TenantControlPlane":
        dep = doc["spec"]["controlPlane"]["deployment"]
        yield dep.get("additionalContainers", []), dep.get("additionalVolumes", [])
    elif kind == "KamajiControlPlane":
        dep = doc["spec"]["deployment"]
        yield dep.get("extraContainers", []), dep.get("extraVolumes", [])


def mounted_secret(container, volumes, path):
    for m in container.get("volumeMounts", []):
        if m["mountPath"] == path:
            vol = next(v for v in volumes if v["name"] == m["name"])
            return vol.get("secret", {}).get("secretName")
    return None


def wiring(path, image):
    all_docs = docs(path)
    problems, ca_secrets, serving_secrets = [], set(), set()
    for doc in all_docs:
        for containers, volumes in pod_specs(doc):
            for c in containers:
                if c["name"] not in SIGNER_NAMES:
                    continue
                if c["image"] != image:
                    problems.append(f"{doc['kind']} {doc['metadata']['name']}: image {c['image']}, not {image}")
                ns = doc["metadata"].get("namespace")
                ca_secrets.add((ns, mounted_secret(c, volumes, "/etc/talos-ca")))
                serving_secrets.add((ns, mounted_secret(c, volumes, "/etc/talos-server-crt")))
    issuers = {(d["metadata"].get("namespace"), d["metadata"]["name"]) for d in all_docs if d["kind"] == "Issuer"}
    for d in all_docs:
        ns, name = d["metadata"].get("namespace"), d["metadata"]["name"]
        if d["kind"] == "Issuer" and (ns, d["spec"]["ca"]["secretName"]) not in ca_secrets:
            problems.append(f"Issuer {name}: signs from Secret {d['spec']['ca']['secretName']}, "
                            "which no signer mounts at /etc/talos-ca")
        if d["kind"] == "Certificate":
            spec = d["spec"]
            if (ns, spec["secretName"]) not in serving_secrets:
                problems.append(f"Certificate {name}: Secret {spec['secretName']} is not mounted at /etc/talos-server-crt")
            if (ns, spec["issuerRef"]["name"]) not in issuers:
                problems.append(f"Certificate {name}: no Issuer {spec['issuerRef']['name']} in {ns}")
            if "server auth" not in spec.get("usages", []):
                problems.append(f"Certificate {name}: usages lack 'server auth'")
            if spec.get("privateKey", {}).get("algorithm") == "Ed25519":
                problems.append(f"Certificate {name}: Ed25519 serving keys fail gRPC core clients; use ECDSA")
    for p in problems:
        print(f"{path}: {p}", file=sys.stderr)
    return 1 if problems else 0


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    what, path = argv[1], argv[2]
    if what == "builtin":
        builtin = [d for d in docs(path) if not d["apiVersion"].startswith(CUSTOM_GROUPS)]
        yaml.safe_dump_all(builtin, sys.stdout)
    elif what == "wiring":
        sys.exit(wiring(path, argv[3]))
    elif what == "kamaji-pod":
        cp = next(d for d in docs(path) if d["kind"] in ("TenantControlPlane", "KamajiControlPlane"))
        containers, volumes = next(pod_specs(cp))
        security = cp["spec"].get("controlPlane", {}).get("deployment", {}).get("podSecurityContext", {})
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "signer"},
               "spec": {"containers": containers, "volumes": volumes, "securityContext": security}}
        json.dump(pod, sys.stdout)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
