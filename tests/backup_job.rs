//! The binary copied into another image and run there, as
//! `scalar-admin-cli/deploy/backup-job.yaml` runs it: a root file system holding
//! nothing but a static busybox (no libc, no loader), read-only, with the binary on
//! its own read-only mount at `/opt/scalar-admin` (the init container's emptyDir), a
//! writable `/tmp` (the other emptyDir) named by `TMPDIR`, and a non-root user. The
//! window runs there with `--exec` against real pods on loopback.
//!
//! The binary run is the static one, built for the `*-unknown-linux-musl` target (as the
//! Dockerfile builds the image's): `cargo build --target x86_64-unknown-linux-musl --bin
//! scalar-admin`, or the file `SCALAR_ADMIN_STATIC_BIN` names. The root needs a static
//! busybox (Debian's `busybox-static`) and the tests need root, for `unshare -m`, the
//! mounts and `chroot`. Without one of these the tests say so on stderr and pass,
//! unless `SCALAR_ADMIN_E2E_REQUIRE_STATIC=1` (CI sets it), which makes that a failure.
//! A static binary older than the tool's sources fails the test: it is not the tool
//! under test.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use scalar_admin_rig::Pod;
use serde_json::Value;

use crate::exec::{BIN, list, scratch};
use crate::util::{Run, bounded};

/// Where the Job's backup container runs the binary from: the init container copies it
/// into the emptyDir mounted there. `k8s_rig::deploy_rbac_is_least_privilege` checks
/// the manifest against this and [`RUN_AS`].
pub(crate) const BINARY_IN_JOB: &str = "/opt/scalar-admin/scalar-admin";

/// The Job's user and group (distroless's `nonroot`).
pub(crate) const RUN_AS: i64 = 65532;

/// Either the reason these tests cannot run here, or what they run with.
fn prerequisites(static_binary: bool) -> Option<(PathBuf, PathBuf)> {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    let binary = std::env::var_os("SCALAR_ADMIN_STATIC_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // `target/debug/scalar-admin` -> `target/<arch>-unknown-linux-musl/debug/`.
            let bin = Path::new(BIN);
            let profile = bin.parent().unwrap();
            profile
                .parent()
                .unwrap()
                .join(format!("{}-unknown-linux-musl", std::env::consts::ARCH))
                .join(profile.file_name().unwrap())
                .join("scalar-admin")
        });
    let missing = if !rustix::process::geteuid().is_root() {
        Some("they need root, for the mounts and chroot: run them under `tests/k8s/netns.sh` as root".to_owned())
    } else if busybox.is_none() {
        Some("no busybox: install Debian's busybox-static".to_owned())
    } else if static_binary && !binary.exists() {
        Some(format!(
            "no static binary at {}: build it with `cargo build --target {}-unknown-linux-musl \
             --bin scalar-admin` (`rustup target add` that target; Debian's musl-tools)",
            binary.display(),
            std::env::consts::ARCH
        ))
    } else {
        None
    };
    if let Some(why) = missing {
        let line = format!("skipping backup_job::* ({why})");
        assert!(
            std::env::var_os("SCALAR_ADMIN_E2E_REQUIRE_STATIC").is_none(),
            "SCALAR_ADMIN_E2E_REQUIRE_STATIC is set, and {line}"
        );
        // Straight to stderr: the harness captures `eprintln!`, and this line is for
        // whoever runs `cargo test`.
        let _ = writeln!(std::io::stderr().lock(), "{line}");
        return None;
    }
    if std::env::var_os("SCALAR_ADMIN_STATIC_BIN").is_none() && static_binary {
        let built = std::fs::metadata(&binary)
            .and_then(|m| m.modified())
            .unwrap();
        if let Some(newer) = newer_source(Path::new(env!("CARGO_MANIFEST_DIR")), built) {
            panic!(
                "{} is older than {}: rebuild it with `cargo build --target {}-unknown-linux-musl \
                 --bin scalar-admin`",
                binary.display(),
                newer.display(),
                std::env::consts::ARCH
            );
        }
    }
    Some((busybox.unwrap(), binary))
}

