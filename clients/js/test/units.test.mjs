// Units without a server: exact decimals, tokens, frames.

import assert from "node:assert/strict";
import { test } from "node:test";

import { decodeFrame, jwtExp, parseExact } from "../dist/index.js";

test("exact fields keep their digits as strings", () => {
  const v = parseExact('{"symbol":"A.B","quantity":0.30000000000000000001,"price":-1e3,"trades":2,"last_price":null}');
  assert.deepEqual(v, { symbol: "A.B", quantity: "0.30000000000000000001", price: "-1e3", trades: 2, last_price: null });
});

test("a JSON portfolio frame is read exactly only when asked", () => {
  const text = '{"type":"portfolio","ch":"portfolio","seq":1,"ts":1,"reason":"trade","positions":[],"realized_pnl":25.63,"unrealized_pnl":null,"trades":0}';
  assert.equal(decodeFrame(text, { exactDecimals: true })[0].realized_pnl, "25.63");
  assert.equal(decodeFrame(text)[0].realized_pnl, 25.63);
});

test("a JWT's exp is read; anything else has none", () => {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  assert.equal(jwtExp(`${b64({ alg: "HS256" })}.${b64({ sub: "a", exp: 1764070900 })}.sig`), 1764070900);
  assert.equal(jwtExp("not-a-jwt"), undefined);
  assert.equal(jwtExp(`x.${b64({ exp: "soon" })}.y`), undefined);
});
