//! The crate-private containerd client: one gRPC channel, and service clients that put the
//! `containerd-namespace` metadata on every request (and, inside a lease, `containerd-lease`),
//! so no call can forget either. Leases are released when their work ends, whether it
//! succeeded, failed or was cancelled, and expire on their own if this process dies first.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, SystemTime};

use containerd_client::services::v1::{
    self as api, containers_client::ContainersClient, content_client::ContentClient,
    diff_client::DiffClient, images_client::ImagesClient, leases_client::LeasesClient,
    snapshots::snapshots_client::SnapshotsClient, tasks_client::TasksClient,
    version_client::VersionClient,
};
use containerd_client::tonic::metadata::AsciiMetadataValue;
use containerd_client::tonic::service::Interceptor;
use containerd_client::tonic::service::interceptor::InterceptedService;
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::{self, Code, Status};
use wharf_runtime::RuntimeError;

/// A channel whose requests carry the namespace (and lease) metadata.
pub(crate) type Service = InterceptedService<Channel, Metadata>;

/// How long a lease outlives a process that died before releasing it.
const LEASE_EXPIRY: Duration = Duration::from_secs(3600);

/// The metadata every request carries.
#[derive(Clone, Debug)]
pub(crate) struct Metadata {
    namespace: AsciiMetadataValue,
    lease: Option<AsciiMetadataValue>,
}

impl Interceptor for Metadata {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        let metadata = request.metadata_mut();
        metadata.insert("containerd-namespace", self.namespace.clone());
        if let Some(lease) = &self.lease {
            metadata.insert("containerd-lease", lease.clone());
        }
        Ok(request)
    }
}

/// A connection to containerd, bound to one namespace.
#[derive(Clone, Debug)]
pub(crate) struct Client {
    channel: Channel,
    metadata: Metadata,
}

impl Client {
    /// Connects to the socket (lazily: the first request dials, and a restarted containerd is
    /// dialled again).
    pub(crate) async fn connect(socket: &Path, namespace: &str) -> Result<Client, RuntimeError> {
        let namespace = namespace.parse().map_err(|_| {
            RuntimeError::Other(format!("invalid containerd namespace {namespace:?}"))
        })?;
        let channel = containerd_client::connect(socket).await.map_err(|e| {
            RuntimeError::Unavailable(format!(
                "cannot connect to containerd at {}: {e}",
                socket.display()
            ))
        })?;
        Ok(Client {
            channel,
            metadata: Metadata {
                namespace,
                lease: None,
            },
        })
    }

    /// containerd's version, e.g. `1.6.20~ds1`.
    pub(crate) async fn version(&self) -> Result<String, Status> {
        let response = VersionClient::with_interceptor(self.channel.clone(), self.metadata.clone())
            .version(())
            .await?;
        Ok(response.into_inner().version)
    }

    pub(crate) fn content(&self) -> ContentClient<Service> {
        ContentClient::with_interceptor(self.channel.clone(), self.metadata.clone())
    }

    pub(crate) fn images(&self) -> ImagesClient<Service> {
        ImagesClient::with_interceptor(self.channel.clone(), self.metadata.clone())
    }

    pub(crate) fn snapshots(&self) -> SnapshotsClient<Service> {
        SnapshotsClient::with_interceptor(self.channel.clone(), self.metadata.clone())
    }

    pub(crate) fn diff(&self) -> DiffClient<Service> {
        DiffClient::with_interceptor(self.channel.clone(), self.metadata.clone())
    }

    pub(crate) fn containers(&self) -> ContainersClient<Service> {
        ContainersClient::with_interceptor(self.channel.clone(), self.metadata.clone())
    }

    pub(crate) fn tasks(&self) -> TasksClient<Service> {
        TasksClient::with_interceptor(self.channel.clone(), self.metadata.clone())
    }

    pub(crate) fn leases(&self) -> LeasesClient<Service> {
        LeasesClient::with_interceptor(self.channel.clone(), self.metadata.clone())
    }