/// A source of the binary changed after `built`: the tests would run an old binary.
fn newer_source(root: &Path, built: std::time::SystemTime) -> Option<PathBuf> {
    fn walk(path: &Path, built: std::time::SystemTime) -> Option<PathBuf> {
        let meta = std::fs::metadata(path).ok()?;
        if meta.is_dir() {
            let entries = std::fs::read_dir(path).ok()?;
            return entries.flatten().find_map(|e| walk(&e.path(), built));
        }
        (meta.modified().ok()? > built).then(|| path.to_owned())
    }
    [
        "Cargo.toml",
        "Cargo.lock",
        "proto",
        "scalar-admin-cli/src",
        "scalar-admin-rs/Cargo.toml",
        "scalar-admin-rs/src",
    ]
    .into_iter()
    .find_map(|p| walk(&root.join(p), built))
}

/// The image's root file system and the Job's two emptyDirs, as host directories.
struct Image {
    dir: PathBuf,
}

impl Image {
    /// A root with busybox as `/bin/sh` (and the few applets the tests' commands use)
    /// and the mount points the Job has: `/opt/scalar-admin`, `/tmp`, `/proc`, `/dev`.
    /// `binary` is copied into the first emptyDir, as the init container does.
    fn new(name: &str, busybox: &Path, binary: &Path) -> Image {
        let dir = scratch(name);
        let root = dir.join("root");
        for sub in ["bin", "etc", "opt/scalar-admin", "tmp", "proc", "dev"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
        for applet in ["sh", "cat", "id", "ls", "touch"] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
        for dev in ["null", "zero", "random", "urandom"] {
            std::fs::write(root.join("dev").join(dev), b"").unwrap();
        }
        let bin = dir.join("emptydir-bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy(binary, bin.join("scalar-admin")).unwrap();
        // An emptyDir is world-writable; the non-root user writes the pods file here.
        let tmp = dir.join("emptydir-tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).unwrap();
        Image { dir }
    }

    /// The backup container's `/tmp`, seen from the host.
    fn tmp(&self) -> PathBuf {
        self.dir.join("emptydir-tmp")
    }

    /// Runs `argv` in the image as the Job does: PID 1 of a PID namespace of its own, as
    /// a container's command is; in a mount namespace of its own (so nothing stays
    /// mounted), the root and the binary's directory read-only, `/tmp` writable,
    /// `/proc` and the usual devices; as user and group [`RUN_AS`], with the Job's
    /// environment only (`TMPDIR`, `HOME`; `PATH` as an image sets it).
    async fn run(&self, argv: &[&str]) -> Run {
        const MOUNT: &str = r#"set -eu
root=$1 bin=$2 tmp=$3 user=$4
shift 4
mount --bind "$root" "$root"
mount -o remount,bind,ro "$root"
mount --bind "$bin" "$root/opt/scalar-admin"
mount -o remount,bind,ro "$root/opt/scalar-admin"
mount --bind "$tmp" "$root/tmp"
mount -t proc proc "$root/proc"
for dev in null zero random urandom; do mount --bind "/dev/$dev" "$root/dev/$dev"; done
exec chroot --userspec="$user:$user" "$root" "$@"
"#;
        let root = self.dir.join("root");
        let bin = self.dir.join("emptydir-bin");
        let user = RUN_AS.to_string();
        let out = tokio::process::Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "--pid",
                "--fork",
                "--kill-child",
            ])
            .args(["sh", "-c", MOUNT, "mount"])
            .arg(&root)
            .arg(&bin)
            .arg(self.tmp())
            .arg(&user)
            .args(argv)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .env("TMPDIR", "/tmp")
            .env("HOME", "/tmp")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .expect("unshare runs");
        Run {
            args: argv.iter().map(|a| a.to_string()).collect(),
            status: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The window with `--exec`, from the copied static binary inside the image: VALID, the
/// command ran there (read-only root, non-root, the pods file under `TMPDIR`, the
/// copied binary itself seeing every pod paused), the pods file removed after, and
/// every pod unpaused.
#[tokio::test]
async fn the_static_binary_runs_a_backup_window_in_a_foreign_image() {
    bounded(async {
        let Some((busybox, binary)) = prerequisites(true) else {
            return;
        };
        let image = Image::new("foreign-image", &busybox, &binary);
        let pods = Pod::start_many(2).await;
        let list = list(&pods);
        let script = format!(
            "set -eu; cd /tmp; id -u > uid; cat /proc/1/cmdline > pid1; \
             touch /written 2> root || true; \
             echo \"$SCALAR_ADMIN_PODS_FILE\" > pods-path; cat \"$SCALAR_ADMIN_PODS_FILE\" > pods.json; \
             {BINARY_IN_JOB} -c check_paused -a {list} > check; echo backed up"
        );
        let run = image
            .run(&[
                BINARY_IN_JOB,
                "-c",
                "window",
                "-a",
                &list,
                "--duration",
                "100ms",
                "--exec",
                &script,
            ])
            .await
            .success();
        assert!(run.stdout.lines().any(|l| l == "Verdict: VALID"), "{}", run.stdout);
        assert!(run.stderr.contains("exec: backed up"), "{}", run.stderr);

        let tmp = image.tmp();
        let read = |name: &str| {
            std::fs::read_to_string(tmp.join(name))
                .unwrap_or_else(|e| panic!("{name}: {e}\n{}", run.stderr))
        };
        assert_eq!(read("uid").trim(), RUN_AS.to_string());
        // PID 1 is the tool, as in the container (it stays the guardian there).
        assert!(read("pid1").starts_with(BINARY_IN_JOB), "{:?}", read("pid1"));
        assert!(read("root").contains("Read-only file system"), "{}", read("root"));
        // The pods file under TMPDIR (the image's /tmp), and gone after the command.
        let path = read("pods-path");
        let name = path
            .trim()
            .strip_prefix("/tmp/")
            .unwrap_or_else(|| panic!("the pods file is not under TMPDIR: {path}"));
        assert!(!tmp.join(name).exists(), "the pods file is removed after");
        let doc: Value = serde_json::from_str(&read("pods.json")).unwrap();
        assert_eq!(doc["groups"][0]["pods"].as_array().unwrap().len(), 2, "{doc}");
        // The copied binary, run by the command, saw every pod paused.
        let check: Value = serde_json::from_str(&read("check")).unwrap();
        let states: Vec<&Value> = check.as_object().unwrap().values().collect();
        assert_eq!(states.len(), 2, "{check}");
        assert!(states.iter().all(|s| *s == "true"), "{check}");

        assert!(pods.iter().all(|p| !p.gate().is_paused()));
    })
    .await
}

/// The control: the image really has no libc, so the binary the tests build (linked
/// to glibc) does not even start there, and the test above means something.
#[tokio::test]
async fn a_dynamically_linked_binary_does_not_start_in_that_image() {
    bounded(async {
        let Some((busybox, _)) = prerequisites(false) else {
            return;
        };
        let image = Image::new("foreign-image-dynamic", &busybox, Path::new(BIN));
        let shell = image.run(&["/bin/sh", "-c", "echo up"]).await;
        assert_eq!(
            (shell.status, shell.stdout.as_str()),
            (Some(0), "up\n"),
            "no shell in the image (is {} static? Debian's busybox-static is): {}",
            busybox.display(),
            shell.stderr
        );
        let run = image.run(&[BINARY_IN_JOB, "--version"]).await;
        assert_ne!(run.status, Some(0), "{}{}", run.stdout, run.stderr);
        assert!(run.stdout.is_empty(), "{}", run.stdout);
    })
    .await
}
