// Typed errors: an op the server refused, a problem+json answer, a refused upgrade.

export class TickcastError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** An op refused by the server: the `error` event's stable `code` (all of them in `errors`). */
export class ServerError extends TickcastError {
  constructor(
    readonly code: string,
    readonly detail: string,
    readonly errors: { code: string; message: string }[] = [],
  ) {
    super(`${code}: ${detail}`);
  }
}

/** A REST answer with an `application/problem+json` body (RFC 9457). */
export class ProblemError extends TickcastError {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly title: string,
    readonly detail: string,
    readonly body: Record<string, unknown> = {},
  ) {
    super(`HTTP ${status} ${code}: ${detail || title}`);
  }
}
