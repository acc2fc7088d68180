//! SVG charts of a fan-out benchmark (`scripts/bench-fanout.sh`).
//!
//! Usage: `fanout-charts SUMMARY.json OUT_DIR`
//!
//! SUMMARY.json (written by the script's report step):
//!
//! ```json
//! {"servers": [{"key": "uws", "name": "uWebSockets.js 20.30"}, ...],
//!  "fanout": [{"server": "uws", "subscribers": 1000, "deliveries_per_sec": 1.0e6,
//!              "p50_us": 10.0, "p99_us": 50.0, "p999_us": 90.0}, ...],
//!  "rooms": [{"server": "uws", "deliveries_per_sec": 1.0e5,
//!             "p50_us": 10.0, "p99_us": 50.0, "p999_us": 90.0}, ...]}
//! ```
//!
//! Missing figures (`null`, failed runs) are left out of the lines. Writes
//! `fanout-deliveries.svg` (deliveries/s against subscribers, one line per
//! server), `fanout-latency.svg` (p50 and p99 against subscribers, log
//! scale) and `rooms-latency.svg` (p50/p99/p99.9 of the rooms scenario).

use std::error::Error;
use std::path::Path;

use plotters::prelude::*;
use serde_json::Value;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

const PALETTE: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
];

struct Server {
    key: String,
    name: String,
    color: RGBColor,
}

fn num(v: &Value, key: &str) -> Option<f64> {
    v.get(key)?.as_f64().filter(|x| x.is_finite() && *x > 0.0)
}

/// `(x, y)` points of one server from `rows`, sorted by x.
fn points(rows: &[Value], server: &str, x: &str, y: &str) -> Vec<(f64, f64)> {
    let mut pts: Vec<(f64, f64)> = rows
        .iter()
        .filter(|r| r.get("server").and_then(Value::as_str) == Some(server))
        .filter_map(|r| Some((num(r, x)?, num(r, y)?)))
        .collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    pts
}

fn max_of<'a>(it: impl Iterator<Item = &'a (f64, f64)>) -> f64 {
    it.map(|p| p.1).fold(0.0, f64::max)
}

fn deliveries_chart(path: &Path, servers: &[Server], rows: &[Value]) -> Result<()> {
    let series: Vec<_> = servers
        .iter()
        .map(|s| (s, points(rows, &s.key, "subscribers", "deliveries_per_sec")))
        .collect();
    let x_max = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let y_max = max_of(series.iter().flat_map(|(_, p)| p.iter())).max(1.0) * 1.1;
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Fan-out: deliveries per second (1 publisher, N subscribers)",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..x_max * 1.05, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("subscribers")
        .y_desc("deliveries/s")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{:.0}k", y / 1e3))
        .draw()?;
    for (s, pts) in &series {
        if pts.is_empty() {
            continue;
        }
        let color = s.color;
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))?
            .label(s.name.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()?;
    Ok(())
}

