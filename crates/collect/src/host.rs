//! The host collector: reads `/proc/stat`, `/proc/meminfo`, `/proc/diskstats` and
//! `/proc/net/dev` and emits gauges.
//!
//! Counters become rates between two collections, so the first collection emits only
//! the instantaneous gauges (memory). Emitted series:
//! - `host_cpu_usage_cores{mode}`: cores spent in each mode, plus `mode="busy"` (all but
//!   idle and iowait); computed as the mode's share of all ticks times the CPU count, so
//!   the kernel's tick rate does not matter;
//! - `host_memory_total_bytes`, `host_memory_available_bytes`, `host_memory_used_bytes`;
//! - `host_disk_io_await_seconds{device}` (mean time per completed I/O, like iostat's
//!   `await`), `host_disk_ops_per_second{device}`,
//!   `host_disk_bytes_per_second{device,direction}`;
//! - `host_network_receive_bytes_per_second{interface}` and `..._transmit_...`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prescale_core::{Sample, SeriesKey, TimestampMs};
use thiserror::Error;

/// The host collector failed to read or understand a `/proc` file.
#[derive(Debug, Error)]
pub enum HostError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}; is sources.host.proc_root right?")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file's content was not in the expected format.
    #[error("unexpected format in {path}: {detail}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
}

const CPU_MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

#[derive(Debug, Clone, Default)]
struct CpuTimes {
    ticks: [u64; 8],
    cpus: usize,
}

#[derive(Debug, Clone, Copy, Default)]
struct DiskCounters {
    reads: u64,
    read_sectors: u64,
    read_ms: u64,
    writes: u64,
    write_sectors: u64,
    write_ms: u64,
}

#[derive(Debug, Clone, Default)]
struct Snapshot {
    at: TimestampMs,
    cpu: CpuTimes,
    disks: BTreeMap<String, DiskCounters>,
    nets: BTreeMap<String, (u64, u64)>,
}

/// Reads host metrics from a proc filesystem and keeps the previous counters to turn
/// them into rates.
pub struct HostCollector {
    root: PathBuf,
    prev: Option<Snapshot>,
}

fn read(root: &Path, name: &str) -> Result<(PathBuf, String), HostError> {
    let path = root.join(name);
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok((path, s)),
        Err(source) => Err(HostError::Read { path, source }),
    }
}

fn parse_stat(path: &Path, text: &str) -> Result<CpuTimes, HostError> {
    let mut out = CpuTimes::default();
    let mut found = false;
    for line in text.lines() {
        let mut it = line.split_whitespace();
        match it.next() {
            Some("cpu") => {
                for (i, f) in it.take(8).enumerate() {
                    out.ticks[i] = f.parse().map_err(|_| HostError::Format {
                        path: path.into(),
                        detail: format!("non-numeric cpu field {f:?}"),
                    })?;
                }
                found = true;
            }
            Some(n) if n.starts_with("cpu") => out.cpus += 1,
            _ => {}
        }
    }
    if !found {
        return Err(HostError::Format {
            path: path.into(),
            detail: "no aggregate `cpu` line".into(),
        });
    }
    out.cpus = out.cpus.max(1);
    Ok(out)
}

fn parse_meminfo(path: &Path, text: &str) -> Result<(f64, f64), HostError> {
    let field = |name: &str| -> Option<f64> {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix(':')?;
            let kb: f64 = rest.split_whitespace().next()?.parse().ok()?;
            Some(kb * 1024.0)
        })
    };
    let total = field("MemTotal").ok_or_else(|| HostError::Format {
        path: path.into(),
        detail: "no MemTotal".into(),
    })?;
    let avail = field("MemAvailable")
        .or_else(|| Some(field("MemFree")? + field("Cached").unwrap_or(0.0)))
        .ok_or_else(|| HostError::Format {
            path: path.into(),
            detail: "no MemAvailable or MemFree".into(),
        })?;
    Ok((total, avail))
}

fn parse_diskstats(text: &str) -> BTreeMap<String, DiskCounters> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 11 {
            continue;
        }
        let name = f[2];
        if name.starts_with("loop") || name.starts_with("ram") {
            continue;
        }
        let n = |i: usize| f[i].parse::<u64>().unwrap_or(0);
        out.insert(
            name.to_string(),
            DiskCounters {
                reads: n(3),
                read_sectors: n(5),
                read_ms: n(6),
                writes: n(7),
                write_sectors: n(9),
                write_ms: n(10),
            },
        );
    }
    out
}

fn parse_net_dev(text: &str) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name == "lo" {
            continue;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        if f.len() >= 9 {
            out.insert(name.to_string(), (f[0], f[8]));
        }
    }
    out
}

