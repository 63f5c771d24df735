//! `--journal k8s:[NAMESPACE]`: the windows kept in the cluster, where the CronJob that
//! makes them has no writable disk, one ConfigMap per window attempt.
//!
//! # The objects
//!
//! `scalar-admin-window-{run}-{attempt}`, labelled `app.kubernetes.io/managed-by:
//! scalar-admin` and `app.kubernetes.io/component: backup-window` ([`SELECTOR`]), so
//! that `kubectl get configmaps -l ... -L scalar-admin/verdict -L
//! scalar-admin/restore-point` lists the windows with their verdict and restore point.
//! The data holds the journal's two entries as JSON (`open`, then `close`), the open one
//! with the pod count and the snapshot's digest instead of the pod list, so that an
//! object stays small at a thousand pods.
//!
//! # Several runs at once
//!
//! Each run writes only its own objects: it creates one when a window opens (a name no
//! other run makes) and replaces it, checked against the resourceVersion it last saw,
//! when the window closes (a conflict reads the object again, at most three times).
//! The retention deletes each object it drops with that object's resourceVersion as a
//! precondition; one deleted or changed since is left to the next run. Nothing is read,
//! modified and written back as a whole.
//!
//! # A run that died
//!
//! No lock outlives a pod here, so an open window is taken as still held until its
//! bound has passed (the pause's end plus the guardian's lease, the longest any attempt
//! may last), and as left by a run that died after that: the next run and HISTORY say
//! so, as the file journal does.
//!
//! The API work runs on the journal's own thread with a runtime of its own, as the file
//! work does, so that a slow API server never stalls the hold's clock; each request has
//! the client's time limit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams, Preconditions};
use kube::{Api, Client};
use scalar_admin::kubernetes::KubeConfig;
use serde_json::Value;
use tokio::sync::mpsc;

use super::{BOUND, Job, Key, Line};

/// `--journal k8s:NAMESPACE`.
pub(super) const SCHEME: &str = "k8s:";
/// The labels every window object has, as a selector.
const SELECTOR: &str =
    "app.kubernetes.io/managed-by=scalar-admin,app.kubernetes.io/component=backup-window";
const VERDICT: &str = "scalar-admin/verdict";
const WINDOW_START: &str = "scalar-admin/window-start";
const RESTORE_POINT: &str = "scalar-admin/restore-point";
const HELD_UNTIL: &str = "scalar-admin/held-until";
/// What the journal does with ConfigMaps, each checked before anything is paused.
const VERBS: [&str; 5] = ["create", "get", "list", "update", "delete"];

/// A namespace of a cluster, and how to reach it.
#[derive(Debug, Clone)]
pub(crate) struct Place {
    /// None: the kubeconfig context's namespace, or inside a pod its own.
    namespace: Option<String>,
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
}

impl Place {
    pub(super) fn new(
        namespace: &str,
        kubeconfig: Option<&Path>,
        context: Option<&str>,
    ) -> Result<Place, String> {
        let valid = namespace.len() <= 63
            && namespace
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !namespace.starts_with('-')
            && !namespace.ends_with('-');
        if !valid {
            return Err(format!(
                "k8s:{namespace}: not a namespace name (lowercase letters, digits and '-')"
            ));
        }
        Ok(Place {
            namespace: (!namespace.is_empty()).then(|| namespace.to_owned()),
            kubeconfig: kubeconfig.map(Path::to_owned),
            context: context.map(str::to_owned),
        })
    }

    /// A configuration of its own, whose client is built on the runtime that uses it.
    fn kube(&self) -> KubeConfig {
        let mut kube = KubeConfig::default();
        if let Some(path) = &self.kubeconfig {
            kube = kube.kubeconfig(path);
        }
        if let Some(context) = &self.context {
            kube = kube.context(context);
        }
        kube
    }
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{SCHEME}{}", self.namespace.as_deref().unwrap_or(""))
    }
}

/// The API and the namespace, once connected.
struct Store {
    client: Client,
    api: Api<ConfigMap>,
    namespace: String,
}