fn latency_chart(path: &Path, servers: &[Server], rows: &[Value]) -> Result<()> {
    // p50 solid with dots, p99 thin with crosses; log scale.
    let mut all = Vec::new();
    let mut series = Vec::new();
    for s in servers {
        for (pct, key) in [("p50", "p50_us"), ("p99", "p99_us")] {
            let pts = points(rows, &s.key, "subscribers", key);
            all.extend(pts.iter().copied());
            series.push((s, pct, pts));
        }
    }
    let x_max = all.iter().map(|p| p.0).fold(1.0, f64::max);
    let y_min = all
        .iter()
        .map(|p| p.1)
        .fold(f64::INFINITY, f64::min)
        .clamp(1.0, 1e6)
        / 2.0;
    let y_max = all.iter().map(|p| p.1).fold(10.0, f64::max) * 2.0;
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Fan-out: publish-to-delivery latency (p50 thick, p99 thin)",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..x_max * 1.05, (y_min..y_max).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("subscribers")
        .y_desc("µs (log)")
        .max_light_lines(1)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    for (s, pct, pts) in &series {
        if pts.is_empty() {
            continue;
        }
        let color = s.color;
        let width = if *pct == "p50" { 3 } else { 1 };
        let line = chart.draw_series(LineSeries::new(
            pts.iter().copied(),
            color.stroke_width(width),
        ))?;
        if *pct == "p50" {
            line.label(s.name.as_str()).legend(move |(x, y)| {
                PathElement::new([(x, y), (x + 20, y)], color.stroke_width(3))
            });
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
        } else {
            chart.draw_series(pts.iter().map(|&p| Cross::new(p, 4, color.stroke_width(1))))?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}

fn rooms_chart(path: &Path, servers: &[Server], rows: &[Value]) -> Result<()> {
    // x: the percentile (1 = p50, 2 = p99, 3 = p99.9); one line per server.
    let keys = ["p50_us", "p99_us", "p999_us"];
    let mut series = Vec::new();
    for s in servers {
        let Some(row) = rows
            .iter()
            .find(|r| r.get("server").and_then(Value::as_str) == Some(&s.key))
        else {
            continue;
        };
        let pts: Vec<(f64, f64)> = keys
            .iter()
            .enumerate()
            .filter_map(|(i, k)| Some((i as f64 + 1.0, num(row, k)?)))
            .collect();
        series.push((s, pts));
    }
    let all: Vec<_> = series.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    let y_min = all
        .iter()
        .map(|p| p.1)
        .fold(f64::INFINITY, f64::min)
        .clamp(1.0, 1e6)
        / 2.0;
    let y_max = all.iter().map(|p| p.1).fold(10.0, f64::max) * 2.0;
    let root = SVGBackend::new(path, (640, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Rooms: publish-to-delivery latency", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0.7..3.3, (y_min..y_max).log_scale())?;
    chart
        .configure_mesh()
        .x_labels(3)
        .x_desc("percentile")
        .y_desc("µs (log)")
        .max_light_lines(1)
        .x_label_formatter(&|x: &f64| {
            match x.round() as i64 {
                1 => "p50",
                2 => "p99",
                3 => "p99.9",
                _ => "",
            }
            .to_owned()
        })
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    for (s, pts) in &series {
        if pts.is_empty() {
            continue;
        }
        let color = s.color;
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))?
            .label(s.name.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, summary, out] = args.as_slice() else {
        return Err("usage: fanout-charts SUMMARY.json OUT_DIR".into());
    };
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(summary)?)?;
    let out = Path::new(out);
    std::fs::create_dir_all(out)?;
    let servers: Vec<Server> = summary["servers"]
        .as_array()
        .ok_or("summary: no servers")?
        .iter()
        .enumerate()
        .map(|(i, s)| Server {
            key: s["key"].as_str().unwrap_or("?").to_owned(),
            name: s["name"].as_str().unwrap_or("?").to_owned(),
            color: PALETTE[i % PALETTE.len()],
        })
        .collect();
    let empty = Vec::new();
    let fanout = summary["fanout"].as_array().unwrap_or(&empty);
    let rooms = summary["rooms"].as_array().unwrap_or(&empty);
    let mut written = Vec::new();
    if !fanout.is_empty() {
        for (name, f) in [
            (
                "fanout-deliveries.svg",
                deliveries_chart as fn(&Path, &[Server], &[Value]) -> Result<()>,
            ),
            ("fanout-latency.svg", latency_chart),
        ] {
            f(&out.join(name), &servers, fanout)?;
            written.push(name);
        }
    }
    if !rooms.is_empty() {
        rooms_chart(&out.join("rooms-latency.svg"), &servers, rooms)?;
        written.push("rooms-latency.svg");
    }
    for name in written {
        println!("{}", out.join(name).display());
    }
    Ok(())
}
