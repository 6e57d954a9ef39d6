//! Connecting to the agent (CLI side): unix socket or TCP, optionally TLS.

use std::path::PathBuf;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use vigil_proto::tetragon::fine_guidance_sensors_client::FineGuidanceSensorsClient;

use crate::server::Address;

/// The default API address of the agent and of the CLI.
pub const DEFAULT_SERVER_ADDRESS: &str = "unix:///var/run/vigil/vigil.sock";

#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub ca_cert_files: Vec<PathBuf>,
    pub server_name: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot connect to the vigil agent at {address}: {reason} (is it running? start it with `sudo vigil agent`, or pass --server-address)"
    )]
    NotRunning { address: String, reason: String },
    #[error("--server-address {0:?}: expected unix:///path/to.sock or host:port")]
    Address(String),
    #[error("TLS: {0}")]
    Tls(String),
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

fn read(p: &PathBuf) -> Result<Vec<u8>, ClientError> {
    std::fs::read(p).map_err(|e| ClientError::Tls(format!("{}: {e}", p.display())))
}

/// Connects (within `timeout`) to the agent's API.
pub async fn connect(
    address: &str,
    tls: &ClientTls,
    timeout: Duration,
) -> Result<FineGuidanceSensorsClient<Channel>, ClientError> {
    let channel = connect_channel(address, tls, timeout, None).await?;
    Ok(FineGuidanceSensorsClient::new(channel).max_decoding_message_size(64 << 20))
}

/// The channel under [`connect`]; `window` sets the HTTP/2 stream and connection receive
/// windows (bytes), e.g. to model a client that does not read.
pub async fn connect_channel(
    address: &str,
    tls: &ClientTls,
    timeout: Duration,
    window: Option<u32>,
) -> Result<Channel, ClientError> {
    let addr = Address::parse(address).ok_or_else(|| ClientError::Address(address.into()))?;
    let not_running = |reason: String| ClientError::NotRunning {
        address: address.to_string(),
        reason,
    };
    let channel = match addr {
        Address::Unix(path) => {
            // The URI is required by the API but unused: the connector dials the socket.
            let ep = Endpoint::from_static("http://localhost")
                .connect_timeout(timeout)
                .initial_stream_window_size(window)
                .initial_connection_window_size(window);
            let connector = tower::service_fn(move |_| {
                let path = path.clone();
                async move {
                    let s = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(s))
                }
            });
            ep.connect_with_connector(connector)
                .await
                .map_err(|e| not_running(root_cause(&e)))?
        }
        Address::Tcp(hp) => {
            let use_tls = tls.cert_file.is_some() || !tls.ca_cert_files.is_empty();
            let scheme = if use_tls { "https" } else { "http" };
            let mut ep = Endpoint::from_shared(format!("{scheme}://{hp}"))
                .map_err(|_| ClientError::Address(address.into()))?
                .connect_timeout(timeout)
                .initial_stream_window_size(window)
                .initial_connection_window_size(window);
            if use_tls {
                let mut cfg = ClientTlsConfig::new();
                for f in &tls.ca_cert_files {
                    cfg = cfg.ca_certificate(Certificate::from_pem(read(f)?));
                }
                if let Some(c) = &tls.cert_file {
                    let key = tls.key_file.as_ref().ok_or_else(|| {
                        ClientError::Tls("--tls-key-file is required with --tls-cert-file".into())
                    })?;
                    cfg = cfg.identity(Identity::from_pem(read(c)?, read(key)?));
                }
                if let Some(n) = &tls.server_name {
                    cfg = cfg.domain_name(n.clone());
                }
                ep = ep
                    .tls_config(cfg)
                    .map_err(|e| ClientError::Tls(root_cause(&e)))?;
            }
            ep.connect()
                .await
                .map_err(|e| not_running(root_cause(&e)))?
        }
    };
    Ok(channel)
}
