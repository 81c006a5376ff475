//! The HTML page of `prescale simulate --policy all --report FILE.html`: every policy
//! on the same trace, priced and charted side by side, with HPA at every target the
//! search for predictive's shortfall tried, so a team sees whether prescale is cheaper
//! at the service level it gets, not only at HPA's default target; and the page of
//! `--sweep KEY=... --report FILE.html`, one setting's values charted alike.

use std::fmt::Write as _;

use prescale_orchestrate::simulate::{Matched, Policy, Report, TimelineRow, MATCH_LOWEST_TARGET};

use crate::simulate_cmd::{
    against, as_is_name, as_run_summary, html_escape, matched_summary, swept_keys, Advice, Beside,
    Form, SweptRun,
};
use crate::svg::{grid_line, linear_ticks, path_through, tick_label, time_axis};

/// The style of the comparison and sweep pages.
const PAGE_STYLE: &str = "<style>body{font:14px system-ui,sans-serif;margin:24px;color:#222;max-width:960px}h1{font-size:20px}table{border-collapse:collapse;margin-top:8px}th,td{text-align:left;padding:3px 12px;border-bottom:1px solid #eee}td i{display:inline-block;width:10px;height:10px;border-radius:5px;margin-right:6px}</style>";

/// HPA at every target [`reactive_matching`](prescale_orchestrate::simulate::reactive_matching)
/// tried, as a line on the chart of cost against minutes short.
fn hpa_curve(m: &Matched) -> Curve {
    Curve {
        points: m
            .tried
            .iter()
            .map(|(t, mm, c)| (format!("HPA {:.0}%", t * 100.0), *mm, *c))
            .collect(),
        colour: colour(Policy::Reactive),
        every: 10,
    }
}

/// One run `r` as a row of a page's table, named `name` beside a dot of `colour`: its
/// cost, against the oracle's and reactive's costs (when known), minutes short, actions
/// and interruptions.
fn table_row(
    rows: &mut String,
    name: &str,
    colour: &str,
    r: &Report,
    (oracle, reactive): (Option<f64>, Option<f64>),
    extra: &str,
) {
    let (x_oracle, vs_hpa) = against(r.cost_total, oracle, reactive);
    let _ = write!(
        rows,
        "<tr><td><i style=\"background:{colour}\"></i>{}</td><td>${:.2}</td><td>{x_oracle}</td><td>{vs_hpa}</td><td>{:.0} min ({:.3}%)</td><td>{}</td><td>{}</td>{extra}</tr>",
        html_escape(name),
        r.cost_total,
        r.underprovisioned_minutes,
        r.underprovisioned_share * 100.0,
        r.actions,
        r.interruptions
    );
}

/// A policy's colour on the charts.
fn colour(p: Policy) -> &'static str {
    match p {
        Policy::Oracle => "#8c8c8c",
        Policy::Predictive => "#2e8b57",
        Policy::SpecBaseline => "#9b59b6",
        Policy::Reactive => "#3b7dd8",
        Policy::Static => "#a0522d",
        Policy::AsRun => "#d35400",
    }
}

/// Chart size and margin, in SVG units.
const W: f64 = 900.0;
const H: f64 = 380.0;
const PAD: f64 = 56.0;

/// Ticks of a log axis from `lo` to `hi` (both positive): 1, 2, 3 and 5 times powers of
/// ten.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut p = 10f64.powf(lo.log10().floor());
    while p <= hi {
        for m in [1.0, 2.0, 3.0, 5.0] {
            let v = p * m;
            if v >= lo && v <= hi {
                out.push(v);
            }
        }
        p *= 10.0;
    }
    out
}

/// A dashed line through a policy's runs at other settings: (label, minutes short,
/// cost), in the order drawn, labelled every `every`-th point and at the last.
struct Curve {
    points: Vec<(String, f64, f64)>,
    colour: &'static str,
    every: usize,
}

