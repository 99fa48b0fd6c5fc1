// @tickcast/client: the client side of docs/PROTOCOL.md (v1), for browsers and Node.
export { decode } from "./msgpack.js";
export { decodeFrame, fromMsgpack, KIND_CODES, parseExact } from "./frames.js";
export { SeqTracker, splitChannel, covers } from "./seq.js";
export { ClientBook, bookChecksum, checksumText, crc32, plainNumber, CHECKSUM_LEVELS } from "./book.js";
export { Connection } from "./connection.js";
export { Client, connect, jwtExp } from "./client.js";
export { Rest } from "./rest.js";
export { ProblemError, ServerError, TickcastError } from "./errors.js";
