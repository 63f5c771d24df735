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

mod certs;
mod delay;
mod dns;
mod flood;
mod hostile;
mod pod;
mod proxy;

pub use certs::{Ca, ServerCert};
pub use delay::{Delay, DelayLine};
pub use dns::{DnsMode, DnsServer};
pub use flood::PushFlood;
pub use hostile::{Fault, HostilePod, Seen};
pub use pod::{Call, Pod, PodBuilder, blackhole, refused_addr};
pub use proxy::{Break, break_pause, slow_replies};

/// Raises the open-files soft limit to the hard one: tests and fleets with hundreds of
/// pods in one process hold a listener and a connection per pod.
pub fn raise_open_files() {
    if let Ok((_, hard)) = rlimit::Resource::NOFILE.get() {
        let _ = rlimit::Resource::NOFILE.set(hard, hard);
    }
}
