//! The data pattern of the ping-pong test.
//!
//! Element `i` (a `u64`) of buffer `b` written with sequence number `seq`
//! holds [`value`]`(seq, b, i) = (seq << 32) | (i as u32 ^ (b as u32).wrapping_mul(0x9E37_79B9))`:
//! the high half is the sequence number, so every round differs; the low
//! half is the element index (mod 2^32) scrambled by a per-buffer constant
//! (the golden-ratio multiplier), so every offset and every buffer differ.
//!
//! [`fill`] and [`verify`] work on the atomic view of a mapping
//! ([`CpuAccess::words`](crate::CpuAccess::words)) with relaxed loads and
//! stores: plain 64-bit loads and stores on aarch64 and x86-64.

use std::sync::atomic::{AtomicU64, Ordering};

/// Expected value of element `index` of buffer `buffer` for `seq`.
pub fn value(seq: u64, buffer: u32, index: usize) -> u64 {
    (seq << 32) | u64::from((index as u32) ^ buffer.wrapping_mul(0x9E37_79B9))
}

/// Fills `data` (buffer number `buffer`) with the pattern of `seq`.
pub fn fill(data: &[AtomicU64], seq: u64, buffer: u32) {
    for (i, x) in data.iter().enumerate() {
        x.store(value(seq, buffer, i), Ordering::Relaxed);
    }
}

/// The first element that differs from the pattern, and how many differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "buffer {buffer}: {count} mismatching u64s, first at byte offset {offset}: expected {expected:#018x}, found {found:#018x}"
)]
pub struct Mismatch {
    /// Buffer number.
    pub buffer: u32,
    /// Byte offset of the first mismatching element.
    pub offset: usize,
    /// Its expected value.
    pub expected: u64,
    /// Its actual value.
    pub found: u64,
    /// Number of mismatching elements in the buffer.
    pub count: usize,
}

/// Checks that `data` (buffer number `buffer`) holds the pattern of `seq`.
pub fn verify(data: &[AtomicU64], seq: u64, buffer: u32) -> Result<(), Mismatch> {
    let mut first = None;
    let mut count = 0;
    for (i, x) in data.iter().enumerate() {
        let found = x.load(Ordering::Relaxed);
        let expected = value(seq, buffer, i);
        if found != expected {
            count += 1;
            first.get_or_insert((i, expected, found));
        }
    }
    match first {
        None => Ok(()),
        Some((i, expected, found)) => Err(Mismatch {
            buffer,
            offset: i * 8,
            expected,
            found,
            count,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_differ_by_seq_buffer_and_offset() {
        assert_eq!(value(0, 0, 0), 0);
        assert_eq!(value(3, 0, 5), (3 << 32) | 5);
        assert_eq!(value(1, 1, 0), (1 << 32) | 0x9E37_79B9);
        let v = value(2, 1, 7);
        assert_ne!(v, value(3, 1, 7));
        assert_ne!(v, value(2, 2, 7));
        assert_ne!(v, value(2, 1, 8));
    }

    fn zeroed(words: usize) -> Vec<AtomicU64> {
        (0..words).map(|_| AtomicU64::new(0)).collect()
    }

    #[test]
    fn verify_finds_first_corruption() {
        let data = zeroed(1024);
        fill(&data, 6, 3);
        assert_eq!(verify(&data, 6, 3), Ok(()));
        data[100].fetch_xor(1 << 40, Ordering::Relaxed);
        data[900].store(0, Ordering::Relaxed);
        let m = verify(&data, 6, 3).unwrap_err();
        assert_eq!(
            m,
            Mismatch {
                buffer: 3,
                offset: 800,
                expected: value(6, 3, 100),
                found: value(6, 3, 100) ^ (1 << 40),
                count: 2
            }
        );
        assert!(
            m.to_string()
                .starts_with("buffer 3: 2 mismatching u64s, first at byte offset 800")
        );
        // Another round's or buffer's data is wrong everywhere.
        let fresh = zeroed(16);
        fill(&fresh, 6, 3);
        assert_eq!(verify(&fresh, 7, 3).unwrap_err().count, 16);
        assert_eq!(verify(&fresh, 6, 4).unwrap_err().count, 16);
    }
}
