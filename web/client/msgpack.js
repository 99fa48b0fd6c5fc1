// A MessagePack decoder for the server's `encoding=msgpack` frames (docs/PROTOCOL.md,
// "Encodings"). Decode only: client ops stay JSON text. No dependencies and no globals beyond
// TextDecoder, so it runs in browsers and Node alike.
//
// Every malformed input throws an Error that starts with "msgpack:": lengths are checked against
// the bytes left before anything is read or allocated, so a bad frame can neither read past its
// end nor make us allocate what a length field merely claims.
// `fatal`: a string that is not UTF-8 is a broken frame, not text with U+FFFD in it.
const utf8 = new TextDecoder("utf-8", { fatal: true });
// Deeper than anything the server sends (4 levels); stops a hostile frame from exhausting the
// stack with nested arrays.
const MAX_DEPTH = 64;
/**
 * Decodes one MessagePack value that fills `bytes` exactly.
 *
 * Integers become Numbers, also 64-bit ones (`Number(bigint)`: the nearest double, which is what
 * JSON.parse gives for the same digits); bin becomes a Uint8Array copy; maps become plain
 * objects (keys must be strings, or integers, which are named by their digits as in JSON). Ext
 * types, the reserved 0xc1, truncated input and trailing bytes throw.
 *
 */
export function decode(bytes) {
    const r = new Reader(bytes);
    const value = r.value(0);
    if (r.pos !== r.end)
        throw new Error(`msgpack: ${r.end - r.pos} trailing bytes after the value at offset ${r.pos}`);
    return value;
}
class Reader {
    bytes;
    view;
    pos;
    end;
    constructor(input) {
        let bytes;
        if (input instanceof ArrayBuffer)
            bytes = new Uint8Array(input);
        else if (ArrayBuffer.isView(input))
            bytes = new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
        else
            throw new Error("msgpack: input is not an ArrayBuffer or a typed array");
        this.bytes = bytes;
        this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        this.pos = 0;
        this.end = bytes.length;
    }
    /** Claims `n` bytes and returns where they start; throws when fewer are left. */
    take(n, what) {
        const at = this.pos;
        if (n > this.end - at) {
            throw new Error(`msgpack: truncated ${what} at offset ${at}: needs ${n} bytes, ${this.end - at} left`);
        }
        this.pos = at + n;
        return at;
    }
    u8(what) {
        return this.bytes[this.take(1, what)];
    }
    u16(what) {
        return this.view.getUint16(this.take(2, what));
    }
    u32(what) {
        return this.view.getUint32(this.take(4, what));
    }
    value(depth) {
        const at = this.pos;
        const b = this.u8("value");
        if (b <= 0x7f)
            return b; // positive fixint
        if (b >= 0xe0)
            return b - 0x100; // negative fixint
        if (b <= 0x8f)
            return this.map(b & 0x0f, depth);
        if (b <= 0x9f)
            return this.array(b & 0x0f, depth);
        if (b <= 0xbf)
            return this.str(b & 0x1f);
        const v = this.view;
        switch (b) {
            case 0xc0:
                return null;
            case 0xc2:
                return false;
            case 0xc3:
                return true;
            case 0xc4:
                return this.bin(this.u8("bin8 length"));
            case 0xc5:
                return this.bin(this.u16("bin16 length"));
            case 0xc6:
                return this.bin(this.u32("bin32 length"));
            case 0xca:
                return v.getFloat32(this.take(4, "float32"));
            case 0xcb:
                return v.getFloat64(this.take(8, "float64"));
            case 0xcc:
                return this.u8("uint8");
            case 0xcd:
                return this.u16("uint16");
            case 0xce:
                return this.u32("uint32");
            case 0xcf:
                return Number(v.getBigUint64(this.take(8, "uint64")));
            case 0xd0:
                return v.getInt8(this.take(1, "int8"));
            case 0xd1:
                return v.getInt16(this.take(2, "int16"));
            case 0xd2:
                return v.getInt32(this.take(4, "int32"));
            case 0xd3:
                return Number(v.getBigInt64(this.take(8, "int64")));
            case 0xd9:
                return this.str(this.u8("str8 length"));
            case 0xda:
                return this.str(this.u16("str16 length"));
            case 0xdb:
                return this.str(this.u32("str32 length"));
            case 0xdc:
                return this.array(this.u16("array16 length"), depth);
            case 0xdd:
                return this.array(this.u32("array32 length"), depth);
            case 0xde:
                return this.map(this.u16("map16 length"), depth);
            case 0xdf:
                return this.map(this.u32("map32 length"), depth);
            case 0xc1:
                throw new Error(`msgpack: reserved byte 0xc1 at offset ${at}`);
            default:
                // 0xc7-0xc9 and 0xd4-0xd8: the server sends no ext types (not even timestamps).
                throw new Error(`msgpack: ext type 0x${b.toString(16)} at offset ${at} is not supported`);
        }
    }
    str(len) {
        const at = this.take(len, "str");
        try {
            return utf8.decode(this.bytes.subarray(at, at + len));
        }
        catch {
            throw new Error(`msgpack: str at offset ${at} is not valid UTF-8`);
        }
    }
    bin(len) {
        const at = this.take(len, "bin");
        return this.bytes.slice(at, at + len); // a copy: the frame's buffer is not kept alive
    }
    array(len, depth) {
        this.nest(len, 1, "array", depth);
        const out = new Array(len);
        for (let i = 0; i < len; i++)
            out[i] = this.value(depth + 1);
        return out;
    }
    map(len, depth) {
        this.nest(len, 2, "map", depth);
        const out = {};
        for (let i = 0; i < len; i++) {
            const at = this.pos;
            const raw = this.value(depth + 1);
            let key;
            if (typeof raw === "number" && Number.isInteger(raw))
                key = String(raw);
            else if (typeof raw === "string")
                key = raw;
            else
                throw new Error(`msgpack: map key at offset ${at} is not a string`);
            const value = this.value(depth + 1);
            // A "__proto__" key is an own property, as JSON.parse makes it, not the prototype.
            if (key === "__proto__")
                Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
            else
                out[key] = value;
        }
        return out;
    }
    /** Checks a container before it is allocated: every element takes at least one byte. */
    nest(len, bytesPerItem, what, depth) {
        if (depth >= MAX_DEPTH)
            throw new Error(`msgpack: ${what} nested deeper than ${MAX_DEPTH} at offset ${this.pos}`);
        if (len * bytesPerItem > this.end - this.pos) {
            throw new Error(`msgpack: truncated ${what} at offset ${this.pos}: ${len} items claimed, ${this.end - this.pos} bytes left`);
        }
    }
}
