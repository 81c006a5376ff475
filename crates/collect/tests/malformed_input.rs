//! Every decoder of what senders and exporters send, fed thousands of corrupted
//! payloads (bytes flipped, cut, repeated, and the characters each format escapes or
//! ends on inserted): each either decodes or says what is wrong, and none panics. A
//! panic in a receiver would drop a write's whole batch, samples already valid
//! included, and end the request without an answer that says what to fix.

use std::panic::{catch_unwind, AssertUnwindSafe};

use prescale_collect::receive::{
    decode_content, decode_line_protocol, decode_remote_write, decode_remote_write_v2,
    encode_remote_write, encode_remote_write_v2, Precision, ReceiveError,
};
use prescale_collect::scrape::parse_exposition;
use prescale_core::{Sample, SeriesKey};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Corruptions tried per format.
const ROUNDS: usize = 4_000;

/// What the formats escape, quote, separate or end on, and values at the edge of
/// their types.
const SPECIALS: &[&[u8]] = &[
    b"\\",
    b"\"",
    b",",
    b"=",
    b" ",
    b"\n",
    b"{",
    b"}",
    b"#",
    b"e",
    b"-",
    b"NaN",
    b"+Inf",
    b"9999999999999999999999",
    b"-9223372036854775808",
    b"\xff",
    b"\xc3",
    b"1e308",
    b".",
    b"i",
    b"u",
    b"t",
    b"\"\"",
    b"le=",
    b"# TYPE x counter\n",
    b"# HELP",
    b"\t",
    b"\r",
];

fn corrupt(rng: &mut ChaCha8Rng, valid: &[u8]) -> Vec<u8> {
    let mut v = valid.to_vec();
    for _ in 0..rng.random_range(1..6) {
        let at = rng.random_range(0..=v.len());
        match rng.random_range(0..6) {
            0 if at < v.len() => v[at] = rng.random(),
            1 => {
                let s = SPECIALS[rng.random_range(0..SPECIALS.len())];
                v.splice(at..at, s.iter().copied());
            }
            2 => {
                let to = rng.random_range(at..=v.len());
                v.drain(at..to);
            }
            3 => v.truncate(at),
            4 => {
                let to = rng.random_range(at..=v.len());
                let piece = v[at..to].to_vec();
                let to = rng.random_range(0..=v.len());
                v.splice(to..to, piece);
            }
            _ => v.insert(at, rng.random()),
        }
    }
    v
}

/// Feeds `ROUNDS` corruptions of `valid` to `decode`, which says whether its error (if
/// any) says something; fails listing the payloads that panicked or said nothing.
fn survives(name: &str, valid: &[u8], decode: impl Fn(&[u8]) -> Result<(), String>) {
    let mut rng = ChaCha8Rng::seed_from_u64(name.len() as u64);
    assert!(decode(valid).is_ok(), "{name}: the valid payload decodes");
    let mut bad = Vec::new();
    for _ in 0..ROUNDS {
        let input = corrupt(&mut rng, valid);
        match catch_unwind(AssertUnwindSafe(|| decode(&input))) {
            Ok(Ok(())) => {}
            Ok(Err(e)) if !e.trim().is_empty() => {}
            Ok(Err(_)) => bad.push(format!(
                "said nothing: {:?}",
                String::from_utf8_lossy(&input)
            )),
            Err(_) => bad.push(format!("panicked: {:?}", String::from_utf8_lossy(&input))),
        }
    }
    assert!(
        bad.is_empty(),
        "{name}: {} of {ROUNDS}: {:#?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
}

fn said(r: Result<impl Sized, ReceiveError>) -> Result<(), String> {
    r.map(|_| ()).map_err(|e| e.to_string())
}

#[test]
fn line_protocol() {
    let valid = b"cpu,host=a,region=eu usage_idle=12.5,usage_user=3i,ok=true,msg=\"hi there\" 1700000000000000000\n\
        mem,host=b used=1e9 1700000000000000001\n# a comment\n\
        disk\\ io,dev=sda\\,1 await=0.5,n=3u\n";
    survives("line protocol", valid, |b| {
        for p in [Precision::Nanoseconds, Precision::Seconds] {
            let d = decode_line_protocol(b, p, 1_700_000_000_000).map_err(|e| e.to_string())?;
            // A line that cannot be stored is named among the problems, not dropped silently.
            let _ = d.samples();
        }
        Ok(())
    });
}

#[test]
fn exposition_text() {
    let valid = "# HELP http_requests_total Requests.\n# TYPE http_requests_total counter\n\
        http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n\
        http_requests_total{method=\"post\",code=\"400\"}    3 1395066363000\n\
        msdos_file_access_time_seconds{path=\"C:\\\\DIR\\\\FILE.TXT\",error=\"Cannot find file:\\n\\\"FILE.TXT\\\"\"} 1.458255915e9\n\
        metric_without_timestamp_and_labels 12.47\n\
        something_weird{problem=\"division by zero\"} +Inf -3982045\n\
        # TYPE h histogram\nh_bucket{le=\"0.05\"} 24054\nh_bucket{le=\"+Inf\"} 144320\nh_sum 53423\nh_count 144320\n";
    survives("exposition", valid.as_bytes(), |b| {
        parse_exposition(
            &String::from_utf8_lossy(b),
            "node",
            "a:9100",
            1_700_000_000_000,
        )
        .map(|_| ())
        .map_err(|e| e.reason)
    });
}

#[test]
fn remote_write_and_gzip() {
    let key = SeriesKey::new(
        "up",
        vec![
            ("job".to_string(), "node".to_string()),
            ("instance".to_string(), "a:9100".to_string()),
        ],
    )
    .unwrap();
    let samples = vec![Sample { ts: 1, value: 1.0 }, Sample { ts: 2, value: 0.5 }];
    let series = vec![(key, samples)];
    let (v1, v2) = (
        encode_remote_write(&series),
        encode_remote_write_v2(&series),
    );
    // The snappy frames, and the protobuf inside them (corrupted, then compressed again).
    survives("remote write 1.0", &v1, |b| said(decode_remote_write(b)));
    survives("remote write 2.0", &v2, |b| said(decode_remote_write_v2(b)));
    let unsnappy = |b: &[u8]| snap::raw::Decoder::new().decompress_vec(b).unwrap();
    let snappy = |b: &[u8]| snap::raw::Encoder::new().compress_vec(b).unwrap();
    survives("remote write 1.0 messages", &unsnappy(&v1), |b| {
        said(decode_remote_write(&snappy(b)))
    });
    survives("remote write 2.0 messages", &unsnappy(&v2), |b| {
        said(decode_remote_write_v2(&snappy(b)))
    });
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, b"cpu,host=a usage=1 1700000000000000000\n").unwrap();
    survives("gzip", &gz.finish().unwrap(), |b| {
        said(decode_content(Some("gzip"), b))
    });
}
