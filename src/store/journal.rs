//! The local journal: rows the write-behind queue cannot hold, kept on disk until the database
//! takes them (`database.on_overload = "journal"`).
//!
//! A directory of numbered segment files (`00000000000000000001.seg`, ...), each a 4-byte magic
//! followed by records: `len: u32 LE`, `crc: u32 LE` (CRC-32 of the payload), `payload` (one
//! row, [`encode`]). Appends go to the newest (active) segment through a buffered writer, written
//! to the OS after every call, without an fsync per call (a process crash loses nothing; a power
//! loss may cut the tail). The writer seals the active segment when it wants to read it, reads a
//! sealed segment whole, and removes it once every row in it is committed, so segments are
//! replayed oldest first and a restart finds them where they were. A record that is cut short
//! (a torn tail) or whose checksum does not match ends its segment's reading: what follows it
//! cannot be framed reliably. It is reported, never misread.
//!
//! The journal holds at most `database.journal_max_bytes`; an append that does not fit is
//! refused (the caller counts those rows as dropped).

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{BarRecord, IndicatorRecord, TickRow, tick_side_code, tick_side_of};

/// Start of every segment file (format version 1).
const MAGIC: &[u8; 4] = b"TCJ1";
/// A segment is sealed (a new one started) past this size, so each read is bounded.
const SEGMENT_BYTES: u64 = 8 << 20;
/// No row encodes to more than this (symbols are short); a larger length is corruption.
const MAX_RECORD_BYTES: u32 = 64 << 10;
/// `len` and `crc`.
const HEADER_BYTES: u64 = 8;

static CRC32: crc::Crc<u32, crc::Table<16>> =
    crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISO_HDLC);

/// One row on its way to the database: a tick, a closed bar or a row of indicator history.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Record {
    Tick(TickRow),
    Bar(BarRecord),
    Indicators(IndicatorRecord),
}

