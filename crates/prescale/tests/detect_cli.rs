//! `prescale detect`: rows kept as written, scores in [0, 1), directories mirrored, bad
//! input refused with the file and line, and the NAB corpus scored when it is present.

use std::path::Path;
use std::process::Command;

fn detect(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_prescale"))
        .arg("detect")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_file_is_scored_row_by_row_and_a_jump_stands_out() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("s.csv");
    let mut text = String::from("timestamp,value\n");
    for i in 0..600 {
        // Irregular timestamps, a NaN row and a jump at row 500: all kept as written.
        let v = if i == 300 {
            "NaN".to_string()
        } else {
            let base = if i >= 500 { 60.0 } else { 10.0 };
            format!("{}", base + ((i * 7919) % 13) as f64 * 0.1)
        };
        text.push_str(&format!(
            "2024-01-01 00:{:02}:{:02},{v}\n",
            i / 60 % 60,
            (i * 7) % 60
        ));
    }
    std::fs::write(&input, &text).unwrap();
    let out = detect(&["--input", input.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("s.csv:302: value \"NaN\" is not a number"),
        "{stderr}"
    );
    let csv = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(
        csv.lines().next(),
        Some("timestamp,value,anomaly_score,is_anomaly")
    );
    assert_eq!(rows.len(), 600);
    let in_rows: Vec<&str> = text.lines().skip(1).collect();
    for (r, i) in rows.iter().zip(&in_rows) {
        assert_eq!(
            format!("{},{}", r[0], r[1]),
            *i,
            "rows are echoed as written"
        );
    }
    let score = |i: usize| rows[i][2].parse::<f64>().unwrap();
    assert!((0..600).all(|i| (0.0..1.0).contains(&score(i))));
    let top = (0..600)
        .max_by(|&a, &b| score(a).total_cmp(&score(b)))
        .unwrap();
    assert_eq!(top, 500, "the jump scores highest");
    assert_eq!(rows[500][3], "1");
    assert!(
        stderr.ends_with("scored 600 rows; 1 at or above 0.5\n"),
        "{stderr}"
    );
    assert_eq!(
        rows.iter().filter(|r| r[3] == "1").count(),
        1,
        "only the jump is flagged"
    );
}

/// `--report` draws what the scores say: the flagged row circled where its value is,
/// a gap in the line at the row without a number, the threshold on the scores.
#[test]
fn the_report_circles_the_rows_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("s.csv");
    let mut text = String::from("timestamp,value\n");
    for i in 0..400 {
        let v = match i {
            150 => "".to_string(),
            _ if i >= 300 => format!("{}", 60.0 + (i % 3) as f64 * 0.1),
            _ => format!("{}", 10.0 + (i % 3) as f64 * 0.1),
        };
        text.push_str(&format!("{},{v}\n", 1_700_000_000 + i * 60));
    }
    std::fs::write(&input, &text).unwrap();
    let page = dir.path().join("d.html");
    let out = detect(&[
        "--input",
        input.to_str().unwrap(),
        "--report",
        page.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8(out.stdout).unwrap();
    let flagged = csv.lines().skip(1).filter(|l| l.ends_with(",1")).count();
    assert!(flagged >= 1, "{csv}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(html.matches("class=\"flagged\"").count(), flagged);
    assert!(html.contains(&format!(
        "400 rows scored each row against what came before it; {flagged} at or above 0.5"
    )));
    // The row without a number breaks the line in two; the threshold is drawn.
    assert_eq!(html.matches("class=\"values\"").count(), 2);
    assert!(html.contains("threshold 0.5") && html.contains("class=\"scores\""));
    // The jump's row (time 1,700,018,000) is among those circled, with its time.
    assert!(
        html.contains("<title>2023-11-15T03:13:20Z: 60, score"),
        "{html}"
    );
    // A directory is not one page: refused before anything is scored.
    let out = detect(&[
        "--input",
        dir.path().to_str().unwrap(),
        "--output",
        dir.path().join("o").to_str().unwrap(),
        "--report",
        page.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--report draws one file"));
    assert!(!dir.path().join("o").exists());
}

#[test]
fn directories_are_mirrored_and_bad_input_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let inp = dir.path().join("in");
    std::fs::create_dir_all(inp.join("a/b")).unwrap();
    std::fs::write(inp.join("a/b/x.csv"), "timestamp,value\n1,1\n2,2\n").unwrap();
    std::fs::write(inp.join("y.csv"), "timestamp,value\n1,5\n").unwrap();
    let outd = dir.path().join("out");
    let out = detect(&[
        "--input",
        inp.to_str().unwrap(),
        "--output",
        outd.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("scored 3 rows in 2 files"));
    let x = std::fs::read_to_string(outd.join("a/b/x.csv")).unwrap();
    assert_eq!(x.lines().count(), 3);
    assert!(outd.join("y.csv").exists());

    let out = detect(&["--input", inp.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("give --output DIR"));
    std::fs::write(dir.path().join("bad.csv"), "time,v\n1,2\n").unwrap();
    let out = detect(&["--input", dir.path().join("bad.csv").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.csv:1: the header must name `timestamp` and `value`"),
        "{err}"
    );
    let out = detect(&["--input", "x.csv", "--threshold", "2"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_nab_corpus_is_scored_with_its_rows_intact() {
    let nab = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/nab/data");
    if !nab.is_dir() {
        eprintln!("skipping: {} is absent", nab.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = detect(&[
        "--input",
        nab.to_str().unwrap(),
        "--output",
        dir.path().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let f = "realKnownCause/nyc_taxi.csv";
    let src = std::fs::read_to_string(nab.join(f)).unwrap();
    let got = std::fs::read_to_string(dir.path().join(f)).unwrap();
    assert_eq!(src.lines().count(), got.lines().count());
    for (a, b) in src.lines().zip(got.lines()).skip(1) {
        assert!(b.starts_with(a), "{a} / {b}");
    }
}

#[test]
fn as_the_daemon_a_daily_job_is_an_anomaly_only_the_first_day() {
    // Four days of five-minute rows: about 3, a job holding about 36 from 23:00 for an
    // hour each day (the first after the 270 rows a new series is not judged in), and a
    // spike to 150 at 14:00 on the third day.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("job.csv");
    let mut text = String::from("timestamp,value\n");
    for i in 0..4 * 288i64 {
        let wobble = ((i as f64 * 0.7).sin() + (i as f64 * 1.3).cos()) / 2.0;
        let minute = (i * 5) % 1440;
        let v = if i == 2 * 288 + 168 {
            150.0
        } else if minute >= 1380 {
            36.0 + wobble
        } else {
            3.0 + 0.3 * wobble
        };
        text.push_str(&format!("{},{v}\n", 1_700_006_400 + i * 300));
    }
    std::fs::write(&input, &text).unwrap();
    let flagged = |args: &[&str]| -> Vec<(i64, i64)> {
        let mut all = vec!["--input", input.to_str().unwrap()];
        all.extend(args);
        let out = detect(&all);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .skip(1)
            .filter(|l| l.ends_with(",1"))
            .map(|l| {
                let t: i64 = l.split(',').next().unwrap().parse().unwrap();
                let since = t - 1_700_006_400;
                (since / 86_400, since % 86_400 / 60)
            })
            .collect()
    };
    // 1700006400 is a midnight (UTC): the job starts at minute 1380 each day.
    let alone = flagged(&[]);
    assert!(
        alone.iter().filter(|(d, m)| *d > 0 && *m == 1380).count() >= 1,
        "alone, a later day's job is flagged too: {alone:?}"
    );
    assert_eq!(flagged(&["--as-daemon"]), [(0, 1380), (2, 840)]);
    // It needs times it can read.
    std::fs::write(&input, "timestamp,value\nmonday,1\n").unwrap();
    let out = detect(&["--input", input.to_str().unwrap(), "--as-daemon"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("job.csv:2: timestamp \"monday\""), "{err}");
}

#[test]
fn milliseconds_score_as_the_same_times_in_seconds_do() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, scale: i64| {
        let mut text = String::from("timestamp,value\n");
        for i in 0..400i64 {
            let v = if i == 350 {
                90.0
            } else {
                10.0 + (i * 7919 % 13) as f64 * 0.1
            };
            text.push_str(&format!("{},{v}\n", (1_700_000_000 + 60 * i) * scale));
        }
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let (secs, ms) = (write("s.csv", 1), write("ms.csv", 1000));
    let scores = |p: &Path, as_daemon: bool| {
        let mut args = vec!["--input", p.to_str().unwrap()];
        if as_daemon {
            args.push("--as-daemon");
        }
        let out = detect(&args);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{stderr}");
        let csv = String::from_utf8(out.stdout).unwrap();
        let s: Vec<String> = csv
            .lines()
            .skip(1)
            .map(|l| l.split(',').skip(2).collect::<Vec<_>>().join(","))
            .collect();
        (s, stderr)
    };
    for as_daemon in [false, true] {
        let (a, a_err) = scores(&secs, as_daemon);
        let (b, b_err) = scores(&ms, as_daemon);
        assert_eq!(a, b, "as daemon: {as_daemon}");
        assert!(a[350].ends_with(",1"), "the jump is found: {}", a[350]);
        assert!(!a_err.contains("read as"), "{a_err}");
        assert!(
            b_err.contains("ms.csv: timestamps read as milliseconds since 1970"),
            "{b_err}"
        );
    }
}

#[test]
fn a_quoted_capitalised_header_and_quoted_fields_are_read_and_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let (plain, quoted) = (dir.path().join("p.csv"), dir.path().join("q.csv"));
    let (mut p, mut q) = (
        String::from("timestamp,value\n"),
        String::from("\"Timestamp\",\"Value\"\n"),
    );
    for i in 0..400 {
        let v = if i == 350 {
            60.0
        } else {
            5.0 + (i % 3) as f64 * 0.1
        };
        p.push_str(&format!("{},{v}\n", 1_700_000_000 + 300 * i));
        q.push_str(&format!("\"{}\",\"{v}\"\n", 1_700_000_000 + 300 * i));
    }
    std::fs::write(&plain, p).unwrap();
    std::fs::write(&quoted, &q).unwrap();
    let run = |f: &Path| {
        let out = detect(&["--input", f.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let (a, b) = (run(&plain), run(&quoted));
    let scores = |csv: &str| -> Vec<String> {
        csv.lines()
            .skip(1)
            .map(|l| l.rsplitn(3, ',').take(2).collect::<Vec<_>>().join(","))
            .collect()
    };
    assert_eq!(scores(&a), scores(&b));
    assert!(b.lines().nth(351).unwrap().ends_with(",1"), "{b}");
    // Rows echoed as written, quotes and all.
    for (out, given) in b.lines().skip(1).zip(q.lines().skip(1)) {
        assert!(out.starts_with(given), "{out} / {given}");
    }
}
