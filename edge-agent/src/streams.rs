//! The agent's side of the reverse streams: `kedge.link.v1.AgentStreams`, which the
//! server calls over streams it opens on the agent's tunnel.
//!
//! The stats summary is real for the node (CPU and memory from /proc). Logs, exec,
//! attach and port-forward go to the pod manager's streams ([`crate::pods::streams`]);
//! an agent started without a container runtime answers them `UNIMPLEMENTED` with a
//! message saying so, which the server passes on to kubectl.

use std::pin::Pin;

use futures::Stream;
use kedge_proto::v1::agent_streams_server::{AgentStreams, AgentStreamsServer};
use kedge_proto::v1::{
    Chunk, ExecInput, ExecOutput, LogsRequest, PortForwardFrame, StatsRequest, StatsResponse,
};
use serde_json::json;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status, Streaming};

/// What the server may ask of this agent.
#[derive(Debug, Clone)]
pub struct AgentStreamsService {
    node: String,
    pods: Option<crate::pods::streams::PodStreams>,
}

impl AgentStreamsService {
    /// The tonic service for `node`; `pods` is `None` without a container runtime.
    pub fn server(
        node: String,
        pods: Option<crate::pods::streams::PodStreams>,
    ) -> AgentStreamsServer<AgentStreamsService> {
        AgentStreamsServer::new(AgentStreamsService { node, pods })
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip)
    }
}

type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn no_runtime(what: &str) -> Status {
    Status::unimplemented(format!(
        "{what} needs a container runtime, and this kedge-agent runs none yet"
    ))
}

#[tonic::async_trait]
impl AgentStreams for AgentStreamsService {
    type LogsStream = Boxed<Chunk>;
    type ExecStream = Boxed<ExecOutput>;
    type PortForwardStream = Boxed<PortForwardFrame>;

    async fn logs(&self, req: Request<LogsRequest>) -> Result<Response<Self::LogsStream>, Status> {
        let pods = self.pods.as_ref().ok_or_else(|| no_runtime("logs"))?;
        Ok(Response::new(pods.logs(req.into_inner()).await?))
    }

    async fn exec(
        &self,
        req: Request<Streaming<ExecInput>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        let pods = self
            .pods
            .as_ref()
            .ok_or_else(|| no_runtime("exec and attach"))?;
        let mut input = req.into_inner();
        let start = match input.message().await? {
            Some(ExecInput {
                input: Some(kedge_proto::v1::exec_input::Input::Start(start)),
            }) => start,
            _ => {
                return Err(Status::invalid_argument(
                    "an exec stream starts with ExecStart",
                ));
            }
        };
        Ok(Response::new(pods.exec(start, input).await?))
    }

    async fn port_forward(
        &self,
        req: Request<Streaming<PortForwardFrame>>,
    ) -> Result<Response<Self::PortForwardStream>, Status> {
        let pods = self
            .pods
            .as_ref()
            .ok_or_else(|| no_runtime("port-forward"))?;
        let mut input = req.into_inner();
        let start = match input.message().await? {
            Some(PortForwardFrame {
                frame: Some(kedge_proto::v1::port_forward_frame::Frame::Start(start)),
            }) => start,
            _ => {
                return Err(Status::invalid_argument(
                    "a port-forward stream starts with PortForwardStart",
                ));
            }
        };
        Ok(Response::new(
            pods.port_forward(&start.namespace, &start.pod, start.port, input)
                .await?,
        ))
    }

    async fn stats(&self, _: Request<StatsRequest>) -> Result<Response<StatsResponse>, Status> {
        let summary = node_summary(
            &self.node,
            &read_proc("/proc/meminfo"),
            &read_proc("/proc/stat"),
        );
        Ok(Response::new(StatsResponse {
            summary: summary.to_string().into_bytes(),
        }))
    }
}

fn read_proc(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// `/stats/summary` for the node, from /proc/meminfo and /proc/stat: the kubelet's
/// shape (NodeStats: cpu.usageCoreNanoSeconds, memory.availableBytes / usageBytes /
/// workingSetBytes), with no pods yet.
pub fn node_summary(node: &str, meminfo: &str, stat: &str) -> serde_json::Value {
    let kib = |key: &str| -> Option<u64> {
        meminfo.lines().find_map(|l| {
            let rest = l.strip_prefix(key)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
    };
    let total = kib("MemTotal").map(|k| k * 1024);
    let available = kib("MemAvailable").map(|k| k * 1024);
    let used = total.zip(available).map(|(t, a)| t.saturating_sub(a));
    // The first line of /proc/stat: cpu user nice system idle iowait irq softirq steal …,
    // in USER_HZ ticks (100 per second on Linux).
    let busy_ticks: Option<u64> = stat.lines().next().and_then(|l| {
        let mut fields = l.split_whitespace();
        (fields.next()? == "cpu").then_some(())?;
        let v: Vec<u64> = fields.filter_map(|f| f.parse().ok()).collect();
        (v.len() >= 8).then(|| v[0] + v[1] + v[2] + v[5] + v[6] + v[7])
    });
    let now = jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default();
    json!({
        "node": {
            "nodeName": node,
            "startTime": now,
            "cpu": {
                "time": now,
                "usageCoreNanoSeconds": busy_ticks.map(|t| t * 10_000_000),
            },
            "memory": {
                "time": now,
                "availableBytes": available,
                "usageBytes": used,
                "workingSetBytes": used,
            },
        },
        "pods": [],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_reads_proc() {
        let meminfo = "MemTotal:        2048 kB\nMemFree:  100 kB\nMemAvailable:    1024 kB\n";
        let stat = "cpu  10 0 5 100 0 1 1 0 0 0\ncpu0 10 0 5 100 0 1 1 0 0 0\n";
        let s = node_summary("pi-1", meminfo, stat);
        assert_eq!(s["node"]["nodeName"], "pi-1");
        assert_eq!(s["node"]["memory"]["availableBytes"], 1024 * 1024);
        assert_eq!(s["node"]["memory"]["workingSetBytes"], 1024 * 1024);
        assert_eq!(s["node"]["cpu"]["usageCoreNanoSeconds"], 17u64 * 10_000_000);
        // Unreadable input gives nulls, not a panic.
        let s = node_summary("pi-1", "garbage", "");
        assert!(s["node"]["memory"]["availableBytes"].is_null());
    }
}
