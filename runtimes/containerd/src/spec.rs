//! The OCI runtime spec of a container, built from the image's run defaults and the agent's
//! [`ContainerConfig`]. Pure functions: no I/O, unit-tested here.
//!
//! The defaults are containerd's own (`oci.populateDefaultUnixSpec`): the same capabilities,
//! pseudo file systems, masked and read-only paths, and namespaces, so a container behaves as
//! it would under `ctr run` or the kubelet. The network is the host's until pod networking
//! (CNI) arrives. Like the kubelet's containers, these set no rlimits: they inherit
//! containerd's.

use serde_json::{Value, json};
use wharf_runtime::ContainerConfig;

use crate::image::RunConfig;

/// The `PATH` a container gets when its image sets none (containerd's default).
pub(crate) const DEFAULT_PATH: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The CPU period that CPU limits are expressed in (microseconds), as the kubelet uses.
const CPU_PERIOD: u64 = 100_000;

/// The capabilities a container's process has (containerd's default set).
const CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

const MASKED_PATHS: [&str; 10] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
];

const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Everything the spec is made of.
#[derive(Clone, Debug)]
pub(crate) struct SpecInput<'a> {
    /// The agent's description of the container.
    pub config: &'a ContainerConfig,
    /// The image's run defaults.
    pub image: &'a RunConfig,
    /// The container's cgroup, e.g. `/wharf/ID`.
    pub cgroups_path: String,
    /// Host files shared read-only because the container shares the host's network:
    /// (path in the container, path on the host), for those that exist on the host.
    pub host_network_files: Vec<(String, String)>,
}

/// The process's command line.
///
/// `ContainerConfig::args` is the pod's `command` followed by its `args`, joined by the agent,
/// so which of the two was given is lost. They are treated as `docker run IMAGE ARG...` treats
/// its arguments: an image's `Entrypoint` always runs and the arguments replace its `Cmd`; an
/// image without an `Entrypoint` runs the arguments as the command. This is what Kubernetes
/// does for a pod that sets only `args` and for any image without an entrypoint, and what the
/// Wasm runtime does (arguments follow the program); a pod that sets `command` on an image
/// with an entrypoint would need the two kept apart in `ContainerConfig`.
pub(crate) fn process_args(
    image: &RunConfig,
    command: &[String],
    args: &[String],
) -> Result<Vec<String>, String> {
    // Kubernetes: `command` replaces the entrypoint (and drops the image's Cmd); `args`
    // replaces the Cmd.
    let mut argv = if command.is_empty() {
        image.entrypoint.clone().unwrap_or_default()
    } else {
        command.to_vec()
    };
    if !args.is_empty() {
        argv.extend(args.iter().cloned());
    } else if command.is_empty() {
        argv.extend(image.cmd.clone().unwrap_or_default());
    }
    if argv.is_empty() {
        return Err("the image has no Entrypoint or Cmd and the pod gives no command".into());
    }
    Ok(argv)
}

/// The environment: the image's, then the container's, a later value replacing an earlier one
/// of the same name in place; `PATH` defaulted when neither sets it.
pub(crate) fn environment(image: &[String], container: &[(String, String)]) -> Vec<String> {
    let mut env: Vec<String> = Vec::new();
    let entries = image
        .iter()
        .cloned()
        .chain(container.iter().map(|(k, v)| format!("{k}={v}")));
    for entry in entries {
        let name = entry.split('=').next().unwrap_or("").to_owned();
        match env
            .iter_mut()
            .find(|e| e.split('=').next() == Some(name.as_str()))
        {
            Some(existing) => *existing = entry,
            None => env.push(entry),
        }
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_owned());
    }
    env
}

