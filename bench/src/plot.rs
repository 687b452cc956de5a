//! The latency plot of a bench report: one percentile curve per step, read back
//! from the sink's HdrHistogram (V2, base64) files. X is "nines" (90 % = 1,
//! 99 % = 2, ...), Y is milliseconds on a log scale, as HdrHistogram plots them.

use std::path::Path;

use base64::Engine as _;
use hdrhistogram::Histogram;
use plotters::prelude::*;

/// One curve: its label and (nines, milliseconds) points.
type Curve = (String, Vec<(f64, f64)>);

fn curve(label: &str, hdr_base64: &str) -> Result<Curve, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(hdr_base64.trim())
        .map_err(|e| format!("{label}: {e}"))?;
    let h: Histogram<u64> = hdrhistogram::serialization::Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("{label}: {e:?}"))?;
    let mut points = Vec::new();
    for v in h.iter_quantiles(10) {
        let q = v.quantile_iterated_to();
        if q >= 0.99999 {
            break;
        }
        points.push((
            -(1.0 - q).log10(),
            (v.value_iterated_to() as f64 / 1e6).max(0.001),
        ));
    }
    points.push((5.0, (h.max() as f64 / 1e6).max(0.001)));
    Ok((label.to_owned(), points))
}

/// Writes `latency.svg` in `dir` from the `<step>.hdr` files of `steps`.
pub fn write(dir: &Path, steps: &[String]) -> Result<(), String> {
    let mut curves = Vec::new();
    for step in steps {
        let path = dir.join(format!("{step}.hdr"));
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        curves.push(curve(step, &text)?);
    }
    let top = curves
        .iter()
        .flat_map(|(_, p)| p.iter().map(|&(_, y)| y))
        .fold(1.0f64, f64::max)
        * 2.0;
    let out = dir.join("latency.svg");
    let root = SVGBackend::new(&out, (900, 540)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| format!("plot: {e}");
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "rowhook: binlog row → webhook acknowledged, by percentile",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..5f64, (0.01f64..top).log_scale())
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_label_formatter(&|x| match x.round() as i32 {
            0 => "0%".into(),
            1 => "90%".into(),
            2 => "99%".into(),
            3 => "99.9%".into(),
            4 => "99.99%".into(),
            _ => "max".into(),
        })
        .x_labels(6)
        .draw()
        .map_err(|e| err(&e))?;
    for (i, (label, points)) in curves.into_iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}
