//! Positions: one row per (user, symbol), updated in the transaction that records each trade, so
//! `GET /portfolio` reads the positions, not the trade history.
//!
//! The accounting itself is not here: the caller passes it as a [`Fold`] (the average-cost rule
//! lives in `crate::portfolio`, which depends on the store, not the other way round; the exact
//! decimal text of the cost basis is the leaf `crate::money`, which both use). A fill
//! that arrives in (ts, id) order is folded into the stored row; a fill reported for an earlier
//! time than the row's latest (or a row marked `stale`, as the migration leaves rows for trades
//! recorded before positions existed) makes that one symbol's position be rebuilt from its
//! trades, in order. Concurrent trades of one user and symbol are serialized by the row lock the
//! first statement takes (an upsert), on both backends.

use rust_decimal::Decimal;

use super::{Store, StoreError, side_of};
use crate::model::Side;

/// One symbol's position as stored (decimal text on SQLite, NUMERIC on PostgreSQL).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Holding {
    /// Signed: negative is short.
    pub quantity: Decimal,
    /// The open quantity's cost basis, in total (the average is computed only for display).
    pub cost: Decimal,
    pub realized: Decimal,
}

/// A fill that would take a position outside the range of exact decimal arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the position would leave the range of exact decimal arithmetic")]
pub struct OutOfRange;

/// Applies one fill (side, quantity, price) to a holding, or refuses it.
pub type Fold = fn(&mut Holding, Side, Decimal, Decimal) -> Result<(), OutOfRange>;

/// A position read back.
#[derive(Debug, Clone, PartialEq)]
pub struct PositionRow {
    pub symbol: String,
    pub holding: Holding,
    /// Fills folded in.
    pub trades: i64,
}

/// A row's state after folding: the holding, its fill count and its latest (ts, id).
pub(super) struct Folded {
    pub holding: Holding,
    pub trades: i64,
    pub last: (i64, i64),
}

/// Folds fills in the order given.
pub(super) fn fold_all(fills: &[Fill], fold: Fold) -> Result<Folded, StoreError> {
    let mut out = Folded {
        holding: Holding::default(),
        trades: 0,
        last: (i64::MIN, i64::MIN),
    };
    for (side, quantity, price, ts, id) in fills {
        fold(
            &mut out.holding,
            side_of(*side),
            decimal(quantity)?,
            decimal(price)?,
        )?;
        out.trades += 1;
        out.last = (*ts, *id);
    }
    Ok(out)
}

/// A decimal column as read (`CAST(col AS TEXT)` on both backends). Values converted from
/// floats by SQLite may be in scientific notation (`1.0e-07`).
pub(super) fn decimal(text: &str) -> Result<Decimal, StoreError> {
    crate::money::parse_digits(text)
        .ok_or_else(|| StoreError::Corrupt(format!("not a decimal: {text:?}")))
}

/// A decimal as stored: its digits, without trailing fraction zeros.
pub(super) fn digits(d: Decimal) -> String {
    crate::money::Exact(d).digits()
}

/// Locks (creating it stale if new) the position row of (user, symbol) within a transaction.
pub(super) const LOCK_SQL: &str = "INSERT INTO positions (user_id, symbol, quantity, cost, \
     realized, trades, last_ts, last_id, stale) VALUES ($1, $2, '0', '0', '0', 0, 0, 0, 1) \
     ON CONFLICT (user_id, symbol) DO UPDATE SET stale = positions.stale";
pub(super) const SELECT_SQL: &str = "SELECT CAST(quantity AS TEXT), CAST(cost AS TEXT), \
     CAST(realized AS TEXT), trades, last_ts, last_id, stale FROM positions \
     WHERE user_id = $1 AND symbol = $2";
pub(super) const FILLS_SQL: &str = "SELECT side, CAST(quantity AS TEXT), CAST(price AS TEXT), \
     ts, id FROM trades WHERE user_id = $1 AND symbol = $2 ORDER BY ts, id";
/// Written for PostgreSQL; see [`super::exact_sql`].
pub(super) const UPDATE_SQL: &str = "UPDATE positions SET quantity = CAST($3 AS NUMERIC), \
     cost = CAST($4 AS NUMERIC), realized = CAST($5 AS NUMERIC), trades = $6, last_ts = $7, \
     last_id = $8, stale = 0 WHERE user_id = $1 AND symbol = $2";

/// The stored row as [`SELECT_SQL`] reads it.
pub(super) type StoredRow = (String, String, String, i64, i64, i64, i16);
/// A fill as [`FILLS_SQL`] reads it: side, quantity, price, ts, id.
pub(super) type Fill = (i16, String, String, i64, i64);

// === impl Store: positions ===

impl Store {
    /// The user's positions, by symbol. Stale rows (trades recorded before positions were
    /// stored) are rebuilt first, once.
    pub(crate) async fn positions(
        &self,
        user: i64,
        fold: Fold,
    ) -> Result<Vec<PositionRow>, StoreError> {
        let mut rows = self.position_rows(user).await?;
        let stale: Vec<String> = rows
            .iter()
            .filter(|(_, stale)| *stale)
            .map(|(p, _)| p.symbol.clone())
            .collect();
        if !stale.is_empty() {
            for symbol in &stale {
                self.rebuild_position(user, symbol, fold).await?;
            }
            rows = self.position_rows(user).await?;
        }
        Ok(rows.into_iter().map(|(p, _)| p).collect())
    }

    async fn position_rows(&self, user: i64) -> Result<Vec<(PositionRow, bool)>, StoreError> {
        type Row = (String, String, String, String, i64, i16);
        let rows: Vec<Row> = self
            .bounded(async {
                Ok(on_pool!(&self.read, p => {
                    sqlx::query_as(
                        "SELECT symbol, CAST(quantity AS TEXT), CAST(cost AS TEXT), \
                         CAST(realized AS TEXT), trades, stale \
                         FROM positions WHERE user_id = $1 ORDER BY symbol",
                    )
                    .bind(user)
                    .fetch_all(p)
                    .await?
                }))
            })
            .await?;
        rows.into_iter()
            .map(|(symbol, quantity, cost, realized, trades, stale)| {
                let holding = Holding {
                    quantity: decimal(&quantity)?,
                    cost: decimal(&cost)?,
                    realized: decimal(&realized)?,
                };
                let row = PositionRow {
                    symbol,
                    holding,
                    trades,
                };
                Ok((row, stale != 0))
            })
            .collect()
    }

    /// Rebuilds one position from its trades, in one transaction.
    async fn rebuild_position(
        &self,
        user: i64,
        symbol: &str,
        fold: Fold,
    ) -> Result<(), StoreError> {
        let update = super::exact_sql(&self.db, UPDATE_SQL);
        on_pool!(&self.db, p => {
            let mut tx = p.begin().await?;
            sqlx::query(LOCK_SQL).bind(user).bind(symbol).execute(&mut *tx).await?;
            let fills: Vec<Fill> = sqlx::query_as(FILLS_SQL)
                .bind(user)
                .bind(symbol)
                .fetch_all(&mut *tx)
                .await?;
            let f = fold_all(&fills, fold)?;
            store_position!(tx, &update, user, symbol, f)?;
            tx.commit().await?;
        });
        Ok(())
    }
}
