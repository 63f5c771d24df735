//! The link between the tool and its guardian: JSON lines over a socket pair, at most
//! [`MAX_MESSAGE`] bytes each, read by a task of their own so that no `select!` drops
//! half a message.
//!
//! The tool's first message ([`Setup`]) carries everything the guardian needs to reach
//! the pods (limits, TLS roots and name, the flags a recovery command repeats): the
//! guardian never reads the command line, so an input that can be read once
//! (`--ca-root-cert-path <(cat ca.pem)`) is read once, by the tool.

use std::time::Duration;

use scalar_admin::{ClientConfig, Host, Target, Tls};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

/// The longest message on the link: a thousand pods take about 150 KiB.
const MAX_MESSAGE: u64 = 16 << 20;

/// What the guardian needs to reach the pods as the tool does.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Setup {
    pub(crate) connect_timeout_ms: u64,
    pub(crate) call_timeout_ms: Option<u64>,
    pub(crate) rollback_budget_ms: Option<u64>,
    /// `None`: plaintext.
    pub(crate) tls: Option<TlsSetup>,
    /// The TLS flags a recovery command repeats.
    pub(crate) recovery_flags: Vec<String>,
}

/// TLS as the tool checked it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TlsSetup {
    /// The CA certificates, as read; `None`: the system's roots.
    pub(crate) ca_pem: Option<String>,
    pub(crate) authority: Option<String>,
}

impl Setup {
    /// The client configuration the tool uses, its TLS rebuilt from what the tool read.
    pub(crate) fn client(&self) -> Result<ClientConfig, String> {
        let tls = match &self.tls {
            Some(tls) => {
                let mut config = match &tls.ca_pem {
                    Some(pem) => Tls::with_ca_pem(pem),
                    None => Tls::system_roots(),
                }
                .map_err(|e| e.to_string())?;
                if let Some(authority) = &tls.authority {
                    config = config.authority(authority).map_err(|e| e.to_string())?;
                }
                Some(config)
            }
            None => None,
        };
        Ok(self.client_with(tls))
    }

    /// The client configuration of these limits with `tls`: the tool's, built once from
    /// its flags, and the guardian's, from the link, are the same by construction.
    pub(crate) fn client_with(&self, tls: Option<Tls>) -> ClientConfig {
        let mut client =
            ClientConfig::default().connect_timeout(Duration::from_millis(self.connect_timeout_ms));
        if let Some(ms) = self.call_timeout_ms {
            client = client.call_timeout(Duration::from_millis(ms));
        }
        if let Some(ms) = self.rollback_budget_ms {
            client = client.rollback_budget(Duration::from_millis(ms));
        }
        if let Some(tls) = tls {
            client = client.tls(tls);
        }
        client
    }
}

/// One pod as the link carries it: everything [`Target::from_parts`] needs.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Pod {
    name: String,
    address: String,
    authority: String,
}

impl Pod {
    pub(super) fn of(target: &Target) -> Self {
        Self {
            name: target.name().to_owned(),
            address: target.address(),
            authority: target.authority(),
        }
    }

    pub(super) fn target(&self) -> Result<Target, String> {
        let address: Target = self.address.parse().map_err(|e| format!("{e}"))?;
        let authority: Target = self.authority.parse().map_err(|e| format!("{e}"))?;
        let tls_name: Host = authority.host().clone();
        Ok(Target::from_parts(
            self.name.clone(),
            address.host().clone(),
            address.port(),
            tls_name,
        ))
    }
}

pub(super) fn pods_of(targets: &[Target]) -> Vec<Pod> {
    targets.iter().map(Pod::of).collect()
}

pub(super) fn targets_of(pods: &[Pod]) -> Result<Vec<Target>, String> {
    pods.iter().map(Pod::target).collect()
}

/// What the tool tells its guardian. Setup, Arm, Narrow, Retry, Disarm and Detach are answered
/// (Ready, or Refused); Answered, Leave and Exec are not, so that they never wait.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum ToGuardian {
    /// The first message: how to reach the pods.
    Setup(Setup),
    /// An attempt's Pause is about to leave for these pods; unpause them if the tool
    /// dies, or when the lease passes.
    Arm {
        attempt: usize,
        lease_ms: u64,
        pods: Vec<Pod>,
    },
    /// Every pod answered the attempt's Pause: no Pause of it can land later.
    Answered,
    /// A pod's answer to the attempt's Pause says this run does not hold it.
    Leave { pod: Pod },
    /// The attempt's Pause failed: only these pods may hold it, before its rollback.
    Narrow { pods: Vec<Pod> },
    /// The `--exec` command's process group started (`Some`), or ended (`None`).
    Exec { pgid: Option<i32> },
    /// The attempt's rollback (`Fleet::release`) could not confirm these pods: try
    /// them once more when the tool exits.
    Retry { pods: Vec<Pod> },
    /// The attempt holds nothing any more.
    Disarm,
    /// A plain pause that outlives the tool: hold these pods until the lease passes.
    Detach { lease_ms: u64, pods: Vec<Pod> },
}

