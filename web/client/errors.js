// Typed errors: an op the server refused, a problem+json answer, a refused upgrade.
export class TickcastError extends Error {
    constructor(message) {
        super(message);
        this.name = new.target.name;
    }
}
/** An op refused by the server: the `error` event's stable `code` (all of them in `errors`). */
export class ServerError extends TickcastError {
    code;
    detail;
    errors;
    constructor(code, detail, errors = []) {
        super(`${code}: ${detail}`);
        this.code = code;
        this.detail = detail;
        this.errors = errors;
    }
}
/** A REST answer with an `application/problem+json` body (RFC 9457). */
export class ProblemError extends TickcastError {
    status;
    code;
    title;
    detail;
    body;
    constructor(status, code, title, detail, body = {}) {
        super(`HTTP ${status} ${code}: ${detail || title}`);
        this.status = status;
        this.code = code;
        this.title = title;
        this.detail = detail;
        this.body = body;
    }
}
