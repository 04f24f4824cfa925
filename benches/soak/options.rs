//! The soak's command line: how long, where the CSV goes, and how much of each kind of
//! load. Every load parameter is a flag with a default, so the run keeps working (and
//! can be re-tuned) as the hub's limits change.

use std::path::PathBuf;
use std::time::Duration;

/// Most client connections the load may hold at once. This process holds one
/// descriptor per connection and may hold 20,000 files; the hub's own global cap is
/// 10,000 by default.
pub(crate) const MAX_CLIENTS: usize = 8_000;

/// Everything the run is told on its command line.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// `--secs`: how long the load runs. Default 1,200 (20 minutes).
    pub(crate) secs: u64,
    /// `--warmup-secs`: the first part of the run, left out of the slope. Default 120,
    /// cut to half the run when the run is shorter than 4 minutes (so a short
    /// validation run still has a post-warm-up slope).
    pub(crate) warmup_secs: u64,
    /// `--sample-secs`: how often the server's RSS and the counters are sampled.
    /// Default 10.
    pub(crate) sample_secs: u64,
    /// `--out`: the CSV of samples. Default `target/soak.csv`.
    pub(crate) out: PathBuf,
    /// `--chat-bin`: an already built chat example to run instead of building one.
    pub(crate) chat_bin: Option<PathBuf>,
    /// `--readers`: standing readers, each in one of the publish rooms. Default 200.
    pub(crate) readers: usize,
    /// `--busy-readers`: how many of the readers also sit in the busy room. Default 50.
    pub(crate) busy_readers: usize,
    /// `--rooms`: publish rooms the readers are spread over. Default 4.
    pub(crate) rooms: usize,
    /// `--publishers`: clients publishing steadily in the publish rooms. Default 8.
    pub(crate) publishers: usize,
    /// `--publish-rate`: messages a second per publisher. Default 5.
    pub(crate) publish_rate: f64,
    /// `--busy-publishers`: clients publishing large messages in the busy room (what
    /// fills a slow consumer's queue). Default 4.
    pub(crate) busy_publishers: usize,
    /// `--busy-rate`: messages a second per busy publisher. Default 25 (with the other
    /// defaults, about 190 KB/s to each member: a reader that stops fills the
    /// kernel's socket buffer, up to 4 MiB on Linux, and then its 1 MiB queue on the
    /// server in about 30 s, before the 60 s ping timeout would drop it).
    pub(crate) busy_rate: f64,
    /// `--busy-bytes`: text length of a busy-room message. Default 1,800 (the chat
    /// takes up to 2,000 characters).
    pub(crate) busy_bytes: usize,
    /// `--churners`: loops that log in, connect, join, publish, leave and disconnect,
    /// over and over. Default 10.
    pub(crate) churners: usize,
    /// `--churn-hold-ms`: how long a churner stays in its rooms. Default 500.
    pub(crate) churn_hold_ms: u64,
    /// `--churn-pause-ms`: pause between two churn cycles. Default 250.
    pub(crate) churn_pause_ms: u64,
    /// `--presence`: clients joining and leaving the busy room. Default 5.
    pub(crate) presence: usize,
    /// `--presence-rate`: join+leave cycles a second per presence client. Default 1.
    pub(crate) presence_rate: f64,
    /// `--meta-bytes`: padding in the presence metas of joins. Default 200, so the
    /// whole meta stays under the hub's 256-byte limit (`max_presence_meta`).
    pub(crate) meta_bytes: usize,
    /// `--slow`: slow consumers in the busy room. Default 4.
    pub(crate) slow: usize,
    /// `--slow-max-secs`: a slow consumer not closed after this long gives up and
    /// reconnects (counted as `slow_survived`). Default 120.
    pub(crate) slow_max_secs: u64,
    /// `--flooders`: clients that send past the rate limit. Default 2.
    pub(crate) flooders: usize,
    /// `--flood-frames`: most publishes a flooder sends before it waits for its close
    /// (the hub's defaults close it after about 200: a burst of 100, then 100
    /// refused in a row). Default 2,000.
    pub(crate) flood_frames: usize,
    /// `--flood-pause-ms`: pause before a closed flooder comes back. Default 2,000.
    pub(crate) flood_pause_ms: u64,
    /// `--legit`: clients in the busy room measuring their publish round trip.
    /// Default 4.
    pub(crate) legit: usize,
    /// `--legit-rate`: round trips a second per legitimate client. Default 2.
    pub(crate) legit_rate: f64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            secs: 1200,
            warmup_secs: 120,
            sample_secs: 10,
            out: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/soak.csv"),
            chat_bin: None,
            readers: 200,
            busy_readers: 50,
            rooms: 4,
            publishers: 8,
            publish_rate: 5.0,
            busy_publishers: 4,
            busy_rate: 25.0,
            busy_bytes: 1800,
            churners: 10,
            churn_hold_ms: 500,
            churn_pause_ms: 250,
            presence: 5,
            presence_rate: 1.0,
            meta_bytes: 200,
            slow: 4,
            slow_max_secs: 120,
            flooders: 2,
            flood_frames: 2000,
            flood_pause_ms: 2000,
            legit: 4,
            legit_rate: 2.0,
        }
    }
}

