//! Command-line arguments.

use clap::{Parser, ValueEnum};

/// Bounded load against a tickcast server (or a protocol-compatible peer) on loopback.
///
/// Timeline: connections ramp up over --ramp, then --warmup passes unmeasured, then --duration
/// is measured, then every socket is closed with 1000 and the run stops by itself.
#[derive(Debug, Clone, Parser)]
#[command(name = "tickcast-loadgen", version)]
pub struct Args {
    /// What the connections do.
    #[arg(long, value_enum, default_value_t = Scenario::Bots)]
    pub scenario: Scenario,

    /// WebSocket endpoint; the REST base is derived from its host and port. Loopback only.
    /// Several, comma-separated (the edges of a cluster), spread the sockets round-robin;
    /// symbols and REST go to the first.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    pub url: String,

    /// Encoding of the server's frames: `msgpack` adds `encoding=msgpack` to every WebSocket
    /// URL (binary MessagePack frames, docs/PROTOCOL.md "Encodings"); ops stay JSON text.
    #[arg(long, value_enum, default_value_t = Encoding::Json)]
    pub encoding: Encoding,

    /// WebSocket connections to open (bots, dashboards, mixed).
    #[arg(long, short = 'c', default_value_t = 100)]
    pub connections: u64,

    /// Seconds over which connections are opened, evenly spaced.
    #[arg(long, default_value_t = 2.0)]
    pub ramp: f64,

    /// Seconds after the ramp before measuring starts.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,

    /// Seconds measured; the run then closes everything and exits.
    #[arg(long, short = 'd', default_value_t = 10.0)]
    pub duration: f64,

    /// Dashboards: distinct random symbols per socket (ticks + indicators each).
    #[arg(long, default_value_t = 5)]
    pub symbols_per_socket: usize,

    /// `throttle_ms` sent with the dashboards' ticks subscription (default 250) and the books'
    /// `book:*` subscription (default none); 0 = none.
    #[arg(long)]
    pub throttle_ms: Option<u64>,

    /// Books: `"depth": N` sent with the `book:*` subscription (levels per side the socket
    /// holds, 1..=200, at most the server's `book.depth`); without it, the server's full depth.
    #[arg(long, value_name = "N")]
    pub book_depth: Option<u32>,

    /// REST: requests per second (rest, mixed; 0 disables REST in mixed).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,

    /// REST: requests in flight at most; a request due while all are busy is counted as skipped.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,

    /// REST: Bearer key for `/api/v1/portfolio`; without it that endpoint is left out.
    #[arg(long)]
    pub api_key: Option<String>,

    /// WebSocket: connect every socket with this token (`?token=`, docs/PROTOCOL.md
    /// "Authentication").
    #[arg(long, value_name = "TOKEN", conflicts_with_all = ["jwt_hs256_secret", "jwt_user"])]
    pub token: Option<String>,

    /// WebSocket: sign one HS256 token per socket with this secret (the server's
    /// `auth.jwt_hs256_secret`): `sub` = --jwt-user, `exp` = now + 1 h. Needs --jwt-user.
    #[arg(long, value_name = "SECRET", requires = "jwt_user")]
    pub jwt_hs256_secret: Option<String>,

    /// WebSocket: the user (`sub`) of the tokens --jwt-hs256-secret signs.
    #[arg(long, value_name = "NAME", requires = "jwt_hs256_secret")]
    pub jwt_user: Option<String>,

    /// Mixed: fraction of WebSocket connections that are bots; the rest are dashboards.
    #[arg(long, default_value_t = 0.1)]
    pub bot_fraction: f64,

    /// Symbols to use instead of asking the server with the `list` op (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub symbols: Vec<String>,

    /// Report this server process's CPU and RSS over the measured window.
    #[arg(long)]
    pub server_pid: Option<u32>,

    /// Tokio worker threads for the loadgen itself.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,

