//! The store's ticks of this run, read back for replays from a time (`ws::StoredTicks`):
//! encoded exactly as ingest encoded them live (same `seq`, `ts`, `xts`, values).

use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::model::{ChannelId, Symbols, Tick, Wire};
use crate::protocol;
use crate::store::Store;
use crate::ws::StoredTicks;

/// A tick's JSON is at least this long, so a read of `max_bytes` needs at most
/// `max_bytes / MIN_TICK_BYTES` rows.
const MIN_TICK_BYTES: usize = 96;

#[derive(Debug)]
pub(super) struct StoreTicks {
    store: Arc<Store>,
    symbols: Arc<Symbols>,
    /// This run's epoch: the `seq`s of other runs mean nothing to a client of this one.
    epoch: i64,
}

impl StoreTicks {
    pub(super) fn shared(
        store: &Arc<Store>,
        symbols: &Arc<Symbols>,
        epoch: i64,
    ) -> Arc<dyn StoredTicks> {
        Arc::new(StoreTicks {
            store: store.clone(),
            symbols: symbols.clone(),
            epoch,
        })
    }
}

impl StoredTicks for StoreTicks {
    fn run(
        &self,
        ch: ChannelId,
        name: &str,
        since_ns: i64,
        after: Option<u64>,
        before: u64,
        max_bytes: usize,
    ) -> BoxFuture<'_, Vec<(u64, Wire)>> {
        let name = name.to_owned();
        Box::pin(async move {
            let symbol = self.symbols.name(ch.symbol);
            let seq = |s: u64| i64::try_from(s).unwrap_or(i64::MAX);
            let limit = (max_bytes / MIN_TICK_BYTES).max(1);
            let rows = self
                .store
                .run_ticks(
                    &symbol,
                    self.epoch,
                    since_ns,
                    after.map(seq),
                    seq(before),
                    limit,
                )
                .await;
            let rows = match rows {
                Ok(rows) => rows,
                Err(error) => {
                    tracing::warn!(%error, symbol = %symbol, "stored ticks not read for a replay");
                    return Vec::new();
                }
            };
            let mut out = Vec::with_capacity(rows.len());
            let mut used = 0;
            for r in rows.into_iter().map(|t| t.row) {
                let tick = Tick {
                    symbol: ch.symbol,
                    price: r.price,
                    size: r.size,
                    side: r.side,
                    exchange_ts: r.ts,
                    ts: r.ingest_ts,
                };
                let seq = r.seq.max(0) as u64;
                let wire = protocol::encode_tick(&name, seq, &tick);
                used += wire.len() + 1;
                if used > max_bytes {
                    break;
                }
                out.push((seq, wire));
            }
            out
        })
    }
}
