//! Samples, the CSV they are written to as they come, and the markdown report.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use crate::options::Options;
use crate::stats::{Count, Counts, Stats, percentile_ms, slope};

/// One sampling interval.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    /// Seconds since the load started.
    pub(crate) t: f64,
    /// The server's RSS, KiB.
    pub(crate) rss_kib: u64,
    /// Client connections open.
    pub(crate) open: i64,
    /// What the load did in the interval.
    pub(crate) counts: Counts,
    /// The legitimate round trips of the interval, sorted, in microseconds.
    pub(crate) rtts: Vec<u32>,
}

impl Sample {
    /// Takes the interval's counters and round trips from `stats`.
    pub(crate) fn take(t: f64, rss_kib: u64, stats: &Stats) -> Sample {
        let mut rtts = stats.take_rtts();
        rtts.sort_unstable();
        Sample {
            t,
            rss_kib,
            open: stats.open(),
            counts: stats.take(),
            rtts,
        }
    }

    fn get(&self, c: Count) -> u64 {
        self.counts[c as usize]
    }

    /// A progress line.
    pub(crate) fn line(&self) -> String {
        let ms = |p| percentile_ms(&self.rtts, p).map_or("-".into(), |v| format!("{v:.1}"));
        format!(
            "[{:>5.0} s] rss {:>7.1} MiB | open {:>4} | connects {:>4} refused {:>3}/{:<3} | \
             pub {:>5} recv {:>7} diffs {:>6} | rate_limited {:>5} 1013 {:>2} 1008 {:>2} | \
             errors {:>3} | rtt p50 {} p99 {} ms",
            self.t,
            self.rss_kib as f64 / 1024.0,
            self.open,
            self.get(Count::Connects),
            self.get(Count::LoginsRefused),
            self.get(Count::HandshakesRefused),
            self.get(Count::Publishes),
            self.get(Count::Received),
            self.get(Count::Diffs),
            self.get(Count::RateLimited),
            self.get(Count::Closed1013),
            self.get(Count::Closed1008),
            self.get(Count::Errors),
            ms(50.0),
            ms(99.0),
        )
    }
}

/// The CSV, written a row at a time (and flushed) so an interrupted or crashed run
/// still leaves its samples.
#[derive(Debug)]
pub(crate) struct Csv {
    out: Option<BufWriter<File>>,
}

impl Csv {
    /// Creates `path` (and its directory) and writes the header.
    pub(crate) fn create(path: &Path) -> io::Result<Csv> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut out = BufWriter::new(File::create(path)?);
        let mut header = String::from("t_s,rss_kib,open");
        for c in Count::ALL {
            header.push(',');
            header.push_str(c.name());
        }
        header.push_str(",rtt_n,rtt_p50_ms,rtt_p99_ms");
        writeln!(out, "{header}")?;
        out.flush()?;
        Ok(Csv { out: Some(out) })
    }

    /// Appends `s`. A write error is reported once and ends the CSV, not the run.
    pub(crate) fn row(&mut self, s: &Sample) {
        let Some(out) = &mut self.out else { return };
        let mut row = format!("{:.1},{},{}", s.t, s.rss_kib, s.open);
        for n in s.counts {
            let _ = write!(row, ",{n}");
        }
        let ms = |p| percentile_ms(&s.rtts, p).map_or(String::new(), |v| format!("{v:.3}"));
        let _ = write!(row, ",{},{},{}", s.rtts.len(), ms(50.0), ms(99.0));
        if let Err(e) = writeln!(out, "{row}").and_then(|()| out.flush()) {
            eprintln!("soak: writing the CSV: {e} (no more rows)");
            self.out = None;
        }
    }
}

/// Everything the final report is made of.
#[derive(Debug)]
pub(crate) struct Report<'a> {
    /// The run's parameters.
    pub(crate) opts: &'a Options,
    /// Every sample, the first at t = 0 before any load.
    pub(crate) samples: &'a [Sample],
    /// RSS a few seconds after the load stopped.
    pub(crate) rss_after_load: Option<u64>,
    /// What the load did after the last sample (closing its connections).
    pub(crate) wind_down: Counts,
    /// What went wrong or ended unusually, by kind.
    pub(crate) details: BTreeMap<String, u64>,
    /// Client tasks that panicked (a defect of the soak).
    pub(crate) panics: usize,
    /// Whether Ctrl-C ended the run early.
    pub(crate) interrupted: bool,
    /// How the server ended, if it died during the run.
    pub(crate) server_exit: Option<String>,
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

