//! Pod networks with the real CNI plugins and real network namespaces (needs root, `ip` and
//! Debian's containernetworking-plugins, which `scripts/setup.sh` installs).

use std::collections::HashSet;
use std::io::Read;
use std::net::{IpAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wharf_agent::network::{DEFAULT_PLUGIN_DIR, NetworkConfig, PodNetworks, netns_name};

/// A bridge and subnet of this test process only, so parallel runs do not meet.
fn networks(state: &std::path::Path) -> PodNetworks {
    let n = std::process::id();
    PodNetworks::new(NetworkConfig {
        plugin_dir: DEFAULT_PLUGIN_DIR.into(),
        bridge: format!("wt{}", n % 100_000),
        subnet: format!("10.201.{}.0/24", n % 250),
        state_dir: state.to_path_buf(),
    })
    .expect("CNI plugins and ip are installed by scripts/setup.sh")
}

fn netns_list() -> String {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A TCP server inside a namespace that answers "pong" to one connection per line.
fn serve_in(netns: &str, ip: IpAddr, port: u16) -> Child {
    let script = format!(
        "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
         s.bind(('{ip}',{port}))\ns.listen()\nprint('ready',flush=True)\n\
         while True:\n  c,_=s.accept()\n  c.sendall(b'pong')\n  c.close()\n"
    );
    let mut child = Command::new("ip")
        .args(["netns", "exec", netns, "python3", "-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = [0u8; 5];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut ready)
        .unwrap();
    assert_eq!(&ready, b"ready");
    child
}

fn read_from(ip: IpAddr, port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpStream::connect_timeout(&(ip, port).into(), Duration::from_secs(1)) {
            Ok(mut stream) => {
                let mut text = String::new();
                stream.read_to_string(&mut text).unwrap();
                return text;
            }
            Err(e) if Instant::now() > deadline => panic!("cannot reach {ip}:{port}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

#[tokio::test]
async fn pods_get_their_own_reachable_addresses_and_leave_nothing_behind() {
    let state = tempfile::tempdir().unwrap();
    let networks = networks(state.path());
    let (a, b) = ("pod-a-1111", "pod-b-2222");
    let net_a = networks.attach(a).await.expect("attach a");
    let net_b = networks.attach(b).await.expect("attach b");
    assert_ne!(net_a.ip, net_b.ip);
    assert!(net_a.ip.to_string().starts_with("10.201."), "{}", net_a.ip);
    let listed = netns_list();
    assert!(listed.contains(&netns_name(a)) && listed.contains(&netns_name(b)));
    // Attaching again (an agent restart) gives the same network.
    assert_eq!(networks.attach(a).await.unwrap(), net_a);

    // The node reaches a pod, and one pod reaches another over the bridge.
    let mut server = serve_in(&netns_name(a), net_a.ip, 7070);
    assert_eq!(read_from(net_a.ip, 7070), "pong");
    let from_b = Command::new("ip")
        .args(["netns", "exec", &netns_name(b), "python3", "-c"])
        .arg(format!(
            "import socket\ns=socket.create_connection(('{}',7070),timeout=5)\nprint(s.recv(4).decode())",
            net_a.ip
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&from_b.stdout).trim(), "pong");
    // Each pod has its own loopback, up.
    let lo = Command::new("ip")
        .args([
            "netns",
            "exec",
            &netns_name(a),
            "ip",
            "-o",
            "link",
            "show",
            "lo",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&lo.stdout).contains("UP"));
    server.kill().unwrap();
    server.wait().unwrap();

    // A pod that is gone is cleaned up by remove_stale; the live one stays.
    let live: HashSet<String> = [b.to_owned()].into();
    assert_eq!(networks.remove_stale(&live).await, 1);
    assert!(!netns_list().contains(&netns_name(a)));
    assert!(networks.attached(a).is_none());
    assert_eq!(networks.attached(b), Some(net_b.clone()));
    let again = networks.attach("pod-c-3333").await.unwrap();
    assert!(again.ip != net_b.ip);

    networks.detach(b).await.unwrap();
    networks.detach("pod-c-3333").await.unwrap();
    // Detaching twice is fine.
    networks.detach(b).await.unwrap();
    assert!(!netns_list().contains("pod-"), "{}", netns_list());
    assert!(networks.recorded().is_empty());
    networks.remove_bridge_if_unused().await.unwrap();
    let bridge = &networks.config().bridge;
    assert!(!std::path::Path::new("/sys/class/net").join(bridge).exists());
}

#[tokio::test]
async fn missing_plugins_are_a_clear_error() {
    let state = tempfile::tempdir().unwrap();
    let error = PodNetworks::new(NetworkConfig {
        plugin_dir: state.path().join("no-plugins"),
        bridge: "wtmissing".into(),
        subnet: "10.202.0.0/24".into(),
        state_dir: state.path().to_path_buf(),
    })
    .unwrap_err();
    assert!(
        error.to_string().contains("containernetworking-plugins"),
        "{error}"
    );
}
