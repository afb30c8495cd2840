"""The official Python `kubernetes` client against a running Wharf (KUBECONFIG points at it).

Creates, lists (with a label selector), watches ADDED/MODIFIED/DELETED in order, resumes a
watch from a resourceVersion, checks a stale update is a 409, scales a Deployment through the
scale subresource. Exits non-zero with a message on the first broken promise.
"""
import sys
import threading
import time

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

config.load_kube_config()
v1 = client.CoreV1Api()
apps = client.AppsV1Api()


def check(condition, message):
    if not condition:
        print("FAIL:", message)
        sys.exit(1)


# Create and list with a label selector.
for i in range(3):
    v1.create_namespaced_config_map(
        "default",
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=f"py-{i}", labels={"team": "a" if i < 2 else "b"}),
            data={"i": str(i)},
        ),
    )
team_a = v1.list_namespaced_config_map("default", label_selector="team=a")
check(sorted(c.metadata.name for c in team_a.items) == ["py-0", "py-1"], "label selector")

# Watch from the list's resourceVersion: ADDED, MODIFIED, DELETED in order.
rv = v1.list_namespaced_config_map("default").metadata.resource_version
seen = []


def watcher():
    for event in watch.Watch().stream(
        v1.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=10
    ):
        if event["object"].metadata.name == "py-watch":
            seen.append((event["type"], int(event["object"].metadata.resource_version)))
            if event["type"] == "DELETED":
                return


thread = threading.Thread(target=watcher)
thread.start()
time.sleep(0.5)
cm = v1.create_namespaced_config_map(
    "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py-watch"), data={"a": "1"})
)
created_rv = cm.metadata.resource_version
cm.data = {"a": "2"}
updated = v1.replace_namespaced_config_map("py-watch", "default", cm)
check(int(updated.metadata.resource_version) > int(created_rv), "resourceVersion increases")

# A stale update is a conflict and changes nothing.
stale = client.V1ConfigMap(
    metadata=client.V1ObjectMeta(name="py-watch", resource_version=created_rv), data={"a": "3"}
)
try:
    v1.replace_namespaced_config_map("py-watch", "default", stale)
    check(False, "stale update accepted")
except ApiException as e:
    check(e.status == 409, f"stale update gave {e.status}, want 409")
check(v1.read_namespaced_config_map("py-watch", "default").data == {"a": "2"}, "stale write changed data")

v1.delete_namespaced_config_map("py-watch", "default")
thread.join(12)
types = [t for t, _ in seen]
check(types == ["ADDED", "MODIFIED", "DELETED"], f"watch saw {types}")
revisions = [r for _, r in seen]
check(revisions == sorted(revisions) and len(set(revisions)) == 3, f"watch revisions {revisions}")

# Resume: a watch from the ADDED event's resourceVersion sees MODIFIED and DELETED only.
resumed = []
for event in watch.Watch().stream(
    v1.list_namespaced_config_map, "default", resource_version=str(revisions[0]), timeout_seconds=2
):
    if event["object"].metadata.name == "py-watch":
        resumed.append(event["type"])
        if event["type"] == "DELETED":
            break
check(resumed == ["MODIFIED", "DELETED"], f"resumed watch saw {resumed}")

# Scale subresource of a Deployment.
apps.create_namespaced_deployment(
    "default",
    client.V1Deployment(
        metadata=client.V1ObjectMeta(name="py-dep"),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels={"app": "py"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "py"}),
                spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="img:1")]),
            ),
        ),
    ),
)
apps.patch_namespaced_deployment_scale("py-dep", "default", {"spec": {"replicas": 4}})
check(apps.read_namespaced_deployment("py-dep", "default").spec.replicas == 4, "scale patch")
check(apps.read_namespaced_deployment_scale("py-dep", "default").spec.replicas == 4, "scale read")
print("python client: ok")
