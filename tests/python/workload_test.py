"""The official Python `kubernetes` client with workloads against a running Wharf (KUBECONFIG
points at it; `hello-job:latest` is pushed): create a Deployment, list its pods, watch them
come up, patch (strategic merge and JSON merge), scale through the scale subresource, read a
container's logs, delete with foreground propagation, attach to a pod's stdin and output, and
get Kubernetes' errors for what is missing or unknown. Exits non-zero with a message on the first broken promise.
"""
import sys
import time

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

config.load_kube_config()
v1 = client.CoreV1Api()
apps = client.AppsV1Api()
NS = "default"


def check(condition, message):
    if not condition:
        print("FAIL:", message)
        sys.exit(1)


def wait(what, seconds, probe):
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.2)
    check(False, f"{what} did not happen within {seconds} s")


# Create: a Deployment of the Wasm command sample, kept running by SLEEP_MS.
container = client.V1Container(
    name="job",
    image="hello-job:latest",
    env=[
        client.V1EnvVar(name="GREETING", value="from-python"),
        client.V1EnvVar(name="SLEEP_MS", value="600000"),
    ],
)
deployment = client.V1Deployment(
    metadata=client.V1ObjectMeta(name="py-work", labels={"app": "py-work"}),
    spec=client.V1DeploymentSpec(
        replicas=1,
        selector=client.V1LabelSelector(match_labels={"app": "py-work"}),
        template=client.V1PodTemplateSpec(
            metadata=client.V1ObjectMeta(labels={"app": "py-work"}),
            spec=client.V1PodSpec(
                runtime_class_name="wasmtime",
                termination_grace_period_seconds=1,
                containers=[container],
            ),
        ),
    ),
)
created = apps.create_namespaced_deployment(NS, deployment)
check(created.metadata.uid, "the created Deployment has a uid")
try:
    apps.create_namespaced_deployment(NS, deployment)
    check(False, "a second create was accepted")
except ApiException as e:
    check(e.status == 409, f"a second create gave {e.status}, want 409")

# Watch the pods until one is Running (the watch starts from the list's resourceVersion).
listed = v1.list_namespaced_pod(NS, label_selector="app=py-work")
running = None
stream = watch.Watch()
for event in stream.stream(
    v1.list_namespaced_pod,
    NS,
    label_selector="app=py-work",
    resource_version=listed.metadata.resource_version,
    timeout_seconds=60,
):
    pod = event["object"]
    phase = pod.status.phase if pod.status else None
    if phase == "Running" and pod.metadata.deletion_timestamp is None:
        running = pod.metadata.name
        stream.stop()
        break
if running is None:
    running = next(
        (p.metadata.name for p in v1.list_namespaced_pod(NS, label_selector="app=py-work").items
         if p.status and p.status.phase == "Running"),
        None,
    )
check(running, "a pod of py-work is Running")
check(running.startswith("py-work-"), f"pod name {running}")

# Logs of the container.
logs = wait(
    "the greeting in the logs",
    20,
    lambda: (lambda text: "from-python" in text and text)(
        v1.read_namespaced_pod_log(running, NS, container="job")
    ),
)
check("hello-job: from-python" in logs, f"logs: {logs!r}")
tail = v1.read_namespaced_pod_log(running, NS, tail_lines=1)
check(len(tail.strip().splitlines()) == 1, f"tail_lines=1 gave {tail!r}")
try:
    v1.read_namespaced_pod_log(running, NS, container="nope")
    check(False, "logs of a missing container")
except ApiException as e:
    check(e.status in (400, 404), f"logs of a missing container gave {e.status}")

# Patch: strategic merge (a label) and JSON merge (an annotation).
apps.patch_namespaced_deployment("py-work", NS, {"metadata": {"labels": {"tier": "py"}}})
apps.patch_namespaced_deployment(
    "py-work",
    NS,
    {"metadata": {"annotations": {"note": "merged"}}},
    _content_type="application/merge-patch+json",
)
patched = apps.read_namespaced_deployment("py-work", NS)
check(patched.metadata.labels.get("tier") == "py", f"labels {patched.metadata.labels}")
check(patched.metadata.annotations.get("note") == "merged", "annotation")
check(patched.spec.template.spec.containers[0].image == "hello-job:latest", "image kept")

# Scale through the subresource, and the ReplicaSet follows.
apps.patch_namespaced_deployment_scale("py-work", NS, {"spec": {"replicas": 2}})
check(apps.read_namespaced_deployment_scale("py-work", NS).spec.replicas == 2, "scale read")
wait(
    "two ready replicas",
    60,
    lambda: apps.read_namespaced_deployment("py-work", NS).status.ready_replicas == 2,
)
sets = apps.list_namespaced_replica_set(NS, label_selector="app=py-work").items
check(len(sets) == 1 and sets[0].spec.replicas == 2, "one ReplicaSet of 2")
check(sets[0].metadata.owner_references[0].name == "py-work", "owned by the Deployment")

# Delete in the foreground: the Deployment stays (with a finalizer) until its dependents go.
apps.delete_namespaced_deployment(
    "py-work", NS, body=client.V1DeleteOptions(propagation_policy="Foreground")
)


def gone():
    try:
        apps.read_namespaced_deployment("py-work", NS)
        return False
    except ApiException as e:
        return e.status == 404


wait("the Deployment deleted", 30, gone)
check(
    not apps.list_namespaced_replica_set(NS, label_selector="app=py-work").items,
    "the ReplicaSet went before the Deployment",
)
wait(
    "the pods deleted",
    30,
    lambda: not v1.list_namespaced_pod(NS, label_selector="app=py-work").items,
)

# Attach (the client's WebSocket stream): a pod whose stdin is open gets what the client writes,
# and its output comes back.
from kubernetes.stream import stream as ws_stream

echo = client.V1Pod(
    metadata=client.V1ObjectMeta(name="py-attach"),
    spec=client.V1PodSpec(
        termination_grace_period_seconds=1,
        containers=[
            client.V1Container(
                name="echo",
                image="hello-job:latest",
                stdin=True,
                env=[client.V1EnvVar(name="ECHO_STDIN", value="1")],
            )
        ],
    ),
)
v1.create_namespaced_pod(NS, echo)
wait(
    "the attach pod running",
    60,
    lambda: v1.read_namespaced_pod("py-attach", NS).status.phase == "Running",
)
attached = ws_stream(
    v1.connect_get_namespaced_pod_attach,
    "py-attach",
    NS,
    container="echo",
    stdin=True,
    stdout=True,
    stderr=True,
    tty=False,
    _preload_content=False,
)
seen = ""
deadline = time.time() + 30
while "FROM PYTHON" not in seen and time.time() < deadline:
    attached.write_stdin("from python\n")
    attached.update(timeout=1)
    if attached.peek_stdout():
        seen += attached.read_stdout()
attached.close()
check("FROM PYTHON" in seen, f"attach echoed {seen!r}")
check(
    v1.read_namespaced_pod("py-attach", NS).status.phase == "Running",
    "the pod runs on after the client detaches",
)
v1.delete_namespaced_pod("py-attach", NS)

# Kubernetes' errors for what is not there.
try:
    v1.read_namespaced_pod("nope", NS)
    check(False, "read of a missing pod")
except ApiException as e:
    check(e.status == 404 and "NotFound" in e.body, f"missing pod gave {e.status}: {e.body}")
try:
    client.CustomObjectsApi().list_cluster_custom_object("nothing.example", "v1", "widgets")
    check(False, "an unknown group answered")
except ApiException as e:
    check(e.status == 404, f"an unknown group gave {e.status}")
print("python workloads: ok")
