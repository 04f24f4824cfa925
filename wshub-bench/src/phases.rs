//! The rate schedule: a list of phases, each holding a rate or ramping it linearly, as
//! Artillery's `arrivalRate` / `rampTo` do.

use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// One phase: `duration` at `rate` events per second, or ramping from `rate` to
/// `ramp_to` over it.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
pub struct Phase {
    /// How long the phase lasts.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_secs")]
    pub duration: Duration,
    /// Events per second at the start of the phase.
    pub rate: f64,
    /// Events per second at the end (linear ramp); `None` holds `rate`.
    #[serde(default)]
    pub ramp_to: Option<f64>,
}

/// A scenario file's phases (TOML): `[[phase]]` tables with `duration = "10s"`,
/// `rate = 100` and optionally `ramp_to = 1000`.
#[derive(Debug, Deserialize)]
pub struct PhaseFile {
    /// The phases, in order.
    pub phase: Vec<Phase>,
}

/// Serializes a duration as seconds (a float), for reports.
pub fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn de_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

/// Parses `500ms`, `10s`, `2m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num.parse().with_context(|| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => bail!("bad duration unit in {s:?} (ms, s or m)"),
    };
    if !(secs.is_finite() && secs >= 0.0) {
        bail!("bad duration {s:?}");
    }
    Ok(Duration::from_secs_f64(secs))
}

impl std::str::FromStr for Phase {
    type Err = anyhow::Error;

    /// `DURATION@RATE` or `DURATION@FROM..TO`, e.g. `10s@100` or `30s@10..1000`.
    fn from_str(s: &str) -> anyhow::Result<Phase> {
        let (d, r) = s
            .split_once('@')
            .with_context(|| format!("phase {s:?}: expected DURATION@RATE[..RAMP_TO]"))?;
        let duration = parse_duration(d)?;
        let (rate, ramp_to) = match r.split_once("..") {
            Some((a, b)) => (a.parse()?, Some(b.parse()?)),
            None => (r.parse()?, None),
        };
        Ok(Phase {
            duration,
            rate,
            ramp_to,
        })
    }
}

/// A schedule made of phases: how many events are due by a given time.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct Schedule {
    phases: Vec<Phase>,
}

impl Schedule {
    /// A schedule of `phases`, in order.
    pub fn new(phases: Vec<Phase>) -> Schedule {
        Schedule { phases }
    }

    /// One phase at a fixed rate.
    pub fn fixed(duration: Duration, rate: f64) -> Schedule {
        Schedule::new(vec![Phase {
            duration,
            rate,
            ramp_to: None,
        }])
    }

    /// The total length.
    pub fn duration(&self) -> Duration {
        self.phases.iter().map(|p| p.duration).sum()
    }

    /// Events due in `[0, t]`: the integral of the rate (exact for linear ramps), so a
    /// sender that falls behind catches up instead of losing events.
    pub fn due(&self, t: Duration) -> u64 {
        let mut t = t.as_secs_f64();
        let mut total = 0.0;
        for p in &self.phases {
            let d = p.duration.as_secs_f64();
            let span = t.min(d);
            let r1 = p.ramp_to.unwrap_or(p.rate);
            let slope = if d > 0.0 { (r1 - p.rate) / d } else { 0.0 };
            total += p.rate * span + slope * span * span / 2.0;
            t -= span;
            if t <= 0.0 {
                break;
            }
        }
        total.max(0.0) as u64
    }

    /// Events in the whole schedule.
    pub fn total(&self) -> u64 {
        self.due(self.duration())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_phases() {
        let p: Phase = "10s@100".parse().unwrap();
        assert_eq!(p.duration, Duration::from_secs(10));
        assert_eq!((p.rate, p.ramp_to), (100.0, None));
        let p: Phase = "500ms@10..1000".parse().unwrap();
        assert_eq!(p.duration, Duration::from_millis(500));
        assert_eq!((p.rate, p.ramp_to), (10.0, Some(1000.0)));
        assert!("10s".parse::<Phase>().is_err());
    }

    #[test]
    fn ramp_integrates() {
        // 10 s from 0 to 100/s (500 events), then 5 s at 100/s (500 more).
        let s = Schedule::new(vec![
            "10s@0..100".parse().unwrap(),
            "5s@100".parse().unwrap(),
        ]);
        assert_eq!(s.due(Duration::from_secs(5)), 125);
        assert_eq!(s.due(Duration::from_secs(10)), 500);
        assert_eq!(s.total(), 1000);
        assert_eq!(s.due(Duration::from_secs(60)), 1000);
    }

    #[test]
    fn reads_a_scenario_file() {
        let f: PhaseFile = toml::from_str(
            "[[phase]]\nduration = \"2s\"\nrate = 10\nramp_to = 50\n\n[[phase]]\nduration = \"1m\"\nrate = 50\n",
        )
        .unwrap();
        assert_eq!(f.phase.len(), 2);
        assert_eq!(f.phase[1].duration, Duration::from_secs(60));
        assert_eq!(Schedule::new(f.phase).total(), 60 + 3000);
    }
}
