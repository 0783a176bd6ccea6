//! Placeholder, replaced by the balance benchmark.
fn main() {}
