//! The printed report of `bench-images`: memory, stored images, agentd's own ingest time (from its logs),
//! client-side image and last-event times through agentd vs straight to the fake, the text-only run beside
//! it, and the two targets with met / MISSED.

use std::fmt::Write as _;
use std::time::Duration;

use crate::agentd::Mem;
use crate::phase::PhaseResult;
use crate::report::{MB, count, mb, num, pair, table};
use crate::stats::{Dist, diff};

/// Target: agentd's peak RSS over idle during the image phase, in MB.
pub const RSS_TARGET_MB: f64 = 200.0;
/// Target: `ingest_ms` p99.
pub const INGEST_TARGET_MS: f64 = 50.0;

/// Everything one run measured.
pub struct ImagesRun {
    pub binary: String,
    pub s3: String,
    pub bucket: String,
    pub clients: usize,
    pub turns_per_client: usize,
    pub image_message: String,
    pub text_message: String,
    pub event_delay_ms: u64,
    /// After a text warm-up turn.
    pub idle: Option<Mem>,
    /// After the image warm-up turn.
    pub after_image_warmup: Option<Mem>,
    /// At the start of the text phase (which runs first) and of the image phase.
    pub text_start: Option<Mem>,
    pub image_start: Option<Mem>,
    /// Image turns through agentd.
    pub image: PhaseResult,
    /// Text turns through agentd (run before the image turns).
    pub text: PhaseResult,
    /// Image turns straight to the fake.
    pub direct: PhaseResult,
    /// `ingest_ms` of the images stored during the image phase.
    pub ingest_ms: Vec<f64>,
    /// `ingest_ms` of the image warm-up turn (one image, nothing else running).
    pub warm_ingest_ms: Option<f64>,
    /// Downloads of the first attachments: `Ok` or why not.
    pub downloads: Vec<Result<(), String>>,
    /// agentd stdout: lines, unparsed, WARN/ERROR lines, samples.
    pub log: (u64, u64, u64, Vec<String>),
    pub agentd_exited: bool,
}

/// The phase's peak RSS: the larger of the samples' peak and VmHWM (when it could be reset at the start).
pub fn peak(p: &PhaseResult) -> Option<u64> {
    p.rss_peak.max(p.hwm.filter(|_| p.hwm_was_reset))
}

fn over_idle(p: &PhaseResult, idle: Option<Mem>) -> Option<f64> {
    Some((peak(p)? as f64 - idle?.rss as f64) / MB)
}

fn verdict(v: Option<f64>, limit: f64) -> &'static str {
    match v {
        None => "not measured",
        Some(x) if x <= limit => "met",
        Some(_) => "MISSED",
    }
}

fn row(label: &str, cells: Vec<String>) -> (String, Vec<String>) {
    (label.to_owned(), cells)
}

fn head(cols: &[&str]) -> Vec<String> {
    cols.iter().map(|c| (*c).to_owned()).collect()
}

fn ingest_dist(r: &ImagesRun) -> Dist {
    Dist::new(
        r.ingest_ms
            .iter()
            .map(|ms| Duration::from_secs_f64(ms.max(0.0) / 1000.0))
            .collect(),
    )
}

fn memory(out: &mut String, r: &ImagesRun) {
    let _ = writeln!(
        out,
        "\nMemory (agentd VmRSS; peak = max of 20 ms samples and VmHWM)"
    );
    let rows = vec![
        row(
            "idle, after a text warm-up turn",
            vec![num(mb(r.idle.map(|m| m.rss)), 1)],
        ),
        row(
            "after one image warm-up turn",
            vec![num(mb(r.after_image_warmup.map(|m| m.rss)), 1)],
        ),
        row(
            "at the start of the text phase (runs first)",
            vec![num(mb(r.text_start.map(|m| m.rss)), 1)],
        ),
        row("peak, text phase", vec![num(mb(peak(&r.text)), 1)]),
        row(
            "peak over idle, text phase",
            vec![num(over_idle(&r.text, r.idle), 1)],
        ),
        row(
            "at the start of the image phase",
            vec![num(mb(r.image_start.map(|m| m.rss)), 1)],
        ),
        row("peak, image phase", vec![num(mb(peak(&r.image)), 1)]),
        row(
            "peak over idle, image phase (target ≤ 200)",
            vec![num(over_idle(&r.image, r.idle), 1)],
        ),
    ];
    table(out, &head(&["MB"]), &rows);
}

