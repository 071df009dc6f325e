//! Fuzz target: see `checks::pylock` for the input format and what is checked.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::pylock(data);
});
