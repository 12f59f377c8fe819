"""Namespaces through CoreV1Api: the four a cluster starts with, and one of
our own created and read back."""

from kedge_check import eq, load, true

client = load()
v1 = client.CoreV1Api()

names = {ns.metadata.name: ns for ns in v1.list_namespace().items}
for want in ["default", "kube-system", "kube-public", "kube-node-lease"]:
    true(want in names, f"namespace {want} is listed (have {sorted(names)})")
    eq(names[want].status.phase, "Active", f"namespace {want} is Active")

default = v1.read_namespace("default")
eq(default.metadata.name, "default", "read namespace default")
true(bool(default.metadata.uid), "namespace default has a uid")
eq(default.metadata.labels.get("kubernetes.io/metadata.name"), "default",
   "namespace default carries its kubernetes.io/metadata.name label")

created = v1.create_namespace(client.V1Namespace(
    metadata=client.V1ObjectMeta(name="py-ns", labels={"made-by": "python"})))
eq(created.metadata.name, "py-ns", "created namespace py-ns")
eq(created.status.phase, "Active", "a new namespace is Active")
labelled = v1.list_namespace(label_selector="made-by=python").items
eq([ns.metadata.name for ns in labelled], ["py-ns"], "label selector on namespaces")
