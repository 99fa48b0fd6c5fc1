// Typed events: the server's, and this client's own notices (snapshot, reset, gap).
export {};
