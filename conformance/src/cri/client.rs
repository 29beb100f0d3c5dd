//! Our CRI client: the calls a kubelet makes for a pod sandbox (RunPodSandbox,
//! StopPodSandbox, RemovePodSandbox, PodSandboxStatus, ListPodSandbox), over the CRI v1 gRPC
//! API on a unix socket, made blocking (a current-thread runtime) and bounded in time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    LinuxPodSandboxConfig, ListPodSandboxRequest, PodSandboxConfig, PodSandboxMetadata,
    PodSandboxStatusRequest, PortMapping, RemovePodSandboxRequest, RunPodSandboxRequest,
    StopPodSandboxRequest,
};
use tonic::transport::{Channel, Endpoint, Uri};

/// How long one CRI call may take (a sandbox start runs runc and the whole CNI chain).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The namespace every pod of the test lives in (CNI_ARGS `K8S_POD_NAMESPACE`).
pub const POD_NAMESPACE: &str = "cri-test";

pub struct Cri {
    rt: tokio::runtime::Runtime,
    client: RuntimeServiceClient<Channel>,
}

/// What PodSandboxStatus says about a sandbox, the parts the test reads.
#[derive(Debug, Clone)]
pub struct SandboxStatus {
    /// `SANDBOX_READY` or `SANDBOX_NOTREADY`.
    pub ready: bool,
    /// The pod's IP as the runtime took it from the CNI result ("" when none).
    pub ip: String,
    /// The network namespace path the runtime gave the plugins (from the verbose info).
    pub netns: String,
}

/// A pod to run: its name (also its UID's stem), and its cgroup parent.
pub struct Pod<'a> {
    pub name: &'a str,
    pub cgroup_parent: &'a str,
    /// A host port mapping, so that a plugin with the `portMappings` capability gets
    /// `runtimeConfig.portMappings`.
    pub host_port: i32,
}

impl Pod<'_> {
    pub fn uid(&self) -> String {
        format!("uid-{}", self.name)
    }

    fn config(&self) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: self.name.to_string(),
                uid: self.uid(),
                namespace: POD_NAMESPACE.to_string(),
                attempt: 0,
            }),
            hostname: self.name.to_string(),
            port_mappings: vec![PortMapping {
                protocol: 0, // TCP
                container_port: 8080,
                host_port: self.host_port,
                host_ip: String::new(),
            }],
            labels: HashMap::from([("app".to_string(), "cri-test".to_string())]),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup_parent.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

impl Cri {
    /// Connects to the CRI socket at `socket`.
    pub fn connect(socket: &Path) -> Result<Cri, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))?;
        let path: PathBuf = socket.to_path_buf();
        let channel = rt
            .block_on(async move {
                // The URI is not used: every connection goes to the unix socket.
                Endpoint::try_from("http://[::1]:0")?
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let path = path.clone();
                        async move {
                            Ok::<_, std::io::Error>(TokioIo::new(
                                tokio::net::UnixStream::connect(path).await?,
                            ))
                        }
                    }))
                    .await
            })
            .map_err(|e| format!("connect to {}: {e}", socket.display()))?;
        Ok(Cri {
            rt,
            client: RuntimeServiceClient::new(channel),
        })
    }

    fn call<T>(
        &mut self,
        what: &str,
        fut: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, String> {
        self.rt.block_on(async {
            match tokio::time::timeout(CALL_TIMEOUT, fut).await {
                Err(_) => Err(format!("{what}: no answer within {CALL_TIMEOUT:?}")),
                Ok(Err(status)) => Err(format!("{what}: {}", status.message())),
                Ok(Ok(r)) => Ok(r.into_inner()),
            }
        })
    }

    /// RunPodSandbox: the sandbox's ID.
    pub fn run(&mut self, pod: &Pod) -> Result<String, String> {
        let req = RunPodSandboxRequest {
            config: Some(pod.config()),
            runtime_handler: String::new(),
        };
        let mut c = self.client.clone();
        let what = format!("RunPodSandbox {}", pod.name);
        Ok(self.call(&what, c.run_pod_sandbox(req))?.pod_sandbox_id)
    }

    pub fn stop(&mut self, id: &str) -> Result<(), String> {
        let req = StopPodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        };
        let mut c = self.client.clone();
        self.call(&format!("StopPodSandbox {id}"), c.stop_pod_sandbox(req))
            .map(drop)
    }

    pub fn remove(&mut self, id: &str) -> Result<(), String> {
        let req = RemovePodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        };
        let mut c = self.client.clone();
        self.call(&format!("RemovePodSandbox {id}"), c.remove_pod_sandbox(req))
            .map(drop)
    }

    /// PodSandboxStatus, verbose: the netns path comes from the runtime spec in its info.
    pub fn status(&mut self, id: &str) -> Result<SandboxStatus, String> {
        let req = PodSandboxStatusRequest {
            pod_sandbox_id: id.to_string(),
            verbose: true,
        };
        let mut c = self.client.clone();
        let r = self.call(&format!("PodSandboxStatus {id}"), c.pod_sandbox_status(req))?;
        let status = r.status.ok_or("PodSandboxStatus: no status")?;
        let info: serde_json::Value = match r.info.get("info") {
            Some(text) => serde_json::from_str(text)
                .map_err(|e| format!("PodSandboxStatus {id}: info is not JSON: {e}"))?,
            None => serde_json::Value::Null,
        };
        let netns = info["runtimeSpec"]["linux"]["namespaces"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["type"] == "network")
            .and_then(|n| n["path"].as_str())
            .unwrap_or_default()
            .to_string();
        Ok(SandboxStatus {
            ready: status.state == 0,
            ip: status.network.map(|n| n.ip).unwrap_or_default(),
            netns,
        })
    }

    /// Every sandbox the runtime knows, by ID.
    pub fn list(&mut self) -> Result<Vec<String>, String> {
        let mut c = self.client.clone();
        let r = self.call(
            "ListPodSandbox",
            c.list_pod_sandbox(ListPodSandboxRequest { filter: None }),
        )?;
        Ok(r.items.into_iter().map(|p| p.id).collect())
    }
}
