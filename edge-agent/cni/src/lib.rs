//! kedge-cni: the pod sandbox's network, for the agent's pod manager.
//!
//! - [`NetnsDir`] / [`Netns`]: pinned network namespaces under `/run/kedge/netns/<name>`
//!   (created like `ip netns add`, with `lo` up), removed idempotently, listed.
//! - [`run_in_netns`], [`connect_tcp_in_netns`]: code and sockets inside a pod's namespace
//!   (`kubectl port-forward` connects to `localhost:<port>` there).
//! - [`conflist`] / [`write_conflist`]: the node's CNI network configuration list from its
//!   podCIDR: `bridge` (cni0, host-local IPAM), `portmap`, `loopback`.
//! - [`PodNetwork`]: our own small CNI runtime (spec 1.0.0 and 0.4.0) running the standard
//!   plugin binaries: ADD in order with prevResult, DEL in reverse, CHECK, VERSION; results
//!   cached on disk for DEL after an agent restart; typed plugin errors; timeouts.
//! - [`prepare_pause_rootfs`]: the pause container's rootfs, holding only `/pause`.
//!
//! A sandbox's network, in the order the pod manager does it (DEL before the namespace
//! goes, so every plugin can clean up inside it):
//!
//! ```no_run
//! # async fn sandbox() -> Result<(), kedge_cni::CniError> {
//! use std::path::Path;
//! use kedge_cni::*;
//!
//! let data_dir = Path::new("/var/lib/kedge");
//! // once, when the node's podCIDR is known
//! let config = CniConfig::for_data_dir(data_dir);
//! let list = conflist("10.42.3.0/24", &BridgeOptions::for_data_dir(data_dir))?;
//! write_conflist(&config.conf_dir, &list)?;
//! let pods = PodNetwork::load(config)?;
//! pods.validate().await?;
//! let pause = prepare_pause_rootfs(data_dir, &locate_pause_binary(None)?)?;
//!
//! // per sandbox
//! let netns = NetnsDir::default().create("0123abcd")?;
//! let pod = PodRef::new("default", "web-0", "8f0c…");
//! let attachment = pods.setup("0123abcd", netns.path(), &pod, &[PortMapping::tcp(8080, 80)]).await?;
//! println!("podIP {}", attachment.ip);
//! // … start the pause container (rootfs pause.rootfs, args pause.args, netns netns.path()),
//! // port-forward with connect_tcp_in_netns(netns.path(), 80) …
//! pods.teardown("0123abcd", Some(netns.path()), &pod).await?;
//! NetnsDir::default().remove("0123abcd")?;
//! # let _ = pause;
//! # Ok(())
//! # }
//! ```
//!
//! Architecture invariant: this crate knows CNI, namespaces and files only. It must not
//! depend on containerd, OCI spec building, Kubernetes API types, cgroups or the agent's
//! store; the pod manager (kedge-agent) calls it. It uses no `unsafe` (nix's safe APIs) and
//! installs no tracing subscriber.

mod cidr;
mod conflist;
mod error;
mod exec;
mod fsutil;
mod netlink;
mod netns;
mod network;
mod pause;
mod types;

pub use cidr::{IpPrefix, ParsePrefixError};
pub use conflist::{
    BridgeOptions, CONFLIST_FILE_NAME, NetworkConfigList, PluginConfig, SUPPORTED_VERSIONS,
    conflist, parse_pod_cidrs, write_conflist,
};
pub use error::CniError;
pub use exec::MAX_CONCURRENT_PLUGINS;
pub use netns::{
    DEFAULT_NETNS_DIR, Netns, NetnsDir, connect_addr_in_netns, connect_tcp_in_netns,
    connect_tcp_in_netns_blocking, is_netns, remove_pinned, run_in_netns, tcp_socket_in_netns,
};
pub use network::{CniConfig, PodNetwork};
pub use pause::{PAUSE_BINARY_NAME, PauseRootfs, locate_pause_binary, prepare_pause_rootfs};
pub use types::{
    Attachment, CniResult, Dns, Interface, IpConfig, PodRef, PortMapping, Protocol, Route,
};
