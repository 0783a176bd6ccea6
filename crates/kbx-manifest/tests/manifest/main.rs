//! Integration tests of `kbx-manifest`: one binary, one module per concern.

mod common;
mod example;
mod layering;
mod properties;
mod snapshots;
mod spec_example;
mod upstream;
mod validation;