fn images(out: &mut String, r: &ImagesRun) {
    let a = &r.image;
    let ing = ingest_dist(r);
    let stored = r.ingest_ms.len();
    let per_sec = (a.wall.as_secs_f64() > 0.0).then(|| stored as f64 / a.wall.as_secs_f64());
    let dl_ok = r.downloads.iter().filter(|d| d.is_ok()).count();
    let _ = writeln!(
        out,
        "\nImage turns through agentd into S3 (ingest_ms, from agentd's log: item.done parsed → attachment)"
    );
    let mut rows = vec![
        row("turns ok / errors", vec![format!("{} / {}", a.ok, a.errors)]),
        row(
            "ok turns with exactly one attachment",
            vec![format!("{} of {}", a.one_attachment, a.ok)],
        ),
        row(
            "attachment / image.failed events",
            vec![format!("{} / {}", a.attachments, a.images_failed)],
        ),
        row("images stored (agentd log lines)", vec![stored.to_string()]),
        row("phase wall time, s", vec![format!("{:.2}", a.wall.as_secs_f64())]),
        row("images stored per second", vec![num(per_sec, 2)]),
        row("agentd CPU ms per image turn", vec![num(a.cpu_ms_per_turn(), 0)]),
        row(
            "ingest_ms p50 / p99 / max (target p99 ≤ 50)",
            vec![format!(
                "{} / {}",
                pair(ing.p50(), ing.p99(), 1),
                num(ing.pct(100.0), 1)
            )],
        ),
        row(
            "ingest_ms, single warm-up image alone",
            vec![num(r.warm_ingest_ms, 1)],
        ),
        row(
            "ingest_ms p90; images over 50 ms",
            vec![format!(
                "{}; {} of {stored}",
                num(ing.pct(90.0), 1),
                r.ingest_ms.iter().filter(|ms| **ms > INGEST_TARGET_MS).count()
            )],
        ),
        row(
            "downloads checked (PNG magic + size_bytes)",
            vec![format!("{dl_ok} of {} ok", r.downloads.len())],
        ),
    ];
    for e in r.downloads.iter().filter_map(|d| d.as_ref().err()).take(2) {
        rows.push(row("  download failure", vec![e.clone()]));
    }
    table(out, &head(&["value"]), &rows);
}

fn latency(out: &mut String, r: &ImagesRun) {
    let (a, d) = (&r.image, &r.direct);
    let _ = writeln!(
        out,
        "\nImage turns, client side (ms from request sent): agentd vs straight to the fake"
    );
    let rows = vec![
        row(
            "time to image p50 / p99 (attachment | item.done)",
            vec![
                pair(a.image_at.p50(), a.image_at.p99(), 1),
                pair(d.image_at.p50(), d.image_at.p99(), 1),
            ],
        ),
        row(
            "time to last event p50 / p99",
            vec![
                pair(a.last.p50(), a.last.p99(), 1),
                pair(d.last.p50(), d.last.p99(), 1),
            ],
        ),
        row(
            "added by agentd, image p50 / p99",
            vec![
                pair(
                    diff(a.image_at.p50(), d.image_at.p50()),
                    diff(a.image_at.p99(), d.image_at.p99()),
                    1,
                ),
                String::new(),
            ],
        ),
        row(
            "added by agentd, last event p50 / p99",
            vec![
                pair(
                    diff(a.last.p50(), d.last.p50()),
                    diff(a.last.p99(), d.last.p99()),
                    1,
                ),
                String::new(),
            ],
        ),
        row(
            "turns ok / errors",
            vec![
                format!("{} / {}", a.ok, a.errors),
                format!("{} / {}", d.ok, d.errors),
            ],
        ),
        row(
            "turns/s",
            vec![num(a.turns_per_sec(), 2), num(d.turns_per_sec(), 2)],
        ),
        row(
            "SSE MB received per turn",
            vec![num(per_turn_mb(a), 2), num(per_turn_mb(d), 2)],
        ),
    ];
    table(out, &head(&["agentd", "direct"]), &rows);
}