pub(crate) const USAGE: &str = "\
usage: cargo bench --bench soak -- [options]
  --secs N               run time in seconds (default 1200)
  --warmup-secs N        warm-up left out of the slope (default 120, at most half the run)
  --sample-secs N        sampling interval (default 10)
  --out FILE             CSV of the samples (default target/soak.csv)
  --chat-bin FILE        run this chat binary instead of building examples/chat.rs
  --readers N            standing readers (default 200)
  --busy-readers N       of which also in the busy room (default 50)
  --rooms N              publish rooms (default 4)
  --publishers N         steady publishers (default 8)
  --publish-rate R       messages/s per publisher (default 5)
  --busy-publishers N    large-message publishers in the busy room (default 4)
  --busy-rate R          messages/s per busy publisher (default 25)
  --busy-bytes N         text length of a busy-room message (default 1800)
  --churners N           connect/join/leave/disconnect loops (default 10)
  --churn-hold-ms N      time a churner stays joined (default 500)
  --churn-pause-ms N     pause between churn cycles (default 250)
  --presence N           join/leave loops in the busy room (default 5)
  --presence-rate R      join+leave cycles/s per presence loop (default 1)
  --meta-bytes N         presence meta padding (default 200)
  --slow N               slow consumers in the busy room (default 4)
  --slow-max-secs N      a slow consumer gives up after N s unclosed (default 120)
  --flooders N           rate-limit flooders (default 2)
  --flood-frames N       most frames per flood (default 2000)
  --flood-pause-ms N     pause between floods (default 2000)
  --legit N              round-trip measuring clients in the busy room (default 4)
  --legit-rate R         round trips/s per legitimate client (default 2)";

impl Options {
    /// Parses `--flag value` and `--flag=value`. `--bench` (added by `cargo bench`) is
    /// ignored. `Err` carries the problem, or is empty for `--help`.
    pub(crate) fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
        let mut o = Options::default();
        let mut warmup_given = false;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "--bench" {
                continue;
            }
            if arg == "-h" || arg == "--help" {
                return Err(String::new());
            }
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) => (f.to_owned(), Some(v.to_owned())),
                None => (arg, None),
            };
            let value = inline
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))?;
            fn num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
                v.parse().map_err(|_| format!("{flag} {v}: not a number"))
            }
            let f = flag.as_str();
            match f {
                "--secs" => o.secs = num(f, &value)?,
                "--warmup-secs" => {
                    o.warmup_secs = num(f, &value)?;
                    warmup_given = true;
                }
                "--sample-secs" => o.sample_secs = num(f, &value)?,
                "--out" => o.out = PathBuf::from(value),
                "--chat-bin" => o.chat_bin = Some(PathBuf::from(value)),
                "--readers" => o.readers = num(f, &value)?,
                "--busy-readers" => o.busy_readers = num(f, &value)?,
                "--rooms" => o.rooms = num(f, &value)?,
                "--publishers" => o.publishers = num(f, &value)?,
                "--publish-rate" => o.publish_rate = num(f, &value)?,
                "--busy-publishers" => o.busy_publishers = num(f, &value)?,
                "--busy-rate" => o.busy_rate = num(f, &value)?,
                "--busy-bytes" => o.busy_bytes = num(f, &value)?,
                "--churners" => o.churners = num(f, &value)?,
                "--churn-hold-ms" => o.churn_hold_ms = num(f, &value)?,
                "--churn-pause-ms" => o.churn_pause_ms = num(f, &value)?,
                "--presence" => o.presence = num(f, &value)?,
                "--presence-rate" => o.presence_rate = num(f, &value)?,
                "--meta-bytes" => o.meta_bytes = num(f, &value)?,
                "--slow" => o.slow = num(f, &value)?,
                "--slow-max-secs" => o.slow_max_secs = num(f, &value)?,
                "--flooders" => o.flooders = num(f, &value)?,
                "--flood-frames" => o.flood_frames = num(f, &value)?,
                "--flood-pause-ms" => o.flood_pause_ms = num(f, &value)?,
                "--legit" => o.legit = num(f, &value)?,
                "--legit-rate" => o.legit_rate = num(f, &value)?,
                other => return Err(format!("unknown argument {other}")),
            }
        }
        if !warmup_given && o.secs < 2 * o.warmup_secs {
            o.warmup_secs = o.secs / 2;
        }
        o.check()?;
        Ok(o)
    }

    fn check(&self) -> Result<(), String> {
        if self.secs == 0 || self.sample_secs == 0 {
            return Err("--secs and --sample-secs must be positive".into());
        }
        if self.warmup_secs >= self.secs {
            return Err("--warmup-secs must be shorter than --secs".into());
        }
        if self.rooms == 0 {
            return Err("--rooms must be at least 1".into());
        }
        if self.busy_readers > self.readers {
            return Err("--busy-readers cannot exceed --readers".into());
        }
        for (flag, rate) in [
            ("--publish-rate", self.publish_rate),
            ("--busy-rate", self.busy_rate),
            ("--presence-rate", self.presence_rate),
            ("--legit-rate", self.legit_rate),
        ] {
            // Bounded both ways: a rate of 0 would be an endless wait, a huge one a
            // busy loop.
            if !(0.01..=1000.0).contains(&rate) {
                return Err(format!("{flag} must be within 0.01..=1000"));
            }
        }
        if self.slow_max_secs == 0 {
            return Err("--slow-max-secs must be positive".into());
        }
        if self.busy_bytes == 0 || self.busy_bytes > 2000 {
            // The chat refuses texts over 2,000 characters.
            return Err("--busy-bytes must be within 1..=2000".into());
        }
        if self.clients() > MAX_CLIENTS {
            return Err(format!(
                "{} clients at once is over {MAX_CLIENTS} (one descriptor each, 20,000 per process)",
                self.clients()
            ));
        }
        Ok(())
    }

    /// Most connections the load holds at once: one per client loop.
    pub(crate) fn clients(&self) -> usize {
        self.readers
            + self.publishers
            + self.busy_publishers
            + self.churners
            + self.presence
            + self.slow
            + self.flooders
            + self.legit
    }

    /// The run time.
    pub(crate) fn run_time(&self) -> Duration {
        Duration::from_secs(self.secs)
    }
}
