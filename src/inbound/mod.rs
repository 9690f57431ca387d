//! What providers report back after accepting a message (delivery receipts), received over
//! HTTP by `crate::api::inbound_ses`:
//!
//! - `sns`: Amazon SNS's HTTP subscriptions (signature checks, subscription confirmation);
//! - `ses`: the SES events they carry, and the status change each means.

pub mod ses;
pub mod sns;
