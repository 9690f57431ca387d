//! The domain: what RelayIt's words mean, independent of how a request arrives (HTTP, the
//! command line) or where it is kept. Channels, message statuses, provider types and their
//! settings, AWS names, message content and recipient rules, ids, slugs and validation errors. It imports nothing of HTTP,
//! the database or the queue; everything else builds on it.

pub mod aws;
pub mod channel;
pub mod content;
pub mod ids;
pub mod provider_fields;
pub mod provider_types;
pub mod recipient;
pub mod schema;
pub mod slug;
pub mod status;
pub mod suppression;
pub mod template;
pub mod validate;