/// The user and group of the process from the image's `User` (`uid` or `uid:gid`, numeric).
/// Names would need the image's `/etc/passwd`, which is not read yet.
pub(crate) fn user(image_user: Option<&str>) -> Result<(u32, u32), String> {
    let text = image_user.unwrap_or("").trim();
    if text.is_empty() {
        return Ok((0, 0));
    }
    let (uid, gid) = match text.split_once(':') {
        Some((uid, gid)) => (uid, Some(gid)),
        None => (text, None),
    };
    let number = |s: &str| {
        s.parse::<u32>().map_err(|_| {
            format!("the image's user {text:?} is a name; only numeric users are supported yet")
        })
    };
    let uid = number(uid)?;
    let gid = match gid {
        Some(gid) => number(gid)?,
        None => 0,
    };
    Ok((uid, gid))
}

/// The container's hostname: `HOSTNAME` from its environment (the agent sets the pod name),
/// else its id, cut to the 63 characters a hostname may have.
fn hostname(config: &ContainerConfig) -> String {
    let name = config
        .env
        .iter()
        .rev()
        .find(|(k, _)| k == "HOSTNAME")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| config.id.clone());
    name.chars().take(63).collect()
}

/// The namespaces of a container: its own pid, ipc, uts and mount namespaces, and its pod's
/// network namespace (none: the node's network).
fn namespaces(config: &ContainerConfig) -> Value {
    let mut namespaces =
        json!([{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]);
    if let Some(path) = &config.network_namespace {
        namespaces
            .as_array_mut()
            .expect("an array")
            .push(json!({"type": "network", "path": path.display().to_string()}));
    }
    namespaces
}

/// The OCI runtime spec (JSON) of a container.
pub(crate) fn runtime_spec(input: &SpecInput<'_>) -> Result<Value, String> {
    let config = input.config;
    let args = process_args(input.image, &config.command, &config.args)?;
    let mut env = environment(input.image.env.as_deref().unwrap_or_default(), &config.env);
    // A terminal needs a type for programs to draw on it; the CRI plugin sets the same.
    if config.stdio.tty && !env.iter().any(|var| var.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    // runAsUser replaces the image's user (and its numeric group, unless runAsGroup is set).
    let (uid, gid) = match config.run_as.user {
        Some(uid) => {
            let image_gid = user(input.image.user.as_deref()).map_or(0, |(_, gid)| gid);
            (uid, config.run_as.group.unwrap_or(image_gid))
        }
        None => {
            let (uid, gid) = user(input.image.user.as_deref())?;
            (uid, config.run_as.group.unwrap_or(gid))
        }
    };
    let cwd = config
        .working_dir
        .clone()
        .or_else(|| input.image.working_dir.clone())
        .filter(|dir| !dir.is_empty())
        .unwrap_or_else(|| "/".to_owned());

    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                           "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/run", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
    ];
    for (destination, source) in &input.host_network_files {
        if config
            .mounts
            .iter()
            .any(|m| &m.container_path == destination)
        {
            continue;
        }
        mounts.push(
            json!({"destination": destination, "type": "bind", "source": source,
                           "options": ["rbind", "rprivate", "ro"]}),
        );
    }
    for mount in &config.mounts {
        let mode = if mount.read_only { "ro" } else { "rw" };
        mounts.push(json!({
            "destination": mount.container_path,
            "type": "bind",
            "source": mount.host_path.display().to_string(),
            "options": ["rbind", "rprivate", mode],
        }));
    }

    let mut resources = json!({"devices": [{"allow": false, "access": "rwm"}]});
    if let Some(limit) = config.limits.memory_bytes {
        resources["memory"] = json!({"limit": limit});
    }
    if let Some(millis) = config.limits.cpu_millis.filter(|m| *m > 0) {
        resources["cpu"] = json!({"quota": millis * CPU_PERIOD / 1000, "period": CPU_PERIOD});
    }

    Ok(json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            // On a terminal (`tty`), the shim gives the process a pseudo-terminal as its stdin,
            // stdout and stderr, and copies the terminal's output to the stdout FIFO.
            "terminal": config.stdio.tty,
            "user": {"uid": uid, "gid": gid},
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {
                "bounding": CAPABILITIES,
                "effective": CAPABILITIES,
                "permitted": CAPABILITIES,
            },
            "noNewPrivileges": true,
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": hostname(config),
        "mounts": mounts,
        "linux": {
            "resources": resources,
            "cgroupsPath": input.cgroups_path,
            "namespaces": namespaces(config),
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::Duration;
    use wharf_runtime::{Limits, Mount, RunAs};

    fn image(entrypoint: &[&str], cmd: &[&str]) -> RunConfig {
        let list = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect());
        RunConfig {
            entrypoint: list(entrypoint),
            cmd: list(cmd),
            env: Some(vec!["PATH=/bin".into(), "PORT=8080".into()]),
            working_dir: Some("/srv".into()),
            user: None,
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn config() -> ContainerConfig {
        ContainerConfig {
            id: "c1".into(),
            image: "app:1".into(),
            command: Vec::new(),
            args: Vec::new(),
            working_dir: None,
            run_as: RunAs::default(),
            env: vec![
                ("PORT".into(), "9090".into()),
                ("MODE".into(), "fast".into()),
            ],
            mounts: vec![Mount {
                host_path: PathBuf::from("/var/lib/wharf/vol"),
                container_path: "/data".into(),
                read_only: true,
            }],
            network_namespace: None,
            limits: Limits {
                memory_bytes: Some(64 << 20),
                cpu_millis: Some(500),
            },
            log_path: PathBuf::from("/tmp/c1.log"),
            allow_outgoing_http: false,
            request_timeout: Duration::from_secs(1),
            stdio: Default::default(),
        }
    }

    #[test]
    fn arguments_replace_cmd_and_follow_the_entrypoint() {
        let with_entrypoint = image(&["/app"], &["--serve"]);
        assert_eq!(
            process_args(&with_entrypoint, &[], &[]).unwrap(),
            ["/app", "--serve"]
        );
        assert_eq!(
            process_args(&with_entrypoint, &[], &strings(&["--check"])).unwrap(),
            ["/app", "--check"]
        );
        // A command replaces the entrypoint and drops the image's Cmd...
        assert_eq!(
            process_args(&with_entrypoint, &strings(&["/bin/true"]), &[]).unwrap(),
            ["/bin/true"]
        );
        // ...and is followed by the pod's args.
        assert_eq!(
            process_args(
                &with_entrypoint,
                &strings(&["/bin/echo"]),
                &strings(&["a", "b"])
            )
            .unwrap(),
            ["/bin/echo", "a", "b"]
        );
        let cmd_only = image(&[], &["/bin/sh"]);
        assert_eq!(
            process_args(&cmd_only, &[], &strings(&["/bin/true", "x"])).unwrap(),
            ["/bin/true", "x"]
        );
        assert!(process_args(&image(&[], &[]), &[], &[]).is_err());
    }

    #[test]
    fn container_env_overrides_image_env_in_place_and_path_is_defaulted() {
        let env = environment(
            &strings(&["PATH=/bin", "PORT=8080"]),
            &[
                ("PORT".into(), "9090".into()),
                ("MODE".into(), "fast".into()),
            ],
        );
        assert_eq!(env, ["PATH=/bin", "PORT=9090", "MODE=fast"]);
        assert_eq!(environment(&[], &[]), [DEFAULT_PATH]);
    }

    #[test]
    fn numeric_users_are_accepted_and_names_are_a_clear_error() {
        assert_eq!(user(None), Ok((0, 0)));
        assert_eq!(user(Some("1000")), Ok((1000, 0)));
        assert_eq!(user(Some("1000:100")), Ok((1000, 100)));
        assert!(user(Some("nobody")).unwrap_err().contains("numeric"));
    }

    /// The runtime spec of `config` on `image`, on the host network.
    fn spec_for(config: &ContainerConfig, image: &RunConfig) -> Value {
        runtime_spec(&SpecInput {
            config,
            image,
            cgroups_path: "/wharf/c1".into(),
            host_network_files: Vec::new(),
        })
        .unwrap()
    }

    #[test]
    fn a_tty_container_runs_on_a_terminal_with_a_terminal_type() {
        let image = image(&["/app"], &[]);
        let spec_of = |config: &ContainerConfig| spec_for(config, &image);
        let plain = spec_of(&config());
        assert_eq!(plain["process"]["terminal"], false);
        assert!(!plain["process"]["env"].to_string().contains("TERM="));
        let mut tty = config();
        tty.stdio.tty = true;
        let spec = spec_of(&tty);
        assert_eq!(spec["process"]["terminal"], true);
        assert_eq!(
            spec["process"]["env"],
            json!(["PATH=/bin", "PORT=9090", "MODE=fast", "TERM=xterm"])
        );
        // A terminal type of the container's own is kept.
        tty.env.push(("TERM".into(), "vt100".into()));
        let env = spec_of(&tty)["process"]["env"].clone();
        assert_eq!(
            env,
            json!(["PATH=/bin", "PORT=9090", "MODE=fast", "TERM=vt100"])
        );
    }

    #[test]
    fn the_spec_carries_process_mounts_limits_and_cgroup() {
        let config = config();
        let image = image(&["/app"], &[]);
        let spec = runtime_spec(&SpecInput {
            config: &config,
            image: &image,
            cgroups_path: "/wharf/c1".into(),
            host_network_files: vec![("/etc/hosts".into(), "/etc/hosts".into())],
        })
        .unwrap();
        assert_eq!(spec["process"]["args"], json!(["/app"]));
        assert_eq!(
            spec["process"]["env"],
            json!(["PATH=/bin", "PORT=9090", "MODE=fast"])
        );
        assert_eq!(spec["process"]["cwd"], "/srv");
        assert_eq!(spec["linux"]["cgroupsPath"], "/wharf/c1");
        assert_eq!(spec["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(spec["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(spec["hostname"], "c1");
        let mounts = spec["mounts"].as_array().unwrap();
        let destinations: Vec<&str> = mounts
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert_eq!(
            destinations,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/shm",
                "/dev/mqueue",
                "/sys",
                "/run",
                "/etc/hosts",
                "/data"
            ]
        );
        assert_eq!(
            mounts[8],
            json!({"destination": "/data", "type": "bind", "source": "/var/lib/wharf/vol",
                   "options": ["rbind", "rprivate", "ro"]})
        );
        let namespaces = spec["linux"]["namespaces"].as_array().unwrap();
        assert!(!namespaces.iter().any(|n| n["type"] == "network"));
    }

    #[test]
    fn the_pod_sets_working_directory_user_and_group_over_the_image() {
        let mut image = image(&["/app"], &[]);
        image.user = Some("1000:100".into());
        let spec_of = |config: &ContainerConfig| spec_for(config, &image);
        let defaults = spec_of(&config());
        assert_eq!(defaults["process"]["cwd"], "/srv");
        assert_eq!(
            defaults["process"]["user"],
            json!({"uid": 1000, "gid": 100})
        );
        let set = ContainerConfig {
            working_dir: Some("/tmp".into()),
            run_as: RunAs {
                user: Some(2000),
                group: None,
            },
            ..config()
        };
        let spec = spec_of(&set);
        assert_eq!(spec["process"]["cwd"], "/tmp");
        assert_eq!(spec["process"]["user"], json!({"uid": 2000, "gid": 100}));
        let both = ContainerConfig {
            run_as: RunAs {
                user: Some(2000),
                group: Some(3000),
            },
            ..config()
        };
        assert_eq!(
            spec_of(&both)["process"]["user"],
            json!({"uid": 2000, "gid": 3000})
        );
    }

    #[test]
    fn a_container_joins_its_pods_network_namespace() {
        let config = ContainerConfig {
            network_namespace: Some(PathBuf::from("/run/netns/wharf-pod1")),
            ..config()
        };
        let spec = runtime_spec(&SpecInput {
            config: &config,
            image: &image(&["/app"], &[]),
            cgroups_path: "/wharf/c1".into(),
            host_network_files: Vec::new(),
        })
        .unwrap();
        let namespaces = spec["linux"]["namespaces"].as_array().unwrap();
        assert!(namespaces.contains(&json!({"type": "network", "path": "/run/netns/wharf-pod1"})));
        assert!(namespaces.contains(&json!({"type": "pid"})));
    }
}
