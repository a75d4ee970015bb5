//! The report (and incident records) as PDF through `printpdf`, with a Japanese TrueType font
//! embedded as a subset (only the glyphs used). Charts are drawn as PDF vectors from the same
//! figures as the HTML's SVG charts, so they stay sharp when printed.

use std::path::Path;

use printpdf::path::PaintMode;
use printpdf::{
    Color, IndirectFontRef, Line, Mm, PdfDocument, PdfDocumentReference, PdfLayerReference, Point,
    Rect, Rgb,
};

use super::charts::{BAR_RGB, LEVEL_RGB, heat_rgb};
use super::html::heading;
use super::tables::{self, Table};
use super::{ALL_TYPES, Report, ReportError};

/// A4 portrait, millimetres.
pub const PAGE_W: f32 = 210.0;
/// A4 height.
pub const PAGE_H: f32 = 297.0;
const MARGIN: f32 = 15.0;

/// Where page 1's charts stand: top and bottom, millimetres from the top of the page.
pub const PAGE1_CHARTS_MM: (f32, f32) = (130.0, 270.0);

fn pdf_err(e: impl std::fmt::Display) -> ReportError {
    ReportError::Pdf(e.to_string())
}

/// Width units of a string: 2 for a wide (CJK) character, 1 otherwise.
fn units(s: &str) -> usize {
    s.chars()
        .map(|c| if (c as u32) < 0x2E80 { 1 } else { 2 })
        .sum()
}

/// Splits `s` into lines of at most `max` width units.
pub fn wrap(s: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut line = String::new();
    let mut w = 0;
    for c in s.chars() {
        let cw = units(c.encode_utf8(&mut [0; 4]));
        if w + cw > max && !line.is_empty() {
            out.push(std::mem::take(&mut line));
            w = 0;
        }
        line.push(c);
        w += cw;
    }
    if !line.is_empty() {
        out.push(line);
    }
    out
}

fn rgb(c: (u8, u8, u8)) -> Color {
    Color::Rgb(Rgb::new(
        f32::from(c.0) / 255.0,
        f32::from(c.1) / 255.0,
        f32::from(c.2) / 255.0,
        None,
    ))
}

/// A document being laid out top to bottom, page after page.
pub struct Pager {
    doc: PdfDocumentReference,
    font: IndirectFontRef,
    layer: PdfLayerReference,
    /// Cursor, millimetres from the top of the page.
    pub y: f32,
}

impl Pager {
    /// A new document titled `title` with the font at `font_path` embedded.
    pub fn new(title: &str, font_path: &Path) -> Result<Pager, ReportError> {
        let bytes = std::fs::read(font_path).map_err(|e| {
            ReportError::Pdf(format!(
                "cannot read the font {}: {e} (install Debian's fonts-ipafont-gothic)",
                font_path.display()
            ))
        })?;
        let (doc, page, layer) = PdfDocument::new(title, Mm(PAGE_W), Mm(PAGE_H), "main");
        let font = doc
            .add_external_font(std::io::Cursor::new(bytes))
            .map_err(pdf_err)?;
        let layer = doc.get_page(page).get_layer(layer);
        Ok(Pager {
            doc,
            font,
            layer,
            y: MARGIN,
        })
    }

    /// Starts a new page.
    pub fn page(&mut self) {
        let (page, layer) = self.doc.add_page(Mm(PAGE_W), Mm(PAGE_H), "main");
        self.layer = self.doc.get_page(page).get_layer(layer);
        self.y = MARGIN;
    }

    /// Starts a new page unless `mm` more fit on this one.
    pub fn need(&mut self, mm: f32) {
        if self.y + mm > PAGE_H - MARGIN {
            self.page();
        }
    }

    /// Text at `x` (mm from the left), baseline at `y` (mm from the top).
    pub fn text_at(&self, s: &str, size: f32, x: f32, y: f32, colour: (u8, u8, u8)) {
        self.layer.set_fill_color(rgb(colour));
        self.layer
            .use_text(s, size, Mm(x), Mm(PAGE_H - y), &self.font);
    }

    /// A line of text at the cursor, which moves down.
    pub fn line(&mut self, s: &str, size: f32) {
        let h = size * 0.3528 * 1.5;
        self.need(h);
        self.y += h;
        self.text_at(s, size, MARGIN, self.y, (0x22, 0x22, 0x22));
    }

