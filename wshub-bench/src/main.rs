//! `wshub-bench`: load-test a wshub service (or any WebSocket echo server).
//!
//! ```text
//! cargo run --release -p wshub-bench -- broadcast ws://127.0.0.1:8080/ --subscribers 1000 --messages 2000
//! cargo run --release -p wshub-bench -- broadcast ws://127.0.0.1:8080/ --subscribers 1000 --rate 100 --duration 10s
//! cargo run --release -p wshub-bench -- broadcast ws://127.0.0.1:8080/ --phase 10s@10..1000 --phase 30s@1000
//! cargo run --release -p wshub-bench -- echo ws://127.0.0.1:9001 --connections 50 --duration 5s --json
//! cargo run --release -p wshub-bench -- idle ws://127.0.0.1:8080/ --connections 10000 --server-pid PID
//! cargo run --release -p wshub-bench -- connect-rate ws://127.0.0.1:8080/ --rate 500 --duration 10s --jwt-secret S
//! cargo run --release -p wshub-bench -- presence-churn ws://127.0.0.1:8080/ --members 100 --churners 10 --rate 50
//! cargo run --release -p wshub-bench -- reconnect-storm ws://127.0.0.1:8080/ --connections 1000 --cut-after 2s --publish-rate 200
//! cargo run --release -p wshub-bench -- broadcast ws://127.0.0.1:9001/ --proto plain --subscribers 1000 --messages 2000
//! cargo run --release -p wshub-bench -- broadcast 'ws://127.0.0.1:9002/socket.io/?EIO=4&transport=websocket' --proto socketio
//! cargo run --release -p wshub-bench -- broadcast wss://localhost:8443/ --ca-file cert.pem --deflate --size 1536
//! ```

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use wshub_bench::conn::{Proto, Target};
use wshub_bench::phases::{Phase, PhaseFile, Schedule, parse_duration};
use wshub_bench::report::Report;
use wshub_bench::scenario::{broadcast, connect_rate, echo, idle, presence_churn, reconnect_storm};

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
        #[command(flatten)]
        auth: Auth,
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
        /// The server's pid (on this machine): its CPU time per publish over the
        /// publishing phase (/proc/PID/stat), and its RSS.
        #[arg(long)]
        server_pid: Option<u32>,
    },
    /// Round trips over plain WebSocket against an echo server.
    Echo {
        #[command(flatten)]
        common: Common,
        /// Connections (closed loop: one request in flight on each, unless --rate).
        #[arg(long, default_value_t = 10)]
        connections: usize,
    },
    /// Connections that join a room (presence on) and hold: opened, failed, dropped,
    /// and the server's RSS per connection with --server-pid.
    Idle {
        #[command(flatten)]
        base: Base,
        #[command(flatten)]
        auth: Auth,
        /// Connections to hold.
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        /// Rooms (connection i joins room i mod R).
        #[arg(long, default_value_t = 1)]
        rooms: usize,
        /// Room names; `{r}` is the room's index.
        #[arg(long, default_value = "bench:idle-{r}")]
        room: String,
        /// How long to hold once all have joined (`500ms`, `10s`, `2m`).
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
        /// The server's pid (on this machine): its VmRSS before, joined and at the end.
        #[arg(long)]
        server_pid: Option<u32>,
    },
    /// Connections opened at a rate (or phases), authenticated, each joining a room
    /// then closing: connects/s, handshake latency, failures by HTTP status.
    ConnectRate {
        #[command(flatten)]
        base: Base,
        #[command(flatten)]
        auth: Auth,
        #[command(flatten)]
        rate: Rate,
        /// The room each joins; `{i}` is the connection's index.
        #[arg(long, default_value = "bench:lobby")]
        room: String,
        /// How long each stays joined before closing.
        #[arg(long, default_value = "0s", value_parser = parse_duration)]
        hold: Duration,
    },
    /// Members in one room while churners join and leave it at a rate (join-leave
    /// cycles per second): presence diffs and bytes per member per second.
    PresenceChurn {
        #[command(flatten)]
        base: Base,
        #[command(flatten)]
        auth: Auth,
        #[command(flatten)]
        rate: Rate,
        /// Connections that join and stay.
        #[arg(long, default_value_t = 100)]
        members: usize,
        /// Connections that join and leave over and over (indexes after the members').
        #[arg(long, default_value_t = 10)]
        churners: usize,
        /// The room.
        #[arg(long, default_value = "bench:presence")]
        room: String,
        /// How long a churner stays joined each cycle (0: leaves at once; a join and
        /// leave within one presence tick usually go unannounced).
        #[arg(long, default_value = "0s", value_parser = parse_duration)]
        dwell: Duration,
        /// How long to wait for the last diffs once churning ends (wshub paces a
        /// churning room's diffs down to one per `presence_tick_max`, 1 s by default).
        #[arg(long, default_value = "2s", value_parser = parse_duration)]
        drain: Duration,
    },
    /// Connected clients all lose their connection (the server closes them, or
    /// --cut-after) and reconnect with full-jitter backoff: reconnect times.
    ReconnectStorm {
        #[command(flatten)]
        base: Base,
        #[command(flatten)]
        auth: Auth,
        /// Clients.
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        /// Rooms (client i joins room i mod R).
        #[arg(long, default_value_t = 1)]
        rooms: usize,
        /// Room names; `{r}` is the room's index.
        #[arg(long, default_value = "bench:storm-{r}")]
        room: String,
        /// Drop every socket this long after all have joined; without it, wait for the
        /// server to close them (restart it).
        #[arg(long, value_parser = parse_duration)]
        cut_after: Option<Duration>,
        /// Without --cut-after, how long to wait for the server to close them.
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        wait: Duration,
        /// First backoff ceiling; doubles per failed attempt.
        #[arg(long, default_value = "100ms", value_parser = parse_duration)]
        backoff_base: Duration,
        /// Largest backoff.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        backoff_cap: Duration,
        /// How long a client keeps trying to reconnect.
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        give_up: Duration,
        /// Publishes per second into the rooms (from one more connection, never cut)
        /// while the clients are away: they rejoin with `since` and the report counts
        /// recovered and not-recovered rejoins, gaps and duplicates.
        #[arg(long)]
        publish_rate: Option<f64>,
    },
}

