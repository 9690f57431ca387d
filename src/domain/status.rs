//! The statuses of a message's life cycle (docs/architecture.md, "Message life cycle"), as they
//! are stored, shown in the API and named in webhook events.

pub const RECEIVED: &str = "received";
pub const QUEUED: &str = "queued";
pub const PROCESSING: &str = "processing";
pub const RETRYING: &str = "retrying";
pub const SENT: &str = "sent";
pub const DELIVERED: &str = "delivered";
pub const FAILED: &str = "failed";
pub const CANCELED: &str = "canceled";

pub const STATUSES: &[&str] =
    &[RECEIVED, QUEUED, PROCESSING, RETRYING, SENT, DELIVERED, FAILED, CANCELED];
/// The statuses a message ends in (it may still move from `sent` on a receipt).
pub const FINAL: &[&str] = &[SENT, DELIVERED, FAILED, CANCELED];
