//! Fuzz target: see `checks::manifest` for the input format and what is checked.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::manifest(data);
});
