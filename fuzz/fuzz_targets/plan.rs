//! The planner over any tier catalog and workload a configuration may hold (each checked
//! as the configuration's are: what they refuse is skipped) and a forecast whose
//! quantiles are flat over its horizon, so what each plan must cover is known: the SLA
//! quantile over the target utilization.
//!
//! Every plan asks only for tiers the workload may use, each within its instance limits,
//! says what it costs truly (the instances at their prices), gives a reason, and keeps a
//! budget that the tiers' own minimums leave room for. Where it says the SLA bound it
//! (`sla`), its capacity covers the need on every dimension planned, spot stays within
//! the workload's share (or what the spot tiers' own `min_instances` hold), and the chance of a shortfall counting spot losses stays within
//! `1 - sla_quantile`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use prescale_core::config::{validate_policy, validate_tiers, Config};
use prescale_core::model::LatencyClass;
use prescale_core::{Dim, Forecast, SeriesKey, Tier, TierClass};
use prescale_plan::{eligible_tiers, plan, plan_dimensions, shortfall_risk, Fill};

/// The input, read a byte at a time (zeros once it runs out).
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        b
    }

    fn pick<T: Clone>(&mut self, xs: &[T]) -> T {
        xs[usize::from(self.byte()) % xs.len()].clone()
    }
}

const LEVELS: [f64; 7] = [0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95];
const STEP_MS: i64 = 60_000;
const INTERVAL_MS: i64 = 15_000;

