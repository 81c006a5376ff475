//! A scraped page in the Prometheus text format: parsed or refused, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use prescale_collect::scrape::parse_exposition;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_exposition(text, "job", "host:9100", 1_800_000_000_000);
    }
});
