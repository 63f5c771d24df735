//! End-to-end tests: the library and the `scalar-admin` binary against real admin pods,
//! hostile HTTP/2 servers and proxies, and a real DNS server on loopback (see
//! `tests/rig`). One test binary, so the 2-core CI machine links everything once.

mod util;

mod backup_job;
mod cli;
mod discovery;
mod exec;
mod faults;
mod fleet;
mod gate;
mod guardian;
mod journal;
mod k8s_rig;
mod kubernetes;
mod rollback;
mod soak;
mod tls;
mod window;
