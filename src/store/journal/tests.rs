use super::*;
use crate::model::Side;

fn dir() -> PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!(
        "tickcast-journal-unit-{}-{n}-{}",
        std::process::id(),
        crate::model::now_ns() % 1_000_000_007
    ));
    let _ = fs::remove_dir_all(&d);
    d
}

fn tick(seq: i64, side: Option<Side>) -> Record {
    Record::Tick(TickRow {
        symbol: "BTC-USD".into(),
        ts: 1_764_070_000_000_000_000 + seq,
        ingest_ts: 1_764_070_000_000_000_123 + seq,
        epoch: 42,
        seq,
        price: 100.25 + seq as f64,
        size: 0.5,
        side,
    })
}

fn bar(start: i64) -> Record {
    Record::Bar(BarRecord {
        symbol: "ÉTH".into(),
        interval_ns: 60_000_000_000,
        start,
        epoch: 42,
        open: 1.0,
        high: 2.5,
        low: 0.5,
        close: 2.0,
        volume: 7.25,
        trades: 3,
    })
}

fn rows() -> Vec<Record> {
    vec![
        tick(1, Some(Side::Buy)),
        tick(2, Some(Side::Sell)),
        bar(60_000_000_000),
        tick(3, None),
    ]
}

/// Journals `rows` and returns the sealed segment they are in.
fn journaled(dir: &Path, rows: &[Record]) -> Segment {
    let mut j = Journal::open(dir, 1 << 20).unwrap();
    assert_eq!(j.append(rows).unwrap(), rows.len());
    j.oldest().unwrap().unwrap()
}

