//! Turning fuzzer bytes into an HTTP response: the first byte picks the status, the
//! bytes up to the first 0xFF are `name:value` header lines, the rest is the body.
#![allow(dead_code)]

const STATUSES: &[u16] = &[
    200, 200, 200, 200, 201, 400, 401, 403, 404, 409, 429, 500, 503,
];

pub fn split(data: &[u8]) -> (u16, Vec<(String, String)>, &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return (200, Vec::new(), data);
    };
    let status = if first >= 0xF0 {
        u16::from(first) * 4 // odd statuses: 960..1020
    } else {
        STATUSES[usize::from(first) % STATUSES.len()]
    };
    let (head, body) = match rest.iter().position(|&b| b == 0xFF) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&rest[..0], rest),
    };
    let headers = String::from_utf8_lossy(head)
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .collect();
    (status, headers, body)
}
