//! What a rollback did, in words, and the command that unpauses what it could not: the
//! tool's failure output and the guardian's messages say it alike.

use scalar_admin::{Error, Kept, Rollback, Target};

/// One line per pod: unpaused (confirmed), left paused as found and why, or maybe still
/// paused.
pub(crate) fn rollback_text(rollback: &Rollback) -> String {
    let mut out = String::new();
    let unpaused: Vec<&str> = rollback.unpaused().map(Target::name).collect();
    if !unpaused.is_empty() {
        out.push_str(&format!(
            "unpaused by this run (confirmed by CheckPaused): {}\n",
            unpaused.join(", ")
        ));
    }
    for kept in rollback.kept() {
        let line = match kept.why() {
            Kept::PauseInProgress => format!("another pause is in progress on {}", kept.target()),
            why => format!("{} ({why})", kept.target()),
        };
        out.push_str(&format!("left paused: {line}\n"));
    }
    for stuck in rollback.stuck() {
        out.push_str(&format!("may still be paused: {stuck}\n"));
    }
    out
}

/// How many pods may still be paused by this run, and the command that unpauses them.
pub(crate) fn recovery_text(tls_flags: &[String], stuck: &[&Target]) -> String {
    if stuck.is_empty() {
        return String::new();
    }
    format!(
        "{} pod(s) may still be paused by this run; to unpause them run:\n  {}\n",
        stuck.len(),
        command(tls_flags, stuck)
    )
}

/// The pods whose pause lease let go of them for this run (`let_go`) and that this
/// run's failed pause (`error`) left neither unpaused, confirmed, nor named as maybe
/// still paused by it: the earlier pause holds them, and no lease ends it any more. One
/// line each, and the command that unpauses them.
pub(crate) fn unleased(tls_flags: &[String], let_go: &[Target], error: &Error) -> String {
    let unpaused: Vec<&Target> = error
        .rollback()
        .map(|r| r.unpaused().collect())
        .unwrap_or_default();
    let named = error.maybe_paused();
    let left: Vec<&Target> = let_go
        .iter()
        .filter(|t| !unpaused.contains(t) && !named.contains(t))
        .collect();
    if left.is_empty() {
        return String::new();
    }
    let mut out = String::new();
    for pod in &left {
        out.push_str(&format!(
            "left paused, no longer leased: {pod} (its pause lease let go of it for this \
             run, whose Pause did not take it over)\n"
        ));
    }
    out.push_str(&format!(
        "{} pod(s) are left paused by an earlier pause that no lease ends any more; to \
         unpause them run:\n  {}\n",
        left.len(),
        command(tls_flags, &left)
    ));
    out
}

/// A rollback made outside the command's own output (the guardian's), each line on
/// stderr prefixed `who: `.
pub(crate) fn rolled_back(tls_flags: &[String], who: &str, rollback: &Rollback) {
    let mut out = format!("{rollback}\n");
    out.push_str(&rollback_text(rollback));
    out.push_str(&recovery_text(tls_flags, &rollback.maybe_paused()));
    if let Some(line) = rollback.late_line() {
        out.push_str(&format!("{line}\n"));
    }
    for line in out.lines() {
        tell!("{who}: {line}");
    }
}

/// `word` as one shell word: as is when it is plain, else single-quoted.
pub(crate) fn quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_./:@,=+-".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// A command line that unpauses `stuck` as printed, with the TLS flags (`tls_flags`) the
/// run was given. A pod found through SRV is connected to by address but its
/// certificate carries its name, so with TLS (and no `--override-authority` of the
/// operator's) each such pod gets a command of its own that names it.
pub(crate) fn command(tls_flags: &[String], stuck: &[&Target]) -> String {
    let flags: String = tls_flags.iter().map(|f| format!(" {f}")).collect();
    let overridden = tls_flags
        .iter()
        .any(|f| f.starts_with("--override-authority"));
    let named = |t: &Target| t.tls_name() != t.host();
    if tls_flags.is_empty() || overridden || !stuck.iter().any(|t| named(t)) {
        let addresses: Vec<String> = stuck.iter().map(|t| t.address()).collect();
        return format!(
            "scalar-admin -c UNPAUSE -a {}{flags}",
            quote(&addresses.join(","))
        );
    }
    let commands: Vec<String> = stuck
        .iter()
        .map(|t| {
            let authority = if named(t) {
                format!(" --override-authority {}", quote(&t.tls_name().to_string()))
            } else {
                String::new()
            };
            format!(
                "scalar-admin -c UNPAUSE -a {}{flags}{authority}",
                quote(&t.address())
            )
        })
        .collect();
    commands.join(" ; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use scalar_admin::Host;

    #[test]
    fn a_tls_pod_found_by_srv_is_named_in_its_recovery_command() {
        let srv = Target::from_parts(
            "db-0.db.ns.svc.cluster.local:60051",
            Host::Ip("10.0.0.5".parse().unwrap()),
            60051,
            Host::Name("db-0.db.ns.svc.cluster.local".to_owned()),
        );
        let plain: Target = "10.0.0.6:60051".parse().unwrap();
        let tls = ["--tls".to_owned(), "--ca-root-cert-path ca.pem".to_owned()];
        assert_eq!(
            command(&tls, &[&srv, &plain]),
            "scalar-admin -c UNPAUSE -a 10.0.0.5:60051 --tls --ca-root-cert-path ca.pem \
             --override-authority db-0.db.ns.svc.cluster.local ; \
             scalar-admin -c UNPAUSE -a 10.0.0.6:60051 --tls --ca-root-cert-path ca.pem"
        );
        assert_eq!(
            command(&[], &[&srv, &plain]),
            "scalar-admin -c UNPAUSE -a 10.0.0.5:60051,10.0.0.6:60051"
        );
        // IPv6 brackets are a glob to some shells.
        let v6: Target = "[fd00::5]:60051".parse().unwrap();
        assert_eq!(
            command(&[], &[&v6]),
            "scalar-admin -c UNPAUSE -a '[fd00::5]:60051'"
        );
        assert_eq!(quote("a b'c"), r"'a b'\''c'");
    }
}
