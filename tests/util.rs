//! Helpers shared by the test modules.

use std::future::Future;
use std::sync::Once;
use std::time::Duration;

/// Every test body runs under this limit, so a hang fails the test instead of CI.
pub(crate) const TEST_LIMIT: Duration = Duration::from_secs(60);

/// Runs a test body with a time limit, after installing test tracing once.
pub(crate) async fn bounded<T>(body: impl Future<Output = T>) -> T {
    subscribe();
    tokio::time::timeout(TEST_LIMIT, body)
        .await
        .expect("test exceeded its time limit")
}

/// Installs a tracing subscriber writing through the test harness, once per process.
pub(crate) fn subscribe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
    });
}