    /// A paragraph wrapped to the page width.
    pub fn para(&mut self, s: &str, size: f32) {
        let max = ((PAGE_W - 2.0 * MARGIN) / (size * 0.3528 * 0.5)) as usize;
        for l in wrap(s, max.max(10)) {
            self.line(&l, size);
        }
    }

    /// A section heading.
    pub fn heading(&mut self, s: &str) {
        self.need(20.0);
        self.y += 4.0;
        self.line(s, 13.0);
        self.rule();
    }

    /// A thin horizontal rule under the cursor.
    pub fn rule(&mut self) {
        self.y += 1.5;
        self.stroke(
            &[(MARGIN, self.y), (PAGE_W - MARGIN, self.y)],
            (0x2f, 0x80, 0xed),
            0.8,
        );
        self.y += 1.0;
    }

    /// A filled rectangle, `(x, y)` its top-left corner (mm from the top-left of the page).
    pub fn fill(&self, x: f32, y: f32, w: f32, h: f32, colour: (u8, u8, u8)) {
        self.layer.set_fill_color(rgb(colour));
        self.layer.add_rect(
            Rect::new(Mm(x), Mm(PAGE_H - y - h), Mm(x + w), Mm(PAGE_H - y))
                .with_mode(PaintMode::Fill),
        );
    }

    /// A polyline.
    pub fn stroke(&self, points: &[(f32, f32)], colour: (u8, u8, u8), width_pt: f32) {
        self.layer.set_outline_color(rgb(colour));
        self.layer.set_outline_thickness(width_pt);
        self.layer.add_line(Line {
            points: points
                .iter()
                .map(|&(x, y)| (Point::new(Mm(x), Mm(PAGE_H - y)), false))
                .collect(),
            is_closed: false,
        });
    }

    /// A table: columns at the given widths (mm), a header row and the rows.
    pub fn table(&mut self, widths: &[f32], t: &Table) {
        const ROW: f32 = 6.0;
        let total: f32 = widths.iter().sum();
        let draw_row = |p: &mut Pager, cells: &[String], header: bool| {
            p.need(ROW);
            if header {
                p.fill(MARGIN, p.y, total, ROW, (0xe8, 0xf0, 0xfd));
            }
            let mut x = MARGIN + 1.5;
            for (i, c) in cells.iter().enumerate() {
                let w = widths.get(i).copied().unwrap_or(20.0);
                let max = ((w - 2.0) / (9.0 * 0.3528 * 0.5)) as usize;
                let mut text = wrap(c, max.max(4)).into_iter().next().unwrap_or_default();
                if units(&text) < units(c) {
                    text.pop();
                    text.push('…');
                }
                p.text_at(&text, 9.0, x, p.y + 4.3, (0x22, 0x22, 0x22));
                x += w;
            }
            p.y += ROW;
            p.stroke(
                &[(MARGIN, p.y), (MARGIN + total, p.y)],
                (0xbb, 0xbb, 0xbb),
                0.3,
            );
        };
        let head: Vec<String> = t.head.iter().map(|s| s.to_string()).collect();
        draw_row(self, &head, true);
        for r in &t.rows {
            draw_row(self, r, false);
        }
        self.y += 3.0;
    }

    /// A vertical bar chart `h` mm high across the page, values printed over the bars.
    pub fn bar_chart(
        &mut self,
        title: &str,
        labels: &[String],
        values: &[i64],
        colours: &[(u8, u8, u8)],
        h: f32,
    ) {
        self.need(h + 12.0);
        self.y += 5.0;
        self.text_at(title, 10.0, MARGIN, self.y, (0x44, 0x44, 0x44));
        let top = self.y + 6.0;
        let bottom = top + h - 10.0;
        let left = MARGIN + 5.0;
        let width = PAGE_W - 2.0 * MARGIN - 10.0;
        let max = values.iter().copied().max().unwrap_or(0).max(1) as f32;
        let n = values.len().max(1) as f32;
        let slot = width / n;
        for (i, &v) in values.iter().enumerate() {
            let bh = (bottom - top - 6.0) * v as f32 / max;
            let x = left + i as f32 * slot + slot * 0.15;
            let c = colours.get(i).copied().unwrap_or(BAR_RGB);
            if v > 0 {
                self.fill(x, bottom - bh, slot * 0.7, bh, c);
            }
            self.text_at(
                &v.to_string(),
                8.0,
                x,
                bottom - bh - 1.0,
                (0x22, 0x22, 0x22),
            );
            if let Some(l) = labels.get(i) {
                self.text_at(l, 8.0, x, bottom + 4.0, (0x44, 0x44, 0x44));
            }
        }
        self.stroke(
            &[(left, bottom), (left + width, bottom)],
            (0x66, 0x66, 0x66),
            0.6,
        );
        self.y = top + h;
    }

