//! A full disk: writes fail with a clear 503 Status and write nothing, reads keep working,
//! acknowledged data survives, and writes succeed again once space is freed — without a
//! restart. The data dir is a small tmpfs mounted by the test (the suite runs as root).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use wharf_e2e::Wharf;

/// A tmpfs mount that is unmounted when dropped.
struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    fn mount(path: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs needs root (the test suite runs as root)"
        );
        SmallDisk {
            path: path.to_path_buf(),
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn fill(path: &Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 64 * 1024];
    while file.write_all(&block).is_ok() {}
}

#[tokio::test]
async fn a_full_disk_fails_writes_cleanly_and_recovers_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(&dir.path().join("disk"), "4m");
    let mut wharf = Wharf::start(&disk.path.join("data")).unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/namespaces/default/configmaps", wharf.url());
    let create = |name: String| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let body = json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name}, "data": {"x": "a".repeat(2000)}
            });
            let response = http.post(&url).json(&body).send().await.unwrap();
            let code = response.status().as_u16();
            (code, response.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(create("before".into()).await.0, 201);

    let filler = disk.path.join("filler");
    fill(&filler);
    let mut acknowledged = vec!["before".to_owned()];
    let mut refusal = None;
    for i in 0..200 {
        let (code, body) = create(format!("full-{i}")).await;
        if code == 201 {
            acknowledged.push(format!("full-{i}"));
        } else {
            refusal = Some((code, body));
            break;
        }
    }
    let (code, status) = refusal.expect("writes kept succeeding on a full disk");
    assert_eq!(code, 503, "{status}");
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "ServiceUnavailable");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("No space left on device"),
        "{status}"
    );

    // Reads still work while the disk is full.
    let list: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), acknowledged.len(), "{names:?}");

    // Space returns: writes work again without a restart.
    std::fs::remove_file(&filler).unwrap();
    let (code, body) = create("after".into()).await;
    assert_eq!(code, 201, "{body}");
    acknowledged.push("after".into());

    // And everything acknowledged is still there after a restart.
    let (api_port, gateway_port) = (wharf.api_port, wharf.gateway_port);
    wharf.kill9();
    let data = disk.path.join("data");
    let wharf = tokio::task::spawn_blocking(move || Wharf::start_on(&data, api_port, gateway_port))
        .await
        .unwrap()
        .unwrap();
    let list: Value = http
        .get(format!(
            "{}/api/v1/namespaces/default/configmaps",
            wharf.url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut names: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    acknowledged.sort();
    assert_eq!(names, acknowledged);
}
