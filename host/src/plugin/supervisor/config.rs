//! Serving a config source: its events (start, timer, changed files) and
//! HTTP requests in turn; the specs it returns go to the spec store.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

use super::inputs::{HttpCall, Inputs, Reload, changed_files, stopped, tick};
use super::run::{Ended, Supervisor, record_call};
use crate::plugin::bindings::{Event, HttpResponse, Route};
use crate::plugin::instance::{CallError, PluginInstance};
use crate::spec_store::SpecStore;

/// What a config source is handed next.
enum Work {
    Event(Event),
    Http(HttpCall),
    Files(BTreeSet<PathBuf>),
}

impl Supervisor {
    /// Deliver events to a config source until shutdown or a fault.
    pub(super) async fn serve_config(
        &self,
        instance: &mut PluginInstance,
        inputs: &mut Inputs,
        specs: &SpecStore,
    ) -> Ended {
        let plugin = self.factory.plugin();
        let mut work = Work::Event(Event::Started);
        loop {
            let done = self.work(instance, specs, work);
            match self.unless_swapped(&mut inputs.reloads, done).await {
                Err(new) => return Ended::Swapped(new),
                Ok(Err(fault)) => return Ended::Fault(fault),
                Ok(Ok(())) => {}
            }
            inputs.apply(plugin, instance).await;
            work = loop {
                tokio::select! {
                    _ = stopped(&mut inputs.shutdown) => return Ended::Shutdown,
                    Some(call) = inputs.http.recv() => break Work::Http(call),
                    Some(paths) = changed_files(&mut inputs.changed) => break Work::Files(paths),
                    _ = tick(&mut inputs.timer) => break Work::Event(Event::Timer),
                    Some(reload) = inputs.reloads.recv() => match reload {
                        Reload::Swap(new) => return Ended::Swapped(new),
                        Reload::Failed(why) => self.reload_failed(why),
                    },
                }
            };
        }
    }

    /// Hand a config source one piece of work.
    async fn work(
        &self,
        instance: &mut PluginInstance,
        specs: &SpecStore,
        work: Work,
    ) -> Result<(), CallError> {
        match work {
            Work::Event(event) => self.deliver(instance, specs, event).await,
            Work::Http(call) => self.handle_http(instance, specs, call).await,
            Work::Files(paths) => {
                for path in paths {
                    let event = Event::FileChanged(path.display().to_string());
                    self.deliver(instance, specs, event).await?;
                }
                Ok(())
            }
        }
    }

    async fn deliver(
        &self,
        instance: &mut PluginInstance,
        specs: &SpecStore,
        event: Event,
    ) -> Result<(), CallError> {
        let plugin = self.factory.plugin();
        tracing::debug!(plugin, ?event, "plugin event");
        let started = Instant::now();
        let delivered = instance.on_event(&event).await;
        record_call(plugin, "on-event", &delivered, started);
        match delivered {
            Ok(Some(routes)) => {
                let details = instance.take_spec_details();
                if let Err(e) = specs.offer_with(plugin, entries(routes), details) {
                    self.shown_error(format!(
                        "rejected route spec, keeping the one in force: {e}"
                    ));
                }
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(CallError::Plugin(reason)) => {
                tracing::warn!(
                    plugin,
                    ?event,
                    "plugin reported an error, the spec in force stays: {reason}"
                );
                self.shown_error(format!(
                    "reported an error, the spec in force stays: {reason}"
                ));
                Ok(())
            }
            Err(fault) => Err(fault),
        }
    }

    async fn handle_http(
        &self,
        instance: &mut PluginInstance,
        specs: &SpecStore,
        call: HttpCall,
    ) -> Result<(), CallError> {
        let plugin = self.factory.plugin();
        // The client gave up (e.g. while the plugin was restarting): a spec
        // it was told failed must not be applied behind its back.
        if call.reply.is_closed() {
            tracing::debug!(plugin, path = %call.request.path, "dropping a request whose client has gone");
            return Ok(());
        }
        let started = Instant::now();
        let handled = instance.handle_http(&call.request).await;
        record_call(plugin, "handle-http", &handled, started);
        let (response, fault) = match handled {
            Ok((response, None)) => (response, None),
            Ok((response, Some(routes))) => {
                match specs.offer_with(plugin, entries(routes), instance.take_spec_details()) {
                    Ok(_) => (response, None),
                    Err(e) => {
                        self.shown_error(format!(
                            "rejected route spec, keeping the one in force: {e}"
                        ));
                        (json_error(400, &format!("invalid route spec: {e}")), None)
                    }
                }
            }
            Err(CallError::Plugin(reason)) => (json_error(500, &reason), None),
            Err(fault) => {
                let message = format!("plugin {plugin} failed ({fault}); it is being restarted");
                (json_error(503, &message), Some(fault))
            }
        };
        let _ = call.reply.send(response);
        fault.map_or(Ok(()), Err)
    }
}

fn entries(routes: Vec<Route>) -> impl Iterator<Item = (String, Vec<String>)> {
    routes.into_iter().map(|r| (r.cidr, r.hosts))
}

fn json_error(status: u16, message: &str) -> HttpResponse {
    HttpResponse {
        status,
        content_type: "application/json".into(),
        body: serde_json::json!({ "error": message })
            .to_string()
            .into_bytes(),
    }
}