impl Store {
    async fn connect(place: &Place) -> Result<Store, String> {
        let client = place
            .kube()
            .client()
            .await
            .map_err(|e| format!("the journal {place}: {e}"))?;
        let namespace = place
            .namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_owned());
        Ok(Store {
            api: Api::namespaced(client.clone(), &namespace),
            client,
            namespace,
        })
    }

    fn name(&self) -> String {
        format!("{SCHEME}{}", self.namespace)
    }

    /// Asks the API server whether this user may do each of [`VERBS`] to ConfigMaps
    /// here: a window must not pause anything it could not record.
    async fn check_access(&self) -> Result<(), String> {
        let reviews: Api<SelfSubjectAccessReview> = Api::all(self.client.clone());
        for verb in VERBS {
            let review = SelfSubjectAccessReview {
                spec: SelfSubjectAccessReviewSpec {
                    resource_attributes: Some(ResourceAttributes {
                        namespace: Some(self.namespace.clone()),
                        verb: Some(verb.to_owned()),
                        resource: Some("configmaps".to_owned()),
                        ..ResourceAttributes::default()
                    }),
                    ..SelfSubjectAccessReviewSpec::default()
                },
                ..SelfSubjectAccessReview::default()
            };
            let answer = reviews
                .create(&PostParams::default(), &review)
                .await
                .map_err(|e| {
                    format!(
                        "the journal {}: cannot check access: {}",
                        self.name(),
                        one_line(&e)
                    )
                })?;
            if !answer.status.is_some_and(|s| s.allowed) {
                return Err(format!(
                    "the journal {}: forbidden to {verb} configmaps in namespace {} (the journal \
                     needs create, get, list, update and delete on them: deploy/rbac.yaml)",
                    self.name(),
                    self.namespace
                ));
            }
        }
        Ok(())
    }

    /// Every window object, in pages.
    async fn list(&self) -> Result<Vec<ConfigMap>, String> {
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut params = ListParams::default().labels(SELECTOR).limit(250);
            if let Some(token) = &token {
                params = params.continue_token(token);
            }
            let page = self.api.list(&params).await.map_err(|e| {
                format!("cannot read the journal {}: {}", self.name(), one_line(&e))
            })?;
            all.extend(page.items);
            match page.metadata.continue_ {
                Some(next) if !next.is_empty() => token = Some(next),
                _ => return Ok(all),
            }
        }
    }
}

/// An API error on one line, without the debug structures of the client.
fn one_line(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        other => other.to_string(),
    }
}

/// The object of one window attempt.
fn object_name(run: &str, attempt: u64) -> String {
    format!("scalar-admin-window-{run}-{attempt}")
}

/// An instant as a label value: `20261204T030005.123456Z` (ISO 8601's basic format, as
/// a label allows no ':').
fn label_instant(micros: i64) -> Option<String> {
    let ts = jiff::Timestamp::from_microsecond(micros).ok()?;
    Some(format!(
        "{}.{:06}Z",
        ts.strftime("%Y%m%dT%H%M%S"),
        micros.rem_euclid(1_000_000)
    ))
}

fn rfc3339(at: SystemTime) -> String {
    jiff::Timestamp::try_from(at).map_or_else(|_| String::new(), |ts| ts.to_string())
}

/// The journal's two entries of one object, as the file journal's lines.
fn lines_of(object: &ConfigMap) -> Vec<Line> {
    let mut lines = Vec::new();
    for (name, open) in [("open", true), ("close", false)] {
        let Some(text) = object.data.as_ref().and_then(|d| d.get(name)) else {
            continue;
        };
        let value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let key = || -> Option<Key> {
            Some((
                value.get("run")?.as_str()?.to_owned(),
                value.get("attempt")?.as_u64()?,
            ))
        };
        if let Some(key) = key() {
            lines.push(Line {
                number: 0,
                raw: String::new(),
                value,
                key,
                open,
            });
        }
    }
    lines
}

/// When an open window's bound passes, from its annotation.
fn held_until(object: &ConfigMap) -> Option<jiff::Timestamp> {
    object
        .metadata
        .annotations
        .as_ref()?
        .get(HELD_UNTIL)?
        .parse()
        .ok()
}

fn is_open(object: &ConfigMap) -> bool {
    object
        .data
        .as_ref()
        .is_some_and(|d| !d.contains_key("close"))
}

/// Whether a window left open may still be held by a live run.
fn maybe_held(object: &ConfigMap, now: jiff::Timestamp) -> bool {
    is_open(object) && held_until(object).is_some_and(|until| now <= until)
}

/// Reads every window and says on stderr which were left open: `-c HISTORY`, and a
/// WINDOW before it pauses anything.
fn report(store: &Store, objects: &[ConfigMap]) {
    let now = jiff::Timestamp::now();
    for object in objects.iter().filter(|o| is_open(o)) {
        let name = object.metadata.name.as_deref().unwrap_or("?");
        let at = lines_of(object)
            .first()
            .and_then(|l| {
                l.value
                    .get("pause_completed_at")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "?".to_owned());
        let journal = store.name();
        match held_until(object) {
            Some(until) if now <= until => tell!(
                "note: journal {journal} configmap {name}: the window opened at {at} is still \
                 open: the run that opened it may hold it until {until}"
            ),
            _ => tell!(
                "warning: journal {journal} configmap {name}: the window opened at {at} was \
                 never closed: the tool died during it; its pods may have been left paused, and \
                 it is no restore point"
            ),
        }
    }
}

/// `-c HISTORY`'s reading of the cluster, on a runtime of its own.
pub(super) fn read(place: &Place) -> Result<Vec<Line>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async {
        let work = async {
            let store = Store::connect(place).await?;
            let objects = store.list().await?;
            report(&store, &objects);
            let mut objects = objects;
            objects.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
            Ok(objects.iter().flat_map(lines_of).collect())
        };
        tokio::time::timeout(BOUND, work).await.unwrap_or_else(|_| {
            Err(format!(
                "the journal {place} did not answer within {} s",
                BOUND.as_secs()
            ))
        })
    })
}