/// Cost against minutes short, both on log axes (minutes as 1 + minutes, so never short
/// sits on the left edge): a point per policy, and a line per curve (HPA through every
/// target tried, predictive through other SLA quantiles).
fn frontier(reports: &[Report], curves: &[Curve]) -> String {
    let reports: Vec<&Report> = charted(reports).collect();
    let points = reports
        .iter()
        .map(|r| (r.underprovisioned_minutes, r.cost_total))
        .chain(
            curves
                .iter()
                .flat_map(|c| c.points.iter().map(|(_, m, c)| (*m, *c))),
        );
    let (mut max_min, mut lo_cost, mut hi_cost) = (1.0f64, f64::INFINITY, 0.0f64);
    for (m, c) in points {
        max_min = max_min.max(m);
        if c > 0.0 {
            lo_cost = lo_cost.min(c);
            hi_cost = hi_cost.max(c);
        }
    }
    if !lo_cost.is_finite() {
        return "<p>Every policy cost nothing: no chart.</p>".into();
    }
    let (lo, hi) = (lo_cost / 1.3, hi_cost * 1.3);
    let span_x = (1.0 + max_min * 1.5).log10();
    let x = |m: f64| PAD + (W - 2.0 * PAD) * (1.0 + m.max(0.0)).log10() / span_x;
    let y = |c: f64| H - PAD - (H - 2.0 * PAD) * (c.max(lo) / lo).log10() / (hi / lo).log10();
    let mut svg = format!(
        "<svg viewBox=\"0 0 {W} {H}\" width=\"100%\" role=\"img\" aria-label=\"cost against minutes short, per policy\">"
    );
    for v in log_ticks(lo, hi) {
        grid_line(
            &mut svg,
            W,
            PAD,
            y(v),
            &format!("${}", tick_label(v, v)),
            "#eee",
        );
    }
    let mut m = 0.0;
    while m <= max_min * 1.5 {
        let _ = write!(
            svg,
            "<line x1=\"{xx:.1}\" x2=\"{xx:.1}\" y1=\"{PAD}\" y2=\"{}\" stroke=\"#eee\"/><text x=\"{xx:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{m}</text>",
            H - PAD,
            H - PAD + 16.0,
            xx = x(m)
        );
        m = if m == 0.0 { 1.0 } else { m * 10.0 };
    }
    let _ = write!(
        svg,
        "<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\">minutes under-provisioned (log scale, 0 at the left edge)</text>",
        W / 2.0,
        H - 12.0
    );
    // Where each policy's name goes: (its dot's centre, where the name starts, anchor).
    let names: Vec<_> = reports
        .iter()
        .map(|r| {
            let (cx, cy) = (x(r.underprovisioned_minutes), y(r.cost_total));
            let (tx, anchor) = if cx > W - 2.5 * PAD {
                (cx - 9.0, "end")
            } else {
                (cx + 9.0, "start")
            };
            (r, cx, cy, tx, anchor)
        })
        .collect();
    // Text placed so far, as (left, right, baseline), about 7 px a letter: the
    // policies' names, then the curves' labels, none drawn over another.
    let mut placed: Vec<(f64, f64, f64)> = names
        .iter()
        .map(|(r, _, cy, tx, anchor)| {
            let len = 7.0 * r.policy.name().len() as f64;
            let x0 = if *anchor == "end" { tx - len } else { *tx };
            (x0, x0 + len, cy + 4.0)
        })
        .collect();
    for curve in curves {
        let pts = &curve.points;
        if pts.len() > 1 {
            let d = path_through(pts.iter().map(|(_, m, c)| (x(*m), y(*c))));
            let _ = write!(
                svg,
                "<path d=\"{d}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" stroke-dasharray=\"5 4\"/>",
                curve.colour
            );
        }
        // A dot at each labelled point; labels where they have room.
        let mut last_label: Option<(f64, f64)> = None;
        for (i, (label, m, c)) in pts.iter().enumerate() {
            if i % curve.every != 0 && i + 1 != pts.len() {
                continue;
            }
            let (px, py) = (x(*m), y(*c));
            let _ = write!(
                svg,
                "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"2.5\" fill=\"{}\"/>",
                curve.colour
            );
            // A dense curve (HPA's targets) labels only points apart; one labelled at
            // every point (values swept, SLA quantiles) looks for room for each.
            let near = |(lx, ly): (f64, f64)| (px - lx).abs() < 60.0 && (py - ly).abs() < 14.0;
            if curve.every > 1 && last_label.is_some_and(near) {
                continue;
            }
            // Above the point to its right, else higher, else to its left (clear of
            // the axis), else below it to either side, where no policy's name is.
            let Some((lx, ly, anchor, space)) = [
                (px + 5.0, py - 5.0, "start"),
                (px + 5.0, py - 16.0, "start"),
                (px - 5.0, py - 5.0, "end"),
                (px + 5.0, py + 13.0, "start"),
                (px - 5.0, py + 13.0, "end"),
            ]
            .into_iter()
            .map(|(lx, ly, a)| {
                let len = 6.0 * label.len() as f64;
                let x0 = if a == "start" { lx } else { lx - len };
                (lx, ly, a, (x0, x0 + len, ly))
            })
            .find(|&(_, _, _, (x0, x1, ly))| {
                x0 > PAD
                    && !placed
                        .iter()
                        .any(|&(p0, p1, py)| x0 < p1 && p0 < x1 && (ly - py).abs() < 12.0)
            }) else {
                continue;
            };
            placed.push(space);
            last_label = Some((px, py));
            let _ = write!(
                svg,
                "<text x=\"{lx:.1}\" y=\"{ly:.1}\" font-size=\"10\" fill=\"{}\" text-anchor=\"{anchor}\">{}</text>",
                curve.colour,
                html_escape(label)
            );
        }
    }
    for (r, cx, cy, tx, anchor) in names {
        let _ = write!(
            svg,
            "<circle cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"6\" fill=\"{c}\"/><text x=\"{tx:.1}\" y=\"{:.1}\" font-size=\"12\" fill=\"{c}\" text-anchor=\"{anchor}\">{}</text>",
            cy + 4.0,
            r.policy.name(),
            c = colour(r.policy)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The reports the charts show: static is left off when it costs more than three times
/// the dearest other policy (its total is in the table), so the others stay readable.
fn charted(reports: &[Report]) -> impl Iterator<Item = &Report> {
    let others = reports
        .iter()
        .filter(|r| r.policy != Policy::Static)
        .map(|r| r.cost_total)
        .fold(0.0, f64::max);
    reports
        .iter()
        .filter(move |r| r.policy != Policy::Static || r.cost_total <= 3.0 * others)
}

/// Cost so far over the trace, a line per charted policy.
fn cost_over_time(reports: &[Report], timelines: &[Vec<TimelineRow>]) -> String {
    let kept: Vec<Policy> = charted(reports).map(|r| r.policy).collect();
    let shown: Vec<(&Report, &Vec<TimelineRow>)> = reports
        .iter()
        .zip(timelines)
        .filter(|(r, t)| !t.is_empty() && kept.contains(&r.policy))
        .collect();
    let ymax = shown
        .iter()
        .map(|(r, _)| r.cost_total)
        .fold(0.0, f64::max)
        .max(1e-9)
        * 1.05;
    let Some(n) = shown.iter().map(|(_, t)| t.len()).max().filter(|n| *n > 1) else {
        return String::new();
    };
    let x = |i: usize| PAD + (W - 2.0 * PAD) * i as f64 / (n - 1) as f64;
    let y = |c: f64| H - PAD - (H - 2.0 * PAD) * c / ymax;
    let mut svg = format!(
        "<svg viewBox=\"0 0 {W} {H}\" width=\"100%\" role=\"img\" aria-label=\"cost so far over time, per policy\">"
    );
    let (ticks, step) = linear_ticks(ymax, 5);
    for v in ticks {
        grid_line(
            &mut svg,
            W,
            PAD,
            y(v),
            &format!("${}", tick_label(v, step)),
            "#eee",
        );
    }
    // At most about 1,000 points a line.
    let every = n.div_ceil(1000).max(1);
    for (r, rows) in &shown {
        let d = path_through(
            (0..rows.len())
                .step_by(every)
                .chain(std::iter::once(rows.len() - 1))
                .map(|i| (x(i), y(rows[i].cost_so_far))),
        );
        let _ = write!(
            svg,
            "<path d=\"{d}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.8\"/>",
            colour(r.policy)
        );
    }
    let first = shown[0].1.first().map_or(0, |r| r.ts);
    let last = shown[0].1.last().map_or(0, |r| r.ts);
    time_axis(&mut svg, W, H, PAD, first, last);
    svg
}

/// The comparison page: the policies' figures, cost against minutes short (with HPA at
/// every target tried), and cost over time. Self-contained: inline SVG, no scripts.
///
/// `quantiles` are predictive's runs at other SLA quantiles: (quantile, minutes short,
/// cost); with the scenario's own run they make a line on the first chart.
pub fn compare_html(
    reports: &[Report],
    timelines: &[Vec<TimelineRow>],
    matched: Option<&Matched>,
    quantiles: &[(f64, f64, f64)],
    sla_quantile: f64,
) -> String {
    let mut curves: Vec<Curve> = matched.map(hpa_curve).into_iter().collect();
    if let Some(p) = reports.iter().find(|r| r.policy == Policy::Predictive) {
        if !quantiles.is_empty() {
            let mut pts: Vec<(f64, f64, f64)> = quantiles.to_vec();
            pts.push((sla_quantile, p.underprovisioned_minutes, p.cost_total));
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            curves.push(Curve {
                points: pts
                    .into_iter()
                    .map(|(q, m, c)| (format!("q{q}"), m, c))
                    .collect(),
                colour: colour(Policy::Predictive),
                every: 1,
            });
        }
    }
    let oracle = reports
        .iter()
        .find(|r| r.policy == Policy::Oracle)
        .map(|r| r.cost_total);
    let reactive = reports
        .iter()
        .find(|r| r.policy == Policy::Reactive)
        .map(|r| r.cost_total);
    let mut rows = String::new();
    let mut row = |name: String, colour: &str, r: &Report| {
        table_row(&mut rows, &name, colour, r, (oracle, reactive), "");
    };
    for r in reports {
        row(r.policy.name().to_string(), colour(r.policy), r);
    }
    let mut summary = String::new();
    let predictive = reports.iter().find(|r| r.policy == Policy::Predictive);
    if let (Some(p), Some(m)) = (predictive, matched) {
        let pct = m.report.reactive_target_utilization.unwrap_or_default() * 100.0;
        row(format!("reactive at {pct:.0}%"), "#9fc2ef", &m.report);
        summary = format!("{}.", matched_summary(p, m));
    }
    if let (Some(p), Some(ran)) = (
        predictive,
        reports.iter().find(|r| r.policy == Policy::AsRun),
    ) {
        summary = format!("{summary} {}.", as_run_summary(p, ran));
    }
    let head = reports.first().map_or(String::new(), |r| {
        format!(
            "{} steps ({:.1} h), seed {}: the same demand, lead times and spot interruptions for every policy.",
            r.steps, r.hours, r.seed
        )
    });
    let static_note = match reports.iter().find(|r| r.policy == Policy::Static) {
        Some(s) if !charted(reports).any(|r| r.policy == Policy::Static) => format!(
            " Static (${:.2}, over three times any other policy) is left off the charts, to keep the others readable.",
            s.cost_total
        ),
        _ => String::new(),
    };
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>prescale simulate: every policy</title>{PAGE_STYLE}</head><body><h1>prescale simulate: every policy on the same trace</h1><p>{head}</p><table><tr><th>policy</th><th>cost</th><th>x oracle</th><th>vs HPA</th><th>under-provisioned</th><th>actions</th><th>interruptions</th></tr>{rows}</table><p>{summary}</p><h2>Cost against minutes short</h2><p>Lower and further left is better. The dashed line is HPA at every target utilization tried, from the scenario's down until it was short no longer than predictive: a policy below that line is cheaper than HPA at the same service level.{quantile_note}{static_note}</p>{frontier}<h2>Cost over time</h2><p>Cost so far, a line per policy, coloured as in the table.</p>{over_time}</body></html>\n",
        summary = html_escape(&summary),
        quantile_note = if quantiles.is_empty() {
            String::new()
        } else {
            format!(
                " The green dashed line is predictive at other SLA quantiles ({}), the scenario's q{sla_quantile} among them: the cost of each service level.",
                quantiles
                    .iter()
                    .map(|(q, _, _)| format!("q{q}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
        frontier = frontier(reports, &curves),
        over_time = cost_over_time(reports, timelines),
    )
}

/// The page of `prescale simulate --sweep KEY=V1,V2,... --report FILE.html`: the oracle,
/// HPA and `policy` at each value swept (`runs`, in the order given), priced in a table
/// and charted as cost against minutes short, a line per setting through its values,
/// with HPA at every target `matched` tried down to the least short run's shortfall;
/// `as_is`, the policy at the scenario's own settings where no value swept is, is a
/// row and a point of its own.
pub(crate) fn sweep_html(
    policy: Policy,
    (oracle, reactive, as_is): (&Report, &Report, Option<&Report>),
    (runs, (own_beside, run_beside)): (&[SweptRun], (Option<&Beside>, &[Beside])),
    matched: Option<&Matched>,
    advice: Option<(&Report, Option<&Advice>)>,
    form: &Form,
) -> String {
    let mut curves: Vec<Curve> = matched.map(hpa_curve).into_iter().collect();
    // Whether another run dominates the scenario's own, and the settings that make it.
    let verdict = match advice {
        Some((own, Some(a))) => format!(
            "<p class=\"verdict\"><b>{}</b> {} {}</p><pre>{}</pre>",
            html_escape(&a.sentence(own)),
            html_escape(&a.halves_sentence()),
            html_escape(a.lead_in),
            html_escape(&a.core.toml)
        ),
        Some((_, None)) => format!("<p class=\"verdict\">{}</p>", form.not_dominated()),
        None => String::new(),
    };
    let keys = swept_keys(runs);
    let grid = runs.iter().any(|r| r.settings.len() > 1);
    // One setting: its values label the points; several: each point its run's number
    // in the table (whole names crowd each other out).
    let label = |k: usize, r: &SweptRun| match &r.settings[..] {
        [(_, value)] if keys.len() == 1 => format!("{value}{}", if r.own { " *" } else { "" }),
        _ => format!("{}", k + 1),
    };
    // A line per setting swept alone, or on a grid per combination of the settings but
    // the last, through the last one's values.
    let line = |r: &SweptRun| -> Vec<(String, String)> {
        match &r.settings[..] {
            [(key, _)] => vec![(key.clone(), String::new())],
            set => set[..set.len() - 1].to_vec(),
        }
    };
    let mut lines: Vec<Vec<(String, String)>> = Vec::new();
    for r in runs {
        if !lines.contains(&line(r)) {
            lines.push(line(r));
        }
    }
    for l in &lines {
        curves.push(Curve {
            points: runs
                .iter()
                .enumerate()
                .filter(|(_, r)| line(r) == *l)
                .map(|(k, r)| {
                    let (m, c) = (r.report.underprovisioned_minutes, r.report.cost_total);
                    (label(k, r), m, c)
                })
                .collect(),
            colour: colour(policy),
            every: 1,
        });
    }
    let (o, h) = (Some(oracle.cost_total), Some(reactive.cost_total));
    let mut rows = String::new();
    let named = [
        (
            oracle.policy.name().to_string(),
            colour(Policy::Oracle),
            oracle,
        ),
        (
            reactive.policy.name().to_string(),
            colour(Policy::Reactive),
            reactive,
        ),
    ];
    let own = as_is.map(|r| (as_is_name(policy, form), colour(policy), r));
    let swept = runs.iter().enumerate().map(|(k, r)| {
        let name = if keys.len() == 1 {
            r.name()
        } else {
            format!("{}. {}", k + 1, r.name())
        };
        (name, colour(policy), &r.report)
    });
    // HPA as short as each run of the policy, and whether another dominates it.
    let cells = |b: Option<&Beside>, r: &Report| {
        b.map_or_else(
            || "<td></td><td></td><td></td>".to_string(),
            |b| {
                let (hpa, vs) = b.cells(r);
                let by = b.dominated_by.as_ref().map_or(String::new(), |n| {
                    format!("dominated by {}", html_escape(n))
                });
                format!("<td>{hpa}</td><td>{vs}</td><td>{by}</td>")
            },
        )
    };
    let beside = [None, None]
        .into_iter()
        .chain(as_is.map(|_| own_beside))
        .chain(run_beside.iter().map(Some));
    for ((name, c, r), b) in named.into_iter().chain(own).chain(swept).zip(beside) {
        table_row(&mut rows, &name, c, r, (o, h), &cells(b, r));
    }
    let hpa_note = if matched.is_some() {
        format!(" The blue dashed line is HPA at every target utilization tried, from the {} down until it was short no longer than the least short run: a run below that line is cheaper than HPA at the same service level.", form.whose())
    } else {
        String::new()
    };
    let lines = if keys.len() == 1 {
        format!(
            "The {} line joins its runs in the order the values were given, each labelled with its value.",
            policy.name()
        )
    } else if grid {
        format!(
            "Every combination of the settings' values was run; a {} line per combination of all but {} joins its runs through that setting's values in the order given, each labelled with its number in the table.",
            policy.name(),
            keys.last().copied().unwrap_or_default()
        )
    } else {
        format!(
            "A {} line per setting joins its runs in the order the values were given, each labelled with its number in the table; each setting was swept alone, the others as the {} settings have them.",
            policy.name(),
            form.whose()
        )
    };
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>prescale simulate: {keys} swept</title>{PAGE_STYLE}</head><body><h1>prescale simulate: {policy} at {each} of {keys}</h1><p>{steps} steps ({hours:.1} h), seed {seed}: the same demand, lead times and spot interruptions for every run; the oracle and HPA as the {whose} settings have them; * the {whose} own value.</p><table><tr><th>run</th><th>cost</th><th>x oracle</th><th>vs HPA</th><th>under-provisioned</th><th>actions</th><th>interruptions</th><th>HPA as short</th><th>vs it</th><th></th></tr>{rows}</table><p>HPA as short: HPA at its highest target utilization (down to {lowest:.0}%) short no longer than the run; vs it: the run's cost against that; dominated: another {policy} run costs no more and is short no longer.</p>{verdict}<h2>Cost against minutes short</h2><p>Lower and further left is better. {lines}{hpa_note}</p>{frontier}</body></html>\n",
        keys = html_escape(&keys.join(", ")),
        whose = form.whose(),
        each = if grid { "every combination of the values" } else { "each value" },
        policy = policy.name(),
        lowest = MATCH_LOWEST_TARGET * 100.0,
        steps = oracle.steps,
        hours = oracle.hours,
        seed = oracle.seed,
        frontier = frontier(
            &[oracle, reactive]
                .into_iter()
                .chain(as_is)
                .cloned()
                .collect::<Vec<_>>(),
            &curves
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_ticks_are_one_two_three_five_within_the_range() {
        assert_eq!(
            log_ticks(3.0, 120.0),
            vec![3.0, 5.0, 10.0, 20.0, 30.0, 50.0, 100.0]
        );
        assert_eq!(log_ticks(0.5, 0.9), vec![0.5]);
    }
}
