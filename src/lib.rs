//! Footfall: self-hosted, privacy-friendly web analytics in one binary.
//! See ARCHITECTURE.md for the map of modules and the rules between them.

pub mod admin;
pub mod cli;
pub mod config;
pub mod coordination;
pub mod domain;
pub mod identity;
pub mod import;
pub mod jobs;
pub mod ingest;
pub mod metrics;
pub mod query;
pub mod sites;
pub mod startup;
pub mod storage;
pub mod tracker;
pub mod visits;
pub mod web;
pub mod writer;
