//! Where batches go. A sink delivers one batch or says why not; the
//! deadline and the retries are the caller's.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

use super::Batch;

pub type Delivery<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

pub trait Sink: Send + Sync + 'static {
    /// As logs and metrics name it: `webhook`, `sns:arn:...`.
    fn name(&self) -> String;
    fn deliver(&self, batch: Arc<Batch>) -> Delivery<'_>;
}

/// A batch for a notifier plugin and where its outcome goes.
pub struct NotifyCall {
    pub batch: Arc<Batch>,
    pub done: oneshot::Sender<Result<(), String>>,
}

/// A notifier plugin, served by its supervisor (which restarts it): a
/// batch is handed over and its outcome awaited.
pub struct PluginSink {
    pub name: String,
    pub calls: mpsc::Sender<NotifyCall>,
}

impl Sink for PluginSink {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn deliver(&self, batch: Arc<Batch>) -> Delivery<'_> {
        Box::pin(async move {
            let (done, outcome) = oneshot::channel();
            self.calls
                .send(NotifyCall { batch, done })
                .await
                .map_err(|_| "the plugin has stopped".to_string())?;
            outcome
                .await
                .map_err(|_| "the plugin was restarted during the call".to_string())?
        })
    }
}
