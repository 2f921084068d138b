#![no_main]

#[path = "../harness.rs"]
mod harness;
#[path = "../input.rs"]
mod input;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (status, _, body) = input::split(data);
    harness::token_response(status, body);
});
