//! Secrets and ConfigMaps encrypted at rest: the raw store holds only sealed values, while
//! get, list, watch (HTTP and in-process) and updates see the plain objects; plain JSON written
//! before encryption still reads; other kinds stay plain JSON.

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};
use wharf_apiserver::client::{ClusterApi, InProcessApi};
use wharf_apiserver::encryption::{ENVELOPE_PREFIX, Keyring, sealed_key_id};
use wharf_store::{Precondition, Store, WriteOp};

use crate::support::{CONFIGMAPS, MERGE, TestServer, names};

const SECRETS: &str = "/api/v1/namespaces/default/secrets";
const PASSWORD: &str = "correct-horse-battery-staple";

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

fn secret(name: &str, value: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "stringData": {"password": value},
    })
}

fn base64(value: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(value)
}

/// Asserts that the raw stored value of `key` is sealed and shows neither `value` nor its base64.
async fn assert_sealed(server: &TestServer, key: &str, value: &str) {
    let raw = server
        .store
        .get(key)
        .await
        .unwrap()
        .expect("the key is stored");
    assert!(
        raw.value.starts_with(ENVELOPE_PREFIX),
        "{key} is not sealed"
    );
    assert_eq!(sealed_key_id(&raw.value), Some("k1"));
    assert!(!contains(&raw.value, value), "{key} shows the value");
    assert!(
        !contains(&raw.value, &base64(value)),
        "{key} shows the base64 value"
    );
}

#[tokio::test]
async fn secrets_and_configmaps_are_sealed_in_the_store_and_plain_through_the_api() {
    let server = TestServer::with_keyring(Keyring::generate()).await;
    let created = server.create(SECRETS, &secret("db", PASSWORD)).await;
    assert_eq!(created["data"]["password"], base64(PASSWORD));
    server
        .create_configmap(
            "settings",
            json!({}),
            json!({"greeting": "hello-plaintext"}),
        )
        .await;
    assert_sealed(&server, "/core/secrets/default/db", PASSWORD).await;
    assert_sealed(
        &server,
        "/core/configmaps/default/settings",
        "hello-plaintext",
    )
    .await;

    let (_, got) = server.get(&format!("{SECRETS}/db")).await;
    assert_eq!(got["data"]["password"], base64(PASSWORD));
    let (_, list) = server.get(SECRETS).await;
    assert_eq!(names(&list), ["db"]);
    assert_eq!(list["items"][0]["data"]["password"], base64(PASSWORD));

    // An update reads the old value through the store and seals the new one.
    let (code, patched) = server
        .patch(
            &format!("{CONFIGMAPS}/settings"),
            MERGE,
            &json!({"data": {"greeting": "hi-plaintext"}}),
        )
        .await;
    assert_eq!(code, 200, "{patched:#}");
    assert_eq!(patched["data"]["greeting"], "hi-plaintext");
    assert_sealed(&server, "/core/configmaps/default/settings", "hi-plaintext").await;

    // Other kinds are not encrypted.
    let raw = server
        .store
        .get("/core/namespaces/default")
        .await
        .unwrap()
        .unwrap();
    assert!(raw.value.starts_with(b"{"));
}

#[tokio::test]
async fn watches_over_http_and_in_process_see_decrypted_secrets() {
    let server = TestServer::with_keyring(Keyring::generate()).await;
    let from = server.revision();
    let mut http_watch = server
        .watch(&format!("{SECRETS}?watch=true&resourceVersion={from}"))
        .await;
    let api = InProcessApi::new(server.server.registry.clone(), None);
    let secrets = wharf_apiserver::resources::find("", "v1", "secrets").unwrap();
    let mut in_process = api
        .watch(secrets, Some("default"), None, from)
        .await
        .expect("the watch starts");

    server.create(SECRETS, &secret("db", PASSWORD)).await;
    let event = http_watch.next().await;
    assert_eq!(event["type"], "ADDED");
    assert_eq!(event["object"]["data"]["password"], base64(PASSWORD));
    let event = tokio::time::timeout(Duration::from_secs(10), in_process.next())
        .await
        .expect("an in-process event")
        .expect("the stream is open")
        .expect("the event decodes");
    assert_eq!(event.object["data"]["password"], base64(PASSWORD));

    let (code, _) = server.delete(&format!("{SECRETS}/db"), None).await;
    assert_eq!(code, 200);
    let event = http_watch.next().await;
    assert_eq!(event["type"], "DELETED");
    assert_eq!(event["object"]["data"]["password"], base64(PASSWORD));
}

#[tokio::test]
async fn secrets_written_as_plain_json_before_encryption_still_read_and_get_sealed_on_update() {
    let server = TestServer::with_keyring(Keyring::generate()).await;
    let plain = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "legacy", "namespace": "default", "uid": "u-1",
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "type": "Opaque",
        "data": {"password": base64(PASSWORD)},
    });
    // Written to the raw store, as a Wharf without encryption did.
    server
        .store
        .write(WriteOp::Put {
            key: "/core/secrets/default/legacy".into(),
            value: Bytes::from(plain.to_string()),
            precondition: Precondition::MustNotExist,
        })
        .await
        .unwrap();
    let (code, got) = server.get(&format!("{SECRETS}/legacy")).await;
    assert_eq!(code, 200, "{got:#}");
    assert_eq!(got["data"]["password"], base64(PASSWORD));

    let (code, _) = server
        .patch(
            &format!("{SECRETS}/legacy"),
            MERGE,
            &json!({"metadata": {"labels": {"touched": "yes"}}}),
        )
        .await;
    assert_eq!(code, 200);
    assert_sealed(&server, "/core/secrets/default/legacy", PASSWORD).await;
}

#[tokio::test]
async fn a_sealed_value_that_does_not_decrypt_is_an_internal_error_not_garbage() {
    let server = TestServer::with_keyring(Keyring::generate()).await;
    server.create(SECRETS, &secret("db", PASSWORD)).await;
    // Move the ciphertext to another key: the associated data no longer matches.
    let raw = server
        .store
        .get("/core/secrets/default/db")
        .await
        .unwrap()
        .unwrap();
    server
        .store
        .write(WriteOp::Put {
            key: "/core/secrets/default/copy".into(),
            value: raw.value,
            precondition: Precondition::MustNotExist,
        })
        .await
        .unwrap();
    let (code, status) = server.get(&format!("{SECRETS}/copy")).await;
    assert_eq!(code, 500, "{status:#}");
    assert_eq!(status["kind"], "Status");
    assert!(!status.to_string().contains(PASSWORD));
}
