//! The dashboard as a person sees it: `prescale demo` serves two days of two workloads,
//! headless Chromium loads the page and runs its script, and the page it built is
//! checked against the API it read (skipped, saying so, without Chromium; `.ci/run`
//! installs it).

mod common;

use common::{browser, enc, fast_config, get, http, rendered, wait_for, Daemon, Demo};

fn json(addr: std::net::SocketAddr, path: &str) -> serde_json::Value {
    let (code, body) = get(addr, path).unwrap_or_else(|| panic!("no answer to {path}"));
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str::<serde_json::Value>(&body).unwrap()["data"].take()
}

/// Instances `workload` holds (ready and pending) as the daemon at `addr` says; 0
/// before it answers.
fn held(addr: std::net::SocketAddr, workload: &str) -> u64 {
    let Some((200, b)) = get(addr, &format!("/api/v1/workloads/{workload}/status")) else {
        return 0;
    };
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    v["data"]["allocation"]["tiers"]
        .as_object()
        .cloned()
        .unwrap_or_default()
        .values()
        .map(|c| c["ready"].as_u64().unwrap_or(0) + c["pending"].as_u64().unwrap_or(0))
        .sum()
}

/// The `d` attributes of the `<path>`s of `html` with the attribute `attr`.
fn paths<'a>(html: &'a str, attr: &str) -> Vec<&'a str> {
    html.split("<path ")
        .skip(1)
        .filter_map(|p| {
            let tag = &p[..p.find('>')?];
            tag.contains(attr).then_some(())?;
            let d = tag.split("d=\"").nth(1)?;
            Some(&d[..d.find('"')?])
        })
        .collect()
}

/// Points in an SVG path (`M` and `L` commands).
fn points(d: &str) -> usize {
    d.matches(['M', 'L']).count()
}