fn per_turn_mb(p: &PhaseResult) -> Option<f64> {
    (p.ok > 0).then(|| p.bytes as f64 / MB / p.ok as f64)
}

fn text(out: &mut String, r: &ImagesRun) {
    let t = &r.text;
    let _ = writeln!(
        out,
        "\nText-only turns through agentd (same clients and turns; runs before the image phase)"
    );
    let rows = vec![
        row("turns ok / errors", vec![format!("{} / {}", t.ok, t.errors)]),
        row(
            "time to last event p50 / p99, ms",
            vec![pair(t.last.p50(), t.last.p99(), 1)],
        ),
        row("turns/s", vec![num(t.turns_per_sec(), 1)]),
    ];
    table(out, &head(&["value"]), &rows);
}

fn errors(out: &mut String, r: &ImagesRun) {
    let (lines, unparsed, warnings, samples) = &r.log;
    let _ = writeln!(
        out,
        "\nagentd stdout: {lines} lines, {unparsed} not JSON, {warnings} WARN/ERROR{}",
        if r.agentd_exited {
            "; agentd EXITED during the run"
        } else {
            ""
        }
    );
    for s in samples {
        let _ = writeln!(out, "  {s}");
    }
    for (name, p) in [
        ("image/agentd", &r.image),
        ("text/agentd", &r.text),
        ("image/direct", &r.direct),
    ] {
        for (msg, n) in &p.error_samples {
            let _ = writeln!(out, "  {name} error ×{n}: {msg}");
        }
    }
}

/// Whether both targets were met, and the targets table.
fn targets(out: &mut String, r: &ImagesRun) -> bool {
    let rss = over_idle(&r.image, r.idle);
    let ing = ingest_dist(r).p99();
    let (v1, v2) = (verdict(rss, RSS_TARGET_MB), verdict(ing, INGEST_TARGET_MS));
    let _ = writeln!(out, "\nTargets (issue)");
    let rows = vec![
        row(
            "peak RSS over idle, image phase",
            vec!["≤ 200 MB".to_owned(), num(rss, 1), v1.to_owned()],
        ),
        row(
            "attachment after upstream item.done, p99",
            vec!["≤ 50 ms".to_owned(), num(ing, 1), v2.to_owned()],
        ),
    ];
    table(out, &head(&["target", "measured", "verdict"]), &rows);
    v1 == "met" && v2 == "met"
}

/// The whole report.
pub fn render(r: &ImagesRun) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "bench-images: {} clients × {} turns; image turn {:?}, text turn {:?}",
        r.clients, r.turns_per_client, r.image_message, r.text_message
    );
    let _ = writeln!(out, "  agentd: {}", r.binary);
    let _ = writeln!(out, "  S3: {}, bucket {}", r.s3, r.bucket);
    let _ = writeln!(
        out,
        "  fake upstream in-process, {} ms between events; errors: image {} / text {} / direct {}",
        r.event_delay_ms,
        count(Some(r.image.errors)),
        r.text.errors,
        r.direct.errors
    );
    memory(&mut out, r);
    images(&mut out, r);
    latency(&mut out, r);
    text(&mut out, r);
    errors(&mut out, r);
    let met = targets(&mut out, r);
    let _ = writeln!(out, "\ntargets: {}", if met { "met" } else { "MISSED" });
    out
}
