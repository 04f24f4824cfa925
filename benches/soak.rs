//! Soak: 20 minutes of mixed load against the chat example, with the server's resident
//! memory sampled every 10 s, to show whether memory is flat after warm-up (not
//! criterion: a plain program that prints a report and stops by itself).
//!
//! ```text
//! cargo bench --bench soak                                 # 20 minutes
//! cargo bench --bench soak -- --secs 120 --out target/soak-short.csv
//! cargo bench --bench soak -- --help                       # every load parameter
//! ```
//!
//! It builds `examples/chat.rs` (`cargo build --profile bench --example chat`, with
//! the cargo that runs it) and starts it as its own process on a free loopback port,
//! with `CHAT_MAX_CONNECTIONS_PER_IP` raised since every client comes from 127.0.0.1.
//! The server is killed when the soak ends, panics included. Its log is in
//! `target/soak-chat.log`.
//!
//! The load, from tokio-tungstenite clients (independent of the crate under test),
//! each logging in with `POST /login` as a new user (`soak1`, `soak2`, ...):
//!
//! - **readers** in the publish rooms `chat:soak-N` (a quarter of them also in
//!   `chat:busy`) that only read;
//! - **publishers**: steady publishes in the publish rooms, fanned out to the readers;
//! - **busy publishers**: large messages in `chat:busy`;
//! - **churners**: log in, connect, join a publish room and a brand-new room (with
//!   presence metas), publish, leave, disconnect, again and again;
//! - **presence**: joins and leaves of `chat:busy` with padded metas;
//! - **slow consumers** in `chat:busy` that stop reading until the server closes them
//!   with 1013, then come back (they learn of the close from the others, who see them
//!   leave the room, and only then read their backlog and the close frame);
//! - **flooders** that send past the rate limit until closed with 1008, then come back;
//! - **legitimate** members of `chat:busy` timing their publishes' round trip (until
//!   their own message comes back through the fan-out).
//!
//! Every `--sample-secs` it reads `VmRSS` from `/proc/PID/status` and takes the
//! counters of that interval (connects, publishes, messages received, closes with
//! 1013 and 1008, refusals, errors) and the round trips' p50 and p99; it prints a line,
//! appends a row to the CSV (`--out`, default `target/soak.csv`), and at the end prints
//! a markdown report: a table per minute, then RSS at the end of warm-up, at the end,
//! the maximum, and the least-squares slope over the samples after warm-up in KiB per
//! minute ("flat after warm-up" as a number).
//!
//! Refused logins and handshakes (429, 503) and `rate_limited` replies are counted as
//! outcomes, not failures: the hub's limits are part of what is soaked. Ctrl-C ends the
//! run early with a report. This process holds one descriptor per client connection
//! (about 240 with the defaults; at most 8,000 allowed, 20,000 per process).

#[path = "soak/client.rs"]
mod client;
#[path = "soak/connect.rs"]
mod connect;
#[path = "soak/ctx.rs"]
mod ctx;
#[path = "soak/load.rs"]
mod load;
#[path = "soak/options.rs"]
mod options;
#[path = "soak/report.rs"]
mod report;
#[path = "soak/server.rs"]
mod server;
#[path = "soak/stats.rs"]
mod stats;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use ctx::Ctx;
use options::{Options, USAGE};
use report::{Csv, Sample};
use server::Server;

