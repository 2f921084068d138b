#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if data.len() >= 13 && data[0] == 0 {
        // Structured: milliseconds and an offset, checked against the exact instant.
        let ms = i64::from_le_bytes(data[1..9].try_into().unwrap_or_default());
        let offset = (data[9] & 1 == 1).then(|| {
            (
                data[10] & 1 == 1,
                u32::from(data[11] % 100),
                u32::from(data[12] % 100),
            )
        });
        harness::xero_date_ms(ms, offset);
    } else if let Ok(s) = std::str::from_utf8(data) {
        harness::xero_date(s);
    }
});
