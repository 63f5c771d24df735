//! `--journal k8s:[NAMESPACE][/NAME]`: the windows kept in the cluster, where the CronJob
//! that makes them has no writable disk, one ConfigMap per window attempt.
//!
//! # The objects
//!
//! `scalar-admin-{name}-{run}-{attempt}`, labelled `app.kubernetes.io/managed-by:
//! scalar-admin`, `app.kubernetes.io/component: backup-window` ([`SELECTOR`]) and
//! `scalar-admin/journal: {name}` (two products backed up apart keep two journals in one
//! namespace), so that `kubectl get configmaps -l ... -L scalar-admin/verdict -L
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
const JOURNAL: &str = "scalar-admin/journal";
const WINDOW_START: &str = "scalar-admin/window-start";
const RESTORE_POINT: &str = "scalar-admin/restore-point";
const HELD_UNTIL: &str = "scalar-admin/held-until";
/// What the journal does with ConfigMaps, each checked before anything is paused.
const VERBS: [&str; 5] = ["create", "get", "list", "update", "delete"];

/// The journal of `k8s:NS` without `/NAME`.
const DEFAULT_JOURNAL: &str = "default";

/// A journal in a namespace of a cluster, and how to reach it.
#[derive(Debug, Clone)]
pub(crate) struct Place {
    /// As given, after `k8s:`.
    given: String,
    /// None: the kubeconfig context's namespace, or inside a pod its own.
    namespace: Option<String>,
    /// Which journal of the namespace: the windows of two CronJobs (two products that
    /// are backed up apart) must not pass for each other's restore points.
    journal: String,
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
}

