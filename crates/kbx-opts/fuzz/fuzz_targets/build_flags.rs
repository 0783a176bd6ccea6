//! Fuzz target `build_flags`: see `tests/fuzz_checks/mod.rs`.
#![no_main]

#[path = "../../tests/fuzz_checks/mod.rs"]
#[allow(dead_code)]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        checks::build_flags(text);
    }
});
