//! The printed report of `bench-images`: per S3 stand-in, memory, attachment latency after the upstream's
//! `output_item.done` (timing proxy; agentd's own `ingest_ms` beside it), CPU and SQL per image turn; then
//! the mixed case (a text turn's added time to first event with and without image turns beside it, CPU per
//! image turn); then issue 7's targets with met / MISSED. Every latency figure comes with its sample count.

use std::fmt::Write as _;
use std::time::Duration;

use crate::fmt::{MB, head, mb, num, pair, row, table, targets, verdict};
use crate::images::StoreRun;
use crate::mixed::{Mixed, MixedSpec};
use crate::phase::PhaseResult;
use crate::stats::{Dist, diff, signed_pct};

/// Target: agentd's peak RSS over idle during the image turns, MB.
pub const RSS_TARGET_MB: f64 = 150.0;
/// Target: `attachment` after the upstream's `output_item.done`, p99 ms.
pub const ATTACH_TARGET_MS: f64 = 50.0;
/// Target: agentd CPU per 4 MB image turn, ms.
pub const CPU_TARGET_MS: f64 = 25.0;
/// Target: a text turn's added TTFE with 10 image turns beside it, p99 ms.
pub const MIXED_TARGET_MS: f64 = 5.0;

/// Everything one run measured.
pub struct ImagesRun {
    pub binary: String,
    pub database: String,
    /// Cores and load average (see [`crate::harness::machine_line`]).
    pub machine: String,
    pub event_delay_ms: u64,
    pub upstream_write_bytes: usize,
    pub clients: usize,
    pub rounds: usize,
    pub turns_per_client: usize,
    pub image_message: String,
    /// Whether agentd reached the fake through the timing proxy in the stores section.
    pub proxy: bool,
    pub stores: Vec<(String, StoreRun)>,
    pub mixed: Option<(String, MixedSpec, Mixed)>,
}

fn ms_dist(v: &[f64]) -> Dist {
    Dist::new(
        v.iter()
            .map(|ms| Duration::from_secs_f64(ms.max(0.0) / 1000.0))
            .collect(),
    )
}

/// The larger of the samples' peak and VmHWM (when it could be reset at each batch's start).
pub fn peak(p: &PhaseResult) -> Option<u64> {
    p.rss_peak.max(p.hwm.filter(|_| p.hwm_was_reset))
}

fn over_idle(s: &StoreRun) -> Option<f64> {
    let (p, i) = (peak(&s.image)?, s.idle?.rss);
    Some(p.saturating_sub(i) as f64 / MB)
}

fn p_p_max(d: &Dist, decimals: usize) -> String {
    format!(
        "{} / {} (n={})",
        pair(d.p50(), d.p99(), decimals),
        num(d.pct(100.0), decimals),
        d.len()
    )
}

