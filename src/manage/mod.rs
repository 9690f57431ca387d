//! What people change in an organization, with the rules both doors apply: the JSON API
//! (`crate::api`) and the dashboard (`crate::web`) parse their input (JSON bodies, HTML forms)
//! into the plain values these functions take, and render what they return. Each function
//! checks the caller's `Access`, validates (errors name the field as the API spells it),
//! writes through the queries of `crate::db` and invalidates what caches the change, so a rule
//! lives here once and neither door can skip it.

pub mod members;
pub mod messages;
pub mod projects;
pub mod providers;
pub mod sending;
pub mod suppressions;
pub mod templates;
pub mod webhook_endpoints;
