//! Bar intervals: the one table of the lengths tickcast can build, stream (`bars.<interval>`),
//! store and serve (`/bars?interval=`), and the set of them a server runs
//! (`pipeline.bar_intervals`). A leaf that `model` re-exports (a bar channel's kind holds its
//! interval) and `bars`, `store`, `api` and `import` use, so a new interval is one row here.
//!
//! Every interval divides a UTC day, so windows `floor(ts / interval) * interval` line up on UTC
//! boundaries: `1d` bars start at UTC midnight, `4h` ones at 00:00, 04:00, 08:00 ... UTC.

use std::fmt;

/// One row of the table: the wire name, the channel kind, its NATS subject token, the length.
struct Spec {
    name: &'static str,
    channel: &'static str,
    subject: &'static str,
    ms: i64,
}

static SPECS: [Spec; BarInterval::COUNT] = [
    spec("1s", "bars.1s", "bars_1s", 1_000),
    spec("1m", "bars.1m", "bars_1m", 60_000),
    spec("5m", "bars.5m", "bars_5m", 300_000),
    spec("15m", "bars.15m", "bars_15m", 900_000),
    spec("1h", "bars.1h", "bars_1h", 3_600_000),
    spec("4h", "bars.4h", "bars_4h", 14_400_000),
    spec("1d", "bars.1d", "bars_1d", 86_400_000),
];

const fn spec(name: &'static str, channel: &'static str, subject: &'static str, ms: i64) -> Spec {
    Spec {
        name,
        channel,
        subject,
        ms,
    }
}

/// One bar interval of the table (an index into it, so it is `Copy` and orders by length).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BarInterval(u8);

impl BarInterval {
    /// How many intervals there are.
    pub const COUNT: usize = 7;
    /// 1 second: what the indicators and the forecasts are computed over.
    pub const S1: BarInterval = BarInterval(0);
    /// 1 minute.
    pub const M1: BarInterval = BarInterval(1);
    /// Every interval, shortest first.
    pub const ALL: [BarInterval; Self::COUNT] = {
        let mut all = [BarInterval(0); Self::COUNT];
        let mut i = 0;
        while i < Self::COUNT {
            all[i] = BarInterval(i as u8);
            i += 1;
        }
        all
    };

    fn spec(self) -> &'static Spec {
        &SPECS[self.0 as usize]
    }

    /// The wire name: `1s`, `5m`, `1d`.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// The channel kind: `bars.5m`.
    pub fn channel_kind(self) -> &'static str {
        self.spec().channel
    }

    /// The NATS subject token of its channels (no `.` allowed in a token): `bars_5m`.
    pub(crate) fn subject_token(self) -> &'static str {
        self.spec().subject
    }

    /// Window length, ms.
    pub fn ms(self) -> i64 {
        self.spec().ms
    }

    /// Window length, ns (the store's `interval_ns`).
    pub fn ns(self) -> i64 {
        self.spec().ms * 1_000_000
    }

    /// Position in [`BarInterval::ALL`].
    pub fn index(self) -> usize {
        self.0 as usize
    }

    /// An interval by its wire name.
    pub fn parse(name: &str) -> Option<BarInterval> {
        Self::ALL.into_iter().find(|i| i.name() == name)
    }
}

impl fmt::Display for BarInterval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The intervals a server builds, streams and stores (`pipeline.bar_intervals`), a small set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarIntervals(u8);

impl BarIntervals {
    /// Every interval of the table.
    pub const ALL: BarIntervals = BarIntervals((1 << BarInterval::COUNT) - 1);
    /// What tickcast built before the set was configurable: 1 s and 1 m.
    pub const V1: BarIntervals = BarIntervals(0b11);

    /// The set named by `names` (each at most once); `1s` and `1m` are required: the
    /// indicators and forecasts are built on 1 s closes, and `bars.1s`/`bars.1m` are v1
    /// channels. The error says which name is wrong, for a config error naming the key.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<BarIntervals, String> {
        let mut set = 0u8;
        for name in names {
            let name = name.as_ref();
            let Some(iv) = BarInterval::parse(name) else {
                let known: Vec<&str> = BarInterval::ALL.iter().map(|i| i.name()).collect();
                return Err(format!(
                    "unknown interval {name:?}; known: {}",
                    known.join(", ")
                ));
            };
            if set & (1 << iv.0) != 0 {
                return Err(format!("interval {name:?} is listed twice"));
            }
            set |= 1 << iv.0;
        }
        let set = BarIntervals(set);
        for required in [BarInterval::S1, BarInterval::M1] {
            if !set.contains(required) {
                return Err(format!("must include {:?}", required.name()));
            }
        }
        Ok(set)
    }

    pub fn contains(self, iv: BarInterval) -> bool {
        self.0 & (1 << iv.0) != 0
    }

    /// The intervals of the set, shortest first.
    pub fn iter(self) -> impl Iterator<Item = BarInterval> {
        BarInterval::ALL
            .into_iter()
            .filter(move |i| self.contains(*i))
    }

    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_interval_divides_a_day_and_names_round_trip() {
        let day = BarInterval::parse("1d").unwrap().ms();
        for iv in BarInterval::ALL {
            assert_eq!(day % iv.ms(), 0, "{iv} must line up on UTC midnight");
            assert_eq!(BarInterval::parse(iv.name()), Some(iv));
            assert_eq!(iv.channel_kind(), format!("bars.{iv}"));
            assert!(!iv.subject_token().contains('.'));
        }
        assert!(BarInterval::ALL.windows(2).all(|w| w[0].ms() < w[1].ms()));
        assert_eq!(BarInterval::S1.ms(), 1_000);
        assert_eq!(BarInterval::M1.ns(), 60_000_000_000);
        assert_eq!(BarInterval::parse("2m"), None);
    }

    #[test]
    fn sets_are_checked_by_name() {
        let all = ["1s", "1m", "5m", "15m", "1h", "4h", "1d"];
        assert_eq!(BarIntervals::from_names(&all), Ok(BarIntervals::ALL));
        assert_eq!(
            BarIntervals::from_names(&["1m", "1s"]),
            Ok(BarIntervals::V1)
        );
        let five = BarIntervals::from_names(&["1s", "1m", "5m"]).unwrap();
        assert_eq!(
            five.iter().map(BarInterval::name).collect::<Vec<_>>(),
            ["1s", "1m", "5m"]
        );
        assert_eq!(five.len(), 3);
        let cases: [(&[&str], &str); 4] = [
            (&["1s", "1m", "2h"], "unknown interval \"2h\""),
            (&["1s", "1m", "1m"], "listed twice"),
            (&["1m", "5m"], "must include \"1s\""),
            (&["1s"], "must include \"1m\""),
        ];
        for (names, needle) in cases {
            let err = BarIntervals::from_names(names).unwrap_err();
            assert!(err.contains(needle), "{names:?}: {err}");
        }
    }
}