fn stores(out: &mut String, r: &ImagesRun) {
    let cols: Vec<&StoreRun> = r.stores.iter().map(|(_, s)| s).collect();
    let per = |f: &dyn Fn(&StoreRun) -> String| -> Vec<String> { cols.iter().map(|s| f(s)).collect() };
    let mut rows = vec![
        row("S3 endpoint", per(&|s| s.s3.clone())),
        row(
            "turns ok / errors",
            per(&|s| format!("{} / {}", s.image.ok, s.image.errors)),
        ),
        row(
            "ok turns with exactly one attachment",
            per(&|s| format!("{} of {}", s.image.one_attachment, s.image.ok)),
        ),
        row(
            "attachment / image.failed events",
            per(&|s| format!("{} / {}", s.image.attachments, s.image.images_failed)),
        ),
        row(
            "idle RSS MB (after warm-up)",
            per(&|s| num(mb(s.idle.map(|m| m.rss)), 1)),
        ),
        row(
            "peak RSS MB (20 ms samples, VmHWM)",
            per(&|s| num(mb(peak(&s.image)), 1)),
        ),
        row(
            &format!("peak RSS over idle MB (target ≤ {RSS_TARGET_MB:.0})"),
            per(&|s| num(over_idle(s), 1)),
        ),
        row(
            "attachment after item.done p50 / p99 / max ms",
            per(&|s| p_p_max(&Dist::new(s.after_item_done.clone()), 1)),
        ),
        row(
            "  attachments without a proxy mark",
            per(&|s| s.unmatched.to_string()),
        ),
        row(
            "agentd log ingest_ms p50 / p99 / max",
            per(&|s| p_p_max(&ms_dist(&s.ingest_ms), 1)),
        ),
        row(
            "time to attachment from request p50 / p99 ms",
            per(&|s| pair(s.image.image_at.p50(), s.image.image_at.p99(), 1)),
        ),
        row(
            "time to last event p50 / p99 ms",
            per(&|s| pair(s.image.last.p50(), s.image.last.p99(), 1)),
        ),
        row(
            "images stored per second (during its batches)",
            per(&|s| {
                let w = s.image.wall.as_secs_f64();
                num((w > 0.0).then(|| f64::from(s.image.attachments) / w), 2)
            }),
        ),
        row(
            "agentd / PostgreSQL CPU ms per image turn",
            per(&|s| pair(s.image.cpu_ms_per_turn(), s.image.pg_cpu_ms_per_turn(), 1)),
        ),
        row(
            "downloads checked (PNG magic + size_bytes)",
            per(&|s| {
                let ok = s.downloads.iter().filter(|d| d.is_ok()).count();
                format!("{ok} of {} ok", s.downloads.len())
            }),
        ),
    ];
    for (name, s) in &r.stores {
        for e in s.downloads.iter().filter_map(|d| d.as_ref().err()).take(2) {
            rows.push(row(&format!("  {name} download failure"), vec![e.clone()]));
        }
    }
    let h: Vec<String> = r.stores.iter().map(|(n, _)| n.clone()).collect();
    table(out, &h, &rows);
    for (name, s) in &r.stores {
        let (lines, unparsed, warnings, samples) = &s.log;
        let _ = writeln!(
            out,
            "  {name}: agentd stdout {lines} lines, {unparsed} not JSON, {warnings} WARN/ERROR{}",
            if s.exited {
                "; agentd EXITED during the run"
            } else {
                ""
            }
        );
        for w in samples {
            let _ = writeln!(out, "    {w}");
        }
        crate::report::errors_of(out, name, &s.image);
    }
    for (name, s) in &r.stores {
        let _ = writeln!(
            out,
            "\nSQL per image turn, {name} (agentd's database, both batches' turns)"
        );
        match &s.sql {
            Ok(d) => crate::sql_report::render(out, d, s.image.ok, "image turn", 10),
            Err(why) => {
                let _ = writeln!(out, "  not measured: {why}");
            }
        }
    }
}

fn mixed(out: &mut String, store: &str, info: &MixedSpec, m: &Mixed) {
    let _ = writeln!(
        out,
        "\nMixed case on {store}: text turn {:?} one at a time, agentd and direct alternating, in {} windows \
         (L Q Q L …) with and without {} image turns {:?} running beside them; {} text turns per side per window",
        info.text_message, info.windows, info.image_clients, info.image_message, info.probes
    );
    let cols = [
        (&m.loaded_agentd, &m.loaded_direct),
        (&m.quiet_agentd, &m.quiet_direct),
    ];
    let per = |f: &dyn Fn(&PhaseResult, &PhaseResult) -> String| -> Vec<String> {
        cols.iter().map(|(a, d)| f(a, d)).collect()
    };
    let rows = vec![
        row(
            "text turns ok agentd / direct (errors)",
            per(&|a, d| format!("{} / {} ({} / {})", a.ok, d.ok, a.errors, d.errors)),
        ),
        row(
            "TTFE p50 ms (agentd / direct)",
            per(&|a, d| pair(a.first_delta.p50(), d.first_delta.p50(), 2)),
        ),
        row(
            "TTFE p99 ms (agentd / direct)",
            per(&|a, d| pair(a.first_delta.p99(), d.first_delta.p99(), 2)),
        ),
        row(
            "added TTFE p50 / p99 ms",
            per(&|a, d| {
                pair(
                    diff(a.first_delta.p50(), d.first_delta.p50()),
                    diff(a.first_delta.p99(), d.first_delta.p99()),
                    2,
                )
            }),
        ),
        row(
            "added TTFE, paired (each turn − the direct one beside it) p50 / p99 ms",
            [&m.loaded_paired, &m.quiet_paired]
                .iter()
                .map(|v| pair(signed_pct(v, 50.0), signed_pct(v, 99.0), 2))
                .collect(),
        ),
        row(
            "added TTLE p50 / p99 ms",
            per(&|a, d| {
                pair(
                    diff(a.last.p50(), d.last.p50()),
                    diff(a.last.p99(), d.last.p99()),
                    2,
                )
            }),
        ),
    ];
    table(out, &head(&["with image turns", "text alone"]), &rows);
    let (t, tp) = m.text_cpu_ms();
    let (i, ip) = m.image_cpu_ms();
    let l = &m.load;
    let _ = writeln!(out, "\n  the image turns beside them, and CPU:");
    let rows = vec![
        row(
            "image turns ok / errors (load)",
            vec![format!("{} / {}", l.ok, l.errors)],
        ),
        row(
            "attachment / image.failed events",
            vec![format!("{} / {}", l.attachments, l.images_failed)],
        ),
        row(
            "image turn TTLE p50 / p99 ms",
            vec![pair(l.last.p50(), l.last.p99(), 1)],
        ),
        row("agentd / PostgreSQL CPU ms per text turn", vec![pair(t, tp, 3)]),
        row("agentd / PostgreSQL CPU ms per image turn", vec![pair(i, ip, 1)]),
    ];
    table(out, &head(&["value"]), &rows);
    for (label, p) in [
        ("load", &m.load),
        ("loaded text", &m.loaded_agentd),
        ("quiet text", &m.quiet_agentd),
    ] {
        crate::report::errors_of(out, label, p);
    }
    if m.exited {
        let _ = writeln!(out, "  agentd EXITED during the mixed case");
    }
}