/// A journal failure (the caller counts the rows and logs it).
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("journal segment {0} is not a tickcast journal")]
    NotAJournal(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A sealed segment: complete, read whole by the writer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Segment {
    pub path: PathBuf,
    pub bytes: u64,
}

/// What reading a segment found.
#[derive(Debug, Default)]
pub(crate) struct SegmentRows {
    pub rows: Vec<Record>,
    /// Bytes after the last good record that could not be read (torn or corrupt), skipped.
    pub skipped_bytes: u64,
    /// The skipped bytes started with a record whose checksum did not match (not a short tail).
    pub checksum_mismatch: bool,
}

#[derive(Debug)]
struct Active {
    path: PathBuf,
    file: BufWriter<File>,
    bytes: u64,
}

/// The journal's files and bounds (see the module docs).
#[derive(Debug)]
pub(crate) struct Journal {
    dir: PathBuf,
    max_bytes: u64,
    sealed: VecDeque<Segment>,
    active: Option<Active>,
    /// Bytes of every segment on disk.
    bytes: u64,
    next_number: u64,
}

impl Journal {
    /// Opens the journal in `dir`, taking every segment left there (by an earlier run) as
    /// sealed, oldest first. The directory is created on the first append, not here.
    pub(crate) fn open(dir: &Path, max_bytes: u64) -> Result<Journal, JournalError> {
        let mut found: Vec<(u64, Segment)> = Vec::new();
        match fs::read_dir(dir) {
            Ok(entries) => {
                for entry in entries {
                    let entry = entry.map_err(io(dir))?;
                    let path = entry.path();
                    let Some(number) = segment_number(&path) else {
                        continue;
                    };
                    let bytes = entry.metadata().map_err(io(&path))?.len();
                    found.push((number, Segment { path, bytes }));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(dir)(e)),
        }
        found.sort_by_key(|(n, _)| *n);
        let next_number = found.last().map_or(1, |(n, _)| n + 1);
        let bytes = found.iter().map(|(_, s)| s.bytes).sum();
        Ok(Journal {
            dir: dir.to_owned(),
            max_bytes,
            sealed: found.into_iter().map(|(_, s)| s).collect(),
            active: None,
            bytes,
            next_number,
        })
    }

    /// Bytes on disk.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Nothing left to replay.
    pub(crate) fn is_empty(&self) -> bool {
        self.sealed.is_empty() && self.active.is_none()
    }

    /// Appends rows in order until one does not fit within `journal_max_bytes`; returns how
    /// many were appended (the rest are the caller's to count). Written to the OS on return.
    pub(crate) fn append(&mut self, rows: &[Record]) -> Result<usize, JournalError> {
        let mut appended = 0;
        let mut payload = Vec::with_capacity(128);
        for row in rows {
            payload.clear();
            encode(row, &mut payload);
            let record_bytes = HEADER_BYTES + payload.len() as u64;
            let new_segment = self
                .active
                .as_ref()
                .is_none_or(|a| a.bytes >= SEGMENT_BYTES);
            let needed = record_bytes + if new_segment { MAGIC.len() as u64 } else { 0 };
            if self.bytes + needed > self.max_bytes {
                break;
            }
            if new_segment {
                self.seal_active()?;
                self.start_segment()?;
            }
            let Some(active) = self.active.as_mut() else {
                break;
            };
            let crc = CRC32.checksum(&payload);
            let write = |f: &mut BufWriter<File>| {
                f.write_all(&(payload.len() as u32).to_le_bytes())?;
                f.write_all(&crc.to_le_bytes())?;
                f.write_all(&payload)
            };
            write(&mut active.file).map_err(io(&active.path))?;
            active.bytes += record_bytes;
            self.bytes += record_bytes;
            appended += 1;
        }
        if let Some(active) = self.active.as_mut() {
            active.file.flush().map_err(io(&active.path))?;
        }
        Ok(appended)
    }

    /// The oldest segment to replay, sealing the active one if nothing older is left.
    pub(crate) fn oldest(&mut self) -> Result<Option<Segment>, JournalError> {
        if self.sealed.is_empty() {
            self.seal_active()?;
        }
        Ok(self.sealed.front().cloned())
    }

    /// Deletes a replayed segment (every row in it is committed).
    pub(crate) fn remove(&mut self, segment: &Segment) -> Result<(), JournalError> {
        if self.sealed.front() == Some(segment) {
            self.sealed.pop_front();
            self.bytes = self.bytes.saturating_sub(segment.bytes);
        }
        match fs::remove_file(&segment.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&segment.path)(e)),
            _ => Ok(()),
        }
    }

    /// Takes an unreadable segment out of the replay, renamed `NNN.seg.bad` and left on disk
    /// for the operator (a later start does not try it again).
    pub(crate) fn set_aside(&mut self, segment: &Segment) {
        if self.sealed.front() == Some(segment) {
            self.sealed.pop_front();
            self.bytes = self.bytes.saturating_sub(segment.bytes);
        }
        let _ = fs::rename(&segment.path, segment.path.with_extension("seg.bad"));
    }

    fn start_segment(&mut self) -> Result<(), JournalError> {
        fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let number = self.next_number;
        self.next_number += 1;
        let path = self.dir.join(format!("{number:020}.seg"));
        let file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        let mut file = BufWriter::with_capacity(64 << 10, file);
        file.write_all(MAGIC).map_err(io(&path))?;
        self.bytes += MAGIC.len() as u64;
        self.active = Some(Active {
            path,
            file,
            bytes: MAGIC.len() as u64,
        });
        Ok(())
    }

    /// Closes the active segment (synced to disk) and queues it for replay.
    fn seal_active(&mut self) -> Result<(), JournalError> {
        let Some(active) = self.active.take() else {
            return Ok(());
        };
        let file = active
            .file
            .into_inner()
            .map_err(|e| io(&active.path)(e.into_error()))?;
        file.sync_data().map_err(io(&active.path))?;
        self.sealed.push_back(Segment {
            path: active.path,
            bytes: active.bytes,
        });
        Ok(())
    }
}

/// `NNN.seg` → NNN.
fn segment_number(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    name.strip_suffix(".seg")?.parse().ok()
}

/// Reads a sealed segment whole: every record up to the end or up to the first one that is
/// torn or fails its checksum.
pub(crate) fn read_segment(path: &Path) -> Result<SegmentRows, JournalError> {
    let data = fs::read(path).map_err(io(path))?;
    let Some(mut rest) = data.strip_prefix(MAGIC.as_slice()) else {
        // An empty file is a segment whose magic never reached the disk.
        if data.len() < MAGIC.len() && MAGIC.starts_with(&data) {
            return Ok(SegmentRows {
                skipped_bytes: data.len() as u64,
                ..SegmentRows::default()
            });
        }
        return Err(JournalError::NotAJournal(path.to_owned()));
    };
    let mut out = SegmentRows::default();
    while !rest.is_empty() {
        let Some((len, crc, payload)) = frame(rest) else {
            out.skipped_bytes = rest.len() as u64;
            break;
        };
        let row = (CRC32.checksum(payload) == crc)
            .then(|| decode(payload))
            .flatten();
        let Some(row) = row else {
            out.skipped_bytes = rest.len() as u64;
            out.checksum_mismatch = true;
            break;
        };
        out.rows.push(row);
        rest = &rest[HEADER_BYTES as usize + len..];
    }
    Ok(out)
}

