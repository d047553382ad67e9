//! latency.svg: one strip per (N, path), every pod a dot, p50 and p99 as ticks. Each N gets
//! its own row and x scale (0 to its slowest pod), so 1 and 110 pods are both readable.
//! Hand-written SVG: no plotting crate for a few dozen elements.

use std::fmt::Write;

use crate::report::LatencyRow;
use crate::stats::Summary;

const W: f64 = 760.0;
const LEFT: f64 = 150.0;
const RIGHT: f64 = 30.0;
const STRIP: f64 = 26.0;
const ROW: f64 = 2.0 * STRIP + 46.0;

pub fn latency_svg(rows: &[LatencyRow]) -> String {
    let h = 40.0 + ROW * rows.len() as f64;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="20" font-size="14">Pod start latency per pod (s): manifest write or CRI task start to container running</text>
"#
    );
    for (i, r) in rows.iter().enumerate() {
        let top = 40.0 + ROW * i as f64;
        let max = r.ironlet.max_s.max(r.direct.max_s).max(1e-3) * 1.05;
        let x = |v: f64| LEFT + (W - LEFT - RIGHT) * v / max;
        let _ = writeln!(
            s,
            r#"<text x="10" y="{}" font-weight="bold">{} pod(s)</text>"#,
            top + 12.0,
            r.pods
        );
        for (j, (label, sum, colour)) in [
            ("ironlet", &r.ironlet, "#c0392b"),
            ("direct", &r.direct, "#2471a3"),
        ]
        .into_iter()
        .enumerate()
        {
            let y = top + 22.0 + STRIP * j as f64;
            strip(&mut s, label, sum, colour, y, &x);
        }
        // Axis: 0, half, max.
        let ay = top + 22.0 + 2.0 * STRIP;
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{ay}" x2="{}" y2="{ay}" stroke="#555"/>"##,
            W - RIGHT
        );
        for f in [0.0, 0.5, 1.0] {
            let v = max * f / 1.05;
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{}" text-anchor="middle" fill="#555">{v:.2}</text>"##,
                x(v),
                ay + 14.0
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

fn strip(s: &mut String, label: &str, sum: &Summary, colour: &str, y: f64, x: &dyn Fn(f64) -> f64) {
    let mid = y + STRIP / 2.0;
    let _ = writeln!(
        s,
        r#"<text x="10" y="{}" fill="{colour}">{label} p50 {:.2}</text>"#,
        mid + 4.0,
        sum.p50_s
    );
    for v in &sum.samples_s {
        let _ = writeln!(
            s,
            r#"<circle cx="{:.1}" cy="{mid}" r="3" fill="{colour}" fill-opacity="0.45"/>"#,
            x(*v)
        );
    }
    for (q, v) in [("p50", sum.p50_s), ("p99", sum.p99_s)] {
        if sum.count == 0 {
            break;
        }
        let _ = writeln!(
            s,
            r#"<line x1="{0:.1}" y1="{1}" x2="{0:.1}" y2="{2}" stroke="{colour}" stroke-width="2"><title>{q} {v:.3} s</title></line>"#,
            x(v),
            y + 2.0,
            y + STRIP - 2.0
        );
    }
}