/// Connects, checks that this user may keep the journal, reports the windows left open,
/// and starts the journal's thread; all before anything is paused.
pub(super) fn open(
    place: &Place,
    keep: usize,
    bound: Duration,
    run: &str,
    jobs: mpsc::UnboundedReceiver<Job>,
) -> Result<(), String> {
    let (ready, started) = std::sync::mpsc::channel();
    let (place, run) = (place.clone(), run.to_owned());
    let name = place.to_string();
    std::thread::Builder::new()
        .name("journal".to_owned())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = ready.send(Err(format!("cannot start the journal's runtime: {e}")));
                    return;
                }
            };
            runtime.block_on(async move {
                let writer = async {
                    let store = Store::connect(&place).await?;
                    store.check_access().await?;
                    report(&store, &store.list().await?);
                    Ok::<_, String>(store)
                };
                let store = match tokio::time::timeout(BOUND, writer).await {
                    Ok(Ok(store)) => store,
                    Ok(Err(e)) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                    Err(_) => {
                        let _ = ready.send(Err(format!(
                            "the journal {place} did not answer within {} s",
                            BOUND.as_secs()
                        )));
                        return;
                    }
                };
                let _ = ready.send(Ok(()));
                Writer {
                    store,
                    keep,
                    bound,
                    run,
                }
                .serve(jobs)
                .await;
            });
        })
        .map_err(|e| format!("cannot start the journal's thread: {e}"))?;
    match started.recv_timeout(BOUND + Duration::from_secs(1)) {
        Ok(result) => result,
        Err(_) => Err(format!(
            "the journal {name} did not answer within {} s",
            BOUND.as_secs()
        )),
    }
}

/// The journal thread's state.
struct Writer {
    store: Store,
    keep: usize,
    bound: Duration,
    run: String,
}

impl Writer {
    async fn serve(mut self, mut jobs: mpsc::UnboundedReceiver<Job>) {
        while let Some(job) = jobs.recv().await {
            match job {
                Job::Append { entries, done, .. } => {
                    let mut result = Ok(());
                    for entry in entries {
                        if let Err(e) = self.write(entry).await {
                            result = Err(e);
                        }
                    }
                    let _ = done.send(result);
                }
                Job::Finish(done) => {
                    let _ = done.send(self.trim().await);
                }
            }
        }
    }

