//! `POST /api/v1/auth/token`: an API key (`tickcast user add`) exchanged for a short-lived
//! connection token, so one credential serves REST and the WebSocket.

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::market::store_problem;
use super::portfolio::{Caller, PortfolioState};
use crate::auth::AuthError;
use crate::protocol::{Problem, ProblemCode};
use crate::ws::WsState;

/// A token for `GET /ws?token=` or the `auth` op.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenOut {
    /// HS256 JWT: `sub` is the user, `exp` when it expires; `channels` and `limits` are the
    /// user's stored scope (`tickcast user add/set --channels --limits`), when it has one.
    pub token: String,
    pub user: String,
    /// Seconds since the Unix epoch.
    pub expires_at: u64,
}

#[utoipa::path(post, path = "/api/v1/auth/token", tag = "auth",
    responses((status = 200, body = TokenOut),
        (status = 401, description = "unauthorized: no or an unknown API key"),
        (status = 404, description = "token_exchange_disabled: the server has no auth.jwt_hs256_secret"),
        (status = 503, description = "database_unavailable")),
    security(("bearer" = [])))]
pub async fn token(
    State(ws): State<WsState>,
    State(portfolio): State<PortfolioState>,
    caller: Caller,
) -> Result<Json<TokenOut>, Problem> {
    let Some(verifier) = ws.auth.verifier.as_ref() else {
        return Err(disabled());
    };
    let user = caller.1;
    // The user's stored scope goes into the token: exchanging a key never widens what it may do.
    let scope = match portfolio.store.user_scope(&user).await {
        Ok(Some(scope)) => scope,
        Ok(None) => return Err(Problem::new(ProblemCode::Unauthorized, "invalid API key")),
        Err(e) => return Err(store_problem(e)),
    };
    let now_s = crate::model::now_ms().max(0) as u64 / 1000;
    match verifier.issue(&user, &scope, now_s) {
        Ok((token, expires_at)) => Ok(Json(TokenOut {
            token,
            user,
            expires_at,
        })),
        Err(AuthError::CannotSign) => Err(disabled()),
        Err(e) => Err(Problem::new(ProblemCode::Internal, e.to_string())),
    }
}

fn disabled() -> Problem {
    Problem::new(
        ProblemCode::TokenExchangeDisabled,
        "token exchange needs auth.jwt_hs256_secret (a server that only holds a public key cannot sign)",
    )
}