fn key(name: &str, labels: &[(&str, &str)]) -> SeriesKey {
    SeriesKey::new(name, labels.iter().map(|(k, v)| (*k, *v))).expect("static metric names")
}

impl HostCollector {
    /// A collector reading from `proc_root` (normally `/proc`).
    pub fn new(proc_root: impl Into<PathBuf>) -> Self {
        Self {
            root: proc_root.into(),
            prev: None,
        }
    }

    /// Reads the counters once and returns the gauges for time `now`. Rates need two
    /// collections: the first returns memory only.
    pub fn collect(&mut self, now: TimestampMs) -> Result<Vec<(SeriesKey, Sample)>, HostError> {
        let (p, stat) = read(&self.root, "stat")?;
        let cpu = parse_stat(&p, &stat)?;
        let (p, mem) = read(&self.root, "meminfo")?;
        let (total, avail) = parse_meminfo(&p, &mem)?;
        // Disk and network files are optional (containers may hide them).
        let disks = read(&self.root, "diskstats")
            .map(|(_, t)| parse_diskstats(&t))
            .unwrap_or_default();
        let nets = read(&self.root, "net/dev")
            .map(|(_, t)| parse_net_dev(&t))
            .unwrap_or_default();
        let snap = Snapshot {
            at: now,
            cpu,
            disks,
            nets,
        };
        let mut out = Vec::new();
        let mut push = |k: SeriesKey, v: f64| {
            if v.is_finite() {
                out.push((k, Sample { ts: now, value: v }));
            }
        };
        push(key("host_memory_total_bytes", &[]), total);
        push(key("host_memory_available_bytes", &[]), avail);
        push(key("host_memory_used_bytes", &[]), total - avail);

        if let Some(prev) = &self.prev {
            let dt = (now - prev.at) as f64 / 1000.0;
            if dt > 0.0 {
                let d: Vec<f64> = (0..8)
                    .map(|i| snap.cpu.ticks[i].saturating_sub(prev.cpu.ticks[i]) as f64)
                    .collect();
                let all: f64 = d.iter().sum();
                if all > 0.0 {
                    let cpus = snap.cpu.cpus as f64;
                    for (i, mode) in CPU_MODES.iter().enumerate() {
                        push(
                            key("host_cpu_usage_cores", &[("mode", mode)]),
                            d[i] / all * cpus,
                        );
                    }
                    let busy = all - d[3] - d[4];
                    push(
                        key("host_cpu_usage_cores", &[("mode", "busy")]),
                        busy / all * cpus,
                    );
                }
                for (dev, c) in &snap.disks {
                    let Some(p) = prev.disks.get(dev) else {
                        continue;
                    };
                    let ops = (c.reads + c.writes).saturating_sub(p.reads + p.writes) as f64;
                    let ms = (c.read_ms + c.write_ms).saturating_sub(p.read_ms + p.write_ms) as f64;
                    let l = [("device", dev.as_str())];
                    push(key("host_disk_ops_per_second", &l), ops / dt);
                    push(
                        key("host_disk_io_await_seconds", &l),
                        if ops > 0.0 { ms / ops / 1000.0 } else { 0.0 },
                    );
                    let rb = c.read_sectors.saturating_sub(p.read_sectors) as f64 * 512.0;
                    let wb = c.write_sectors.saturating_sub(p.write_sectors) as f64 * 512.0;
                    push(
                        key(
                            "host_disk_bytes_per_second",
                            &[("device", dev), ("direction", "read")],
                        ),
                        rb / dt,
                    );
                    push(
                        key(
                            "host_disk_bytes_per_second",
                            &[("device", dev), ("direction", "write")],
                        ),
                        wb / dt,
                    );
                }
                for (nic, (rx, tx)) in &snap.nets {
                    let Some((prx, ptx)) = prev.nets.get(nic) else {
                        continue;
                    };
                    let l = [("interface", nic.as_str())];
                    push(
                        key("host_network_receive_bytes_per_second", &l),
                        rx.saturating_sub(*prx) as f64 / dt,
                    );
                    push(
                        key("host_network_transmit_bytes_per_second", &l),
                        tx.saturating_sub(*ptx) as f64 / dt,
                    );
                }
            }
        }
        self.prev = Some(snap);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_proc(dir: &Path, cpu: [u64; 8], disk: [u64; 4], net: (u64, u64)) {
        std::fs::create_dir_all(dir.join("net")).unwrap();
        let c = cpu.map(|x| x.to_string()).join(" ");
        std::fs::write(
            dir.join("stat"),
            format!("cpu  {c} 0 0\ncpu0 {c} 0 0\ncpu1 {c} 0 0\nintr 1 2\n"),
        )
        .unwrap();
        std::fs::write(
            dir.join("meminfo"),
            "MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    400 kB\n",
        )
        .unwrap();
        let [r, rms, w, wms] = disk;
        std::fs::write(
            dir.join("diskstats"),
            format!(
                "   7 0 loop0 9 0 9 9 9 0 9 9 0 0 0\n 254 0 vda {r} 0 {} {rms} {w} 0 {} {wms} 0 0 0\n",
                r * 8,
                w * 8
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("net/dev"),
            format!(
                "Inter-| Receive | Transmit\n face |bytes packets|bytes\n    lo: 5 1 0 0 0 0 0 0 5 1 0 0 0 0 0 0\n  eth0: {} 1 0 0 0 0 0 0 {} 1 0 0 0 0 0 0\n",
                net.0, net.1
            ),
        )
        .unwrap();
    }

    fn get(v: &[(SeriesKey, Sample)], sel: &str) -> f64 {
        let sel = SeriesKey::parse(sel).unwrap();
        v.iter()
            .find(|(k, _)| *k == sel)
            .unwrap_or_else(|| panic!("{sel} missing"))
            .1
            .value
    }

    #[test]
    fn rates_from_two_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        write_proc(
            dir.path(),
            [100, 0, 50, 800, 50, 0, 0, 0],
            [10, 50, 10, 50],
            (1000, 2000),
        );
        let mut c = HostCollector::new(dir.path());
        let first = c.collect(0).unwrap();
        assert_eq!(get(&first, "host_memory_used_bytes"), 600.0 * 1024.0);
        assert!(first.iter().all(|(k, _)| !k.name.starts_with("host_cpu")));
        // 10 s later: 300 more user ticks, 100 system, 500 idle, 100 iowait of 1000 total.
        write_proc(
            dir.path(),
            [400, 0, 150, 1300, 150, 0, 0, 0],
            [30, 150, 30, 250],
            (6000, 4000),
        );
        let second = c.collect(10_000).unwrap();
        // 2 CPUs: user = 300/1000 * 2 = 0.6 cores; busy = 400/1000 * 2 = 0.8 cores.
        assert!((get(&second, r#"host_cpu_usage_cores{mode="user"}"#) - 0.6).abs() < 1e-9);
        assert!((get(&second, r#"host_cpu_usage_cores{mode="busy"}"#) - 0.8).abs() < 1e-9);
        // Disk: 40 ops took 300 ms -> 7.5 ms await, 4 ops/s.
        assert!(
            (get(&second, r#"host_disk_io_await_seconds{device="vda"}"#) - 0.0075).abs() < 1e-12
        );
        assert!((get(&second, r#"host_disk_ops_per_second{device="vda"}"#) - 4.0).abs() < 1e-12);
        assert!(
            (get(
                &second,
                r#"host_disk_bytes_per_second{device="vda",direction="read"}"#
            ) - 20.0 * 8.0 * 512.0 / 10.0)
                .abs()
                < 1e-9
        );
        assert!(!second
            .iter()
            .any(|(k, _)| k.labels.get("device").is_some_and(|d| d == "loop0")));
        // Network: 5000 B in, 2000 B out over 10 s; loopback skipped.
        assert_eq!(
            get(
                &second,
                r#"host_network_receive_bytes_per_second{interface="eth0"}"#
            ),
            500.0
        );
        assert_eq!(
            get(
                &second,
                r#"host_network_transmit_bytes_per_second{interface="eth0"}"#
            ),
            200.0
        );
        assert!(!second
            .iter()
            .any(|(k, _)| k.labels.get("interface").is_some_and(|d| d == "lo")));
    }

    #[test]
    fn missing_or_garbled_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = HostCollector::new(dir.path());
        let e = c.collect(0).unwrap_err().to_string();
        assert!(e.contains("cannot read") && e.contains("stat"), "{e}");
        std::fs::write(dir.path().join("stat"), "cpu0 1 2 3\n").unwrap();
        let e = c.collect(0).unwrap_err().to_string();
        assert!(e.contains("no aggregate `cpu` line"), "{e}");
    }

    #[test]
    fn reads_the_real_proc() {
        if !Path::new("/proc/stat").exists() {
            eprintln!("skipping: no /proc on this machine");
            return;
        }
        let mut c = HostCollector::new("/proc");
        c.collect(0).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let v = c.collect(1000).unwrap();
        let busy = get(&v, r#"host_cpu_usage_cores{mode="busy"}"#);
        let stat = std::fs::read_to_string("/proc/stat").unwrap();
        let cpus = stat
            .lines()
            .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
            .count() as f64;
        assert!((0.0..=cpus + 1e-9).contains(&busy), "busy {busy}");
        assert!(get(&v, "host_memory_total_bytes") > 0.0);
    }
}
