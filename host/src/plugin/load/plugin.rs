//! A plugin file loaded (described, not yet configured) and configured
//! (options checked, grants resolved, initialised once).

use std::path::PathBuf;
use std::sync::Arc;

use super::super::bindings::{PluginInfo, PluginKind};
use super::super::compile::Tier;
use super::super::engine::Compiled;
use super::super::grants::{self, Grants, Trust};
use super::super::instance::{CallError, InstanceFactory, PluginInstance};
use super::error::LoadError;
use crate::text::clip;

/// A loaded and validated plugin that has described itself.
pub struct LoadedPlugin {
    pub path: PathBuf,
    pub kind: PluginKind,
    pub info: PluginInfo,
    pub origin: Origin,
    pub(super) factory: InstanceFactory,
}

/// Where a plugin comes from: what the daemon knows of the file.
#[derive(Debug, Clone)]
pub struct Origin {
    /// SHA-256 of the file, hex.
    pub digest: String,
    pub trust: Trust,
    /// The contract version it was built against, e.g. `0.1.0`.
    pub wit_version: String,
    /// The toolchain, from the component's producers section.
    pub producer: Option<String>,
    /// How its code was had: from the compile cache, or compiled (and how
    /// long it took), and what went wrong with the cache on the way.
    pub compiled: CompileReport,
}

/// How a plugin's code was had, as the daemon reports it.
#[derive(Debug, Clone, Default)]
pub struct CompileReport {
    /// Quick until a background compile's optimised code is swapped in.
    pub tier: Tier,
    pub from_cache: bool,
    pub took: std::time::Duration,
    pub problems: Vec<String>,
}

impl CompileReport {
    pub(super) fn of(compiled: &Compiled) -> Self {
        Self {
            tier: compiled.tier,
            from_cache: compiled.from_cache,
            took: compiled.took,
            problems: compiled.problems.clone(),
        }
    }

    /// Say it in the log: a line, and a warning per problem.
    pub fn log(&self, plugin: &str) {
        let took_ms = self.took.as_millis() as u64;
        let code = self.tier.name();
        match self.from_cache {
            true => tracing::info!(
                plugin,
                took_ms,
                code,
                "plugin code loaded from the compile cache"
            ),
            false => tracing::info!(plugin, took_ms, code, "plugin compiled"),
        }
        for problem in &self.problems {
            tracing::warn!(plugin, "{problem}");
        }
    }
}

impl LoadedPlugin {
    pub fn factory(&self) -> &InstanceFactory {
        &self.factory
    }

    /// The declaration as the operator sees it in `--help`: a third-party
    /// plugin's grant options have no default (it would not be granted).
    pub fn info_for_help(&self) -> PluginInfo {
        let mut info = self.info.clone();
        if self.origin.trust == Trust::ThirdParty {
            for option in info.options.iter_mut().filter(|o| grants::is_grant(o.kind)) {
                if let Some(default) = option.default.take() {
                    let shown = clip(&default, 256);
                    option.help = format!(
                        "{} [its default {shown:?} is not granted: give it]",
                        option.help
                    );
                }
            }
        }
        info
    }

    /// Check the operator's options against the plugin's declaration, fill
    /// in defaults, work out the grants (see [`grants::resolve`]), and run
    /// the plugin's own `init` on them. Returns the instance, ready to run.
    pub async fn configure(
        mut self,
        given: &[(String, String)],
    ) -> Result<ConfiguredPlugin, LoadError> {
        let mut resolved = grants::resolve(&self.info, given, &self.origin.trust)?;
        if self.kind == PluginKind::HealthCheck {
            resolved.grants.grant_probes(self.factory.accepted.clone());
        }
        let grants = Arc::new(resolved.grants);
        self.factory.grants = grants.clone();
        let mut instance = self.factory.instantiate().await?;
        instance
            .init(&resolved.options)
            .await
            .map_err(|e| match e {
                CallError::Plugin(problem) => LoadError::InitRefused(problem),
                other => other.into(),
            })?;
        Ok(ConfiguredPlugin {
            path: self.path,
            kind: self.kind,
            info: self.info,
            origin: self.origin,
            options: resolved.options,
            grants,
            withheld: resolved.withheld,
            factory: self.factory,
            instance,
        })
    }
}

/// A plugin with its options checked and granted, initialised once.
pub struct ConfiguredPlugin {
    pub path: PathBuf,
    pub kind: PluginKind,
    pub info: PluginInfo,
    pub origin: Origin,
    pub options: Vec<(String, String)>,
    pub grants: Arc<Grants>,
    /// Defaults of grant options that were not applied: (option, default).
    pub withheld: Vec<(String, String)>,
    pub factory: InstanceFactory,
    pub instance: PluginInstance,
}

impl ConfiguredPlugin {
    /// Say how its code was had and what it may touch, on whose word: at
    /// start and at every reload alike.
    pub fn announce(&self) {
        let name = &self.info.name;
        self.origin.compiled.log(name);
        let trust = self.origin.trust.describe();
        if self.grants.records.is_empty() {
            tracing::info!(
                plugin = name,
                trust,
                "plugin granted nothing beyond its own sandbox"
            );
        }
        for record in &self.grants.records {
            tracing::info!(
                plugin = name,
                trust,
                grant = record.grant,
                from = record.from,
                "plugin grant"
            );
        }
        for (option, default) in &self.withheld {
            tracing::warn!(
                plugin = name,
                "option --{option}: the default {:?} of a third-party plugin is not granted; give --{option} to grant it",
                clip(default, 256)
            );
        }
    }
}

/// Two loaded plugins that cannot both run.
#[derive(Debug, thiserror::Error)]
#[error("{problem}")]
pub struct IdentityError {
    /// The plugin loaded second.
    pub path: PathBuf,
    pub problem: String,
}

/// Every plugin is known by its name in logs, health reports and views, so
/// names must be unique: a plugin calling itself `tcp` beside the real tcp
/// checker would otherwise speak for it. The name is read once at load; what
/// a plugin reports later is filed under it by the host.
pub fn check_identities(plugins: &[LoadedPlugin]) -> Result<(), IdentityError> {
    for (i, plugin) in plugins.iter().enumerate() {
        if let Some(first) = plugins[..i]
            .iter()
            .find(|p| p.info.name == plugin.info.name)
        {
            return Err(IdentityError {
                path: plugin.path.clone(),
                problem: format!(
                    "calls itself {:?}, as {} does: each plugin runs once. If they are the same \
                     plugin, give it once (drop `-H NAME` or the --health-plugin PATH); if not, \
                     rename one (the name its describe returns)",
                    plugin.info.name,
                    first.path.display()
                ),
            });
        }
    }
    Ok(())
}