fn targets_of(out: &mut String, r: &ImagesRun) {
    let mut rows = Vec::new();
    for (name, s) in &r.stores {
        let rss = over_idle(s);
        rows.push((
            format!("peak RSS over idle, {name}"),
            format!("≤ {RSS_TARGET_MB:.0} MB"),
            num(rss, 1),
            verdict(rss, RSS_TARGET_MB, false),
        ));
        let d = Dist::new(s.after_item_done.clone());
        rows.push((
            format!("attachment after item.done p99, {name} (n={})", d.len()),
            format!("≤ {ATTACH_TARGET_MS:.0} ms"),
            num(d.p99(), 1),
            verdict(d.p99(), ATTACH_TARGET_MS, false),
        ));
        if let Ok(sql) = &s.sql
            && let Some(p) = crate::sql_report::per_turn(sql, s.image.ok)
        {
            rows.push((
                format!("statements / transactions per image turn (the turn's own), {name}"),
                "≤ 10 / ≤ 3".to_owned(),
                crate::sql_report::own_text(&p),
                match p.own() {
                    Some((st, x, _)) if st <= 10.0 && x <= 3.0 => "met",
                    Some(_) => "MISSED",
                    None => "not measured",
                },
            ));
        }
    }
    if let Some((_, spec, m)) = &r.mixed {
        let added = signed_pct(&m.loaded_paired, 99.0);
        rows.push((
            format!(
                "text added TTFE p99 (paired), {} image turns beside (n={})",
                spec.image_clients,
                m.loaded_paired.len()
            ),
            format!("≤ {MIXED_TARGET_MS:.0} ms"),
            num(added, 2),
            verdict(added, MIXED_TARGET_MS, false),
        ));
        let (cpu, _) = m.image_cpu_ms();
        rows.push((
            format!("agentd CPU per image turn, mixed case ({:?})", spec.image_message),
            format!("≤ {CPU_TARGET_MS:.0} ms"),
            num(cpu, 1),
            verdict(cpu, CPU_TARGET_MS, false),
        ));
    }
    targets(out, "Targets (issue 7: points 3, 7, 8)", rows);
}

/// The whole report.
pub fn render(r: &ImagesRun) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "bench-images: agentd image turns into S3 stand-ins, and text turns beside image turns"
    );
    let _ = writeln!(out, "  agentd: {}", r.binary);
    let _ = writeln!(out, "  database: {}", r.database);
    let _ = writeln!(out, "  machine: {}", r.machine);
    let _ = writeln!(
        out,
        "  fake upstream in-process, {} ms between events, bodies in writes of {} bytes; {}",
        r.event_delay_ms,
        r.upstream_write_bytes,
        if r.proxy {
            "in the first section agentd reaches it through the timing proxy, which notes when it hands agentd \
             an image's output_item.done"
        } else {
            "agentd reaches it directly (--no-proxy): attachments are timed only by agentd's ingest_ms"
        }
    );
    let _ = writeln!(
        out,
        "\nImage turns {:?}: {} concurrent × {} turns per batch, {} batches per S3 stand-in, alternating",
        r.image_message, r.clients, r.turns_per_client, r.rounds
    );
    stores(&mut out, r);
    if let Some((store, info, m)) = &r.mixed {
        mixed(&mut out, store, info, m);
    }
    targets_of(&mut out, r);
    out
}
