//! The provider connectors: how a message reaches each provider with one tenant credential, and
//! how a credential is verified. Used by the delivery worker and by the API's `/verify`.
//!
//! - `connector`: what a connector is ([`connector::Connector`]), the classification of every
//!   way a provider call can fail, and the [`connector::Registry`] that picks one per type;
//! - `ses`, `sns`, `smtp`, `whatsapp`, `discord`, `sandbox`: the connectors; `aws` is what SES
//!   and SNS share (SDK clients, error classification), `client_cache` keeps every connector's
//!   per-credential clients;
//! - `credentials`: sealing and opening the credentials stored for them.
//!
//! What a provider type accepts (its channel, credentials and config) is domain knowledge, in
//! `crate::domain::provider_types`.

pub mod aws;
pub mod client_cache;
pub mod connector;
pub mod credentials;
pub mod discord;
pub mod sandbox;
pub mod ses;
pub mod smtp;
pub mod sns;
pub mod whatsapp;
