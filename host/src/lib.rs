//! Luminary: the daemon, its protocol, the photo pipeline and the CLI.
//!
//! See docs/ARCHITECTURE.md for the code map and the invariants.

// Pixel and matrix code indexes several arrays by one channel or tap; iterators zipped
// three ways read worse and hide which index is which.
#![allow(clippy::needless_range_loop)]

pub mod bench;
pub mod budget;
pub mod cache;
pub mod cli;
pub mod cli_args;
pub mod cli_cost;
pub mod cli_look;
pub mod client;
pub mod color;
pub mod config;
pub mod display;
pub mod engine;
pub mod error;
pub mod frame;
pub mod image;
pub mod ingest;
pub mod install;
pub mod journal;
pub mod ledger;
pub mod lifetime;
pub mod look;
pub mod matte;
pub mod memory;
pub mod metadata;
pub mod paths;
pub mod pipeline;
pub mod plugin_check;
pub mod plugins;
pub mod process;
pub mod protocol;
pub mod resample;
pub mod server;
pub mod sheet;
pub mod shm;
pub mod simd;
pub mod spawn;
pub mod transfer;
pub mod transport;