    /// Seconds allowed for one connection's TCP connect plus handshake.
    #[arg(long, default_value_t = 10.0)]
    pub connect_timeout: f64,

    /// Print one JSON object instead of the human summary.
    #[arg(long)]
    pub json: bool,

    /// No live progress line.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Every socket subscribes `ticks:*`.
    Bots,
    /// Every socket subscribes K symbols' `ticks:SYM` (throttled) and `indicators:SYM`.
    Dashboards,
    /// REST GETs at --rate with --concurrency; no WebSockets.
    Rest,
    /// --bot-fraction bots, the rest dashboards, plus REST at --rate.
    Mixed,
    /// Connections that subscribe to nothing and only answer pings: per-connection memory.
    Idle,
    /// Every socket subscribes `book:*` (with --book-depth and --throttle-ms when given).
    Books,
    /// A watch-list page: every socket subscribes `ticker:*` and `bbo:*` (with --throttle-ms
    /// when given; none by default).
    Watchlist,
    /// Churn, to find leaks: every socket connects, subscribes a random mix of channels (some
    /// with a snapshot), reads briefly, unsubscribes one, closes and reconnects, until the run
    /// ends; the report gives the server's RSS at the start and end of the window (drift).
    Soak,
}

/// The frame encoding a connection asks the server for (`GET /ws?encoding=...`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Encoding {
    /// Text frames of JSON, one event or an array of them (the default; no query parameter).
    #[default]
    Json,
    /// Binary frames, each one MessagePack array of messages.
    Msgpack,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Json => "json",
            Encoding::Msgpack => "msgpack",
        }
    }

    /// `url` as this encoding connects to it: `msgpack` appends `encoding=msgpack` to the query
    /// (after any there is, such as `?v=1`); `json` leaves the URL as it is, the server's
    /// default. A URL that already names an `encoding` must agree with this one.
    pub fn apply_to_url(self, url: &str) -> anyhow::Result<String> {
        let (base, fragment) = match url.split_once('#') {
            Some((b, f)) => (b, Some(f)),
            None => (url, None),
        };
        let query = base.split_once('?').map_or("", |(_, q)| q);
        let named = query
            .split('&')
            .filter_map(|kv| kv.strip_prefix("encoding="))
            .next_back();
        let mut out = match named {
            Some(v) if v == self.name() => base.to_string(),
            Some(v) => anyhow::bail!(
                "--url {url:?} asks for encoding={v} but --encoding is {}",
                self.name()
            ),
            None if self == Encoding::Json => base.to_string(),
            None => {
                let sep = match base.find('?') {
                    None => "?",
                    Some(_) if base.ends_with(['?', '&']) => "",
                    Some(_) => "&",
                };
                format!("{base}{sep}encoding={}", self.name())
            }
        };
        if let Some(f) = fragment {
            out.push('#');
            out.push_str(f);
        }
        Ok(out)
    }
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Bots => "bots",
            Scenario::Dashboards => "dashboards",
            Scenario::Rest => "rest",
            Scenario::Mixed => "mixed",
            Scenario::Idle => "idle",
            Scenario::Books => "books",
            Scenario::Watchlist => "watchlist",
            Scenario::Soak => "soak",
        }
    }

    pub fn uses_ws(self) -> bool {
        self != Scenario::Rest
    }

    pub fn uses_rest(self) -> bool {
        matches!(self, Scenario::Rest | Scenario::Mixed)
    }
}

impl Args {
    /// The `throttle_ms` this run's subscriptions send: --throttle-ms, or the scenario's
    /// default (250 for dashboards and mixed, none for books).
    pub fn throttle_ms(&self) -> u64 {
        self.throttle_ms.unwrap_or(match self.scenario {
            Scenario::Books | Scenario::Watchlist => 0,
            _ => 250,
        })
    }

