//! Opening one history file: its compression told by its first bytes (gzip `1f 8b`, zstd
//! `28 b5 2f fd`), not its name; its format (CSV or JSONL) by `--format`, else by its extension
//! once a compression extension (`.gz`, `.zst`) is set aside. The records are the replay feed's
//! own ([`Records`]): the same field names and rules, the same errors.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use crate::feed::replay::{Records, ReplayFormat, resolve_format};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Buffer for reading (and for decompressed text).
const READ_BUFFER: usize = 256 * 1024;

/// How a file is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Zstd,
}

/// The compression a file's first bytes announce.
pub(crate) fn compression_of(head: &[u8]) -> Compression {
    if head.starts_with(&ZSTD_MAGIC) {
        Compression::Zstd
    } else if head.starts_with(&GZIP_MAGIC) {
        Compression::Gzip
    } else {
        Compression::None
    }
}

/// The records of a file: CSV or JSONL from `--format`, else by the extension under any
/// compression extension (`ticks.csv.gz` is CSV).
pub(crate) fn format_of(format: ReplayFormat, path: &Path) -> Option<ReplayFormat> {
    let compressed = path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        matches!(
            e.to_ascii_lowercase().as_str(),
            "gz" | "gzip" | "zst" | "zstd"
        )
    });
    if compressed && format == ReplayFormat::Auto {
        return resolve_format(format, &path.with_extension(""));
    }
    resolve_format(format, path)
}

/// Opens `path` and starts reading its records (the CSV header is read and checked here).
/// The error is the reason, for a message that names the file.
pub(crate) fn open(
    path: &Path,
    format: ReplayFormat,
) -> Result<Records<Box<dyn BufRead + Send>>, String> {
    let format = format_of(format, path).ok_or_else(|| {
        "cannot tell the format from the extension (.csv, .jsonl or .ndjson, optionally .gz or \
         .zst); pass --format csv or --format jsonl"
            .to_owned()
    })?;
    let file = File::open(path).map_err(|e| e.to_string())?;
    let mut raw = BufReader::with_capacity(READ_BUFFER, file);
    let compression = compression_of(raw.fill_buf().map_err(|e| e.to_string())?);
    let text: Box<dyn BufRead + Send> = match compression {
        Compression::None => Box::new(raw),
        // Multi-member: `cat a.gz b.gz` is a valid gzip file of both.
        Compression::Gzip => Box::new(BufReader::with_capacity(
            READ_BUFFER,
            flate2::bufread::MultiGzDecoder::new(raw),
        )),
        Compression::Zstd => {
            let decoder = ruzstd::decoding::StreamingDecoder::new(raw)
                .map_err(|e| format!("not a readable zstd stream: {e}"))?;
            Box::new(BufReader::with_capacity(READ_BUFFER, decoder))
        }
    };
    Records::new(text, format).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_by_magic_and_format_under_the_compression_extension() {
        assert_eq!(compression_of(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(compression_of(&ZSTD_MAGIC), Compression::Zstd);
        assert_eq!(compression_of(b"ts,symbol"), Compression::None);
        assert_eq!(compression_of(&[0x1f]), Compression::None);
        let auto = |p: &str| format_of(ReplayFormat::Auto, Path::new(p));
        assert_eq!(auto("a/t.csv.gz"), Some(ReplayFormat::Csv));
        assert_eq!(auto("t.JSONL.zst"), Some(ReplayFormat::Jsonl));
        assert_eq!(auto("t.csv"), Some(ReplayFormat::Csv));
        assert_eq!(auto("t.gz"), None);
        assert_eq!(auto("t.txt"), None);
        assert_eq!(
            format_of(ReplayFormat::Csv, Path::new("t.gz")),
            Some(ReplayFormat::Csv)
        );
    }
}
