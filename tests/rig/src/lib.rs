//! The test rig shared by the end-to-end tests and the benches: real admin pods (tonic
//! servers on loopback ports, built on `scalar_admin::gate`), a real DNS server on a
//! loopback port answering like a Kubernetes headless service, and certificates made
//! on the spot.
//!
//! Nothing here mocks the network path: clients under test speak gRPC over TCP (and TLS)
//! to the pods, and DNS over UDP and TCP to the DNS server. Hostile peers are real too:
//! a raw HTTP/2 server that misbehaves on Pause (`hostile`), a frame-level proxy
//! that breaks a Pause in flight (`proxy`), and a pod that floods server pushes during
//! the connection probe, written frame by frame (`flood`).
//!
//! With the `kubernetes` feature, [`kube`] adds a real kube-apiserver and etcd and the
//! objects of Helm releases, pointing at these pods.

mod certs;
mod delay;
mod dns;
mod flood;
mod hostile;
#[cfg(feature = "kubernetes")]
pub mod kube;
mod partition;
mod pod;
mod proxy;

#[cfg(feature = "kubernetes")]
pub use self::kube::{KubeCluster, Release, ReleaseBuilder, TestNamespace, User};
pub use certs::{Ca, ServerCert};
pub use delay::{Delay, DelayLine};
pub use dns::{DnsMode, DnsServer};
pub use flood::PushFlood;
pub use hostile::{Fault, HostilePod, Seen};
pub use partition::{Partition, kernel_holds, ports_to};
pub use pod::{Call, Pod, PodBuilder, blackhole, refused_addr};
pub use proxy::{Break, ClientEnd, break_pause, break_pause_watched, slow_replies};
/// The Kubernetes client and API types the rig is built on, for tests of packages that
/// do not depend on them themselves.
#[cfg(feature = "kubernetes")]
pub use {::kube as kube_rs, k8s_openapi};

/// Raises the open-files soft limit to the hard one: tests and fleets with hundreds of
/// pods in one process hold a listener and a connection per pod.
pub fn raise_open_files() {
    if let Ok((_, hard)) = rlimit::Resource::NOFILE.get() {
        let _ = rlimit::Resource::NOFILE.set(hard, hard);
    }
}
