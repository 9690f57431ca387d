//! RelayIt: one HTTP endpoint to notify users by email, SMS, WhatsApp and Discord, through each
//! tenant's own provider credentials.
//!
//! The binary (`src/main.rs`) only calls [`cli::main`]; everything lives in this library so the
//! integration tests drive the same code in-process.

pub mod admin;
pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod db;
pub mod delivery;
pub mod domain;
pub mod error;
pub mod inbound;
pub mod ingest;
pub mod manage;
pub mod metrics;
pub mod providers;
pub mod queue;
pub mod runtime;
pub mod server;
pub mod ssrf;
pub mod state;
pub mod telemetry;
pub mod unsubscribe;
pub mod web;
pub mod webhooks;
