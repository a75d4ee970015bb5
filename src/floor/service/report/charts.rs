//! The report's charts as SVG, drawn by `plotters` (no JavaScript needed to read them).

use plotters::prelude::*;

use super::ReportError;

/// Colours of levels 0–4 (the board's palette).
pub const LEVEL_RGB: [(u8, u8, u8); 5] = [
    (0x9e, 0x9e, 0x9e),
    (0xf2, 0xc9, 0x4c),
    (0xf2, 0x99, 0x4a),
    (0xeb, 0x57, 0x57),
    (0x8e, 0x24, 0xaa),
];

/// Colour of plain bars.
pub const BAR_RGB: (u8, u8, u8) = (0x2f, 0x80, 0xed);

fn chart_err(e: impl std::fmt::Display) -> ReportError {
    ReportError::Chart(e.to_string())
}

fn rgb(c: (u8, u8, u8)) -> RGBColor {
    RGBColor(c.0, c.1, c.2)
}

/// Heat-map shade of `v` out of `max`: white to deep red.
pub fn heat_rgb(v: i64, max: i64) -> (u8, u8, u8) {
    if max <= 0 || v <= 0 {
        return (0xf7, 0xf7, 0xf7);
    }
    let t = (v as f64 / max as f64).clamp(0.0, 1.0);
    let lerp = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    (lerp(255.0, 180.0), lerp(235.0, 20.0), lerp(220.0, 30.0))
}

/// A vertical bar chart: one bar per label, each with its own colour.
pub fn bars(
    title: &str,
    labels: &[String],
    values: &[i64],
    colours: &[(u8, u8, u8)],
) -> Result<String, ReportError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (560, 300)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_err)?;
        let max = values.iter().copied().max().unwrap_or(0).max(1);
        let n = labels.len().max(1);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0..n, 0..(max + max / 10 + 1))
            .map_err(chart_err)?;
        let names = labels.to_vec();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n + 1)
            .x_label_formatter(&|i| names.get(*i).cloned().unwrap_or_default())
            .x_label_style(("sans-serif", 12))
            .y_label_style(("sans-serif", 12))
            .draw()
            .map_err(chart_err)?;
        chart
            .draw_series(values.iter().enumerate().map(|(i, &v)| {
                let c = colours.get(i).copied().unwrap_or(BAR_RGB);
                let mut r = Rectangle::new([(i, 0), (i + 1, v)], rgb(c).filled());
                r.set_margin(0, 0, 8, 8);
                r
            }))
            .map_err(chart_err)?;
        root.present().map_err(chart_err)?;
    }
    Ok(svg)
}

/// Weekday × hour heat map (rows Monday … Sunday).
pub fn heat_map(title: &str, heat: &[[i64; 24]; 7]) -> Result<String, ReportError> {
    const DAYS: [&str; 7] = ["月", "火", "水", "木", "金", "土", "日"];
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 280)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_err)?;
        let max = heat.iter().flatten().copied().max().unwrap_or(0);
        root.draw(&Text::new(
            title.to_string(),
            (10, 8),
            ("sans-serif", 18).into_font(),
        ))
        .map_err(chart_err)?;
        let (x0, y0, cw, ch) = (40i32, 40i32, 29i32, 30i32);
        for (d, row) in heat.iter().enumerate() {
            let y = y0 + d as i32 * ch;
            root.draw(&Text::new(
                DAYS[d].to_string(),
                (12, y + 8),
                ("sans-serif", 14).into_font(),
            ))
            .map_err(chart_err)?;
            for (h, &v) in row.iter().enumerate() {
                let x = x0 + h as i32 * cw;
                root.draw(&Rectangle::new(
                    [(x, y), (x + cw - 2, y + ch - 2)],
                    rgb(heat_rgb(v, max)).filled(),
                ))
                .map_err(chart_err)?;
            }
        }
        for h in (0..24).step_by(3) {
            root.draw(&Text::new(
                format!("{h}時"),
                (x0 + h * cw, y0 + 7 * ch + 6),
                ("sans-serif", 12).into_font(),
            ))
            .map_err(chart_err)?;
        }
        root.draw(&Text::new(
            format!("最大 {max} 件/枠"),
            (x0 + 18 * cw, y0 + 7 * ch + 6),
            ("sans-serif", 12).into_font(),
        ))
        .map_err(chart_err)?;
        root.present().map_err(chart_err)?;
    }
    Ok(svg)
}