/// Whether `name` is a DNS label of at most `max` characters, as namespaces are.
fn is_label(name: &str, max: usize) -> bool {
    name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

impl Place {
    /// `[NAMESPACE][/NAME]`.
    pub(super) fn new(
        given: &str,
        kubeconfig: Option<&Path>,
        context: Option<&str>,
    ) -> Result<Place, String> {
        let (namespace, journal) = match given.split_once('/') {
            Some((namespace, journal)) => (namespace, journal),
            None => (given, DEFAULT_JOURNAL),
        };
        if !is_label(namespace, 63) {
            return Err(format!(
                "k8s:{given}: {namespace:?} is not a namespace name (lowercase letters, digits \
                 and '-')"
            ));
        }
        // It goes into object names and a label value.
        if journal.is_empty() || !is_label(journal, 40) {
            return Err(format!(
                "k8s:{given}: {journal:?} is not a journal name (1 to 40 lowercase letters, \
                 digits and '-')"
            ));
        }
        Ok(Place {
            given: given.to_owned(),
            namespace: (!namespace.is_empty()).then(|| namespace.to_owned()),
            journal: journal.to_owned(),
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
        write!(f, "{SCHEME}{}", self.given)
    }
}

/// The API, the namespace and the journal, once connected.
struct Store {
    client: Client,
    api: Api<ConfigMap>,
    namespace: String,
    journal: String,
    /// As given, for messages.
    name: String,
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
            journal: place.journal.clone(),
            name: place.to_string(),
        })
    }

    fn name(&self) -> &str {
        &self.name
    }

    /// This journal's objects; `open`: only the windows not closed.
    fn selector(&self, open: bool) -> String {
        let mut selector = format!("{SELECTOR},{JOURNAL}={}", self.journal);
        if open {
            selector.push_str(&format!(",{VERDICT}=OPEN"));
        }
        selector
    }

    /// The object of one window attempt.
    fn object_name(&self, run: &str, attempt: u64) -> String {
        format!("scalar-admin-{}-{run}-{attempt}", self.journal)
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

    /// Every window object of this journal (`open`: those not closed), in pages.
    async fn list(&self, open: bool) -> Result<Vec<ConfigMap>, String> {
        let selector = self.selector(open);
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut params = ListParams::default().labels(&selector).limit(250);
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

/// The journal's two entries of one object, as the file journal's lines (none for an
/// object that holds no entry).
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

/// When a window's pause completed, in microseconds: from its entries, else when its
/// object was made.
fn start_us(object: &ConfigMap) -> i64 {
    lines_of(object)
        .iter()
        .find_map(|l| l.value.get("pause_completed_at_us").and_then(Value::as_i64))
        .or_else(|| {
            let made = object.metadata.creation_timestamp.as_ref()?;
            Some(made.0.as_microsecond())
        })
        .unwrap_or(0)
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

/// Reads every window's entries, each object parsed once, and says on stderr which
/// objects hold none and which windows were left open: `-c HISTORY`, and a WINDOW
/// before it pauses anything.
fn report(store: &Store, objects: &[ConfigMap]) -> Vec<Line> {
    let now = jiff::Timestamp::now();
    let journal = store.name();
    let mut all = Vec::new();
    for object in objects {
        let name = object.metadata.name.as_deref().unwrap_or("?");
        let lines = lines_of(object);
        if lines.is_empty() {
            tell!("warning: journal {journal} configmap {name}: not a journal entry, skipped");
            continue;
        }
        if is_open(object) {
            let at = lines
                .iter()
                .find_map(|l| l.value.get("pause_completed_at").and_then(Value::as_str))
                .unwrap_or("?");
            match held_until(object) {
                Some(until) if now <= until => tell!(
                    "note: journal {journal} configmap {name}: the window opened at {at} is \
                     still open: the run that opened it may hold it until {until}"
                ),
                _ => tell!(
                    "warning: journal {journal} configmap {name}: the window opened at {at} \
                     was never closed: the tool died during it; its pods may have been left \
                     paused, and it is no restore point"
                ),
            }
        }
        all.extend(lines);
    }
    all
}

/// How long HISTORY waits for the whole journal: up to [`MAX_RETAINED`] objects.
const READ_BOUND: Duration = Duration::from_secs(60);
/// The most windows `--journal-retain` keeps in the cluster: a journal HISTORY reads in
/// [`READ_BOUND`].
pub(crate) const MAX_RETAINED: usize = 1000;

/// `-c HISTORY`'s reading of the cluster, on a runtime of its own that is left behind,
/// not waited for, should a credential plugin hang.
pub(super) fn read(place: &Place) -> Result<Vec<Line>, String> {
    let runtime =
        crate::runtime::Background::start().ok_or_else(|| "cannot start the runtime".to_owned())?;
    runtime.block_on(async {
        let work = async {
            let store = Store::connect(place).await?;
            Ok(report(&store, &store.list(false).await?))
        };
        tokio::time::timeout(READ_BOUND, work)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "the journal {place} did not answer within {} s",
                    READ_BOUND.as_secs()
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
            let Some(runtime) = crate::runtime::Background::start() else {
                let _ = ready.send(Err("cannot start the journal's runtime".to_owned()));
                return;
            };
            runtime.block_on(async move {
                let writer = async {
                    let store = Store::connect(&place).await?;
                    store.check_access().await?;
                    // Only the windows left open: a WINDOW must not wait on the whole
                    // history.
                    report(&store, &store.list(true).await?);
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
        let name = self.store.object_name(&self.run, attempt);
        let opens = entry.get("event").and_then(Value::as_str) == Some("open");
        let err = |e: &kube::Error| {
            format!(
                "cannot write to the journal {} (configmap {name}): {}",
                self.store.name(),
                one_line(e)
            )
        };
        if opens {
            let object = self.opened(&name, Some(entry));
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
                    let mut object = self.opened(&name, None);
                    closed(&mut object, &entry);
                    self.store.api.create(&PostParams::default(), &object).await
                }
            };
            match result {
                Ok(_) => return Ok(()),
                // Changed since it was read, or made meanwhile (an open whose request
                // timed out, stored late): read it again.
                Err(kube::Error::Api(status))
                    if status.is_conflict() || status.is_already_exists() => {}
                Err(e) => return Err(err(&e)),
            }
        }
        Err(format!(
            "cannot write to the journal {} (configmap {name}): it kept changing under this run",
            self.store.name()
        ))
    }

    /// A window's object as it opens, with its "open" entry if it has one.
    fn opened(&self, name: &str, open: Option<Value>) -> ConfigMap {
        let start = open
            .as_ref()
            .and_then(|o| o.get("pause_completed_at_us"))
            .and_then(Value::as_i64);
        let mut labels = BTreeMap::from([
            (
                "app.kubernetes.io/managed-by".to_owned(),
                "scalar-admin".to_owned(),
            ),
            (
                "app.kubernetes.io/component".to_owned(),
                "backup-window".to_owned(),
            ),
            (JOURNAL.to_owned(), self.store.journal.clone()),
            (VERDICT.to_owned(), "OPEN".to_owned()),
        ]);
        if let Some(start) = start.and_then(label_instant) {
            labels.insert(WINDOW_START.to_owned(), start);
        }
        let mut annotations = BTreeMap::new();
        if let Some(start) = start {
            // A bound past what a timestamp holds (a `--max-hold` of centuries): the
            // window is never taken as left by a dead run.
            let until = u64::try_from(start)
                .ok()
                .and_then(|start| SystemTime::UNIX_EPOCH.checked_add(Duration::from_micros(start)))
                .and_then(|start| start.checked_add(self.bound))
                .and_then(|until| jiff::Timestamp::try_from(until).ok())
                .unwrap_or(jiff::Timestamp::MAX);
            annotations.insert(HELD_UNTIL.to_owned(), until.to_string());
        }
        let mut data = BTreeMap::new();
        if let Some(Value::Object(mut open)) = open {
            // The count and the digest stand for the list: a thousand names would make
            // every object, and every HISTORY, large.
            open.remove("pods");
            data.insert("open".to_owned(), Value::Object(open).to_string());
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
        let objects = self.store.list(false).await?;
        let now = jiff::Timestamp::now();
        // Newest first, by the window's start (then the name).
        let mut objects: Vec<(i64, ConfigMap)> =
            objects.into_iter().map(|o| (start_us(&o), o)).collect();
        objects.sort_by(|(a, x), (b, y)| b.cmp(a).then(y.metadata.name.cmp(&x.metadata.name)));
        let objects: Vec<ConfigMap> = objects.into_iter().map(|(_, o)| o).collect();
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
    let instant = |key: &str| {
        close
            .get(key)
            .and_then(Value::as_i64)
            .and_then(label_instant)
    };
    // The start again: an object made by its close alone has no "open" entry.
    if let Some(start) = instant("pause_completed_at_us") {
        labels.insert(WINDOW_START.to_owned(), start);
    }
    // Only a VALID window is a restore point.
    if verdict == "VALID"
        && let Some(point) = instant("midpoint_us")
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
        for good in ["ns-scalar", "", "ns-scalar/ledger", "/ledger"] {
            assert!(Place::new(good, None, None).is_ok(), "{good}");
        }
        let long_name = format!("ns/{}", "x".repeat(41));
        for bad in [
            "NS",
            "-ns",
            "ns-",
            "ns/",
            "ns/Ledger",
            "ns/a/b",
            &"x".repeat(64),
            &long_name,
        ] {
            assert!(Place::new(bad, None, None).is_err(), "{bad}");
        }
    }
}
