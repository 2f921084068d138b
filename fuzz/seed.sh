#!/bin/sh
# Writes the seed corpora (realistic bodies from harness.rs) into corpus/<target>/.
# Response targets: byte 0 picks the status (0 = 200), header lines up to 0xFF, then body.
set -e
cd "$(dirname "$0")"
pick() { sed -n "s/^pub const $1: &str = r#\"\(.*\)\"#;\$/\1/p" harness.rs; }
mkdir -p corpus/quickbooks_response corpus/xero_response corpus/token_response corpus/xero_dates corpus/config_file
i=0
for c in QBO_QUERY QBO_CDC QBO_FAULT; do
  i=$((i+1)); { printf '\000retry-after:5\377'; pick $c; } > corpus/quickbooks_response/seed$i
done
for c in XERO_INVOICES XERO_CONTACTS XERO_ERROR; do
  i=$((i+1)); { printf '\000x-minlimit-remaining:0\nx-daylimit-remaining:4000\377'; pick $c; } > corpus/xero_response/seed$i
done
{ printf '\000\377'; pick TOKEN_OK; } > corpus/token_response/seed1
{ printf '\005\377'; pick TOKEN_ERR; } > corpus/token_response/seed2
n=0
for d in '/Date(1546128000000+0000)/' '/Date(-86400000)/' '2018-12-30T10:11:12.123' '2018-12-30T10:11:12+13:00' '2018-12-30'; do
  n=$((n+1)); printf '%s' "$d" > corpus/xero_dates/seed$n
done
cp ../config.example.toml corpus/config_file/example.toml