/// How long client tasks get to close their connections once the run is over.
const WIND_DOWN: Duration = Duration::from_secs(15);
/// Pause after the load stopped before the last RSS reading (what is left once idle).
const SETTLE: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: then only say so,
    // instead of running for 20 minutes in a test run.
    if !std::env::args().any(|a| a == "--bench") {
        println!("soak: skipped (run it with `cargo bench --bench soak`)");
        return ExitCode::SUCCESS;
    }
    let opts = match Options::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("soak: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(opts) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("soak: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The whole run; `Ok(false)` if the server died or a client task panicked.
fn run(opts: Options) -> std::io::Result<bool> {
    let bin = match &opts.chat_bin {
        Some(bin) => bin.clone(),
        None => {
            println!("soak: building the chat example");
            server::build_chat()?
        }
    };
    // Twice what the load holds at once, for connections the server has not finished
    // closing yet, plus room for the churners' quick reconnects.
    let max_per_ip = 2 * opts.clients() + 200;
    let log = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/soak-chat.log");
    let mut server = Server::start(&bin, max_per_ip, &log)?;
    let mut csv = Csv::create(&opts.out)?;
    println!(
        "soak: chat {} (pid {}) on {}, log {}; {} s ({} s warm-up), {} clients, samples every {} s to {}",
        bin.display(),
        server.pid(),
        server.addr,
        server.log.display(),
        opts.secs,
        opts.warmup_secs,
        opts.clients(),
        opts.sample_secs,
        opts.out.display()
    );

    // Two worker threads: the machine has two cores, shared with the server.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let ctx = Arc::new(Ctx::new(server.addr, opts.clone()));
    let outcome = rt.block_on(drive(&ctx, &mut server, &mut csv));
    // Tasks still running after the wind-down were aborted; dropping the runtime ends
    // them for good (and closes their sockets) before the report.
    drop(rt);
    let rss_idle = server.rss_kib().ok();
    let died = server.exited();
    drop(server);

    let report = report::Report {
        opts: &opts,
        samples: &outcome.samples,
        rss_after_load: outcome.rss_after_load.or(rss_idle),
        wind_down: ctx.stats.take(),
        details: ctx.stats.details(),
        panics: outcome.panics,
        interrupted: outcome.interrupted,
        server_exit: died.map(|s| s.to_string()),
    };
    print!("{}", report.markdown());
    std::io::stdout().flush()?;
    Ok(died.is_none() && outcome.panics == 0)
}

/// What [`drive`] saw.
struct Outcome {
    samples: Vec<Sample>,
    rss_after_load: Option<u64>,
    panics: usize,
    interrupted: bool,
}

/// Runs the load for `--secs`, sampling as it goes, then stops it.
async fn drive(ctx: &Arc<Ctx>, server: &mut Server, csv: &mut Csv) -> Outcome {
    let opts = &ctx.opts;
    let start = Instant::now();
    let mut samples = Vec::new();
    let first = Sample::take(0.0, server.rss_kib().unwrap_or(0), &ctx.stats);
    csv.row(&first);
    println!("{}", first.line());
    samples.push(first);

    let mut tasks = JoinSet::new();
    load::spawn_all(ctx, &mut tasks);

    let every = Duration::from_secs(opts.sample_secs);
    let end = start + opts.run_time();
    let mut next = start + every;
    let mut interrupted = false;
    let mut panics = 0;
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next.min(end)) => {}
            _ = &mut ctrl_c => {
                println!("soak: interrupted, stopping the load");
                interrupted = true;
            }
            // A client task only ends early by panicking.
            Some(Err(e)) = tasks.join_next() => {
                if e.is_panic() {
                    panics += 1;
                    eprintln!("soak: a client task panicked: {e}");
                }
                continue;
            }
        }
        let t = start.elapsed().as_secs_f64();
        let rss = match server.rss_kib() {
            Ok(rss) => rss,
            Err(e) => {
                eprintln!(
                    "soak: cannot read the server's RSS ({e}); server exit: {:?}",
                    server.exited()
                );
                break;
            }
        };
        let sample = Sample::take(t, rss, &ctx.stats);
        csv.row(&sample);
        println!("{}", sample.line());
        samples.push(sample);
        if interrupted || Instant::now() >= end {
            break;
        }
        next += every;
    }

    ctx.stop.cancel();
    let wound_down = tokio::time::timeout(WIND_DOWN, async {
        while let Some(r) = tasks.join_next().await {
            if r.is_err_and(|e| e.is_panic()) {
                panics += 1;
            }
        }
    })
    .await;
    if wound_down.is_err() {
        eprintln!(
            "soak: {} client tasks still running after {WIND_DOWN:?}: aborted",
            tasks.len()
        );
        tasks.abort_all();
    }
    tokio::time::sleep(SETTLE).await;
    Outcome {
        samples,
        rss_after_load: server.rss_kib().ok(),
        panics,
        interrupted,
    }
}