/// What the guardian tells the tool.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum ToTool {
    /// Started; or the message is taken.
    Ready,
    /// The message is not taken, for this reason.
    Refused { why: String },
    /// The guardian unpauses the pods now, for this reason (its lease passed, a signal).
    Unpausing { why: String },
}

pub(super) async fn send(
    w: &mut (impl AsyncWrite + Unpin),
    message: &impl Serialize,
) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(message).map_err(std::io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line).await?;
    w.flush().await
}

/// The next message, `None` at the end of the stream; a message longer than
/// [`MAX_MESSAGE`] or not one of `T` is an error. Not cancel safe: run it in a task of
/// its own ([`reader`]).
async fn receive<T: DeserializeOwned>(
    r: &mut BufReader<impl AsyncRead + Unpin>,
) -> Result<Option<T>, String> {
    let mut line = Vec::new();
    let n = r
        .take(MAX_MESSAGE)
        .read_until(b'\n', &mut line)
        .await
        .map_err(|e| e.to_string())?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err("a message was cut short or too long".to_owned());
    }
    serde_json::from_slice(&line)
        .map(Some)
        .map_err(|e| format!("not a message: {e}"))
}

/// Reads messages in a task of its own, so that a `select!` never drops half of one; the
/// stream's end or an error is the last item.
pub(super) fn reader<T: DeserializeOwned + Send + 'static>(
    read: impl AsyncRead + Unpin + Send + 'static,
) -> mpsc::Receiver<Result<Option<T>, String>> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut read = BufReader::new(read);
        loop {
            let message = receive::<T>(&mut read).await;
            let last = !matches!(message, Ok(Some(_)));
            if tx.send(message).await.is_err() || last {
                break;
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_crosses_the_link_whole() {
        let ip: std::net::IpAddr = "fd00::5".parse().unwrap();
        let srv = Target::from_parts(
            "db-0.db-headless.ns.svc.cluster.local:60051",
            Host::Ip(ip),
            60051,
            Host::Name("db-0.db-headless.ns.svc.cluster.local".to_owned()),
        );
        let plain: Target = "10.0.0.5:60051".parse().unwrap();
        for target in [srv, plain] {
            let pod: Pod =
                serde_json::from_str(&serde_json::to_string(&Pod::of(&target)).unwrap()).unwrap();
            let back = pod.target().unwrap();
            assert_eq!(back, target);
            assert_eq!(back.tls_name(), target.tls_name());
            assert_eq!(back.host(), target.host());
        }
    }

    async fn one(bytes: &[u8]) -> Result<Option<ToGuardian>, String> {
        receive(&mut BufReader::new(bytes)).await
    }

    #[tokio::test]
    async fn the_link_refuses_what_is_not_a_whole_message() {
        assert!(matches!(
            one(b"{\"type\":\"disarm\"}\n").await,
            Ok(Some(ToGuardian::Disarm))
        ));
        assert!(matches!(one(b"").await, Ok(None)));
        assert!(one(b"{\"type\":\"disarm\"}").await.is_err(), "cut short");
        assert!(one(b"not json\n").await.is_err());
        assert!(
            one(b"{\"type\":\"arm\"}\n").await.is_err(),
            "fields missing"
        );
        // Longer than the bound: an error, after reading no more than the bound.
        let flood = vec![b'a'; MAX_MESSAGE as usize + 10];
        assert!(one(&flood).await.is_err());
    }

    #[test]
    fn the_setup_rebuilds_the_tools_client() {
        let setup = Setup {
            connect_timeout_ms: 1500,
            call_timeout_ms: Some(2000),
            rollback_budget_ms: None,
            tls: Some(TlsSetup {
                ca_pem: Some("not a certificate".to_owned()),
                authority: None,
            }),
            recovery_flags: vec!["--tls".to_owned()],
        };
        let text = serde_json::to_string(&ToGuardian::Setup(setup)).unwrap();
        let Ok(ToGuardian::Setup(back)) = serde_json::from_str(&text) else {
            panic!("not a setup: {text}");
        };
        assert!(back.client().is_err(), "a bad CA is refused, not ignored");
        let plain = Setup { tls: None, ..back };
        let client = plain.client().unwrap();
        assert_eq!(
            client.connect_deadline(),
            ClientConfig::default()
                .connect_timeout(Duration::from_millis(1500))
                .connect_deadline()
        );
    }
}