#[test]
fn the_dashboard_draws_each_workload_from_the_api_in_a_browser() {
    let Some(browser) = browser() else {
        return;
    };
    // Two simulated days as fast as the machine goes, then the dashboard stays up.
    let demo = Demo::run(2, 7);
    demo.tuned();
    let addr = demo.addr;
    let overview = json(addr, "/api/v1/workloads");
    let html = rendered(&browser, &format!("http://{addr}/"));

    // The header says what the API says, not an error.
    let meta = html
        .split("id=\"meta\">")
        .nth(1)
        .and_then(|m| m.split('<').next())
        .unwrap_or_else(|| panic!("no header in {}", &html[..html.len().min(2000)]));
    assert!(
        meta.starts_with(&format!(
            "2 workload(s) · {} control passes",
            overview["ticks"]
        )),
        "{meta}"
    );
    // And what the fleet holds costs against the demo's fleet budget, and spent this
    // month.
    let fleet = &overview["fleet"];
    assert!(
        meta.contains(&format!(
            " · fleet ${:.2}/h held of a $8.00/h budget, ${:.2} this month",
            fleet["cost_per_hour"].as_f64().unwrap(),
            fleet["spend"]["spent"].as_f64().unwrap()
        )),
        "{meta}"
    );
    let sections: Vec<&str> = html.split("<section>").skip(1).collect();
    assert_eq!(
        sections.len(),
        4,
        "two workloads, the anomalies in the demo's metrics and the sources"
    );
    assert!(
        sections[3].starts_with("<h2>Sources</h2>"),
        "{}",
        sections[3]
    );
    // The store's series and size, and the process's memory, as the API says.
    let sources = json(addr, "/api/v1/sources");
    let series = sources["series"].as_u64().unwrap();
    assert!(series > 0, "{sources}");
    assert!(
        sections[3].contains(&format!(
            "<span>series <b>{series}</b></span><span>on disk <b>"
        )),
        "{}",
        sections[3]
    );
    if cfg!(target_os = "linux") {
        assert!(sections[3].contains("<span>memory <b>"), "{}", sections[3]);
    }
    // Each tier's lead times as measured, in its row of the tier table: the simulated
    // cloud's come up after the configured median (120 s spot, 180 s standard), seen at
    // the simulated minute's pass.
    let leads = &overview["lead_times"];
    for tier in ["spot", "standard"] {
        let m = &leads[tier];
        let cell = format!(
            "<td class=\"lead\" title=\"configured: {} s, 90th percentile {} s; measured over the last {} instance(s), to the 60 s control pass\">{:.0} / {:.0} s</td>",
            m["configured_s"],
            m["configured_p90_s"],
            m["samples"],
            m["median_s"].as_f64().unwrap(),
            m["p90_s"].as_f64().unwrap()
        );
        assert!(sections[0].contains(&cell), "{cell}\n{leads}");
    }
    assert_eq!(leads["standard"]["median_s"], 180.0, "{leads}");
    // And what every workload holds of it against its max_instances (the demo's pools
    // never fill).
    let pools = &overview["pools"];
    for tier in ["spot", "standard", "high-performance"] {
        let p = &pools[tier];
        let by: Vec<String> = p["by"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let by = if by.is_empty() {
            "nobody".to_string()
        } else {
            by.join(", ")
        };
        let cell = format!(
            "<td class=\"pool\" title=\"{by} of max_instances = {}, shared by every workload\">{} / {}</td>",
            p["max_instances"], p["held"], p["max_instances"]
        );
        assert!(sections[0].contains(&cell), "{cell}\n{pools}");
    }
    assert!(pools["spot"]["held"].as_u64().unwrap() > 0, "{pools}");
    // The demo's metrics are watched as a daemon's sources are: its surges are listed.
    let end = overview["last_tick"].as_f64().unwrap() / 1000.0;
    let watch = json(
        addr,
        &format!(
            "/api/v1/anomalies?start={}&end={end}&limit=1000",
            end - 48.0 * 3600.0
        ),
    );
    assert!(
        sections[2].starts_with(&format!(
            "<h2>Anomalies in stored series</h2><div class=\"kpis\"><span>series watched <b>{}</b></span>",
            watch["watch"]["watched"]
        )),
        "{}",
        sections[2]
    );
    let listed = watch["anomalies"].as_array().unwrap();
    // The flash crowd on the web service at 14:00 on the last day (2026-01-06) is one,
    // found as it rises.
    let crowd = 1_767_571_200.0 + 86_400.0 + 14.0 * 3600.0;
    assert!(
        listed.iter().any(|a| a["labels"]["workload"] == "web"
            && (crowd..crowd + 180.0).contains(&a["time"].as_f64().unwrap())),
        "{watch}"
    );
    // The campaign that morning, as large but announced (a planned event), is not; the
    // web section shades it on its chart.
    let campaign = crowd - 4.0 * 3600.0;
    assert!(
        !listed.iter().any(|a| a["labels"]["workload"] == "web"
            && (campaign..campaign + 7200.0).contains(&a["time"].as_f64().unwrap())),
        "{watch}"
    );
    assert!(
        sections[0].contains("<rect class=\"event\"") && sections[0].contains(">campaign</text>"),
        "{}",
        &sections[0][..sections[0].len().min(2000)]
    );
    // And says how it went, as the events list reviews it: ready as it began.
    let events = json(addr, "/api/v1/workloads/web/events");
    let review = &events[0]["review"];
    assert_eq!(events[0]["state"], "over", "{events}");
    assert_eq!(review["underprovisioned_minutes"], 0.0, "{events}");
    let said = format!(
        "<div class=\"event-review small\">planned event \"campaign\" was on for {} step(s): demand peaked at {:.2} vCPU, prescale's capacity cost ${:.2} over it and was short 0.0 min</div>",
        review["steps"],
        review["peak_demand"].as_f64().unwrap(),
        review["cost"].as_f64().unwrap()
    );
    assert!(
        sections[0].contains(&said),
        "{said} in {}",
        &sections[0][..sections[0].len().min(3000)]
    );
    // A row per event, as the API groups them: the batch job's CPU and memory moving
    // together are one.
    let grouped = json(
        addr,
        &format!(
            "/api/v1/anomalies?start={}&end={end}&group=events&limit=20",
            end - 48.0 * 3600.0
        ),
    );
    let events = grouped["events"].as_array().unwrap();
    assert_eq!(grouped["found"].as_u64().unwrap() as usize, listed.len());
    assert!(
        sections[2].contains(&format!(
            "<b>{}</b> in <b>{}</b> event(s)",
            grouped["found"], grouped["events_total"]
        )),
        "{}",
        sections[2]
    );
    assert_eq!(
        sections[2].matches("<tr class=\"anomaly\">").count(),
        events.len()
    );
    assert_eq!(
        sections[2].matches("within 60 s of each other").count(),
        events.iter().filter(|e| e["anomalies"] != 1).count(),
        "{}",
        sections[2]
    );
    for (w, s) in overview["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&sections)
    {
        let name = w["name"].as_str().unwrap();
        assert!(s.starts_with(&format!("<h2>{name}</h2>")), "{name}");
        let status = json(addr, &format!("/api/v1/workloads/{name}/status"));
        // The figures at the top are the status's.
        let demand = status["demand"].as_f64().unwrap();
        assert!(
            s.contains(&format!("demand <b>{demand:.2}</b> vCPU")),
            "{name}: demand {demand:.2} not shown"
        );
        let plan = &status["plan"];
        assert!(
            s.contains(&format!(
                "plan <b>${:.3}/h</b>",
                plan["cost_per_hour"].as_f64().unwrap()
            )),
            "{name}: the plan's cost is not shown"
        );
        // Its share of the fleet budget, all it wants (the demo's never binds).
        let fleet = &status["fleet"];
        assert!(
            s.contains(&format!(
                "fleet share <b>${:.3}/h</b> of ${:.3}/h wanted",
                fleet["share"].as_f64().unwrap(),
                fleet["want"].as_f64().unwrap()
            )) && fleet["share"] == fleet["want"],
            "{name}: the fleet share is not shown: {fleet}"
        );
        // The tuning's runs (below), then two charts: demand and capacity, and what the
        // capacity costs; then one for each other dimension the plan covers (the batch
        // job's memory).
        let others = status["dimensions"].as_array().map_or(0, |d| d.len());
        assert_eq!(others, usize::from(name == "batch"), "{name}: {status}");
        assert_eq!(s.matches("<svg").count(), 3 + others, "{name}");
        let (first, rest) = s
            .split_once("cost per hour by tier")
            .unwrap_or_else(|| panic!("{name}: no cost chart"));
        let now = overview["last_tick"].as_f64().unwrap() / 1000.0;
        // As the page asks: the last 48 hours, at most 720 samples (each the highest,
        // or the mean, of its slice).
        let stored = |sel: String, reduce: &str| -> Vec<(f64, f64)> {
            let v = json(
                addr,
                &format!(
                    "/api/v1/query_range?series={}&start={}&end={now}&max_points=720&reduce={reduce}",
                    enc(&sel),
                    now - 48.0 * 3600.0
                ),
            );
            serde_json::from_value(v["values"].clone()).unwrap()
        };
        // The first: the demand line with a point per stored step the chart covers (the
        // last 48 hours), the forecast fan (outer and inner bands, dashed median) with a
        // point per forecast step, and capacity stacked per tier.
        let demand_steps = stored(format!("prescale_demand{{workload=\"{name}\"}}"), "max").len();
        let line = paths(first, "stroke=\"#1d2330\"");
        assert_eq!(line.len(), 1, "{name}: one demand line");
        assert_eq!(
            points(line[0]),
            demand_steps,
            "{name}: a point per demand step"
        );
        let steps = status["forecast"]["values"].as_array().unwrap().len();
        let fan = paths(first, "fill=\"#e0457b\"");
        assert_eq!(fan.len(), 2, "{name}: the outer and inner bands");
        for band in &fan {
            assert_eq!(
                points(band),
                2 * steps,
                "{name}: each band goes out and back"
            );
        }
        let median = paths(first, "stroke=\"#e0457b\"");
        assert_eq!(median.len(), 1, "{name}");
        assert_eq!(points(median[0]), steps, "{name}: a median point per step");
        let tiers = overview["tiers"].as_array().unwrap();
        assert_eq!(
            paths(first, "fill-opacity=\"0.35\"").len(),
            tiers.len(),
            "{name}: a capacity area per tier"
        );
        // The second: each tier's instances held, at its price, as an area with a point
        // per pass, there and back; and what they came to over the last day.
        let mut spent = 0.0;
        for (tier, area) in tiers.iter().zip(paths(s, "fill-opacity=\"0.6\"")) {
            let held = stored(
                format!(
                    "prescale_instances{{tier=\"{}\",workload=\"{name}\"}}",
                    tier["name"].as_str().unwrap()
                ),
                "mean",
            );
            assert_eq!(points(area), 2 * held.len(), "{name}: {tier}");
            let price = tier["price_per_hour"].as_f64().unwrap();
            for (i, (t, n)) in held.iter().enumerate() {
                let (a, b) = (t.max(now - 86_400.0), held.get(i + 1).map_or(now, |x| x.0));
                spent += n * price * (b - a).max(0.0) / 3600.0;
            }
        }
        assert!(spent > 0.0, "{name}");
        let shown: f64 = s
            .split("last 24 h <b>$")
            .nth(1)
            .and_then(|x| x.split('<').next())
            .and_then(|x| x.parse().ok())
            .unwrap_or_else(|| panic!("{name}: no spend for the last day"));
        assert!((shown - spent).abs() < 0.011, "{name}: {shown} for {spent}");
        // And against HPA on the same demand, as the API compares them.
        let c = json(addr, &format!("/api/v1/workloads/{name}/compare?days=7"));
        let f = |v: &serde_json::Value| v.as_f64().unwrap_or_else(|| panic!("{c}"));
        let line = format!(
            "prescale <b>${:.2}</b>, short {:.1} min · HPA would have cost <b>${:.2}</b>, short {:.1} min · <b>{:+.0}%</b> against HPA",
            f(&c["prescale"]["cost"]),
            f(&c["prescale"]["underprovisioned_minutes"]),
            f(&c["hpa"]["cost"]),
            f(&c["hpa"]["underprovisioned_minutes"]),
            100.0 * f(&c["vs_hpa"])
        );
        assert!(s.contains(&line), "{name}: no {line}");
        let m = &c["hpa_matched"];
        let matched = if m["found"].as_bool().unwrap() {
            format!(
                "HPA short no longer (target {:.0}%) would have cost <b>${:.2}</b>: <b>{:+.0}%</b>",
                100.0 * f(&m["target_utilization"]),
                f(&m["cost"]),
                100.0 * f(&c["vs_matched_hpa"])
            )
        } else {
            format!(
                "HPA is never short as little (least at target {:.0}%: {:.1} min, <b>${:.2}</b>)",
                100.0 * f(&m["target_utilization"]),
                f(&m["underprovisioned_minutes"]),
                f(&m["cost"])
            )
        };
        assert!(s.contains(&matched), "{name}: no {matched}");
        // And against what the workload has without prescale (its `actual`: the demo's
        // fixed deployments, web 40 vCPU, batch 48 vCPU and 280 GiB), priced as
        // instances of HPA's tier over the same span, as many as the dimension needing
        // most asks for (batch: its memory).
        let (vcpu, gib) = match name {
            "web" => (40.0, 0.0),
            _ => (48.0, 280.0),
        };
        let tier = tiers
            .iter()
            .find(|t| t["name"] == c["hpa_tier"])
            .unwrap_or_else(|| panic!("{c}"));
        let per = f(&tier["vcpu"]) * f(&tier["performance_factor"]);
        let instances = f64::max((vcpu / per).ceil(), (gib / f(&tier["memory_gib"])).ceil());
        let dims = if name == "web" {
            vec!["cpu"]
        } else {
            vec!["cpu", "memory"]
        };
        assert_eq!(c["dimensions"], serde_json::json!(dims), "{c}");
        let hours = (f(&c["to"]) - f(&c["from"])) / 3.6e6;
        let want = instances * f(&tier["price_per_hour"]) * hours;
        let ran = f(&c["as_run"]["cost"]);
        assert!((ran - want).abs() < 1e-6, "{name}: as run {ran} for {want}");
        let line = format!(
            "what it actually had cost <b>${ran:.2}</b>, short {:.1} min: prescale <b>{:+.0}%</b>",
            f(&c["as_run"]["underprovisioned_minutes"]),
            100.0 * f(&c["vs_as_run"])
        );
        assert!(s.contains(&line), "{name}: no {line}");
        // Its safeguards as the demo tuned them on its two days (the daemon's daily
        // tuning): the finding in words and, where another setting dominates its own,
        // the lines to set.
        let t = json(addr, &format!("/api/v1/workloads/{name}/tune"));
        let tuned = &t;
        let summary = t["summary"].as_str().unwrap_or_else(|| panic!("{tuned}"));
        assert!(
            summary.starts_with("Replayed over its last 47.9 h of stored demand, "),
            "{tuned}"
        );
        let shown = summary.replace('&', "&amp;");
        assert!(s.contains(&shown), "{name}: no tuning {shown}");
        if let Some(toml) = t["tuning"]["advice"]["toml"].as_str() {
            let lines: Vec<&str> = toml.trim().lines().skip(2).collect();
            let set = format!(
                "To use it, set in its [[workloads]] entry and reload: <code>{}</code>",
                lines.join("; ")
            );
            assert!(s.contains(&set), "{name}: no {set}");
            // And, where it held on each half, the command that writes it.
            let write = format!(
                "<code>prescale tune {name} --write prescale.toml</code> writes it into the file"
            );
            assert_eq!(
                s.contains(&write),
                t["tuning"]["advice"]["holds_on_each_half"] == true,
                "{name}: {write}"
            );
        }
        // And drawn: a point per run replayed, cost against minutes short, each named
        // with its figures, the own settings and the advice told apart.
        let picture = s
            .split("<div class=\"tune-box\"><svg viewBox=\"0 0 460 170\" role=\"img\" class=\"tune-runs\"")
            .nth(1)
            .and_then(|p| p.split("</table>").next())
            .unwrap_or_else(|| panic!("{name}: no tuning picture"));
        let runs: Vec<&serde_json::Value> = std::iter::once(&t["tuning"]["own"])
            .chain(t["tuning"]["runs"].as_array().unwrap())
            .collect();
        assert_eq!(picture.matches("<circle").count(), runs.len(), "{picture}");
        let named = |r: &serde_json::Value| {
            let settings = r["settings"].as_object().unwrap();
            if settings.is_empty() {
                "its own settings".to_string()
            } else {
                settings
                    .iter()
                    .map(|(k, v)| format!("{k} = {}", v.as_str().unwrap()))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        for (k, r) in runs.iter().enumerate() {
            let title = format!(
                "<title>{}: ${:.2}, {:.1} min short</title>",
                named(r),
                f(&r["cost"]),
                f(&r["underprovisioned_minutes"])
            );
            let advised = t["tuning"]["advice"]["settings"] == r["settings"];
            let class = match (k, advised) {
                (0, _) => "run own",
                (_, true) => "run advice",
                _ => "run",
            };
            assert!(
                picture.contains(&format!("<g class=\"{class}\">{title}")),
                "{name}: no {class} {title} in {picture}"
            );
            // And listed beside, with the same figures.
            let row = format!(
                "{}{}</td><td>${:.2}</td><td>{:.1} min</td>",
                named(r),
                if class == "run advice" {
                    " <b>(advice)</b>"
                } else {
                    ""
                },
                f(&r["cost"]),
                f(&r["underprovisioned_minutes"])
            );
            assert!(picture.contains(&row), "{name}: no row {row} in {picture}");
        }
        // And drawn, dashed, over the chart's 48 hours: a point per step of the query's
        // answer (every 4 minutes: 720 at most), each the deployment's requests.
        // What a query answers over the chart's 48 hours, as the page asks it.
        let over_the_chart = |query: &serde_json::Value| {
            let q = query.as_str().unwrap_or_else(|| panic!("{name}: {w}"));
            json(
                addr,
                &format!(
                    "/api/v1/query_range?query={}&start={}&end={now}&step=240",
                    enc(q),
                    now - 48.0 * 3600.0
                ),
            )
        };
        let answer = over_the_chart(&w["actual"]);
        let values = answer["result"][0]["values"].as_array().unwrap();
        assert!(values.len() > 100, "{name}: {answer}");
        assert!(
            values
                .iter()
                .all(|v| v[1].as_str() == Some(&vcpu.to_string())),
            "{name}: {answer}"
        );
        let had = paths(first, "stroke=\"#d35400\"");
        assert_eq!(had.len(), 1, "{name}: one line of what it has");
        assert_eq!(points(had[0]), values.len(), "{name}");
        // The batch job's memory: its chart, with the 280 GiB it requests drawn dashed
        // from its own `actual`, a point per step of that query's answer.
        let memory_had = paths(rest, "stroke=\"#d35400\"");
        if name == "batch" {
            assert!(rest.contains("memory (GiB): demand "), "{name}");
            let answer = over_the_chart(&w["dimensions_actual"]["memory"]);
            let gib = answer["result"][0]["values"].as_array().unwrap();
            assert!(gib.iter().all(|v| v[1].as_str() == Some("280")), "{answer}");
            assert_eq!(memory_had.len(), 1, "{name}");
            assert_eq!(points(memory_had[0]), gib.len(), "{name}");
        } else {
            assert!(memory_had.is_empty(), "{name}");
        }
        assert!(
            s.contains("what it has without prescale"),
            "{name}: in the legend"
        );
        let month = status["spend"]["spent"].as_f64().unwrap();
        assert!(
            s.contains(&format!("this month <b>${month:.2}</b>")),
            "{name}: this month's spend"
        );
        // How often demand stayed within the planned band over the last day, as the
        // query API computes it.
        let q = format!(
            r#"avg_over_time((prescale_demand{{workload="{name}"}} <= bool prescale_forecast_sla{{workload="{name}"}})[1d:1m])"#
        );
        let within = json(addr, &format!("/api/v1/query?time={now}&query={}", enc(&q)));
        let within: f64 = within["result"][0]["value"][1]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((0.5..=1.0).contains(&within), "{name}: {within}");
        assert!(
            s.contains(&format!(
                "within the planned band <b>{:.1}%</b> (SLA q{})",
                100.0 * within,
                plan["quantile"]
            )),
            "{name}: the band's coverage {within}"
        );
        // Each anomaly in the chart's window is ringed.
        let shown = status["anomalies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["ts"].as_f64().unwrap() / 1000.0 >= now - 48.0 * 3600.0)
            .count();
        // (beside the tuning's points).
        assert_eq!(
            s.matches("<circle").count() - picture.matches("<circle").count(),
            shown,
            "{name}: anomalies"
        );
        // The plan's reason, the allocation per tier and the latest decisions.
        let reason = plan["reason"].as_str().unwrap();
        let first_words: String = reason
            .chars()
            .take(40)
            .collect::<String>()
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        assert!(
            s.contains(&format!("<p class=\"reason\">{first_words}")),
            "{name}: the plan's reason is not shown"
        );
        let decisions = json(
            addr,
            &format!("/api/v1/workloads/{name}/decisions?limit=12"),
        );
        let rows = s.matches("<td class=\"k-").count();
        assert_eq!(rows, decisions.as_array().unwrap().len(), "{name}");
        assert!(rows > 0, "{name}: no decisions");
    }
    let shown: usize = sections.iter().map(|s| s.matches("<circle").count()).sum();
    assert!(shown > 0, "the demo's surges are ringed as anomalies");

    // Only the decisions that changed something, as a link asks.
    let changes = rendered(&browser, &format!("http://{addr}/?decisions=changes"));
    for (w, s) in overview["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .zip(changes.split("<section>").skip(1))
    {
        let name = w["name"].as_str().unwrap();
        let want = json(
            addr,
            &format!("/api/v1/workloads/{name}/decisions?limit=12&kind=act,error,event,config"),
        );
        assert_eq!(
            s.matches("<td class=\"k-").count(),
            want.as_array().unwrap().len(),
            "{name}"
        );
        assert!(!s.contains("class=\"k-hold\""), "{name}: a hold listed");
    }
}

#[test]
fn the_dashboard_shows_what_a_removed_workload_left_until_it_is_released() {
    let Some(browser) = browser() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let base = fast_config();
    let web = "\n[[workloads]]\nname = \"web\"\ndemand = 'host_cpu_usage_cores{mode=\"busy\"}'\nstep_s = 1\nhorizon_s = 600\n";
    let d = Daemon::start(dir.path(), &(base.clone() + web));
    wait_for(|| held(d.addr, "web") > 0, "web's capacity", &|| d.logs());
    // Removed from the file and reloaded: what it holds is left, and shown.
    std::fs::write(dir.path().join("p.toml"), &base).unwrap();
    let (code, body) = http(d.addr, "POST", "/-/reload", &[], b"").unwrap();
    assert_eq!(code, 200, "{body}");
    let left = json(d.addr, "/api/v1/unmanaged");
    let cost = left["cost_per_hour"].as_f64().unwrap();
    assert!(cost > 0.0, "{left}");
    let html = rendered(&browser, &format!("http://{}/", d.addr));
    let section = html
        .split("<section>")
        .find(|s| s.contains("<h2>Left unmanaged</h2>"))
        .unwrap_or_else(|| panic!("no unmanaged section: {}", &html[..html.len().min(3000)]));
    assert!(
        section.contains(&format!(
            "${cost:.3}/h is held for workloads no longer in the configuration"
        )),
        "{section}"
    );
    assert!(section.contains("<td>web</td>"), "{section}");
    assert!(
        section.contains("removed by a configuration reload"),
        "{section}"
    );
    assert!(
        section.contains(&format!(
            "curl -X POST http://{}/api/v1/unmanaged/web/release",
            d.addr
        )),
        "{section}"
    );
    assert!(
        html.contains(&format!(
            "${cost:.2}/h held for workloads no longer configured"
        )),
        "the page's summary line says so too"
    );
    // Released: the section goes.
    let (code, body) = http(d.addr, "POST", "/api/v1/unmanaged/web/release", &[], b"").unwrap();
    assert_eq!(code, 200, "{body}");
    let html = rendered(&browser, &format!("http://{}/", d.addr));
    assert!(html.contains("<h2>Sources</h2>"), "the page was drawn");
    assert!(
        !html.contains("<h2>Left unmanaged</h2>"),
        "released, nothing left to show"
    );
}

#[test]
fn a_paused_workload_keeps_its_capacity_and_the_dashboard_says_so() {
    let Some(browser) = browser() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &fast_config());
    wait_for(|| held(d.addr, "host") > 0, "host's capacity", &|| d.logs());
    let (code, body) = http(
        d.addr,
        "POST",
        "/api/v1/workloads/host/pause?scope=all&for=1h&reason=load%20test",
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(code, 200, "{body}");
    let p: serde_json::Value = serde_json::from_str(&body).unwrap();
    let p = &p["data"]["paused"];
    assert_eq!(p["scope"], "all", "{body}");
    let hour = p["until"].as_i64().unwrap() - p["since"].as_i64().unwrap();
    assert_eq!(hour, 3_600_000, "{body}");
    // Logged, exported, and drawn on the workload's section.
    let logged = json(d.addr, "/api/v1/workloads/host/decisions?kind=config");
    assert!(
        logged.to_string().contains("paused (all) until"),
        "{logged}"
    );
    let (_, metrics) = get(d.addr, "/metrics").unwrap();
    assert!(
        metrics.contains("prescale_workload_paused{workload=\"host\"} 1"),
        "{metrics}"
    );
    // Once a pass has stored that the pause held it, the chart shades the time.
    wait_for(
        || {
            json(
                d.addr,
                "/api/v1/query?query=prescale_paused%7Bworkload%3D%22host%22%7D",
            )["result"][0]["value"][1]
                == "1"
        },
        "a pass held by the pause",
        &|| d.logs(),
    );
    // Tried at its first pass, its tuning could not run (a day of demand is needed):
    // the page says why and when it is tried again.
    wait_for(
        || get(d.addr, "/api/v1/workloads/host/tune").is_some_and(|(code, _)| code == 200),
        "host's first tuning",
        &|| d.logs(),
    );
    let tuned = json(d.addr, "/api/v1/workloads/host/tune");
    // As the page's fmtTime writes a time: to the minute, a space for the T.
    let minute = |ms: &serde_json::Value| {
        format!("{}Z", &prescale_core::format_ts(ms.as_i64().unwrap())[..16]).replace('T', " ")
    };
    let why = tuned["error"].as_str().unwrap_or_else(|| panic!("{tuned}"));
    assert!(why.contains("a tuning needs at least 24 h"), "{tuned}");
    let html = rendered(&browser, &format!("http://{}/", d.addr));
    let line = format!(
        "<div class=\"small tune-failed\" title=\"GET /api/v1/workloads/host/tune\">not tuned at {}: {why}; tried again from {}</div>",
        minute(&tuned["at"]),
        minute(&tuned["next_at"])
    );
    assert!(
        html.contains(&line),
        "{line}\n{}",
        &html[..html.len().min(3000)]
    );
    assert!(
        html.contains("<div class=\"paused\">paused by an operator until")
            && html.contains("capacity is left as it is — \"load test\""),
        "{}",
        &html[..html.len().min(3000)]
    );
    assert!(
        html.contains("class=\"paused-span\"") && html.contains("</i>paused by an operator</span>"),
        "the chart shades the pause and its legend names it"
    );
    // Lifted: the section says nothing of it.
    let (code, body) = http(d.addr, "POST", "/api/v1/workloads/host/resume", &[], b"").unwrap();
    assert_eq!(code, 200, "{body}");
    let lifted: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(&lifted["data"]["lifted"], p, "{body}");
    let html = rendered(&browser, &format!("http://{}/", d.addr));
    assert!(html.contains("<h2>host</h2>"), "the page was drawn");
    assert!(!html.contains("<div class=\"paused\">"), "lifted");
    assert!(
        html.contains("class=\"paused-span\""),
        "the chart still shows when it was paused"
    );
}

/// Declares the planned event `body` (JSON) for the host workload through the API.
fn declare(addr: std::net::SocketAddr, body: &str) {
    let (code, answer) = http(
        addr,
        "POST",
        "/api/v1/workloads/host/events",
        &[],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(code, 200, "{answer}");
}

#[test]
fn a_planned_event_is_provisioned_ahead_and_the_dashboard_shows_it() {
    let Some(browser) = browser() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // A launch two minutes from now that needs at least 40 vCPU: within the slowest
    // tier's 90th-percentile lead time (450 s), so asked for at once.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (start, end) = (now + 120, now + 3_600);
    // And a nightly job at this time of day, three minutes on, every day in UTC, that
    // needs 10 vCPU (less than the launch: the launch binds).
    let nightly = now + 180;
    let (minute, hour) = (nightly / 60 % 60, nightly / 3_600 % 24);
    let config = fast_config().replacen(
        "\n[providers]\n",
        &format!(
            "\n[[workloads.events]]\nname = \"launch\"\nstart = {start}\nend = {end}\nmin_demand = 40.0\n\n\
             [[workloads.recurring_events]]\nname = \"nightly\"\nevery = \"{minute} {hour} * * *\"\nduration_s = 600\nmin_demand = 10.0\n\n[providers]\n"
        ),
        1,
    );
    assert!(config.contains("name = \"launch\""));
    let d = Daemon::start(dir.path(), &config);
    // 40 vCPU at the 80% target utilization on 4-vCPU instances: 13 at least, before
    // the event starts, where the host's own demand needs one or two.
    wait_for(
        || held(d.addr, "host") >= 13,
        "the launch's capacity",
        &|| d.logs(),
    );
    let st = json(d.addr, "/api/v1/workloads/host/status");
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(started < start, "asked for ahead of its start");
    let events = st["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{st}");
    assert_eq!(events[0]["name"], "launch");
    let occurrence = format!(
        "nightly at {}",
        prescale_core::format_ts(nightly as i64 / 60 * 60_000)
    );
    assert_eq!(events[1]["name"], occurrence.as_str(), "{st}");
    assert_eq!(events[1]["recurring"], "nightly", "{st}");
    let reason = st["plan"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("held at the planned event \"launch\"'s min_demand, 40.00 vCPU")
            && reason.contains(": at least 40.00 vCPU, its capacity asked for by the slowest tier's 90th-percentile lead time before it starts"),
        "{reason}"
    );
    let (_, metrics) = get(d.addr, "/metrics").unwrap();
    for line in [
        format!(
            "prescale_workload_event_start_seconds{{workload=\"host\",event=\"launch\"}} {start}\n"
        ),
        format!(
            "prescale_workload_event_end_seconds{{workload=\"host\",event=\"launch\"}} {end}\n"
        ),
    ] {
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }
    let html = rendered(&browser, &format!("http://{}/", d.addr));
    assert!(
        html.contains("<div class=\"event\">planned event \"launch\" from ")
            && html
                .contains(": at least 40 vCPU; its capacity is asked for ahead of its start</div>"),
        "{}",
        &html[..html.len().min(3000)]
    );
    // Shaded on the chart from its start, named.
    assert!(
        html.contains("<rect class=\"event\""),
        "{}",
        &html[..html.len().min(3000)]
    );
    assert!(html.contains(">launch</text>"));
    assert!(
        html.contains("<line class=\"event-least\""),
        "its least demand drawn"
    );
    // The nightly job's next occurrence, said to be one, and named on the chart.
    assert!(
        html.contains(&format!("<div class=\"event\">planned event \"{occurrence}\" from "))
            && html.contains(": at least 10 vCPU; its capacity is asked for ahead of its start (an occurrence of recurring event \"nightly\", configured)</div>"),
        "{}",
        &html[..html.len().min(3000)]
    );
    assert!(html.contains(">nightly</text>"));
    // A load test declared through the API two minutes ahead, needing 60 vCPU: 19
    // instances at least, asked for at once, and shown as declared.
    let body = format!(
        r#"{{"name": "load test", "start": {}, "end": {}, "min_demand": 60}}"#,
        started + 120,
        started + 1_800
    );
    declare(d.addr, &body);
    wait_for(
        || held(d.addr, "host") >= 19,
        "the load test's capacity",
        &|| d.logs(),
    );
    let html = rendered(&browser, &format!("http://{}/", d.addr));
    assert!(
        html.contains(": at least 60 vCPU; its capacity is asked for ahead of its start (declared through the API; POST /api/v1/workloads/host/events/load%20test/cancel cancels it)</div>"),
        "{}",
        &html[..html.len().min(3000)]
    );
    assert!(html.contains(">load test</text>"), "shaded and named too");
    let (code, answer) = http(
        d.addr,
        "POST",
        "/api/v1/workloads/host/events/load%20test/cancel",
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(code, 200, "{answer}");
    let html = rendered(&browser, &format!("http://{}/", d.addr));
    assert!(html.contains("<h2>host</h2>"), "the page was drawn");
    assert!(
        !html.contains("<div class=\"event\">planned event \"load test\"")
            && !html.contains(">load test</text>"),
        "cancelled: {}",
        &html[..html.len().min(3000)]
    );
    assert!(
        html.contains("planned event \"launch\""),
        "the configured one stays"
    );
}

#[test]
fn the_dashboard_draws_a_workloads_memory_beside_its_cpu() {
    let Some(browser) = browser() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The host workload planned on its memory too, with one-second steps.
    let config = fast_config().replace("# dimensions = { memory", "dimensions = { memory");
    assert!(config.contains("\ndimensions = { memory"));
    let d = Daemon::start(dir.path(), &config);
    let memory_steps = || -> usize {
        let sel = enc(r#"prescale_demand_memory{workload="host"}"#);
        match get(d.addr, &format!("/api/v1/query_range?series={sel}&start=0")) {
            Some((200, b)) => serde_json::from_str::<serde_json::Value>(&b).unwrap()["data"]
                ["values"]
                .as_array()
                .map_or(0, Vec::len),
            _ => 0,
        }
    };
    let planned = || {
        get(d.addr, "/api/v1/workloads/host/status").is_some_and(|(c, b)| {
            let v: serde_json::Value = serde_json::from_str(&b).unwrap_or_default();
            let dims = &v["data"]["dimensions"];
            c == 200 && dims[0]["dimension"] == "memory" && dims[0]["forecast"]["values"].is_array()
        }) && memory_steps() >= 5
    };
    wait_for(planned, "a plan that covers memory", &|| d.logs());
    let status = json(d.addr, "/api/v1/workloads/host/status");
    let before = memory_steps();
    let html = rendered(&browser, &format!("http://{}/", d.addr));
    let after = memory_steps();

    let host = html
        .split("<section>")
        .nth(1)
        .unwrap_or_else(|| panic!("no workload drawn: {}", &html[..html.len().min(3000)]));
    // CPU, its cost, and memory.
    assert_eq!(host.matches("<svg").count(), 3, "{host}");
    // Seconds of history: no comparison with HPA yet, and it says why (the API's reason
    // while fewer than two steps followed the first pass, then how long until an hour).
    let why = host
        .split("against HPA: ")
        .nth(1)
        .and_then(|x| x.split('<').next())
        .unwrap_or_else(|| panic!("no word on the comparison: {host}"));
    assert!(
        why.starts_with("after an hour of prescale's own history")
            || why.contains("at least two are needed to compare"),
        "{why}"
    );
    assert!(!host.contains("HPA would have cost"), "{host}");
    let memory = host
        .split("memory (GiB): demand ")
        .nth(1)
        .expect("a memory chart, captioned with its unit");
    let memory = &memory[..memory.find("</svg>").expect("its chart")];
    // Its demand, a point per stored step (the daemon goes on meanwhile), the forecast
    // fan with a point per forecast step, and the ready capacity per tier (none may be
    // ready yet: instances take minutes to come up).
    let line = paths(memory, "stroke=\"#1d2330\"");
    assert_eq!(line.len(), 1);
    assert!(
        (before..=after).contains(&points(line[0])),
        "{} points for {before}..{after} steps",
        points(line[0])
    );
    let steps = status["dimensions"][0]["forecast"]["values"]
        .as_array()
        .unwrap()
        .len();
    let fan = paths(memory, "fill=\"#e0457b\"");
    assert_eq!(fan.len(), 2);
    assert!(fan.iter().all(|b| points(b) == 2 * steps), "{steps} steps");
    let tiers = json(d.addr, "/api/v1/workloads")["tiers"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(paths(memory, "fill-opacity=\"0.35\"").len(), tiers);
    // A cache warm-up declared two minutes ahead that needs 64 GiB: planned at once
    // (within the slowest tier's lead time), and said on the page.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let body = format!(
        r#"{{"name": "warm-up", "start": {}, "end": {}, "min_dimensions": {{"memory": 64}}}}"#,
        now + 120,
        now + 1_800
    );
    declare(d.addr, &body);
    let reason = || json(d.addr, "/api/v1/workloads/host/status")["plan"]["reason"].to_string();
    wait_for(
        || {
            reason().contains("planned event \\\"warm-up\\\"")
                && reason().contains("and at least 64 GiB of memory")
        },
        "a plan that reads the warm-up",
        &|| d.logs(),
    );
    let html = rendered(&browser, &format!("http://{}/", d.addr));
    assert!(
        html.contains(": at least 64 GiB of memory; its capacity is asked for ahead of its start (declared through the API"),
        "{}",
        &html[..html.len().min(3000)]
    );
}

#[test]
fn the_dashboard_lists_anomalies_in_stored_series_each_drawn_around_it() {
    let Some(browser) = browser() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &fast_config());
    wait_for(
        || get(d.addr, "/healthz").is_some_and(|(c, _)| c == 200),
        "the daemon",
        &|| d.logs(),
    );
    // 100 minutes of a database's query time and request counter, 15 s apart, up to a
    // minute ago: one slow query, and later a burst of requests (after the first 270
    // samples, which a new series is not judged in).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let t0 = now - 60 - 400 * 15;
    let mut body = String::new();
    let mut total = 0i64;
    for i in 0..400i64 {
        let wobble = ((i as f64 * 0.7).sin() + (i as f64 * 1.3).cos()) / 2.0;
        let query_ms = if i == 350 { 480.0 } else { 12.0 + wobble };
        total += if i == 380 {
            1000
        } else {
            100 + (5.0 * wobble) as i64
        } * 15;
        body.push_str(&format!(
            "db,host=a query_ms={query_ms},requests_total={total}i {}\n",
            t0 + i * 15
        ));
        // Another database whose connections jump at step 300 and lock waits a minute
        // later: one event of its instance.
        let conns = if i == 300 { 400.0 } else { 20.0 + wobble };
        let locks = if i == 304 { 90.0 } else { 2.0 + 0.1 * wobble };
        body.push_str(&format!(
            "pg,instance=db2 conns={conns},lock_waits={locks} {}\n",
            t0 + i * 15
        ));
    }
    let (code, said) = common::write_lines(d.addr, &body);
    assert_eq!(code, 204, "{said}");
    let html = rendered(&browser, &format!("http://{}/", d.addr));
    let listed = json(
        d.addr,
        &format!("/api/v1/anomalies?start={}&limit=1000", now - 48 * 3600),
    );
    let anomalies = listed["anomalies"].as_array().unwrap();
    let ours: Vec<&serde_json::Value> = anomalies
        .iter()
        .filter(|a| a["metric"].as_str().unwrap().starts_with("db_"))
        .collect();
    assert_eq!(ours.len(), 2, "{listed}");
    let grouped: Vec<&serde_json::Value> = anomalies
        .iter()
        .filter(|a| a["labels"]["instance"] == "db2")
        .collect();
    assert_eq!(grouped.len(), 2, "{listed}");

    let section = html
        .split("<h2>Anomalies in stored series</h2>")
        .nth(1)
        .unwrap_or_else(|| panic!("no anomalies section: {}", &html[..html.len().min(3000)]));
    let section = &section[..section.find("</section>").unwrap()];
    // The host's own series are watched too, and may have anomalies of their own.
    assert!(section.contains("series watched <b>"), "{section}");
    // A row for each listed anomaly (up to 20), each with its series drawn around it.
    let rows: Vec<&str> = section.split("<tr class=\"anomaly\">").skip(1).collect();
    let events = json(
        d.addr,
        &format!(
            "/api/v1/anomalies?start={}&group=events&limit=20",
            now - 48 * 3600
        ),
    );
    assert_eq!(
        rows.len(),
        events["events"].as_array().unwrap().len(),
        "{section}"
    );
    // The second database's two anomalies are one row, drawn by the more surprising.
    let db2: Vec<&&str> = rows
        .iter()
        .filter(|r| r.contains("instance=\"db2\""))
        .collect();
    assert_eq!(db2.len(), 1, "{section}");
    // It lasted a minute: its start is shown beneath its end.
    let start = t0 + 300 * 15;
    assert!(
        db2[0].contains(&format!(
            "<span class=\"small\">from {:02}:{:02}Z</span>",
            start % 86_400 / 3600,
            start % 3600 / 60
        )),
        "{}",
        db2[0]
    );
    assert!(
        db2[0].contains("and 1 more anomaly in 2 series of db2 within 60 s of each other"),
        "{}",
        db2[0]
    );
    // And which metrics moved in it, as the API counts them.
    let db2_event = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["instance"] == "db2")
        .unwrap();
    assert_eq!(
        db2_event["metrics"],
        serde_json::json!([
            {"metric": "pg_conns", "anomalies": 1, "series": 1},
            {"metric": "pg_lock_waits", "anomalies": 1, "series": 1},
        ]),
        "{events}"
    );
    assert!(
        db2[0].contains(">metrics: pg_conns 1, pg_lock_waits 1</span>"),
        "{}",
        db2[0]
    );
    for a in ours {
        let series = a["series"].as_str().unwrap();
        let row = rows
            .iter()
            .find(|r| r.contains(&format!("<td>{series}</td>")))
            .unwrap_or_else(|| panic!("no row for {series}: {section}"));
        let t = a["time"].as_f64().unwrap();
        let line = paths(row, "data-around=");
        assert_eq!(line.len(), 1, "{row}");
        let stored = |thin: &str| -> usize {
            json(
                d.addr,
                &format!(
                    "/api/v1/query_range?series={}&start={}&end={}{thin}",
                    enc(series),
                    t - 3600.0,
                    t + 3600.0
                ),
            )["values"]
                .as_array()
                .unwrap()
                .len()
        };
        if a["judged"] == "value" {
            // The slow query: its query times, thinned to 240 points at most.
            assert_eq!(a["value"], 480.0);
            assert_eq!(points(line[0]), stored("&max_points=240"));
            assert!(row.contains(">480<"), "{row}");
        } else {
            // The burst: the counter's rate from one sample to the next.
            assert_eq!(a["value"], 1000.0);
            assert_eq!(points(line[0]), stored("") - 1);
            assert!(row.contains(">1000 /s<"), "{row}");
        }
        assert!(row.contains("<circle"), "the anomaly ringed: {row}");
        // Set against the hour before, as the API answers it.
        assert!(
            row.contains(&format!(
                "of the {} values judged in the hour before",
                a["before"]["samples"]
            )) && row.contains(">usually "),
            "{row}"
        );
    }
}

#[test]
fn a_refusal_at_every_pass_is_logged_once_and_the_page_says_since_when() {
    let Some(browser) = browser() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // A hook that refuses every action, as one scaling a Deployment that is gone would;
    // the workload's demand is a series nothing sends, so at every pass it asks for the
    // same count, its min_instances, without a forecast to change it.
    let hook = dir.path().join("hook.sh");
    std::fs::write(
        &hook,
        "#!/bin/sh\necho 'deployments.apps \"host-standard\" not found' >&2\nexit 1\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = fast_config()
        .replace("use = \"sim\"", "use = \"exec\"")
        .replace("\nmin_instances = 1\n", "\nmin_instances = 4\n")
        .replace(
            "demand = 'host_cpu_usage_cores{mode=\"busy\"}'",
            "demand = 'nothing_sends_this'",
        )
        .replace(
            "[providers.sim]",
            &format!(
                "[providers.exec]\ncommand = [{:?}]\ntimeout_s = 10\n\n[providers.sim]",
                hook.display().to_string()
            ),
        );
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(cfg.contains("demand = 'nothing_sends_this'") && cfg.contains("use = \"exec\""));
    let d = Daemon::start(dir.path(), &cfg);
    let refusing = || {
        let (_, body) = get(d.addr, "/api/v1/workloads/host/status").unwrap_or_default();
        let st: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        st["data"]["refusing"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    // Passes are a second apart: each asks for the same count again.
    wait_for(
        || refusing().iter().any(|r| r["times"].as_u64() >= Some(4)),
        "four refusals the same",
        &|| d.logs(),
    );
    let r = refusing()
        .into_iter()
        .find(|r| r["times"].as_u64() >= Some(4))
        .unwrap();
    let reason = r["reason"].as_str().unwrap().to_string();
    assert!(
        reason.starts_with("exec refused to provision 4 standard: ")
            && reason.ends_with(
                "deployments.apps \"host-standard\" not found; will retry at the next pass"
            ),
        "{reason}"
    );
    // Logged once in full, not at each pass.
    let errors = json(d.addr, "/api/v1/workloads/host/decisions?kind=error");
    let errors = errors.as_array().unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["reason"], reason.as_str());
    // Each refusal still counts at once.
    let (_, metrics) = get(d.addr, "/metrics").unwrap();
    let counted = metrics
        .lines()
        .find_map(|l| l.strip_prefix("prescale_provider_errors_total "))
        .unwrap_or_else(|| panic!("{metrics}"));
    let counted = counted.parse::<f64>().unwrap();
    assert!(
        counted >= 4.0 && counted > errors.len() as f64,
        "{counted}: {errors:?}"
    );
    // And since when it goes on, for an alert (PrescaleProviderRefusesEveryPass): a
    // time since the daemon started.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let since: f64 = metrics
        .lines()
        .find_map(|l| {
            let l = l.strip_prefix(
                "prescale_workload_refused_since_seconds{workload=\"host\",tier=\"",
            )?;
            l.split_once("} ")?.1.parse().ok()
        })
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(since > started && since <= now, "{started} {since} {now}");
    // `prescale status` says so too.
    let out = common::bin()
        .arg("status")
        .env("PRESCALE_SERVER", format!("http://{}", d.addr))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.lines()
            .any(|l| l.starts_with("host: refused at every pass since ") && l.ends_with(&reason)),
        "{out}"
    );
    let html = rendered(&browser, &format!("http://{}/", d.addr));
    assert!(
        html.contains("<div class=\"err refusing\">refused at every pass since ")
            && html.contains(&format!("): {reason}</div>")),
        "{}",
        &html[..html.len().min(4000)]
    );
    // The hook mended: the refusals stop, their repeats are logged as one decision,
    // which the page's decision table counts.
    std::fs::write(&hook, "#!/bin/sh\nexit 0\n").unwrap();
    let repeated = || {
        let (_, body) =
            get(d.addr, "/api/v1/workloads/host/decisions?kind=error").unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["data"]
            .as_array()
            .and_then(|a| a.iter().find_map(|d| d["repeated"]["times"].as_u64()))
    };
    wait_for(|| repeated().is_some(), "the repeats logged", &|| d.logs());
    assert!(refusing().is_empty());
    let times = repeated().unwrap();
    let html = rendered(&browser, &format!("http://{}/", d.addr));
    assert!(
        html.contains(&format!(
            "<td class=\"k-error\" title=\"{times} refusals, the same, from "
        )) && html.contains(&format!("logged as one\">error ×{times}</td>")),
        "{}",
        &html[..html.len().min(6000)]
    );
    assert!(
        !html.contains("class=\"err refusing\""),
        "no longer refused"
    );
}