    /// Weekday × hour heat map.
    pub fn heat_map(&mut self, heat: &[[i64; 24]; 7]) {
        const DAYS: [&str; 7] = ["月", "火", "水", "木", "金", "土", "日"];
        let (cw, ch) = (7.0f32, 6.0f32);
        self.need(7.0 * ch + 14.0);
        let max = heat.iter().flatten().copied().max().unwrap_or(0);
        let top = self.y + 2.0;
        let left = MARGIN + 8.0;
        for (d, row) in heat.iter().enumerate() {
            let y = top + d as f32 * ch;
            self.text_at(DAYS[d], 9.0, MARGIN, y + 4.3, (0x22, 0x22, 0x22));
            for (h, &v) in row.iter().enumerate() {
                self.fill(
                    left + h as f32 * cw,
                    y,
                    cw - 0.5,
                    ch - 0.5,
                    heat_rgb(v, max),
                );
            }
        }
        let y = top + 7.0 * ch + 4.0;
        for h in (0..24).step_by(3) {
            self.text_at(
                &format!("{h}時"),
                8.0,
                left + h as f32 * cw,
                y,
                (0x44, 0x44, 0x44),
            );
        }
        self.text_at(
            &format!("最大 {max} 件/枠"),
            8.0,
            left + 19.0 * cw,
            y,
            (0x44, 0x44, 0x44),
        );
        self.y = y + 3.0;
    }

    /// The finished PDF.
    pub fn finish(self) -> Result<Vec<u8>, ReportError> {
        self.doc.save_to_bytes().map_err(pdf_err)
    }
}

/// Renders `report` as PDF with the font at `font`.
pub fn render_report(report: &Report, font: &Path) -> Result<Vec<u8>, ReportError> {
    let s = &report.summary;
    let mut p = Pager::new(&report.title, font)?;
    p.line(&report.title, 16.0);
    p.line(
        &format!(
            "対象期間: {}（前期: {}）",
            report.period.label(),
            report.previous_period.label()
        ),
        9.0,
    );
    p.para(&report.summary_line(), 9.0);

    p.heading(heading::SUMMARY);
    p.table(
        &[75.0, 30.0, 30.0, 45.0],
        &tables::summary(s, &report.previous),
    );

    // Page 1's lower part: the two headline charts (the test looks for ink there).
    p.y = p.y.max(PAGE1_CHARTS_MM.0 - 8.0);
    // Level 0 (no incident) would dwarf the rest: the chart shows the incidents' levels 1–4.
    let labels: Vec<String> = (1..5).map(tables::level_label).collect();
    p.bar_chart(
        heading::LEVEL,
        &labels,
        &s.by_level[1..],
        &LEVEL_RGB[1..],
        65.0,
    );
    let labels: Vec<String> = ALL_TYPES.iter().map(|t| t.short_ja().to_string()).collect();
    let values: Vec<i64> = report.by_type.iter().map(|t| t.calls).collect();
    p.bar_chart(heading::TYPE, &labels, &values, &[BAR_RGB; 5], 65.0);

    p.page();
    p.heading(heading::TYPE);
    p.table(&[90.0, 40.0, 40.0], &tables::types(report));

    p.heading(heading::LONG);
    p.table(&[60.0, 30.0, 30.0, 45.0], &tables::long_calls(report));

    p.heading(heading::HEAT);
    p.heat_map(&report.heat);

    p.heading(heading::DURATION);
    p.bar_chart(
        heading::DURATION,
        &tables::duration_labels(),
        &report.durations,
        &[BAR_RGB; 8],
        55.0,
    );

    p.heading(heading::ESCALATION);
    p.table(&[80.0, 50.0], &tables::escalations(report));

    p.heading(heading::CALLERS);
    p.table(
        &[36.0, 13.0, 16.0, 19.0, 20.0, 76.0],
        &tables::repeat_callers(report),
    );

    if let Some(care) = tables::care(report) {
        p.heading(heading::CARE);
        p.table(&[80.0, 40.0, 40.0], &care);
    }
    p.finish()
}