impl Report<'_> {
    /// The report, in markdown.
    pub(crate) fn markdown(&self) -> String {
        let o = self.opts;
        let mut md = String::new();
        let last_t = self.samples.last().map_or(0.0, |s| s.t);
        let _ = writeln!(
            md,
            "\n## Soak: {:.0} s of mixed load against the chat example{}\n",
            last_t,
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            md,
            "Load: {} readers in {} rooms ({} also in `chat:busy`); {} publishers at {}/s; \
             {} busy-room publishers at {}/s of {} B; {} churners (hold {} ms, pause {} ms); \
             {} presence loops at {}/s (metas padded to {} B); {} slow consumers (no reading, \
             give up after {} s); {} flooders (up to {} frames, pause {} ms); {} legitimate clients at {}/s. \
             Samples every {} s; warm-up {} s.\n",
            o.readers,
            o.rooms,
            o.busy_readers,
            o.publishers,
            o.publish_rate,
            o.busy_publishers,
            o.busy_rate,
            o.busy_bytes,
            o.churners,
            o.churn_hold_ms,
            o.churn_pause_ms,
            o.presence,
            o.presence_rate,
            o.meta_bytes,
            o.slow,
            o.slow_max_secs,
            o.flooders,
            o.flood_frames,
            o.flood_pause_ms,
            o.legit,
            o.legit_rate,
            o.sample_secs,
            o.warmup_secs,
        );
        self.table(&mut md);
        self.rss_summary(&mut md);
        self.totals(&mut md);
        md
    }

    /// One row per minute (per sample for runs of 5 minutes or less).
    fn table(&self, md: &mut String) {
        let per_sample = self.samples.last().is_none_or(|s| s.t <= 300.5);
        let (unit, width) = if per_sample {
            ("s", self.opts.sample_secs as f64)
        } else {
            ("min", 60.0)
        };
        let mut rows: BTreeMap<u64, Vec<&Sample>> = BTreeMap::new();
        for s in self.samples.iter().skip(1) {
            // Samples land a little after their mark: round to the nearest interval.
            let bucket = ((s.t - 1.0).max(0.0) / width).floor() as u64 + 1;
            rows.entry(bucket).or_default().push(s);
        }
        let _ = writeln!(
            md,
            "| {unit} | RSS MiB | open | connects | refused login/ws | publishes | received | \
             presence diffs | rate_limited | 1013 | 1008 | errors | RTT p50 ms | RTT p99 ms |"
        );
        let _ = writeln!(md, "|{}", "---:|".repeat(14));
        for (bucket, group) in rows {
            let last = group[group.len() - 1];
            let sum = |c: Count| group.iter().map(|s| s.get(c)).sum::<u64>();
            let mut rtts: Vec<u32> = group.iter().flat_map(|s| s.rtts.iter().copied()).collect();
            rtts.sort_unstable();
            let ms = |p| percentile_ms(&rtts, p).map_or("-".into(), |v| format!("{v:.1}"));
            let at = if per_sample {
                format!("{:.0}", last.t)
            } else {
                bucket.to_string()
            };
            let _ = writeln!(
                md,
                "| {at} | {} | {} | {} | {}/{} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                mib(last.rss_kib),
                last.open,
                sum(Count::Connects),
                sum(Count::LoginsRefused),
                sum(Count::HandshakesRefused),
                sum(Count::Publishes),
                sum(Count::Received),
                sum(Count::Diffs),
                sum(Count::RateLimited),
                sum(Count::Closed1013),
                sum(Count::Closed1008),
                sum(Count::Errors),
                ms(50.0),
                ms(99.0),
            );
        }
        md.push('\n');
    }

    /// RSS at the marks that matter and the slope after warm-up.
    fn rss_summary(&self, md: &mut String) {
        let Some(first) = self.samples.first() else {
            return;
        };
        let last = &self.samples[self.samples.len() - 1];
        let warm = self.opts.warmup_secs as f64;
        // The last sample taken by the end of warm-up (a second late is on time).
        let warm_end = self
            .samples
            .iter()
            .rev()
            .find(|s| s.t <= warm + 1.0)
            .unwrap_or(first);
        let max = self
            .samples
            .iter()
            .max_by_key(|s| s.rss_kib)
            .unwrap_or(first);
        let after: Vec<(f64, f64)> = self
            .samples
            .iter()
            .filter(|s| s.t >= warm_end.t)
            .map(|s| (s.t / 60.0, s.rss_kib as f64))
            .collect();
        let _ = writeln!(md, "| server RSS | at | MiB | KiB |\n|---|---:|---:|---:|");
        let mut row = |what: &str, at: String, kib: u64| {
            let _ = writeln!(md, "| {what} | {at} | {} | {kib} |", mib(kib));
        };
        row(
            "before the load",
            format!("{:.0} s", first.t),
            first.rss_kib,
        );
        let warm_label = if last.t + 1.0 < warm {
            "end of warm-up (not reached: last sample)"
        } else {
            "end of warm-up"
        };
        row(warm_label, format!("{:.0} s", warm_end.t), warm_end.rss_kib);
        row("end", format!("{:.0} s", last.t), last.rss_kib);
        row("max", format!("{:.0} s", max.t), max.rss_kib);
        if let Some(kib) = self.rss_after_load {
            row("load stopped, clients gone", "+5 s".into(), kib);
        }
        match slope(&after) {
            Some(kib_per_min) => {
                let minutes = (last.t - warm_end.t) / 60.0;
                let _ = writeln!(
                    md,
                    "\nSlope of a least-squares fit of RSS after warm-up ({} samples, {:.0} s to \
                     {:.0} s): **{:+.1} KiB/min** ({:+.0} KiB over those {:.1} min; end minus \
                     end of warm-up: {:+} KiB).\n",
                    after.len(),
                    warm_end.t,
                    last.t,
                    kib_per_min,
                    kib_per_min * minutes,
                    minutes,
                    last.rss_kib as i64 - warm_end.rss_kib as i64,
                );
            }
            None => {
                let _ = writeln!(md, "\nNo slope: fewer than two samples after warm-up.\n");
            }
        }
    }

    /// Totals, round trips after warm-up, and what went wrong.
    fn totals(&self, md: &mut String) {
        let mut total: Counts = self.wind_down;
        for s in self.samples {
            for (t, n) in total.iter_mut().zip(s.counts) {
                *t += n;
            }
        }
        let list = Count::ALL
            .iter()
            .map(|c| format!("{} {}", c.name(), total[*c as usize]))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            md,
            "Totals (with the wind-down after the last sample): {list}.\n"
        );
        let warm = self.opts.warmup_secs as f64;
        let mut rtts: Vec<u32> = self
            .samples
            .iter()
            .filter(|s| s.t > warm + 1.0)
            .flat_map(|s| s.rtts.iter().copied())
            .collect();
        rtts.sort_unstable();
        match (percentile_ms(&rtts, 50.0), percentile_ms(&rtts, 99.0)) {
            (Some(p50), Some(p99)) => {
                let max = percentile_ms(&rtts, 100.0).unwrap_or(p99);
                let _ = writeln!(
                    md,
                    "Legitimate publish round trip after warm-up ({} round trips): p50 {p50:.1} ms, \
                     p99 {p99:.1} ms, max {max:.1} ms.\n",
                    rtts.len()
                );
            }
            _ => {
                let _ = writeln!(md, "No legitimate round trips after warm-up.\n");
            }
        }
        if !self.details.is_empty() {
            let _ = writeln!(md, "What else happened (whole run):\n");
            for (what, n) in &self.details {
                let _ = writeln!(md, "- {what}: {n}");
            }
            md.push('\n');
        }
        if self.panics > 0 {
            let _ = writeln!(md, "**{} client tasks panicked.**\n", self.panics);
        }
        if let Some(exit) = &self.server_exit {
            let _ = writeln!(md, "**The server exited during the run: {exit}.**\n");
        }
    }
}
