#![no_main]

#[path = "../harness.rs"]
mod harness;
#[path = "../input.rs"]
mod input;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (status, headers, body) = input::split(data);
    harness::qbo_response(status, &headers, body);
});
