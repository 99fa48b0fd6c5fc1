// @tickcast/client: the client side of docs/PROTOCOL.md (v1), for browsers and Node.

export { decode } from "./msgpack.js";
export { decodeFrame, fromMsgpack, KIND_CODES, parseExact, type Message } from "./frames.js";
export { SeqTracker, splitChannel, covers } from "./seq.js";
export { ClientBook, bookChecksum, checksumText, crc32, plainNumber, CHECKSUM_LEVELS, type Level } from "./book.js";
export { Connection, type ConnectionOptions, type WebSocketCtor } from "./connection.js";
export { Client, connect, jwtExp, type Ack, type ConnectOptions, type SubscribeOptions } from "./client.js";
export { Rest } from "./rest.js";
export { ProblemError, ServerError, TickcastError } from "./errors.js";
export type * from "./events.js";
