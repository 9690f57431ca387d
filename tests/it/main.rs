//! The integration tests, one binary: a module per area of the service, and `harness`, which gives
//! each test its own PostgreSQL database and Redis key prefix so that they run in parallel against
//! the real services.

mod harness;

mod api_keys;
mod auth;
mod aws;
mod browser;
mod cli;
mod cluster;
mod connector_logs;
mod dashboard;
mod delivery;
mod discord;
mod docs;
mod faults;
mod http;
mod isolation;
mod layers;
mod load;
mod messages;
mod migrations;
mod oauth;
mod organizations;
mod passkeys;
mod postgres_scaling;
mod projects;
mod providers;
mod readiness;
mod retention;
mod send;
mod smtp;
mod suppressions;
mod templates;
mod unsubscribe;
mod webhook_endpoints;
mod webhooks;
mod whatsapp;
