//! Support for the pod tests: real third-party servers and the store conformance suite.
#![allow(dead_code)]

pub mod conformance;
pub mod servers;
