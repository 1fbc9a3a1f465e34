//! Serving a notifier: each batch handed over through its role is passed
//! to the plugin, and the outcome goes back to the sink's task (which
//! holds the deadline and the retries).

use std::time::Instant;
use tokio::sync::mpsc;

use super::inputs::{Inputs, Reload, stopped};
use super::run::{Ended, Supervisor, record_call};
use crate::notify::{Batch, NotifyCall};
use crate::plugin::bindings::{Notice, NotifierBatch};
use crate::plugin::instance::{CallError, PluginInstance};

impl Supervisor {
    /// Pass each batch on as it comes, until shutdown, a fault or a reload.
    pub(super) async fn serve_notify(
        &self,
        instance: &mut PluginInstance,
        inputs: &mut Inputs,
        calls: &tokio::sync::Mutex<mpsc::Receiver<NotifyCall>>,
    ) -> Ended {
        let plugin = self.factory.plugin();
        let mut calls = calls.lock().await;
        loop {
            inputs.apply(plugin, instance).await;
            let call = tokio::select! {
                _ = stopped(&mut inputs.shutdown) => return Ended::Shutdown,
                Some(call) = calls.recv() => call,
                Some(reload) = inputs.reloads.recv() => match reload {
                    Reload::Swap(new) => return Ended::Swapped(new),
                    Reload::Failed(why) => {
                        self.reload_failed(why);
                        continue;
                    }
                },
            };
            let batch = as_passed(&call.batch);
            let started = Instant::now();
            let notifying = instance.notify(&batch);
            let sent = match self.unless_swapped(&mut inputs.reloads, notifying).await {
                Ok(sent) => sent,
                Err(new) => {
                    let _ = call
                        .done
                        .send(Err("the plugin was reloaded meanwhile".into()));
                    return Ended::Swapped(new);
                }
            };
            record_call(plugin, "notify", &sent, started);
            match sent {
                Ok(()) => {
                    let _ = call.done.send(Ok(()));
                }
                Err(CallError::Plugin(why)) => {
                    let _ = call.done.send(Err(why));
                }
                Err(fault) => {
                    let _ = call.done.send(Err(fault.to_string()));
                    return Ended::Fault(fault);
                }
            }
        }
    }
}

/// A batch as the WIT hands it over.
fn as_passed(batch: &Batch) -> NotifierBatch {
    NotifierBatch {
        notices: (batch.notices.iter())
            .map(|event| Notice {
                kind: event.kind.name().to_string(),
                at: event.at.clone(),
                subject: event.subject.clone(),
                reason: event.reason.clone(),
            })
            .collect(),
        dropped: batch.dropped,
        json: batch.json(),
    }
}
