//! What providers report back after accepting a message (delivery receipts), wherever it comes
//! from; `crate::api::inbound` only routes their HTTP requests here and answers.
//!
//! - `sns`: Amazon SNS's HTTP subscriptions (signature checks, subscription confirmation);
//! - `ses`: the SES events they carry, and the status change each means;
//! - `whatsapp`: the WhatsApp Cloud API's webhook (the set-up handshake, signed status updates).
//!
//! None of these requests carries our authentication: the provider's signature (SNS) or the
//! credential's own secret (WhatsApp) is the proof, and a request without it changes nothing.

pub mod ses;
pub mod sns;
pub mod whatsapp;

use diesel_async::pooled_connection::deadpool::PoolError;

/// Why a callback was not taken; the API answers each with its own status.
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    /// No credential of the right type has this id.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The body is not what the provider sends.
    #[error("{0}")]
    Malformed(String),
    /// A parameter is missing or wrong (the field, the message).
    #[error("{0}: {1}")]
    Invalid(&'static str, String),
    /// The request does not prove it comes from the provider.
    #[error("{0}")]
    Unauthenticated(String),
    /// The credential does not allow it, or the provider's signature does not hold.
    #[error("{0}")]
    Refused(String),
    /// Something the callback needs is unreachable; the provider retries later.
    #[error("{0}")]
    Unavailable(String),
    /// A stored credential that does not open or parse: ours to fix, not the caller's.
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
}
