//! The process's own resource use, as Prometheus client libraries export it
//! (`process_resident_memory_bytes`, `process_cpu_seconds_total`, ...), read from
//! `/proc/self`. Empty where there is no `/proc` (not Linux).

/// Ticks per second of the times in `/proc/<pid>/stat`: `USER_HZ`, 100 on every Linux
/// (the kernel converts to it for user space; Prometheus' procfs library assumes it too).
const USER_HZ: f64 = 100.0;

/// A size in `/proc/self/status` in bytes (`field` as written there, e.g. `VmRSS:` for
/// the resident memory, `VmHWM:` for its peak); `None` where it cannot be read.
pub fn status_bytes(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0)
}

/// `(name, type, help, value)` of each process metric that could be read.
pub fn metrics() -> Vec<(&'static str, &'static str, &'static str, f64)> {
    let mut out = Vec::new();
    if let Some(v) = status_bytes("VmRSS:") {
        out.push((
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            v,
        ));
    }
    if let Some(v) = status_bytes("VmSize:") {
        out.push((
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            v,
        ));
    }
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces:
    // utime and stime are the 14th and 15th fields, starttime the 22nd.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |n: usize| -> Option<f64> { fields.get(n - 3)?.parse().ok() };
    if let (Some(user), Some(system)) = (field(14), field(15)) {
        out.push((
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            (user + system) / USER_HZ,
        ));
    }
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok())
    });
    if let (Some(boot), Some(start)) = (boot, field(22)) {
        out.push((
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            boot + start / USER_HZ,
        ));
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        out.push((
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            fds.count() as f64,
        ));
    }
    let limit = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse::<f64>().ok()
        });
    if let Some(v) = limit {
        out.push((
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            v,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_process_reports_its_memory_cpu_start_and_files_on_linux() {
        let m = super::metrics();
        if !cfg!(target_os = "linux") {
            assert!(m.is_empty());
            return;
        }
        let get = |name: &str| {
            m.iter()
                .find(|x| x.0 == name)
                .map(|x| x.3)
                .unwrap_or_else(|| panic!("no {name} in {m:?}"))
        };
        // Some work, so the CPU time is above zero.
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(get("process_resident_memory_bytes") > 1e6);
        assert!(get("process_virtual_memory_bytes") >= get("process_resident_memory_bytes"));
        let cpu = super::metrics()
            .iter()
            .find(|x| x.0 == "process_cpu_seconds_total")
            .unwrap()
            .3;
        assert!(cpu > 0.0, "{cpu}");
        // Started within the last day, by the clock.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = get("process_start_time_seconds");
        assert!(
            start <= now + 1.0 && start > now - 86_400.0,
            "{start} vs {now}"
        );
        assert!(get("process_open_fds") >= 3.0);
        assert!(get("process_max_fds") >= get("process_open_fds"));
    }
}
