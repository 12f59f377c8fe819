#!/usr/bin/env python3
"""Records the request bodies kubectl sends, for test fixtures.

Starts a plain-HTTP stand-in apiserver on 127.0.0.1, points a throwaway
kubeconfig at it, runs each kubectl command in COMMANDS, and writes every
protobuf body kubectl sends to OUT_DIR/NAME.pb, next to NAME.json: the same
object from `kubectl ... --dry-run=client -o json`, which is what upstream's
JSON encoding gives for it.

Usage: tools/capture-kubectl.py OUT_DIR [KUBECTL]
"""

import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading

COMMANDS = {
    "namespace": ["create", "namespace", "foo"],
    "configmap": [
        "create", "configmap", "cm", "--from-literal=a=1", "--from-literal=b=",
        "--from-file=bin=BINARY_FILE",
    ],
    "secret-generic": ["create", "secret", "generic", "s", "--from-literal=password=hunter2", "--type=Opaque"],
    "secret-docker": [
        "create", "secret", "docker-registry", "reg", "--docker-username=u",
        "--docker-password=p", "--docker-server=r.example",
    ],
    "deployment": ["create", "deployment", "web", "--image=nginx:1.27", "--replicas=0", "--port=80"],
    "deployment-multi": ["create", "deployment", "multi", "--image=a", "--image=b:2"],
    "job": ["create", "job", "once", "--image=busybox", "--", "echo", "hi"],
    "cronjob": ["create", "cronjob", "tick", "--image=busybox", "--schedule=*/5 * * * *", "--restart=OnFailure", "--", "date"],
    "service-clusterip": ["create", "service", "clusterip", "svc", "--tcp=80:8080", "--tcp=443:https"],
    "service-nodeport": ["create", "service", "nodeport", "np", "--tcp=80:8080", "--node-port=30080"],
    "service-externalname": ["create", "service", "externalname", "ext", "--external-name=db.example"],
    "service-headless": ["create", "service", "clusterip", "headless", "--clusterip=None"],
    "serviceaccount": ["create", "serviceaccount", "robot"],
    "token": ["create", "token", "robot", "--duration=10m", "--audience=api", "--audience=vault"],
    # Kinds kedge does not serve: the decoder must name them.
    "quota": ["create", "quota", "q", "--hard=cpu=1,memory=1Gi,pods=2"],
    "delete": ["delete", "namespace", "foo", "--grace-period=5", "--wait=false"],
    "run": ["run", "shell", "--image=busybox", "--labels=app=shell,tier=debug", "--env=A=1", "--port=8080", "--", "sleep", "1d"],
}

BODIES = {}


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/api":
            return self.reply(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
        if path == "/apis":
            return self.reply(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
        if path == "/api/v1":
            resources = [
                {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod", "verbs": ["create", "get"]},
                {"name": "namespaces", "singularName": "namespace", "namespaced": False, "kind": "Namespace",
                 "verbs": ["create", "delete", "get"]},
            ]
            return self.reply(200, {"kind": "APIResourceList", "groupVersion": "v1", "resources": resources})
        self.reply(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404, "reason": "NotFound"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        BODIES.setdefault("current", []).append((self.path, self.headers.get("Content-Type"), body))
        api_version, kind = envelope_type(body)
        if not api_version and body.startswith(b"{"):
            sent = json.loads(body)
            api_version, kind = sent.get("apiVersion", ""), sent.get("kind", "")
        obj = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "x", "namespace": "default"}}
        if kind == "TokenRequest":
            obj["status"] = {"token": "t", "expirationTimestamp": "2030-01-01T00:00:00Z"}
        self.reply(201, obj)


    def do_DELETE(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        BODIES.setdefault("current", []).append((self.path, self.headers.get("Content-Type"), body))
        self.reply(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})


def varint(b, i):
    v = shift = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if c < 0x80:
            return v, i


def fields(b):
    i = 0
    while i < len(b):
        key, i = varint(b, i)
        assert key & 7 == 2, "the envelope has only length-delimited fields"
        n, i = varint(b, i)
        yield key >> 3, b[i:i + n]
        i += n


def envelope_type(body):
    if not body.startswith(b"k8s\x00"):
        return "", ""
    for tag, value in fields(body[4:]):
        if tag == 1:
            meta = dict(fields(value))
            return meta.get(1, b"").decode(), meta.get(2, b"").decode()
    return "", ""


def main():
    out = sys.argv[1]
    kubectl = sys.argv[2] if len(sys.argv) > 2 else "kubectl"
    os.makedirs(out, exist_ok=True)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        binary = os.path.join(tmp, "binary")
        with open(binary, "wb") as f:
            f.write(bytes([0, 1, 2, 0xFE, 0xFF]))
        config = os.path.join(tmp, "config")
        with open(config, "w") as f:
            f.write(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n"
                "    server: http://127.0.0.1:%d\n"
                "contexts:\n- name: c\n  context: {cluster: c, namespace: default}\n"
                "current-context: c\nusers: []\n" % server.server_address[1]
            )
        env = dict(os.environ, KUBECONFIG=config, HOME=tmp)
        for name, args in COMMANDS.items():
            args = [a.replace("BINARY_FILE", binary) for a in args]
            BODIES["current"] = []
            run = subprocess.run([kubectl] + args, env=env, capture_output=True, text=True)
            posts = [b for b in BODIES["current"] if b[2]]
            if run.returncode != 0 or len(posts) != 1:
                print("%s: exit %d, %d bodies: %s" % (name, run.returncode, len(posts), run.stderr.strip()))
                continue
            path, content_type, body = posts[0]
            if not body.startswith(b"k8s\x00"):
                print("%s: %s sent %s, not protobuf" % (name, path, content_type))
                continue
            with open(os.path.join(out, name + ".pb"), "wb") as f:
                f.write(body)
            if name == "token":
                continue  # create token has no --dry-run=client -o json
            # The flags go before `--`, after which come the container's.
            cut = args.index("--") if "--" in args else len(args)
            dry_args = args[:cut] + ["--dry-run=client", "-o", "json"] + args[cut:]
            dry = subprocess.run([kubectl] + dry_args, env=env, capture_output=True, text=True)
            if dry.returncode != 0:
                print("%s: dry run failed: %s" % (name, dry.stderr.strip()))
                continue
            with open(os.path.join(out, name + ".json"), "w") as f:
                f.write(dry.stdout)
            print("%s: %s %d bytes" % (name, path, len(body)))
    server.shutdown()


main()
