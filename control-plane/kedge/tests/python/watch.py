"""watch.Watch().stream on ConfigMaps: a watch from a list's resourceVersion
sees the ADDED, MODIFIED and DELETED of changes another thread makes, in
order; a watch without one starts with the current objects as ADDED."""

import os
import sys
import threading

from kubernetes import watch

from kedge_check import eq, fail, load, true

client = load()
v1 = client.CoreV1Api()
NS = "default"
SELECTOR = "suite=py-watch"


def meta(name):
    return client.V1ObjectMeta(name=name, labels={"suite": "py-watch"})


v1.create_namespaced_config_map(NS, client.V1ConfigMap(metadata=meta("w0"), data={"v": "0"}))
start = v1.list_namespaced_config_map(NS, label_selector=SELECTOR)
eq([c.metadata.name for c in start.items], ["w0"], "the list before the watch")
list_rv = start.metadata.resource_version


def writer():
    """Changes made from another thread while the main thread watches."""
    try:
        v1.create_namespaced_config_map(NS, client.V1ConfigMap(metadata=meta("w1"), data={"v": "1"}))
        v1.patch_namespaced_config_map("w1", NS, {"data": {"v": "2"}})
        # Not ours: no label, never seen by this watch.
        v1.create_namespaced_config_map(NS, client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="unlabelled")))
        v1.delete_namespaced_config_map("w1", NS)
        v1.patch_namespaced_config_map("w0", NS, {"data": {"v": "done"}})
    except Exception as e:  # noqa: BLE001 - any failure must fail the script
        print(f"FAIL: the writer thread: {e}", file=sys.stderr, flush=True)
        os._exit(1)


want = [
    ("ADDED", "w1", "1"),
    ("MODIFIED", "w1", "2"),
    ("DELETED", "w1", "2"),
    ("MODIFIED", "w0", "done"),
]
seen = []
thread = threading.Thread(target=writer)
w = watch.Watch()
thread.start()
for event in w.stream(v1.list_namespaced_config_map, NS, label_selector=SELECTOR,
                      resource_version=list_rv, allow_watch_bookmarks=True,
                      timeout_seconds=30):
    if event["type"] == "BOOKMARK":
        continue
    if event["type"] == "ERROR":
        fail(f"the watch sent an ERROR event: {event['raw_object']}")
    obj = event["object"]
    seen.append((event["type"], obj.metadata.name, (obj.data or {}).get("v")))
    true(int(obj.metadata.resource_version) > int(list_rv),
         f"{event['type']} {obj.metadata.name} is newer than the list")
    if len(seen) == len(want):
        w.stop()
thread.join()
eq(seen, want, "the events of the writer's changes, in order")

# Without a resourceVersion a watch first sends what exists, as ADDED.
initial = []
w = watch.Watch()
for event in w.stream(v1.list_namespaced_config_map, NS, label_selector=SELECTOR,
                      timeout_seconds=30):
    initial.append((event["type"], event["object"].metadata.name))
    w.stop()
eq(initial, [("ADDED", "w0")], "a watch without a resourceVersion starts with the current objects")