    /// Creates the object of an "open" entry, or adds a "close" entry to its object.
    async fn write(&mut self, entry: Value) -> Result<(), String> {
        let attempt = entry.get("attempt").and_then(Value::as_u64).unwrap_or(0);
        let name = object_name(&self.run, attempt);
        let opens = entry.get("event").and_then(Value::as_str) == Some("open");
        let err = |e: &kube::Error| {
            format!(
                "cannot write to the journal {} (configmap {name}): {}",
                self.store.name(),
                one_line(e)
            )
        };
        if opens {
            let object = self.opened(&name, entry);
            self.store
                .api
                .create(&PostParams::default(), &object)
                .await
                .map_err(|e| err(&e))?;
            return Ok(());
        }
        // A close: onto the object as read, replaced only at the resourceVersion read
        // (someone may label it meanwhile); read again on a conflict.
        for _ in 0..3 {
            let object = self.store.api.get_opt(&name).await.map_err(|e| err(&e))?;
            let result = match object {
                Some(mut object) => {
                    closed(&mut object, &entry);
                    self.store
                        .api
                        .replace(&name, &PostParams::default(), &object)
                        .await
                }
                // Never opened here (its open failed), or deleted since: the close alone.
                None => {
                    let mut object = self.opened(&name, Value::Null);
                    closed(&mut object, &entry);
                    self.store.api.create(&PostParams::default(), &object).await
                }
            };
            match result {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(status)) if status.is_conflict() => {}
                Err(e) => return Err(err(&e)),
            }
        }
        Err(format!(
            "cannot write to the journal {} (configmap {name}): it kept changing under this run",
            self.store.name()
        ))
    }

    /// A window's object as it opens (`open`: its entry, null for none).
    fn opened(&self, name: &str, mut open: Value) -> ConfigMap {
        let start = open.get("pause_completed_at_us").and_then(Value::as_i64);
        let mut labels = BTreeMap::from([
            (
                "app.kubernetes.io/managed-by".to_owned(),
                "scalar-admin".to_owned(),
            ),
            (
                "app.kubernetes.io/component".to_owned(),
                "backup-window".to_owned(),
            ),
            (VERDICT.to_owned(), "OPEN".to_owned()),
        ]);
        if let Some(start) = start.and_then(label_instant) {
            labels.insert(WINDOW_START.to_owned(), start);
        }
        let mut annotations = BTreeMap::new();
        if let Some(start) = start {
            let start = SystemTime::UNIX_EPOCH
                + Duration::from_micros(u64::try_from(start).unwrap_or_default());
            annotations.insert(HELD_UNTIL.to_owned(), rfc3339(start + self.bound));
        }
        let mut data = BTreeMap::new();
        if let Some(open) = open.as_object_mut() {
            // The count and the digest stand for the list: a thousand names would make
            // every object, and every HISTORY, large.
            open.remove("pods");
            data.insert("open".to_owned(), Value::Object(open.clone()).to_string());
        }
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                labels: Some(labels),
                annotations: Some(annotations),
                ..ObjectMeta::default()
            },
            data: Some(data),
            ..ConfigMap::default()
        }
    }

    /// Keeps the last `keep` windows, and those a live run may still hold; deletes the
    /// others, each only as last seen.
    async fn trim(&mut self) -> Result<(), String> {
        let mut objects = self.store.list().await?;
        let now = jiff::Timestamp::now();
        // Newest first, by the window's start (the name when it has none).
        let start = |o: &ConfigMap| {
            o.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(WINDOW_START).cloned())
                .unwrap_or_default()
        };
        objects.sort_by(|a, b| {
            start(b)
                .cmp(&start(a))
                .then(b.metadata.name.cmp(&a.metadata.name))
        });
        let mut failed = None;
        for object in objects.iter().skip(self.keep) {
            if maybe_held(object, now) {
                continue;
            }
            let (Some(name), Some(version)) =
                (&object.metadata.name, &object.metadata.resource_version)
            else {
                continue;
            };
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    resource_version: Some(version.clone()),
                    uid: None,
                }),
                ..DeleteParams::default()
            };
            match self.store.api.delete(name, &params).await {
                Ok(_) => {}
                // Deleted by another run's trim, or changed since: the next trim decides.
                Err(kube::Error::Api(status)) if status.is_not_found() || status.is_conflict() => {}
                Err(e) => {
                    failed = Some(format!(
                        "cannot trim the journal {} (configmap {name}): {}",
                        self.store.name(),
                        one_line(&e)
                    ));
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }
}

/// The reasons a window's object keeps: a window over a thousand pods that all changed
/// would otherwise name each of them, and an object holds at most 1 MiB.
const REASONS_KEPT: usize = 20;

/// Adds a "close" entry to a window's object: its verdict and restore point as labels.
fn closed(object: &mut ConfigMap, close: &Value) {
    let mut close = close.clone();
    if let Some(reasons) = close.get_mut("reasons").and_then(Value::as_array_mut)
        && reasons.len() > REASONS_KEPT
    {
        let more = reasons.len() - REASONS_KEPT;
        reasons.truncate(REASONS_KEPT);
        reasons.push(Value::String(format!("and {more} more")));
    }
    let close = &close;
    let labels = object.metadata.labels.get_or_insert_with(BTreeMap::new);
    let verdict = close
        .get("verdict")
        .and_then(Value::as_str)
        .unwrap_or("FAILED");
    labels.insert(VERDICT.to_owned(), verdict.to_owned());
    if let Some(point) = close
        .get("midpoint_us")
        .and_then(Value::as_i64)
        .and_then(label_instant)
    {
        labels.insert(RESTORE_POINT.to_owned(), point);
    }
    object
        .data
        .get_or_insert_with(BTreeMap::new)
        .insert("close".to_owned(), close.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_label_values() {
        assert_eq!(
            label_instant(1_764_817_205_123_456).as_deref(),
            Some("20251204T030005.123456Z")
        );
        assert_eq!(
            label_instant(-1).as_deref(),
            Some("19691231T235959.999999Z")
        );
    }

    #[test]
    fn a_namespace_is_checked_as_kubernetes_names_it() {
        assert!(Place::new("ns-scalar", None, None).is_ok());
        assert!(Place::new("", None, None).is_ok());
        for bad in ["NS", "-ns", "ns-", "a/b", &"x".repeat(64)] {
            assert!(Place::new(bad, None, None).is_err(), "{bad}");
        }
    }
}
