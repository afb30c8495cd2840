//! Integration tests of the Wharf API server, driven through its axum router in-process.
//!
//! Every test builds its own server over a fresh RedbStore in a temporary directory and runs
//! bootstrap, then speaks HTTP to the router exactly as a client would (`tower::ServiceExt::
//! oneshot`, no sockets). Error cases check the Kubernetes `kind: Status` body and that the
//! store revision did not move.

mod binding;
mod concurrency;
mod create_options;
mod crud;
mod deployments;
mod discovery;
mod encryption;
mod errors;
mod eviction;
mod finalizers;
mod lists;
mod patches;
mod pods;
mod reviews;
mod server_side_apply;
mod support;
mod tables;
mod uid_preconditions;
mod watches;