/// What every scenario takes: the server, connecting, the runtime and the output.
#[derive(Debug, Args)]
struct Base {
    /// The server (`ws://` or `wss://`; for Socket.IO,
    /// `ws://HOST:PORT/socket.io/?EIO=4&transport=websocket`).
    url: String,
    /// The protocol over the WebSocket: `wshub` (wshub.v1), `plain` (the payload is the
    /// message; the server relays it to every client) or `socketio` (engine.io v4,
    /// `42["msg",DATA]` events).
    #[arg(long, value_enum, default_value_t = Proto::Wshub)]
    proto: Proto,
    /// Offer permessage-deflate (receiving connections use wshub's engine client, as
    /// tungstenite 0.30 has no compression).
    #[arg(long)]
    deflate: bool,
    /// For wss://: a PEM file of the certificate(s) to trust (e.g. a self-signed one).
    #[arg(long)]
    ca_file: Option<std::path::PathBuf>,
    /// Spread connections over 127.0.0.1..=127.0.0.N (loopback servers only).
    #[arg(long, default_value_t = 16)]
    source_ips: u8,
    /// Connections opened at once (connect-rate: in flight at once).
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

/// Authentication for `wshub.v1` scenarios.
#[derive(Debug, Args)]
struct Auth {
    /// Static token for every connection (`{i}` is the connection's index).
    #[arg(long)]
    token: Option<String>,
    /// Send the token as `Authorization: Bearer` instead of `?token=`.
    #[arg(long)]
    token_header: bool,
    /// Mint an HS256 JWT per connection with this secret (`sub`, `name`, `sid`: bench-{i}; 1 h).
    #[arg(long, conflicts_with = "token")]
    jwt_secret: Option<String>,
}

/// The event rate over time.
#[derive(Debug, Args)]
struct Rate {
    /// Total rate (publishes, requests, connections or cycles per second); none: as
    /// fast as possible.
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
}

/// The options of the message scenarios (broadcast, echo).
#[derive(Debug, Args)]
struct Common {
    #[command(flatten)]
    base: Base,
    #[command(flatten)]
    rate: Rate,
    /// Message size in bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// How long to wait for the last deliveries once sending ends.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    drain: Duration,
}

impl Rate {
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
}

impl Base {
    async fn target(&self) -> anyhow::Result<Target> {
        let mut t = Target::resolve(&self.url).await?;
        t.source_ips = self.source_ips;
        t.proto = self.proto;
        t.deflate = self.deflate;
        if let Some(path) = &self.ca_file {
            let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            t.trust(&pem)?;
        }
        Ok(t)
    }

