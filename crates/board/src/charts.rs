//! Charts drawn on the server as inline SVG (no script, no CDN): jobs done and failed as
//! stacked bars per slot, and the oldest waiting job's age as a line. Every slot carries a
//! `<title>` saying its figures in words, and every chart has a legend in words and its
//! numbers in a table beside it: the colour never says anything alone.

use maud::{Markup, html};
use repo::QueueMinute;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 160.0;
/// Room on the left for the scale's numbers, at the bottom for the time labels.
const LEFT: f64 = 48.0;
const BOTTOM: f64 = 20.0;

/// One slot of a chart: its start (Unix seconds) and, when it was rolled up, its figures.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Slot {
    pub start: i64,
    pub figures: Option<QueueMinute>,
}

/// `count` slots of `width` seconds ending with the one that holds `last` (the newest slot
/// rolled up, or now), each with the rolled-up figures whose start it is.
pub(crate) fn slots(rows: &[QueueMinute], last: i64, width: i64, count: i64) -> Vec<Slot> {
    let newest = last.div_euclid(width) * width;
    (0..count)
        .rev()
        .map(|back| {
            let start = newest - back * width;
            Slot {
                start,
                figures: rows.iter().find(|r| r.minute == start).cloned(),
            }
        })
        .collect()
}

/// A slot's start as the chart labels it: `HH:MM` in UTC.
fn clock(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|at| at.format("%H:%M").to_string())
        .unwrap_or_else(|| "-".into())
}

/// The smallest of 1, 2, 5 times a power of ten at or above `max` (at least 1): the scale's
/// top, so its label is a round number.
pub(crate) fn scale_top(max: f64) -> f64 {
    let mut top = 1.0;
    loop {
        for step in [1.0, 2.0, 5.0] {
            if step * top >= max {
                return step * top;
            }
        }
        top *= 10.0;
    }
}

/// Jobs done and attempts failed per slot as stacked bars (done below, failed on top).
pub(crate) fn done_and_failed(id: &str, caption: &str, slots: &[Slot]) -> Markup {
    let max = slots
        .iter()
        .filter_map(|s| s.figures.as_ref())
        .map(|f| (f.done + f.failed) as f64)
        .fold(0.0, f64::max);
    let top = scale_top(max);
    let plot = HEIGHT - BOTTOM;
    let step = (WIDTH - LEFT) / slots.len().max(1) as f64;
    let bar = (step * 0.8).max(1.0);
    let y = |n: f64| plot - n / top * plot;
    html! {
        figure.chart #(id) {
            figcaption { (caption) }
            svg viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-label=(caption) {
                line.axis x1=(LEFT) y1=(plot) x2=(WIDTH) y2=(plot) {}
                text.scale x=(LEFT - 4.0) y="10" text-anchor="end" { (top) }
                text.scale x=(LEFT - 4.0) y=(plot) text-anchor="end" { "0" }
                @for (i, slot) in slots.iter().enumerate() {
                    @let x = LEFT + i as f64 * step;
                    @if let Some(f) = &slot.figures {
                        g.slot data-start=(slot.start) data-done=(f.done) data-failed=(f.failed) {
                            title { (clock(slot.start)) ": " (f.done) " done, " (f.failed) " failed" }
                            @if f.done > 0 {
                                rect.done x=(fmt(x)) y=(fmt(y(f.done as f64))) width=(fmt(bar))
                                    height=(fmt(plot - y(f.done as f64))) {}
                            }
                            @if f.failed > 0 {
                                rect.failed x=(fmt(x)) y=(fmt(y((f.done + f.failed) as f64)))
                                    width=(fmt(bar)) height=(fmt(plot - y(f.failed as f64))) {}
                            }
                        }
                    }
                }
                (time_labels(slots, step))
            }
            p.legend { span.ok { "\u{25A0} done" } " " span.failed { "\u{25A0} failed" } }
            (figures_table(slots, |f| vec![f.done.to_string(), f.failed.to_string()], &["done", "failed"]))
        }
    }
}

/// The oldest waiting job's age per slot as a line; a slot with no sample breaks it.
pub(crate) fn oldest_waiting(id: &str, caption: &str, slots: &[Slot]) -> Markup {
    let sample = |s: &Slot| s.figures.as_ref().and_then(|f| f.oldest_waiting_secs);
    let max = slots.iter().filter_map(sample).fold(0.0, f64::max);
    let top = scale_top(max);
    let plot = HEIGHT - BOTTOM;
    let step = (WIDTH - LEFT) / slots.len().max(1) as f64;
    // Runs of slots with a sample, each drawn as one polyline.
    let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    for (i, slot) in slots.iter().enumerate() {
        match sample(slot) {
            Some(age) => runs.last_mut().expect("one run at least").push((
                LEFT + (i as f64 + 0.4) * step,
                plot - age.max(0.0) / top * plot,
            )),
            None if runs.last().is_some_and(|run| !run.is_empty()) => runs.push(Vec::new()),
            None => {}
        }
    }
    html! {
        figure.chart #(id) {
            figcaption { (caption) }
            svg viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-label=(caption) {
                line.axis x1=(LEFT) y1=(plot) x2=(WIDTH) y2=(plot) {}
                text.scale x=(LEFT - 4.0) y="10" text-anchor="end" { (top) " s" }
                text.scale x=(LEFT - 4.0) y=(plot) text-anchor="end" { "0" }
                @for run in runs.iter().filter(|run| !run.is_empty()) {
                    @let points = run.iter().map(|(x, y)| format!("{},{}", fmt(*x), fmt(*y))).collect::<Vec<_>>().join(" ");
                    polyline.age points=(points) {}
                    @for (x, y) in run { circle.age cx=(fmt(*x)) cy=(fmt(*y)) r="2" {} }
                }
                (time_labels(slots, step))
            }
            (figures_table(slots, |f| vec![f.oldest_waiting_secs.map_or("-".into(), |s| format!("{s:.0} s"))], &["oldest waiting"]))
        }
    }
}

