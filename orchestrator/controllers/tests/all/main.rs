//! Integration tests of Wharf's controllers, running together over a real registry.
//!
//! Every test builds its own `Registry` over a fresh RedbStore in a temporary directory, runs
//! bootstrap, spawns the controllers' `run` functions (binder for node `node-1`, ReplicaSet,
//! Deployment, garbage collector) and drives them through the registry like a client would,
//! polling with a timeout until the cluster converges.

mod hpa;
mod nodelifecycle;
mod replicasets;
mod rollouts;
mod scheduling;
mod support;
