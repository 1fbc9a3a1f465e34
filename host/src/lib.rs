//! vpcrouter: keeps AWS VPC route tables pointing at healthy router
//! instances; every integration point is a sandboxed WebAssembly plugin.

pub mod aws;
pub mod cli;
pub mod cloud;
pub mod cloudwatch;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod dry_run;
pub mod events;
pub mod failure;
pub mod front;
pub mod ha;
pub mod health;
pub mod http;
pub mod http_client;
pub mod lifecycle;
pub mod logging;
pub mod manuals;
pub mod metrics;
pub mod notify;
pub mod plugin;
pub mod probe;
pub mod read;
pub mod reconcile;
pub mod remote;
pub mod scaffold;
pub mod selector;
pub mod spec;
pub mod spec_store;
pub mod text;
pub mod tool;