/// A flat forecast over an hour at `levels`: each quantile the same at every step, the
/// median `median` and each level above the one below by a share of it the input gives.
fn flat(b: &mut Bytes, levels: &[f64], median: f64, metric: &str) -> Forecast {
    let mut row = vec![0.0; levels.len()];
    let mid = levels.iter().position(|l| *l == 0.5).expect("a median");
    row[mid] = median;
    for i in (0..mid).rev() {
        row[i] = (row[i + 1] - median * f64::from(b.byte()) / 128.0).max(0.0);
    }
    for i in mid + 1..levels.len() {
        row[i] = row[i - 1] + median * f64::from(b.byte()) / 64.0;
    }
    Forecast::new(
        SeriesKey::metric(metric).expect("a metric name"),
        "fuzz",
        0,
        0,
        STEP_MS,
        levels.to_vec(),
        vec![row; 60],
    )
    .expect("a valid forecast")
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let c = Config::default();
    let mut w = c.workloads[0].clone();
    let template = c.tiers[0].clone();
    let n = 1 + usize::from(b.byte() % 4);
    let tiers: Vec<Tier> = (0..n)
        .map(|i| {
            let class = b.pick(&[
                TierClass::Spot,
                TierClass::Standard,
                TierClass::HighPerformance,
            ]);
            let lead = b.pick(&[0u64, 60, 180, 600]);
            Tier {
                name: format!("t{i}"),
                class,
                vcpu: b.pick(&[0.5, 1.0, 2.0, 4.0, 8.0, 64.0]),
                memory_gib: b.pick(&[0.0, 2.0, 8.0, 16.0, 256.0]),
                disk_iops: b.pick(&[None, Some(3000.0)]),
                network_mbps: b.pick(&[None, Some(750.0)]),
                price_per_hour: b.pick(&[0.001, 0.058, 0.192, 0.34, 0.4, 5.0]),
                performance_factor: b.pick(&[0.5, 1.0, 1.6, 3.0]),
                lead_time_s: lead,
                lead_time_p90_s: b.pick(&[None, Some(lead * 2)]),
                interruption_rate_per_hour: if class == TierClass::Spot {
                    b.pick(&[0.0, 0.02, 0.5, 5.0])
                } else {
                    0.0
                },
                interruption_notice_s: b.pick(&[0, 30, 120]),
                min_instances: b.pick(&[0, 0, 0, 1, 3]),
                max_instances: b.pick(&[1, 3, 10, 100, 1000]),
                workloads: b.pick(&[vec![], vec!["other".to_string()], vec![w.name.clone()]]),
                ..template.clone()
            }
        })
        .collect();
    w.sla_quantile = b.pick(&[0.5, 0.8, 0.9, 0.95, 0.99, 0.999]);
    w.target_utilization = b.pick(&[0.1, 0.5, 0.8, 0.9, 1.0]);
    w.max_spot_share = b.pick(&[0.0, 0.3, 0.5, 1.0]);
    w.min_instances = b.pick(&[0, 1, 2, 5, 50]);
    w.budget_per_hour = b.pick(&[None, None, Some(0.01), Some(0.5), Some(5.0), Some(1000.0)]);
    w.latency_class = b.pick(&[LatencyClass::Standard, LatencyClass::Critical]);
    w.tiers = b.pick(&[
        vec![],
        vec!["t0".to_string()],
        vec!["t1".into(), "t2".into()],
    ]);
    if validate_tiers(&tiers).is_err() || validate_policy(&w, &tiers).is_err() {
        return;
    }
    let scale = b.pick(&[0.001, 0.1, 1.0, 10.0, 1000.0]);
    let median = f64::from(u16::from_le_bytes([b.byte(), b.byte()])) * scale / 256.0;
    // The daemon's levels hold the SLA quantile (its `level_set`).
    let mut levels = LEVELS.to_vec();
    if !levels.contains(&w.sla_quantile) {
        levels.push(w.sla_quantile);
        levels.sort_by(f64::total_cmp);
    }
    let cpu = flat(&mut b, &levels, median, "cpu");
    // A memory forecast too, where the input asks for one.
    let memory = (b.byte() % 2 == 1).then(|| {
        let gib = f64::from(b.byte()) * b.pick(&[0.1, 1.0, 10.0]);
        flat(&mut b, &levels, gib, "memory")
    });
    let p = match &memory {
        None => plan(&w, &tiers, &cpu, 0, INTERVAL_MS),
        Some(m) => plan_dimensions(&w, &tiers, &cpu, &[(Dim::Memory, m)], 0, INTERVAL_MS, &[]),
    };
    let eligible = eligible_tiers(&w, &tiers);
    let said = || {
        let shown = prescale_core::Plan {
            steps: Vec::new(),
            ..p.clone()
        };
        format!("{shown:?}\nworkload {w:?}\ntiers {tiers:?}")
    };

    assert!(!p.reason.is_empty() && !p.binding.is_empty(), "{}", said());
    let mut cost = 0.0;
    let (mut cap, mut spot, mut gib) = (0.0, 0.0, 0.0);
    // What the tiers' own minimums cost, and the spot capacity they hold.
    let (mut floor_cost, mut floor_spot) = (0.0, 0.0);
    for (name, k) in &p.target {
        let t = eligible
            .iter()
            .find(|t| &t.name == name)
            .unwrap_or_else(|| panic!("{name} is not a tier the workload may use: {}", said()));
        assert!(
            *k <= t.max_instances,
            "{name} over its max_instances: {}",
            said()
        );
        cost += f64::from(*k) * t.price_per_hour;
        cap += f64::from(*k) * t.effective_capacity();
        gib += f64::from(*k) * t.memory_gib;
        if t.class == TierClass::Spot {
            spot += f64::from(*k) * t.effective_capacity();
        }
    }
    for t in &eligible {
        floor_cost += f64::from(t.min_instances) * t.price_per_hour;
        if t.class == TierClass::Spot {
            floor_spot += f64::from(t.min_instances) * t.effective_capacity();
        }
        let k = p.target.get(&t.name).copied().unwrap_or(0);
        assert!(
            k >= t.min_instances,
            "{} under its min_instances: {}",
            t.name,
            said()
        );
    }
    assert!(
        p.cost_per_hour.is_finite() && (p.cost_per_hour - cost).abs() <= 1e-9 * cost.max(1.0),
        "cost {} for instances that cost {cost}: {}",
        p.cost_per_hour,
        said()
    );
    if let Some(budget) = w.budget_per_hour {
        if floor_cost <= budget {
            assert!(
                cost <= budget + 1e-9,
                "over the ${budget}/h budget: {}",
                said()
            );
        }
    }
    if p.binding == "sla" {
        let q = w.sla_quantile;
        let need = cpu.quantile(0, q) / w.target_utilization;
        assert!(
            cap >= need * (1.0 - 1e-9) - 1e-9,
            "{cap} vCPU for {need}: {}",
            said()
        );
        if let Some(m) = &memory {
            let need = m.quantile(0, q) / w.target_utilization;
            // Tiers whose shape gives no memory do not limit it.
            if eligible.iter().all(|t| t.memory_gib > 0.0) {
                assert!(
                    gib >= need * (1.0 - 1e-9) - 1e-9,
                    "{gib} GiB for {need}: {}",
                    said()
                );
            }
        }
        assert!(
            spot <= (w.max_spot_share * cap).max(floor_spot) + 1e-9,
            "spot {spot} of {cap} over the {} share: {}",
            w.max_spot_share,
            said()
        );
        let fill = Fill {
            instances: eligible
                .iter()
                .map(|t| (t.name.clone(), p.target.get(&t.name).copied().unwrap_or(0)))
                .collect(),
            capacity: cap,
            cost_per_hour: cost,
            binding: "sla",
            notes: Vec::new(),
        };
        let risk = shortfall_risk(&cpu, 0, &fill, &eligible, INTERVAL_MS);
        assert!(
            risk <= (1.0 - q) * (1.0 + 1e-9) + 1e-12,
            "risk {risk} over the {} bound: {}",
            1.0 - q,
            said()
        );
    }
});