/// The first, middle and last slots' times under the plot.
fn time_labels(slots: &[Slot], step: f64) -> Markup {
    let marks: Vec<usize> = match slots.len() {
        0 => vec![],
        n => vec![0, n / 2, n - 1],
    };
    let last = slots.len().saturating_sub(1);
    html! {
        @for i in marks {
            // The last label ends at its slot's right edge, inside the picture.
            @let (x, anchor) = if i == last && i > 0 {
                (LEFT + (i + 1) as f64 * step, "end")
            } else {
                (LEFT + i as f64 * step, "start")
            };
            text.time x=(fmt(x)) y=(HEIGHT - 4.0) text-anchor=(anchor) { (clock(slots[i].start)) }
        }
    }
}

/// The chart's numbers as a table (folded): what a screen reader or a test reads.
fn figures_table(
    slots: &[Slot],
    cells: impl Fn(&QueueMinute) -> Vec<String>,
    heads: &[&str],
) -> Markup {
    html! {
        details {
            summary { "as a table" }
            table.figures {
                tr { th { "from (UTC)" } @for head in heads { th.n { (head) } } }
                @for slot in slots.iter().rev() {
                    tr data-start=(slot.start) {
                        td { (clock(slot.start)) }
                        @match &slot.figures {
                            Some(f) => { @for cell in cells(f) { td.n { (cell) } } }
                            None => { @for _ in heads { td.n { "-" } } }
                        }
                    }
                }
            }
        }
    }
}

/// A coordinate with at most one decimal.
fn fmt(v: f64) -> String {
    let rounded = (v * 10.0).round() / 10.0;
    if rounded.fract() == 0.0 {
        format!("{rounded:.0}")
    } else {
        format!("{rounded:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minute(minute: i64, done: i64, failed: i64, oldest: Option<f64>) -> QueueMinute {
        QueueMinute {
            minute,
            done,
            failed,
            oldest_waiting_secs: oldest,
        }
    }

    #[test]
    fn slots_end_with_the_newest_and_keep_gaps() {
        let rows = [minute(600, 3, 1, None), minute(720, 5, 0, Some(2.0))];
        let slots = slots(&rows, 750, 60, 4);
        let starts: Vec<i64> = slots.iter().map(|s| s.start).collect();
        assert_eq!(starts, [540, 600, 660, 720]);
        assert_eq!(slots[0].figures, None);
        assert_eq!(slots[1].figures, Some(rows[0].clone()));
        assert_eq!(slots[2].figures, None);
        assert_eq!(slots[3].figures, Some(rows[1].clone()));
    }

    #[test]
    fn the_scale_tops_at_a_round_number() {
        let tops: Vec<f64> = [0.0, 1.0, 1.5, 3.0, 7.0, 10.0, 11.0, 450.0, 1001.0]
            .map(scale_top)
            .to_vec();
        assert_eq!(tops, [1.0, 1.0, 2.0, 5.0, 10.0, 10.0, 20.0, 500.0, 2000.0]);
    }

    #[test]
    fn bars_say_their_figures_in_words_and_in_the_table() {
        let slots = slots(
            &[minute(0, 8, 2, None), minute(120, 0, 0, Some(4.0))],
            120,
            60,
            3,
        );
        let svg = done_and_failed("c", "jobs per minute", &slots).into_string();
        // the stacked bars of minute 0: 8 done from the axis, 2 failed above them
        assert!(
            svg.contains("<title>00:00: 8 done, 2 failed</title>"),
            "{svg}"
        );
        assert!(
            svg.contains(r#"<rect class="done" x="48" y="28" width="179.2" height="112"></rect>"#),
            "{svg}"
        );
        assert!(
            svg.contains(r#"<rect class="failed" x="48" y="0" width="179.2" height="28"></rect>"#),
            "{svg}"
        );
        // a minute with nothing done draws no bar but still says so
        assert!(
            svg.contains("<title>00:02: 0 done, 0 failed</title>"),
            "{svg}"
        );
        // a minute never rolled up is a gap, and a dash in the table
        assert!(!svg.contains(r#"<g class="slot" data-start="60""#), "{svg}");
        assert!(
            svg.contains(
                r#"<tr data-start="60"><td>00:01</td><td class="n">-</td><td class="n">-</td></tr>"#
            ),
            "{svg}"
        );
        assert!(svg.contains("done</span>") && svg.contains("failed</span>"));
    }

    #[test]
    fn the_age_line_breaks_where_no_sample_was_taken() {
        let slots = slots(
            &[
                minute(0, 0, 0, Some(10.0)),
                minute(60, 0, 0, Some(5.0)),
                minute(180, 0, 0, Some(20.0)),
            ],
            180,
            60,
            4,
        );
        let svg = oldest_waiting("w", "oldest waiting", &slots).into_string();
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        assert!(svg.contains(r#"<td class="n">20 s</td>"#), "{svg}");
        assert!(
            svg.contains(">20 s</text>"),
            "the scale tops at 20 s: {svg}"
        );
    }
}
