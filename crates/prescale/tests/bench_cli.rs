//! `prescale bench ingest`: every sample sent is stored, and bad settings exit 2.

use std::process::Command;

#[test]
fn bench_ingest_sends_everything_and_the_store_takes_it() {
    for wire in ["remote-write", "remote-write-2", "influx"] {
        let out = Command::new(env!("CARGO_BIN_EXE_prescale"))
            .args([
                "bench",
                "ingest",
                "--series",
                "20",
                "--samples",
                "30",
                "--batch",
                "70",
            ])
            .args(["--senders", "2", "--wire", wire])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        // 600 samples in ceil(600 / 70) = 9 requests; the command checks the store took all.
        assert!(
            text.contains(
                "600 samples (20 series x 30) in 9 requests of up to 70 from 2 sender(s)"
            ),
            "{text}"
        );
        assert!(text.contains("samples/s; request latency p50"), "{text}");
        // And what they take on disk: as received, once the journal is written out into
        // tables, and once compressed into chunks (smaller than as rows).
        let per_sample: Vec<f64> = text
            .split(" bytes per sample")
            .filter_map(|part| part.rsplit(' ').next()?.parse().ok())
            .collect();
        assert_eq!(per_sample.len(), 3, "{text}");
        assert!(per_sample.iter().all(|b| *b > 0.0), "{text}");
        assert!(per_sample[2] < per_sample[1], "{text}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_prescale"))
        .args(["bench", "ingest", "--batch", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
