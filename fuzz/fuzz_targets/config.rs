//! `prescale.toml` as a team writes it: loaded, or refused with a message naming the
//! file and, where it can, the line and key.
#![no_main]
use libfuzzer_sys::fuzz_target;
use prescale_core::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Config::parse(text, "prescale.toml") {
        let shown = e.to_string();
        assert!(
            shown.contains("prescale.toml"),
            "an error not naming the file: {shown}"
        );
    }
});
