//! `wshub-bench`: load-test a wshub service (or any WebSocket echo server).
//!
//! ```text
//! cargo run --release -p wshub-bench -- broadcast ws://127.0.0.1:8080/ --subscribers 1000 --messages 2000
//! cargo run --release -p wshub-bench -- broadcast ws://127.0.0.1:8080/ --subscribers 1000 --rate 100 --duration 10s
//! cargo run --release -p wshub-bench -- broadcast ws://127.0.0.1:8080/ --phase 10s@10..1000 --phase 30s@1000
//! cargo run --release -p wshub-bench -- echo ws://127.0.0.1:9001 --connections 50 --duration 5s --json
//! ```

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use wshub_bench::conn::Target;
use wshub_bench::phases::{Phase, PhaseFile, Schedule, parse_duration};
use wshub_bench::report::Report;
use wshub_bench::scenario::{broadcast, echo};

/// Load-test a wshub service (`wshub.v1`) or a plain WebSocket echo server.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Subscribers x rooms x publishers over `wshub.v1`: delivery ratio and latency.
    Broadcast {
        #[command(flatten)]
        common: Common,
        /// Subscribing connections.
        #[arg(long, default_value_t = 100)]
        subscribers: usize,
        /// Rooms (subscriber i and publisher j join rooms i mod R and j mod R).
        #[arg(long, default_value_t = 1)]
        rooms: usize,
        /// Publishing connections (members of their room too).
        #[arg(long, default_value_t = 1)]
        publishers: usize,
        /// At most this many publishes in all (with no rate: a burst).
        #[arg(long)]
        messages: Option<u64>,
        /// Room names; `{r}` is the room's index.
        #[arg(long, default_value = "bench:room-{r}")]
        room: String,
        /// The publish's `data`; `{t}` the timestamp, `{pad}` the padding. Match your
        /// namespace's message type, e.g. '{"text":"{t} {pad}"}'.
        #[arg(long, default_value = r#"{"t":{t},"p":"{pad}"}"#)]
        data: String,
        /// Static token for every connection (`{i}` is the connection's index).
        #[arg(long)]
        token: Option<String>,
        /// Send the token as `Authorization: Bearer` instead of `?token=`.
        #[arg(long)]
        token_header: bool,
    },
    /// Round trips over plain WebSocket against an echo server.
    Echo {
        #[command(flatten)]
        common: Common,
        /// Connections (closed loop: one request in flight on each, unless --rate).
        #[arg(long, default_value_t = 10)]
        connections: usize,
    },
}

#[derive(Debug, Args)]
struct Common {
    /// The server (ws:// only).
    url: String,
    /// Total rate (publishes or requests per second); none: as fast as possible.
    #[arg(long)]
    rate: Option<f64>,
    /// How long to run (`500ms`, `10s`, `2m`).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Rate phases instead of --rate/--duration, Artillery-like: `DURATION@RATE` or
    /// `DURATION@FROM..TO` (a linear ramp); repeat for more phases.
    #[arg(long = "phase")]
    phases: Vec<Phase>,
    /// A TOML file of phases (`[[phase]]` tables: duration, rate, ramp_to).
    #[arg(long, conflicts_with = "phases")]
    phase_file: Option<std::path::PathBuf>,
    /// Message size in bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// How long to wait for the last deliveries once sending ends.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    drain: Duration,
    /// Spread connections over 127.0.0.1..=127.0.0.N (loopback servers only).
    #[arg(long, default_value_t = 16)]
    source_ips: u8,
    /// Connections opened at once.
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
    /// Generator threads (tokio workers); default: one per core.
    #[arg(long)]
    threads: Option<usize>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

impl Common {
    fn schedule(&self) -> anyhow::Result<Option<Schedule>> {
        if let Some(path) = &self.phase_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let file: PhaseFile = toml::from_str(&text)?;
            return Ok(Some(Schedule::new(file.phase)));
        }
        if !self.phases.is_empty() {
            return Ok(Some(Schedule::new(self.phases.clone())));
        }
        Ok(self.rate.map(|r| Schedule::fixed(self.duration, r)))
    }

    async fn target(&self) -> anyhow::Result<Target> {
        let mut t = Target::resolve(&self.url).await?;
        t.source_ips = self.source_ips;
        Ok(t)
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (json, threads) = match &cli.scenario {
        Scenario::Broadcast { common, .. } | Scenario::Echo { common, .. } => {
            (common.json, common.threads)
        }
    };
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = threads {
        rt.worker_threads(n.max(1));
    }
    let report: Report = rt.enable_all().build()?.block_on(async {
        match cli.scenario {
            Scenario::Broadcast {
                common,
                subscribers,
                rooms,
                publishers,
                messages,
                room,
                data,
                token,
                token_header,
            } => {
                let mut target = common.target().await?;
                target.subprotocol = Some("wshub.v1".into());
                target.token = token;
                target.token_in_header = token_header;
                let opts = broadcast::BroadcastOpts {
                    subscribers,
                    rooms,
                    publishers,
                    schedule: common.schedule()?,
                    duration: common.duration,
                    messages,
                    size: common.size,
                    room_template: room,
                    data_template: data,
                    drain: common.drain,
                    connect_concurrency: common.connect_concurrency,
                    progress: !common.quiet,
                };
                broadcast::run(target, opts).await
            }
            Scenario::Echo {
                common,
                connections,
            } => {
                let target = common.target().await?;
                let opts = echo::EchoOpts {
                    connections,
                    schedule: common.schedule()?,
                    duration: common.duration,
                    size: common.size,
                    drain: common.drain,
                    connect_concurrency: common.connect_concurrency,
                    progress: !common.quiet,
                };
                echo::run(target, opts).await
            }
        }
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    if report.connected == 0 {
        anyhow::bail!("no connection opened (see the errors above)");
    }
    Ok(())
}
