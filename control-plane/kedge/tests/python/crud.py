"""ConfigMaps and Deployments through CoreV1Api and AppsV1Api: create, read,
list by label, the three patch types, replace, scale and status
subresources, delete, and the ApiExceptions for 404, 409 and 422."""

from kedge_check import api_error, eq, load, true

client = load()
v1 = client.CoreV1Api()
apps = client.AppsV1Api()
NS = "default"

# ConfigMaps.
cm = client.V1ConfigMap(
    metadata=client.V1ObjectMeta(name="py-cm", labels={"app": "py"}),
    data={"k": "v1"})
created = v1.create_namespaced_config_map(NS, cm)
eq(created.data, {"k": "v1"}, "created configmap data")
true(bool(created.metadata.uid), "created configmap has a uid")
first_rv = int(created.metadata.resource_version)

v1.create_namespaced_config_map(NS, client.V1ConfigMap(
    metadata=client.V1ObjectMeta(name="py-other", labels={"app": "other"})))
read = v1.read_namespaced_config_map("py-cm", NS)
eq(read.metadata.resource_version, created.metadata.resource_version, "read back the same version")
eq(read.data, {"k": "v1"}, "read back the data")
listed = v1.list_namespaced_config_map(NS, label_selector="app=py").items
eq([c.metadata.name for c in listed], ["py-cm"], "list with a label selector")
listed = v1.list_namespaced_config_map(NS, label_selector="app in (py,other)").items
eq(sorted(c.metadata.name for c in listed), ["py-cm", "py-other"], "list with a set selector")
everywhere = v1.list_config_map_for_all_namespaces(label_selector="app=py").items
eq([(c.metadata.namespace, c.metadata.name) for c in everywhere], [(NS, "py-cm")],
   "list across all namespaces")

# A dict body is sent as a strategic merge patch.
patched = v1.patch_namespaced_config_map("py-cm", NS, {"data": {"s": "strategic"}})
eq(patched.data, {"k": "v1", "s": "strategic"}, "strategic merge patch")
true(int(patched.metadata.resource_version) > first_rv, "a patch moves the resourceVersion")
# A list body is sent as a JSON patch.
patched = v1.patch_namespaced_config_map("py-cm", NS, [
    {"op": "replace", "path": "/data/k", "value": "json"},
    {"op": "remove", "path": "/data/s"},
])
eq(patched.data, {"k": "json"}, "JSON patch")
# A merge patch: client 32's typed methods send only JSON and strategic
# merge patches, so ask for it through the client's own call_api.
patched = v1.api_client.call_api(
    "/api/v1/namespaces/{namespace}/configmaps/{name}", "PATCH",
    path_params={"namespace": NS, "name": "py-cm"},
    header_params={"Content-Type": "application/merge-patch+json",
                   "Accept": "application/json"},
    body={"data": {"m": "merge"}, "metadata": {"labels": {"tier": "web"}}},
    response_type="V1ConfigMap", auth_settings=["BearerToken"],
    _return_http_data_only=True)
eq(patched.data, {"k": "json", "m": "merge"}, "merge patch data")
eq(patched.metadata.labels, {"app": "py", "tier": "web"}, "merge patch labels")

# Replace with the current version works; with a stale one it is a 409.
current = v1.read_namespaced_config_map("py-cm", NS)
current.data = {"k": "replaced"}
replaced = v1.replace_namespaced_config_map("py-cm", NS, current)
eq(replaced.data, {"k": "replaced"}, "replace")
stale = current
stale.data = {"k": "stale"}
status, body = api_error(v1.replace_namespaced_config_map, "py-cm", NS, stale)
eq(status, 409, "a stale replace is a 409")
eq(body["reason"], "Conflict", "a stale replace is a Conflict")
eq(body["kind"], "Status", "the error body is a Status")
eq(v1.read_namespaced_config_map("py-cm", NS).data, {"k": "replaced"},
   "the stale replace changed nothing")

