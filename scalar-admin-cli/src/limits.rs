//! The open-files limit a fleet needs.

/// Makes sure `pods` connections fit under the open-files limit, raising the soft limit
/// towards the hard one when needed; else says what to do, before any pod is contacted.
pub(crate) fn open_files_for(pods: usize) -> Result<(), String> {
    // Standard streams, the runtime, DNS sockets: a margin for what is not a pod.
    let needed = pods as u64 + 64;
    let Ok((soft, hard)) = rlimit::Resource::NOFILE.get() else {
        return Ok(());
    };
    if needed <= soft {
        return Ok(());
    }
    if needed <= hard && rlimit::Resource::NOFILE.set(needed, hard).is_ok() {
        return Ok(());
    }
    Err(format!(
        "{pods} pods need about {needed} open files, but the limit is {soft} (hard limit {hard}); \
         raise it, e.g. `ulimit -n {needed}`"
    ))
}
