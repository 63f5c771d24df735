//! The one runtime a process of this binary runs: a single thread, shut down without
//! waiting.

/// The runtime, shut down without waiting when dropped, on every way out: connection
/// tasks may linger after the last reply, and a credential plugin that hangs is left
/// behind in its blocking thread; neither may delay the exit.
pub(crate) struct Background(Option<tokio::runtime::Runtime>);

impl Background {
    pub(crate) fn start() -> Option<Background> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()
            .map(|runtime| Background(Some(runtime)))
    }
}

impl std::ops::Deref for Background {
    type Target = tokio::runtime::Runtime;

    fn deref(&self) -> &Self::Target {
        self.0.as_ref().expect("taken only on drop")
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}
