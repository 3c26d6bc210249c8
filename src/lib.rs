//! boxr: a daemonless container build-and-run tool. See ARCHITECTURE in the book for the map.
#![deny(unsafe_code)]

pub mod builder;
pub mod cli;
pub mod container;
pub mod digest;
#[doc(hidden)]
pub mod fuzzing;
pub mod ignore;
pub mod layer;
pub mod manifest;
pub mod net;
pub mod oci;
pub mod plan;
pub mod platform;
pub mod reference;
pub mod registry;
pub mod rootless;
pub mod sandbox;
pub mod stack;
pub mod store;
pub mod time;
pub mod values;