    /// Adds a resource that someone else may have created (a blob, a snapshot) to this
    /// client's lease, so that garbage collection keeps it for as long as the lease lives even
    /// if whoever created it goes away; nothing to do outside a lease. Call it before relying
    /// on the resource's existence: a resource held and then found is safe to use.
    pub(crate) async fn hold(&self, resource: Held<'_>) -> Result<(), RuntimeError> {
        let Some(lease) = &self.metadata.lease else {
            return Ok(());
        };
        let lease = lease
            .to_str()
            .map_err(|_| RuntimeError::Other("a lease id that is not ASCII".into()))?;
        let (id, kind) = match resource {
            Held::Content(digest) => (digest, "content".to_owned()),
            Held::Snapshot { snapshotter, key } => (key, format!("snapshots/{snapshotter}")),
        };
        let request = api::AddResourceRequest {
            id: lease.to_owned(),
            resource: Some(api::Resource {
                id: id.to_owned(),
                r#type: kind,
            }),
        };
        self.leases()
            .add_resource(request)
            .await
            .map_err(|e| status_error("add a resource to a lease", e))?;
        Ok(())
    }

    /// Runs `work` with a client whose requests all belong to a new lease, so that content and
    /// snapshots it creates survive garbage collection until they are referenced by an image or
    /// a container; then releases the lease, whatever `work` returned.
    pub(crate) async fn with_lease<R, F, Fut>(
        &self,
        purpose: &str,
        work: F,
    ) -> Result<R, RuntimeError>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = Result<R, RuntimeError>>,
    {
        let id = format!("wharf-{purpose}-{}", unique_suffix());
        let expires = wharf_runtime::logs::format_timestamp(SystemTime::now() + LEASE_EXPIRY);
        let request = api::CreateRequest {
            id: id.clone(),
            labels: [("containerd.io/gc.expire".to_owned(), expires)].into(),
        };
        self.leases()
            .create(request)
            .await
            .map_err(|e| status_error("create a lease", e))?;
        let guard = LeaseGuard {
            client: self.clone(),
            id: Some(id.clone()),
        };
        let mut leased = self.clone();
        leased.metadata.lease = Some(
            id.parse()
                .map_err(|_| RuntimeError::Other(format!("invalid lease id {id:?}")))?,
        );
        let result = work(leased).await;
        guard.release().await;
        result
    }
}

/// A resource a lease can hold (see [`Client::hold`]).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Held<'a> {
    /// A blob of the content store, by digest.
    Content(&'a str),
    /// A snapshot, by its key (a committed snapshot's name).
    Snapshot { snapshotter: &'a str, key: &'a str },
}

/// Deletes its lease when released, or from a background task if the work was cancelled.
struct LeaseGuard {
    client: Client,
    id: Option<String>,
}

impl LeaseGuard {
    async fn release(mut self) {
        if let Some(id) = self.id.take() {
            delete_lease(&self.client, id).await;
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if let Some(id) = self.id.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let client = self.client.clone();
            handle.spawn(async move { delete_lease(&client, id).await });
        }
    }
}

async fn delete_lease(client: &Client, id: String) {
    let request = api::DeleteRequest {
        id: id.clone(),
        sync: false,
    };
    if let Err(e) = client.leases().delete(request).await {
        // The lease expires on its own; only its objects live a little longer.
        tracing::warn!(lease = %id, error = %e, "cannot release a containerd lease");
    }
}

/// A suffix that makes names unique within this process and across restarts.
pub(crate) fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{nanos}-{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Maps a gRPC failure to the runtime's error categories: containerd being unreachable is
/// `Unavailable`, the rest is reported with what was being done.
pub(crate) fn status_error(doing: &str, status: Status) -> RuntimeError {
    match status.code() {
        Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded => {
            RuntimeError::Unavailable(format!("containerd: cannot {doing}: {}", status.message()))
        }
        _ => RuntimeError::Other(format!("containerd: cannot {doing}: {}", status.message())),
    }
}

/// Whether a failure means the object does not exist.
pub(crate) fn is_not_found(status: &Status) -> bool {
    status.code() == Code::NotFound
}

/// Whether a failure means the object exists already.
pub(crate) fn is_already_exists(status: &Status) -> bool {
    status.code() == Code::AlreadyExists
}
