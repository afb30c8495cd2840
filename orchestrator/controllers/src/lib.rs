//! Wharf's control loops. Each is a pure `plan` function (tested without I/O) and a small
//! runner that feeds it snapshots from the [`Registry`](wharf_apiserver::Registry) and applies
//! its writes through the same registry the API uses.

pub mod gc;
