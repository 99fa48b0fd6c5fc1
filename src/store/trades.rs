//! Trades: fills reported by clients, recorded idempotently per user, each updating the user's
//! position in the same transaction.

use rust_decimal::Decimal;

use super::positions::{self, Fill, Fold, Folded, Holding, StoredRow, decimal, digits, fold_all};
use super::{Store, StoreError, exact_sql, side_code, side_of};
use crate::model::Side;
use crate::model::now_ms;

/// A fill as a client reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTrade {
    pub symbol: String,
    pub side: Side,
    /// Exact: stored as decimal text (SQLite) or NUMERIC (PostgreSQL).
    pub quantity: Decimal,
    pub price: Decimal,
    /// Fill time, ns since the epoch.
    pub ts: i64,
    /// Whether the request named the fill time; without it `ts` is the time it was recorded,
    /// which a retry of the same request cannot reproduce.
    pub time_sent: bool,
}

impl NewTrade {
    /// Whether `retry` is the same request as the one that recorded `self`: the same fill, and
    /// the same fill time unless neither named one.
    fn same_request(&self, retry: &NewTrade) -> bool {
        self.symbol == retry.symbol
            && self.side == retry.side
            && self.quantity == retry.quantity
            && self.price == retry.price
            && self.time_sent == retry.time_sent
            && (!retry.time_sent || self.ts == retry.ts)
    }
}

/// Written for PostgreSQL; see [`exact_sql`].
const INSERT_SQL: &str = "INSERT INTO trades (user_id, symbol, side, quantity, price, ts, \
     idempotency_key, created_ms, time_sent) VALUES ($1, $2, $3, CAST($4 AS NUMERIC), \
     CAST($5 AS NUMERIC), $6, $7, $8, $9) RETURNING id";

/// A trade as read back: id, symbol, side, quantity, price (decimal text), ts, time_sent.
type TradeRow = (i64, String, i16, String, String, i64, i16);

/// A stored fill.
#[derive(Debug, Clone, PartialEq)]
pub struct Trade {
    pub id: i64,
    pub trade: NewTrade,
}

/// Whether a trade insert created a row or found the one its idempotency key names.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    Created(Trade),
    Replayed(Trade),
}

// === impl Store: trades ===

impl Store {
    /// Records a fill and updates the user's position of its symbol, in one transaction. With
    /// an idempotency key, a second request with the same key returns the first trade (if it is
    /// the same request) instead of recording another.
    pub async fn record_trade(
        &self,
        user: i64,
        t: &NewTrade,
        idempotency_key: Option<&str>,
        fold: Fold,
    ) -> Result<Recorded, StoreError> {
        if let Some(key) = idempotency_key
            && let Some(existing) = self.trade_by_key(user, key).await?
        {
            return Self::replay(existing, t);
        }
        let insert = exact_sql(&self.db, INSERT_SQL);
        let update = exact_sql(&self.db, positions::UPDATE_SQL);
        let inserted: Result<i64, StoreError> = on_pool!(&self.db, p => {
            async {
                let mut tx = p.begin().await?;
                let (id,): (i64,) = sqlx::query_as(&insert)
                .bind(user)
                .bind(&t.symbol)
                .bind(side_code(t.side))
                .bind(digits(t.quantity))
                .bind(digits(t.price))
                .bind(t.ts)
                .bind(idempotency_key)
                .bind(now_ms())
                .bind(i16::from(t.time_sent))
                .fetch_one(&mut *tx)
                .await?;
                sqlx::query(positions::LOCK_SQL)
                    .bind(user)
                    .bind(&t.symbol)
                    .execute(&mut *tx)
                    .await?;
                let (quantity, cost, realized, trades, last_ts, last_id, stale): StoredRow =
                    sqlx::query_as(positions::SELECT_SQL)
                        .bind(user)
                        .bind(&t.symbol)
                        .fetch_one(&mut *tx)
                        .await?;
                let f = if stale == 0 && (t.ts, id) > (last_ts, last_id) {
                    let mut holding = Holding {
                        quantity: decimal(&quantity)?,
                        cost: decimal(&cost)?,
                        realized: decimal(&realized)?,
                    };
                    fold(&mut holding, t.side, t.quantity, t.price)?;
                    Folded {
                        holding,
                        trades: trades + 1,
                        last: (t.ts, id),
                    }
                } else {
                    // A late fill (or a position never built): replay the symbol's fills.
                    let fills: Vec<Fill> = sqlx::query_as(positions::FILLS_SQL)
                        .bind(user)
                        .bind(&t.symbol)
                        .fetch_all(&mut *tx)
                        .await?;
                    fold_all(&fills, fold)?
                };
                store_position!(tx, &update, user, &t.symbol, f)?;
                tx.commit().await?;
                Ok(id)
            }
            .await
        });
        match inserted {
            Ok(id) => Ok(Recorded::Created(Trade {
                id,
                trade: t.clone(),
            })),
            // Two concurrent requests with one key: the loser reads the winner's row.
            Err(StoreError::Db(sqlx::Error::Database(e))) if e.is_unique_violation() => {
                match idempotency_key {
                    Some(key) => match self.trade_by_key(user, key).await? {
                        Some(existing) => Self::replay(existing, t),
                        None => Err(StoreError::Db(sqlx::Error::Database(e))),
                    },
                    None => Err(StoreError::Db(sqlx::Error::Database(e))),
                }
            }
            Err(e) => Err(e),
        }
    }

    fn replay(existing: Trade, t: &NewTrade) -> Result<Recorded, StoreError> {
        if existing.trade.same_request(t) {
            Ok(Recorded::Replayed(existing))
        } else {
            Err(StoreError::IdempotencyConflict)
        }
    }

    async fn trade_by_key(&self, user: i64, key: &str) -> Result<Option<Trade>, StoreError> {
        let row: Option<TradeRow> = self
            .bounded(async {
                Ok(on_pool!(&self.read, p => {
                    sqlx::query_as(
                        "SELECT id, symbol, side, CAST(quantity AS TEXT), CAST(price AS TEXT), ts, \
                         time_sent FROM trades WHERE user_id = $1 AND idempotency_key = $2",
                    )
                    .bind(user)
                    .bind(key)
                    .fetch_optional(p)
                    .await?
                }))
            })
            .await?;
        row.map(Self::trade_of).transpose()
    }

    fn trade_of(
        (id, symbol, side, quantity, price, ts, time_sent): TradeRow,
    ) -> Result<Trade, StoreError> {
        Ok(Trade {
            id,
            trade: NewTrade {
                symbol,
                side: side_of(side),
                quantity: decimal(&quantity)?,
                price: decimal(&price)?,
                ts,
                time_sent: time_sent != 0,
            },
        })
    }
}
