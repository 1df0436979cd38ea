//! The latency chart: one cumulative distribution per measurement, on a logarithmic time
//! axis, as a self-contained SVG file.

use std::fmt::Write as _;

use crate::Dist;

const WIDTH: f64 = 860.0;
const HEIGHT: f64 = 440.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 250.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 50.0;
const COLORS: [&str; 8] =
    ["#1f77b4", "#d62728", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

/// The chart of `dists` (latencies in nanoseconds): the fraction of operations (y) done
/// within a time (x, logarithmic), from the 0.1th to the 99.9th percentile.
pub(crate) fn latency_svg(dists: &[&Dist]) -> String {
    let lo = dists.iter().map(|d| d.pct(0.001)).fold(f64::INFINITY, f64::min).max(1.0);
    let hi = dists.iter().map(|d| d.pct(0.999)).fold(0.0, f64::max).max(lo * 10.0);
    let (lo, hi) = (10f64.powf(lo.log10().floor()), 10f64.powf(hi.log10().ceil()));
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |ns: f64| LEFT + (ns.max(lo).log10() - lo.log10()) / (hi.log10() - lo.log10()) * plot_w;
    let y = |frac: f64| TOP + (1.0 - frac) * plot_h;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="18" font-size="14">Latency distributions (cumulative), measured in one run</text>"#
    );
    // Axes and grid.
    let mut decade = lo;
    while decade <= hi * 1.0001 {
        let gx = x(decade);
        let label = if decade >= 1e6 {
            format!("{} ms", decade / 1e6)
        } else if decade >= 1e3 {
            format!("{} µs", decade / 1e3)
        } else {
            format!("{decade} ns")
        };
        let _ = writeln!(
            svg,
            r##"<line x1="{gx:.1}" y1="{TOP}" x2="{gx:.1}" y2="{:.1}" stroke="#ddd"/><text x="{gx:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 18.0
        );
        decade *= 10.0;
    }
    for frac in [0.0, 0.25, 0.5, 0.75, 0.99, 1.0] {
        let gy = y(frac);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{gy:.1}" x2="{:.1}" y2="{gy:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}%</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            gy + 4.0,
            (frac * 100.0).round()
        );
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">time per operation (log scale)</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 10.0
    );
    // One curve per distribution, and the legend.
    for (i, d) in dists.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<String> = (0..=200)
            .map(|k| {
                let frac = 0.001 + 0.998 * f64::from(k) / 200.0;
                format!("{:.1},{:.1}", x(d.pct(frac)), y(frac))
            })
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        let ly = TOP + 10.0 + 20.0 * i as f64;
        let lx = WIDTH - RIGHT + 15.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{lx}" y1="{ly}" x2="{:.1}" y2="{ly}" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{} (p50 {:.1} µs)</text>"#,
            lx + 20.0,
            lx + 26.0,
            ly + 4.0,
            d.name,
            d.p50() / 1e3
        );
    }
    svg.push_str("</svg>\n");
    svg
}
