//! End-to-end tests: real `wharf up` processes on loopback, driven by real kubectl (1.37 and
//! 1.20), the official Python client, the kube crate, the `wharf` CLI and raw HTTP.

mod apply;
mod autoscaling;
mod cascade;
mod compat;
mod containers;
mod control_plane;
mod crash;
mod discovery;
mod full_disk;
mod jobs;
mod multinode;
mod oci;
mod probes;
mod protobuf;
mod rollout;
mod secrets;
mod secrets_at_rest;
mod streams;
mod volumes;
mod wasm;
