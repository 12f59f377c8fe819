//! The gRPC client: one tonic channel over containerd's unix socket, every call in one
//! containerd namespace (`k8s.io` by default, as the kubelet's containers live there).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::diff_client::DiffClient;
use containerd_client::services::v1::events_client::EventsClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::introspection_client::IntrospectionClient;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::version_client::VersionClient;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use crate::error::{Error, Result};

/// The containerd namespace the kubelet (and so the agent) uses.
pub const K8S_NAMESPACE: &str = "k8s.io";
/// The runtime every container runs with.
pub const RUNC_V2: &str = "io.containerd.runc.v2";
/// OCI spec annotation read by the runc v2 shim: containers with the same value share one
/// shim process. Set it to the pod's sandbox id so that one shim serves a whole pod.
pub const SHIM_GROUP_ANNOTATION: &str = "io.containerd.runc.v2.group";

/// How to reach containerd and where this client keeps its FIFOs.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// containerd's gRPC socket.
    pub socket: PathBuf,
    /// containerd namespace for every call.
    pub namespace: String,
    /// Directory for task and exec FIFOs (`<fifo_dir>/<container-id>/`).
    pub fifo_dir: PathBuf,
    /// runc's state root for our containers; `None` keeps the shim's default.
    pub runc_root: Option<PathBuf>,
    /// The snapshotter; `None` picks overlayfs where it loaded, else native.
    pub snapshotter: Option<String>,
}

impl ClientConfig {
    /// Defaults for a socket: namespace `k8s.io`, FIFOs in `/run/kedge/io`.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        ClientConfig {
            socket: socket.into(),
            namespace: K8S_NAMESPACE.to_string(),
            fifo_dir: PathBuf::from("/run/kedge/io"),
            runc_root: None,
            snapshotter: None,
        }
    }
}

/// A handle to containerd. Cheap to clone: clones share one channel.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) channel: Channel,
    pub(crate) config: Arc<ClientConfig>,
    pub(crate) namespace: MetadataValue<tonic::metadata::Ascii>,
    pub(crate) snapshotter: String,
    /// Image names used by a container since this client started, newest use per name;
    /// folded into the images' `kedge.io/last-used` labels.
    pub(crate) last_used: Arc<Mutex<HashMap<String, jiff::Timestamp>>>,
}

impl Client {
    /// Connects to the socket and picks the snapshotter.
    #[tracing::instrument(name = "containerd_connect", skip_all, fields(socket = %config.socket.display()))]
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        let channel = containerd_client::connect(&config.socket)
            .await
            .map_err(|source| Error::Connect {
                socket: config.socket.clone(),
                source,
            })?;
        let namespace = config.namespace.parse().map_err(|_| {
            Error::Config(format!(
                "namespace {:?} is not a valid gRPC header value",
                config.namespace
            ))
        })?;
        let mut client = Client {
            channel,
            config: Arc::new(config),
            namespace,
            snapshotter: String::new(),
            last_used: Arc::default(),
        };
        client.snapshotter = match client.config.snapshotter.clone() {
            Some(s) => s,
            None => client.pick_snapshotter().await?,
        };
        Ok(client)
    }

    /// The settings this client was made with.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The snapshotter containers' and images' filesystems live in.
    pub fn snapshotter(&self) -> &str {
        &self.snapshotter
    }

    /// containerd's version, e.g. `1.6.20~ds1`.
    pub async fn version(&self) -> Result<String> {
        let resp = VersionClient::new(self.channel.clone())
            .version(())
            .await
            .map_err(|e| {
                Error::containerd("version", self.config.socket.display().to_string(), e)
            })?;
        Ok(resp.into_inner().version)
    }

    /// overlayfs when containerd loaded it (it refuses to on filesystems that cannot hold an
    /// upper dir, such as overlay itself), otherwise native.
    async fn pick_snapshotter(&self) -> Result<String> {
        use containerd_client::services::v1::PluginsRequest;
        let resp = IntrospectionClient::new(self.channel.clone())
            .plugins(PluginsRequest {
                filters: vec!["type==io.containerd.snapshotter.v1".into()],
            })
            .await
            .map_err(|e| Error::containerd("list plugins", "snapshotters", e))?
            .into_inner();
        let usable = |id: &str| {
            resp.plugins
                .iter()
                .any(|p| p.id == id && p.init_err.is_none())
        };
        let pick = if usable("overlayfs") {
            "overlayfs"
        } else if usable("native") {
            "native"
        } else {
            return Err(Error::Config(
                "containerd loaded neither the overlayfs nor the native snapshotter; see its log"
                    .into(),
            ));
        };
        tracing::debug!(snapshotter = pick, "snapshotter picked");
        Ok(pick.to_string())
    }

    /// A request in our namespace.
    pub(crate) fn req<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.metadata_mut()
            .insert("containerd-namespace", self.namespace.clone());
        r
    }

    /// A request in our namespace that holds its resources under a lease.
    pub(crate) fn req_leased<T>(&self, msg: T, lease: &str) -> tonic::Request<T> {
        let mut r = self.req(msg);
        if let Ok(v) = lease.parse() {
            r.metadata_mut().insert("containerd-lease", v);
        }
        r
    }

    pub(crate) fn containers(&self) -> ContainersClient<Channel> {
        ContainersClient::new(self.channel.clone())
    }
    pub(crate) fn content(&self) -> ContentClient<Channel> {
        ContentClient::new(self.channel.clone())
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }
    pub(crate) fn diff(&self) -> DiffClient<Channel> {
        DiffClient::new(self.channel.clone())
    }
    pub(crate) fn events(&self) -> EventsClient<Channel> {
        EventsClient::new(self.channel.clone())
    }
    pub(crate) fn images_api(&self) -> ImagesClient<Channel> {
        ImagesClient::new(self.channel.clone())
    }
    pub(crate) fn leases(&self) -> LeasesClient<Channel> {
        LeasesClient::new(self.channel.clone())
    }
    pub(crate) fn snapshots(&self) -> SnapshotsClient<Channel> {
        SnapshotsClient::new(self.channel.clone())
    }
    pub(crate) fn tasks(&self) -> TasksClient<Channel> {
        TasksClient::new(self.channel.clone())
    }

    pub(crate) fn fifo_dir(&self, container_id: &str) -> PathBuf {
        self.config.fifo_dir.join(container_id)
    }
}

/// The runc v2 shim's options (`containerd.runc.v1.Options`), written here as the crate
/// does not ship them. Only the fields the agent sets are used.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RuncOptions {
    #[prost(bool, tag = "1")]
    pub no_pivot_root: bool,
    #[prost(bool, tag = "2")]
    pub no_new_keyring: bool,
    #[prost(string, tag = "3")]
    pub shim_cgroup: String,
    #[prost(uint32, tag = "4")]
    pub io_uid: u32,
    #[prost(uint32, tag = "5")]
    pub io_gid: u32,
    #[prost(string, tag = "6")]
    pub binary_name: String,
    #[prost(string, tag = "7")]
    pub root: String,
    #[prost(bool, tag = "9")]
    pub systemd_cgroup: bool,
}

impl RuncOptions {
    pub(crate) fn to_any(&self) -> prost_types::Any {
        prost_types::Any {
            type_url: "containerd.runc.v1.Options".to_string(),
            value: prost::Message::encode_to_vec(self),
        }
    }
}

/// A unique-enough suffix for leases, snapshot keys and write refs.
pub(crate) fn random_suffix() -> String {
    format!("{:016x}", rand::random::<u64>())
}