    /// A target for the message scenarios: `wshub.v1` (offered as the subprotocol)
    /// unless `--proto` says otherwise, with `auth`'s token.
    async fn wshub(&self, auth: Auth) -> anyhow::Result<Target> {
        let mut t = self.target().await?;
        if t.proto == Proto::Wshub {
            t.subprotocol = Some("wshub.v1".into());
        }
        t.token = auth.token;
        t.token_in_header = auth.token_header;
        t.jwt_secret = auth.jwt_secret;
        Ok(t)
    }
}

impl Scenario {
    fn base(&self) -> &Base {
        match self {
            Scenario::Broadcast { common, .. } | Scenario::Echo { common, .. } => &common.base,
            Scenario::Idle { base, .. }
            | Scenario::ConnectRate { base, .. }
            | Scenario::PresenceChurn { base, .. }
            | Scenario::ReconnectStorm { base, .. } => base,
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (json, threads) = (cli.scenario.base().json, cli.scenario.base().threads);
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = threads {
        rt.worker_threads(n.max(1));
    }
    let report: Report = rt.enable_all().build()?.block_on(run(cli.scenario))?;
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

async fn run(scenario: Scenario) -> anyhow::Result<Report> {
    match scenario {
        Scenario::Broadcast {
            common,
            auth,
            subscribers,
            rooms,
            publishers,
            messages,
            room,
            data,
            server_pid,
        } => {
            let target = common.base.wshub(auth).await?;
            let opts = broadcast::BroadcastOpts {
                subscribers,
                rooms,
                publishers,
                schedule: common.rate.schedule()?,
                duration: common.rate.duration,
                messages,
                size: common.size,
                room_template: room,
                data_template: data,
                drain: common.drain,
                connect_concurrency: common.base.connect_concurrency,
                server_pid,
                progress: !common.base.quiet,
            };
            broadcast::run(target, opts).await
        }
        Scenario::Echo {
            common,
            connections,
        } => {
            let target = common.base.target().await?;
            let opts = echo::EchoOpts {
                connections,
                schedule: common.rate.schedule()?,
                duration: common.rate.duration,
                size: common.size,
                drain: common.drain,
                connect_concurrency: common.base.connect_concurrency,
                progress: !common.base.quiet,
            };
            echo::run(target, opts).await
        }
        Scenario::Idle {
            base,
            auth,
            connections,
            rooms,
            room,
            duration,
            server_pid,
        } => {
            let target = base.wshub(auth).await?;
            let opts = idle::IdleOpts {
                connections,
                rooms,
                room_template: room,
                hold: duration,
                server_pid,
                connect_concurrency: base.connect_concurrency,
                progress: !base.quiet,
            };
            idle::run(target, opts).await
        }
        Scenario::ConnectRate {
            base,
            auth,
            rate,
            room,
            hold,
        } => {
            let target = base.wshub(auth).await?;
            let opts = connect_rate::ConnectRateOpts {
                schedule: rate.schedule()?,
                duration: rate.duration,
                room_template: room,
                hold,
                connect_concurrency: base.connect_concurrency,
                progress: !base.quiet,
            };
            connect_rate::run(target, opts).await
        }
        Scenario::PresenceChurn {
            base,
            auth,
            rate,
            members,
            churners,
            room,
            dwell,
            drain,
        } => {
            let target = base.wshub(auth).await?;
            let opts = presence_churn::PresenceChurnOpts {
                members,
                churners,
                room,
                schedule: rate.schedule()?,
                dwell,
                duration: rate.duration,
                drain,
                connect_concurrency: base.connect_concurrency,
                progress: !base.quiet,
            };
            presence_churn::run(target, opts).await
        }
        Scenario::ReconnectStorm {
            base,
            auth,
            connections,
            rooms,
            room,
            cut_after,
            wait,
            backoff_base,
            backoff_cap,
            give_up,
            publish_rate,
        } => {
            let target = base.wshub(auth).await?;
            let opts = reconnect_storm::ReconnectStormOpts {
                connections,
                rooms,
                room_template: room,
                cut_after,
                wait,
                backoff_base,
                backoff_cap,
                give_up,
                publish_rate,
                connect_concurrency: base.connect_concurrency,
                progress: !base.quiet,
            };
            reconnect_storm::run(target, opts).await
        }
    }
}