/// One record's (len, crc, payload), or `None` when the bytes left cannot hold it.
fn frame(rest: &[u8]) -> Option<(usize, u32, &[u8])> {
    let len = u32::from_le_bytes(rest.get(0..4)?.try_into().ok()?);
    let crc = u32::from_le_bytes(rest.get(4..8)?.try_into().ok()?);
    if len > MAX_RECORD_BYTES {
        return None;
    }
    let len = len as usize;
    let payload = rest.get(8..8 + len)?;
    Some((len, crc, payload))
}

const TAG_TICK: u8 = 1;
const TAG_BAR: u8 = 2;
const TAG_INDICATORS: u8 = 3;

/// A row's payload: a tag, the symbol (u16 length + UTF-8), then fixed-width little-endian
/// fields in declaration order.
fn encode(row: &Record, out: &mut Vec<u8>) {
    let symbol = |out: &mut Vec<u8>, s: &str| {
        // Symbols are bounded far below 64 KiB (`model::Symbols`).
        let bytes = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
        out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
        out.extend_from_slice(bytes);
    };
    match row {
        Record::Tick(t) => {
            out.push(TAG_TICK);
            symbol(out, &t.symbol);
            for v in [t.ts, t.ingest_ts, t.epoch, t.seq] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            for v in [t.price, t.size] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&tick_side_code(t.side).to_le_bytes());
        }
        Record::Bar(b) => {
            out.push(TAG_BAR);
            symbol(out, &b.symbol);
            for v in [b.interval_ns, b.start, b.epoch] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            for v in [b.open, b.high, b.low, b.close, b.volume] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&b.trades.to_le_bytes());
        }
        Record::Indicators(i) => {
            out.push(TAG_INDICATORS);
            symbol(out, &i.symbol);
            for v in [i.start, i.epoch] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            // The rest of the payload: a few hundred bytes of JSON (bounded by the fields).
            out.extend_from_slice(i.fields.as_bytes());
        }
    }
}

/// A cursor over a payload.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_le_bytes)
    }
    fn f64(&mut self) -> Option<f64> {
        self.take().map(f64::from_le_bytes)
    }
    fn symbol(&mut self) -> Option<Arc<str>> {
        let len = u16::from_le_bytes(self.take()?) as usize;
        let bytes = self.0.get(..len)?;
        self.0 = &self.0[len..];
        std::str::from_utf8(bytes).ok().map(Arc::from)
    }
}

/// The row a payload holds; `None` when it is not one [`encode`] wrote.
fn decode(payload: &[u8]) -> Option<Record> {
    let (&tag, rest) = payload.split_first()?;
    let mut f = Fields(rest);
    let row = match tag {
        TAG_TICK => Record::Tick(TickRow {
            symbol: f.symbol()?,
            ts: f.i64()?,
            ingest_ts: f.i64()?,
            epoch: f.i64()?,
            seq: f.i64()?,
            price: f.f64()?,
            size: f.f64()?,
            side: tick_side_of(i16::from_le_bytes(f.take()?)),
        }),
        TAG_BAR => Record::Bar(BarRecord {
            symbol: f.symbol()?,
            interval_ns: f.i64()?,
            start: f.i64()?,
            epoch: f.i64()?,
            open: f.f64()?,
            high: f.f64()?,
            low: f.f64()?,
            close: f.f64()?,
            volume: f.f64()?,
            trades: f.i64()?,
        }),
        TAG_INDICATORS => {
            let symbol = f.symbol()?;
            let (start, epoch) = (f.i64()?, f.i64()?);
            let fields = std::str::from_utf8(std::mem::take(&mut f.0))
                .ok()?
                .to_owned();
            Record::Indicators(IndicatorRecord {
                symbol,
                start,
                epoch,
                fields,
            })
        }
        _ => return None,
    };
    f.0.is_empty().then_some(row)
}

#[cfg(test)]
mod tests;