    /// Rejects values that would make an unbounded or meaningless run.
    pub fn validate(&self) -> anyhow::Result<()> {
        let secs = |name: &str, v: f64, max: f64| {
            anyhow::ensure!(
                v.is_finite() && (0.0..=max).contains(&v),
                "--{name} must be between 0 and {max} seconds"
            );
            Ok(())
        };
        secs("ramp", self.ramp, 600.0)?;
        secs("warmup", self.warmup, 600.0)?;
        secs("duration", self.duration, 3600.0)?;
        secs("connect-timeout", self.connect_timeout, 60.0)?;
        anyhow::ensure!(self.duration > 0.0, "--duration must be above 0");
        anyhow::ensure!((1..=64).contains(&self.threads), "--threads must be 1..=64");
        anyhow::ensure!(self.concurrency >= 1, "--concurrency must be at least 1");
        anyhow::ensure!(
            self.rate.is_finite() && (0.0..=1_000_000.0).contains(&self.rate),
            "--rate must be between 0 and 1000000"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.bot_fraction),
            "--bot-fraction must be between 0 and 1"
        );
        if let Some(d) = self.book_depth {
            anyhow::ensure!((1..=200).contains(&d), "--book-depth must be 1..=200");
        }
        if self.scenario == Scenario::Rest {
            anyhow::ensure!(self.rate > 0.0, "the rest scenario needs --rate above 0");
        }
        for (name, v) in [
            ("token", &self.token),
            ("jwt-hs256-secret", &self.jwt_hs256_secret),
            ("jwt-user", &self.jwt_user),
        ] {
            anyhow::ensure!(
                v.as_ref().is_none_or(|v| !v.is_empty()),
                "--{name} must not be empty"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_added_to_the_query() {
        let m = Encoding::Msgpack;
        let cases = [
            (
                "ws://127.0.0.1:8080/ws",
                "ws://127.0.0.1:8080/ws?encoding=msgpack",
            ),
            (
                "ws://127.0.0.1:8080/ws?v=1",
                "ws://127.0.0.1:8080/ws?v=1&encoding=msgpack",
            ),
            (
                "ws://127.0.0.1:8080/ws?",
                "ws://127.0.0.1:8080/ws?encoding=msgpack",
            ),
            (
                "ws://127.0.0.1:8080/ws?v=1&",
                "ws://127.0.0.1:8080/ws?v=1&encoding=msgpack",
            ),
            ("ws://localhost", "ws://localhost?encoding=msgpack"),
            (
                "ws://[::1]:9000/ws?v=1&encoding=msgpack",
                "ws://[::1]:9000/ws?v=1&encoding=msgpack",
            ),
        ];
        for (url, want) in cases {
            assert_eq!(m.apply_to_url(url).unwrap(), want, "{url}");
        }
        // JSON is the server's default: the URL is left alone.
        for url in [
            "ws://127.0.0.1:8080/ws",
            "ws://127.0.0.1:8080/ws?v=1&encoding=json",
        ] {
            assert_eq!(Encoding::Json.apply_to_url(url).unwrap(), url);
        }
        // A URL naming the other encoding is a usage error, not a silent mix.
        assert!(m.apply_to_url("ws://127.0.0.1/ws?encoding=json").is_err());
        assert!(
            Encoding::Json
                .apply_to_url("ws://127.0.0.1/ws?encoding=msgpack")
                .is_err()
        );
        // `xencoding` is another parameter.
        assert_eq!(
            m.apply_to_url("ws://127.0.0.1/ws?xencoding=1").unwrap(),
            "ws://127.0.0.1/ws?xencoding=1&encoding=msgpack"
        );
    }

    #[test]
    fn encoding_flag() {
        let a = Args::try_parse_from(["tickcast-loadgen"]).unwrap();
        assert_eq!(a.encoding, Encoding::Json);
        let a = Args::try_parse_from(["tickcast-loadgen", "--encoding", "msgpack"]).unwrap();
        assert_eq!(a.encoding, Encoding::Msgpack);
        assert!(Args::try_parse_from(["tickcast-loadgen", "--encoding", "cbor"]).is_err());
    }

    #[test]
    fn books_flags() {
        let a = Args::try_parse_from(["tickcast-loadgen", "--scenario", "books"]).unwrap();
        assert_eq!(a.scenario, Scenario::Books);
        let w = Args::try_parse_from(["tickcast-loadgen", "--scenario", "watchlist"]).unwrap();
        assert_eq!((w.scenario, w.throttle_ms()), (Scenario::Watchlist, 0));
        assert_eq!(
            (a.book_depth, a.throttle_ms()),
            (None, 0),
            "full depth, no throttle"
        );
        a.validate().unwrap();
        let a = Args::try_parse_from([
            "tickcast-loadgen",
            "--scenario",
            "books",
            "--book-depth",
            "5",
            "--throttle-ms",
            "100",
        ])
        .unwrap();
        assert_eq!((a.book_depth, a.throttle_ms()), (Some(5), 100));
        // Dashboards keep their 250 ms default.
        let a = Args::try_parse_from(["tickcast-loadgen", "--scenario", "dashboards"]).unwrap();
        assert_eq!(a.throttle_ms(), 250);
        for bad in ["0", "201"] {
            let a = Args::try_parse_from(["tickcast-loadgen", "--book-depth", bad]).unwrap();
            assert!(a.validate().is_err(), "--book-depth {bad}");
        }
    }

    #[test]
    fn auth_flags() {
        let a = Args::try_parse_from(["tickcast-loadgen"]).unwrap();
        assert_eq!(
            (a.token, a.jwt_hs256_secret, a.jwt_user),
            (None, None, None)
        );
        let a = Args::try_parse_from(["tickcast-loadgen", "--token", "abc"]).unwrap();
        assert_eq!(a.token.as_deref(), Some("abc"));
        let a = Args::try_parse_from([
            "tickcast-loadgen",
            "--jwt-hs256-secret",
            "s3cret",
            "--jwt-user",
            "alice",
        ])
        .unwrap();
        assert_eq!(a.jwt_hs256_secret.as_deref(), Some("s3cret"));
        assert_eq!(a.jwt_user.as_deref(), Some("alice"));
        a.validate().unwrap();
    }

    #[test]
    fn conflicting_or_incomplete_auth_flags_are_refused() {
        use clap::error::ErrorKind;
        let err = |argv: &[&str]| {
            let mut full = vec!["tickcast-loadgen"];
            full.extend_from_slice(argv);
            Args::try_parse_from(full).expect_err("refused")
        };
        // A fixed token and minted ones cannot both be used; the error names both flags.
        let e = err(&["--token", "t", "--jwt-hs256-secret", "s", "--jwt-user", "u"]);
        assert_eq!(e.kind(), ErrorKind::ArgumentConflict);
        let text = e.to_string();
        assert!(text.contains("--token"), "{text}");
        assert!(text.contains("--jwt-hs256-secret"), "{text}");
        assert_eq!(
            err(&["--token", "t", "--jwt-user", "u"]).kind(),
            ErrorKind::ArgumentConflict
        );
        // Either JWT flag alone is missing its partner, named in the error.
        let e = err(&["--jwt-hs256-secret", "s"]);
        assert_eq!(e.kind(), ErrorKind::MissingRequiredArgument);
        assert!(e.to_string().contains("--jwt-user"), "{e}");
        let e = err(&["--jwt-user", "u"]);
        assert_eq!(e.kind(), ErrorKind::MissingRequiredArgument);
        assert!(e.to_string().contains("--jwt-hs256-secret"), "{e}");
        // Empty values parse but do not validate.
        let a = Args::try_parse_from(["tickcast-loadgen", "--token", ""]).unwrap();
        let msg = a.validate().unwrap_err().to_string();
        assert!(msg.contains("--token must not be empty"), "{msg}");
    }
}
