//! What senders push: remote_write 1.0 and 2.0 bodies (snappy, or compressed here first
//! so the fuzzer reaches the protobuf), gzip bodies and InfluxDB line protocol. Each is
//! refused with an error or decoded; a decoded body never holds a NaN other than what
//! the sender sent, and dropping samples ahead of the clock keeps the count right.
#![no_main]
use libfuzzer_sys::fuzz_target;
use prescale_collect::receive::{
    decode_content, decode_line_protocol, decode_remote_write, decode_remote_write_v2, Decoded,
    Precision,
};

const NOW: i64 = 1_800_000_000_000;

fn check(d: Decoded) {
    let mut d = d;
    let before = d.samples();
    let dropped = d.drop_ahead(NOW);
    assert_eq!(before, d.samples() + dropped, "drop_ahead lost count");
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let snapped = || snap::raw::Encoder::new().compress_vec(body).unwrap();
    match sel % 8 {
        0 => drop(decode_remote_write(body).map(check)),
        1 => drop(decode_remote_write_v2(body).map(check)),
        2 => drop(decode_remote_write(&snapped()).map(check)),
        3 => drop(decode_remote_write_v2(&snapped()).map(check)),
        4 => drop(decode_content(Some("gzip"), body)),
        p => {
            let precision =
                [Precision::Nanoseconds, Precision::Seconds, Precision::Hours][usize::from(p - 5)];
            drop(decode_line_protocol(body, precision, NOW).map(check));
        }
    }
});