#[test]
fn rows_round_trip_through_a_segment() {
    let d = dir();
    let mut j = Journal::open(&d, 1 << 20).unwrap();
    assert!(j.is_empty());
    assert!(!d.exists(), "created on the first append only");
    let rows = rows();
    assert_eq!(j.append(&rows[..2]).unwrap(), 2);
    assert_eq!(j.append(&rows[2..]).unwrap(), 2);
    assert!(!j.is_empty());
    let seg = j.oldest().unwrap().unwrap();
    assert_eq!(seg.bytes, j.bytes());
    assert_eq!(fs::metadata(&seg.path).unwrap().len(), seg.bytes);
    let read = read_segment(&seg.path).unwrap();
    assert_eq!(read.rows, rows);
    assert_eq!(read.skipped_bytes, 0);
    // Appends after the seal go to a new segment, replayed after the first.
    assert_eq!(j.append(&[tick(4, None)]).unwrap(), 1);
    j.remove(&seg).unwrap();
    assert!(!seg.path.exists());
    let next = j.oldest().unwrap().unwrap();
    assert_ne!(next, seg);
    assert_eq!(read_segment(&next.path).unwrap().rows, vec![tick(4, None)]);
    j.remove(&next).unwrap();
    assert!(j.is_empty());
    assert_eq!(j.bytes(), 0);
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn a_torn_tail_is_skipped_not_misread() {
    let d = dir();
    let rows = rows();
    let seg = journaled(&d, &rows);
    let full = fs::read(&seg.path).unwrap();
    // Cut anywhere inside the last record: the first three survive, the rest is reported.
    let last = {
        let mut p = Vec::new();
        encode(&rows[3], &mut p);
        HEADER_BYTES as usize + p.len()
    };
    for cut in [1, 5, 8, 9, last - 1] {
        fs::write(&seg.path, &full[..full.len() - cut]).unwrap();
        let read = read_segment(&seg.path).unwrap();
        assert_eq!(read.rows, rows[..3], "cut {cut}");
        assert_eq!(read.skipped_bytes as usize, last - cut, "cut {cut}");
        assert!(!read.checksum_mismatch);
    }
    // A segment whose magic never fully reached the disk holds nothing.
    fs::write(&seg.path, &MAGIC[..2]).unwrap();
    assert!(read_segment(&seg.path).unwrap().rows.is_empty());
    fs::write(&seg.path, b"nope, not a journal").unwrap();
    assert!(matches!(
        read_segment(&seg.path),
        Err(JournalError::NotAJournal(_))
    ));
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn a_checksum_mismatch_ends_the_segment_where_it_is() {
    let d = dir();
    let rows = rows();
    let seg = journaled(&d, &rows);
    let mut data = fs::read(&seg.path).unwrap();
    // Flip one bit in the price of the second tick (first record: magic, header, payload).
    let mut first = Vec::new();
    encode(&rows[0], &mut first);
    let second_payload = MAGIC.len() + 2 * HEADER_BYTES as usize + first.len();
    data[second_payload + 20] ^= 0x01;
    fs::write(&seg.path, &data).unwrap();
    let read = read_segment(&seg.path).unwrap();
    assert_eq!(read.rows, rows[..1]);
    assert!(read.checksum_mismatch);
    assert_eq!(
        read.skipped_bytes as usize,
        data.len() - MAGIC.len() - HEADER_BYTES as usize - first.len()
    );
    // A length past any record's is corruption too, not an allocation.
    let mut data = fs::read(&seg.path).unwrap();
    data[MAGIC.len()..MAGIC.len() + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    fs::write(&seg.path, &data).unwrap();
    assert!(read_segment(&seg.path).unwrap().rows.is_empty());
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn appends_stop_at_the_size_bound() {
    let d = dir();
    let mut one = Vec::new();
    encode(&tick(1, None), &mut one);
    let per_row = HEADER_BYTES + one.len() as u64;
    // Room for the magic and three rows, not four.
    let max = MAGIC.len() as u64 + 3 * per_row + per_row / 2;
    let mut j = Journal::open(&d, max).unwrap();
    let batch: Vec<Record> = (1..=5).map(|s| tick(s, None)).collect();
    assert_eq!(j.append(&batch).unwrap(), 3);
    assert_eq!(j.append(&batch[3..]).unwrap(), 0, "still full");
    assert!(j.bytes() <= max);
    // Replaying frees the room.
    let seg = j.oldest().unwrap().unwrap();
    assert_eq!(read_segment(&seg.path).unwrap().rows, batch[..3]);
    j.remove(&seg).unwrap();
    assert_eq!(j.append(&batch[3..]).unwrap(), 2);
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn a_reopened_journal_replays_what_an_earlier_run_left_in_order() {
    let d = dir();
    {
        let mut j = Journal::open(&d, 1 << 20).unwrap();
        j.append(&[tick(1, None)]).unwrap();
        j.oldest().unwrap();
        // The run ends with the second segment still active (not sealed).
        j.append(&[tick(2, None)]).unwrap();
    }
    let mut j = Journal::open(&d, 1 << 20).unwrap();
    assert!(!j.is_empty());
    let mut replayed = Vec::new();
    while let Some(seg) = j.oldest().unwrap() {
        replayed.extend(read_segment(&seg.path).unwrap().rows);
        j.remove(&seg).unwrap();
    }
    assert_eq!(replayed, vec![tick(1, None), tick(2, None)]);
    // New segments are numbered after the old ones.
    j.append(&[tick(3, None)]).unwrap();
    let seg = j.oldest().unwrap().unwrap();
    assert_eq!(segment_number(&seg.path), Some(3));
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn indicator_rows_round_trip_between_other_rows() {
    let d = dir();
    let row = Record::Indicators(IndicatorRecord {
        symbol: "ÉTH".into(),
        start: 1_764_070_001_000_000_000,
        epoch: 42,
        fields: r#"{"sma_20":101.5,"ema_20":null,"vwap":100.25}"#.into(),
    });
    let empty = Record::Indicators(IndicatorRecord {
        symbol: "X".into(),
        start: -1,
        epoch: 0,
        fields: String::new(),
    });
    let rows = vec![tick(1, None), row, bar(60_000_000_000), empty];
    let seg = journaled(&d, &rows);
    let read = read_segment(&seg.path).unwrap();
    assert_eq!(read.rows, rows);
    assert_eq!(read.skipped_bytes, 0);
    let _ = fs::remove_dir_all(&d);
}