# Errors.
status, body = api_error(v1.read_namespaced_config_map, "missing", NS)
eq(status, 404, "reading a missing configmap is a 404")
eq(body["reason"], "NotFound", "reading a missing configmap is NotFound")
eq(body["message"], 'configmaps "missing" not found', "the 404 message")
status, body = api_error(v1.create_namespaced_config_map, NS, cm)
eq(status, 409, "creating an existing configmap is a 409")
eq(body["reason"], "AlreadyExists", "creating an existing configmap is AlreadyExists")
status, body = api_error(v1.create_namespaced_config_map, NS, client.V1ConfigMap(
    metadata=client.V1ObjectMeta(name="Not_Valid")))
eq(status, 422, "an invalid name is a 422")
eq(body["reason"], "Invalid", "an invalid name is Invalid")
eq([c["field"] for c in body["details"]["causes"]], ["metadata.name"], "the invalid field")

# Delete answers with a Success Status; the object is gone.
deleted = v1.delete_namespaced_config_map("py-cm", NS)
eq(deleted.status, "Success", "delete answers Success")
eq(deleted.details.name, "py-cm", "delete names the configmap")
status, _ = api_error(v1.read_namespaced_config_map, "py-cm", NS)
eq(status, 404, "the deleted configmap is gone")

# Deployments.
dep = client.V1Deployment(
    metadata=client.V1ObjectMeta(name="py-web"),
    spec=client.V1DeploymentSpec(
        replicas=2,
        selector=client.V1LabelSelector(match_labels={"app": "py-web"}),
        template=client.V1PodTemplateSpec(
            metadata=client.V1ObjectMeta(labels={"app": "py-web"}),
            spec=client.V1PodSpec(containers=[
                client.V1Container(name="main", image="busybox:1")]))))
created = apps.create_namespaced_deployment(NS, dep)
eq(created.metadata.generation, 1, "a new deployment is generation 1")
eq(created.spec.strategy.type, "RollingUpdate", "the strategy is defaulted")
eq(created.spec.template.spec.containers[0].image_pull_policy, "IfNotPresent",
   "the pull policy is defaulted")
read = apps.read_namespaced_deployment("py-web", NS)
eq(read.spec.replicas, 2, "read back the deployment")

patched = apps.patch_namespaced_deployment("py-web", NS, {"spec": {"template": {"spec": {
    "containers": [{"name": "main", "image": "busybox:2"}]}}}})
eq(patched.spec.template.spec.containers[0].image, "busybox:2", "patched the image")
eq(patched.metadata.generation, 2, "a spec patch bumps the generation")

scale = apps.read_namespaced_deployment_scale("py-web", NS)
eq(scale.spec.replicas, 2, "the scale subresource reads spec.replicas")
eq(scale.status.selector, "app=py-web", "the scale subresource has the selector")
scaled = apps.patch_namespaced_deployment_scale("py-web", NS, {"spec": {"replicas": 4}})
eq(scaled.spec.replicas, 4, "scaled through the scale subresource")
eq(apps.read_namespaced_deployment("py-web", NS).spec.replicas, 4,
   "the deployment sees the new scale")

with_status = apps.patch_namespaced_deployment_status(
    "py-web", NS, {"status": {"replicas": 4, "readyReplicas": 1, "observedGeneration": 3}})
eq(with_status.status.ready_replicas, 1, "the status subresource writes status")
eq(with_status.spec.replicas, 4, "and leaves the spec alone")

status, body = api_error(apps.read_namespaced_deployment, "missing", NS)
eq(status, 404, "a missing deployment is a 404")
eq(body["message"], 'deployments.apps "missing" not found', "its message names the group")

deleted = apps.delete_namespaced_deployment("py-web", NS)
eq(deleted.status, "Success", "the deployment delete answers Success")
status, _ = api_error(apps.read_namespaced_deployment, "py-web", NS)
eq(status, 404, "the deleted deployment is gone")
