//! Bucketing: flagd's `fractional` scheme (v2), the only place that hashes.
//!
//! A bucketing value is hashed with MurmurHash3 x86_32 (seed 0) over the UTF-8 bytes of
//! `flag_key` followed directly by the value, then mapped onto `[0, total_weight)` with
//! `(hash * total_weight) >> 32`. Keeping this in one module means a later scheme can be
//! added as an option without touching rules or evaluation.

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

/// MurmurHash3 x86_32 fed in pieces, so `flag_key + value` hashes without building the
/// concatenated string.
#[derive(Debug, Clone, Copy, Default)]
pub struct Murmur3 {
    h: u32,
    tail: u32,
    tail_len: u8,
    len: u32,
}

impl Murmur3 {
    /// A hasher with seed 0, as flagd uses.
    pub const fn new() -> Self {
        Self { h: 0, tail: 0, tail_len: 0, len: 0 }
    }

    /// A hasher fed `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        let mut hasher = Self::new();
        hasher.write(bytes);
        hasher
    }

    /// Feeds more bytes; calling it with `a` then `b` equals calling it once with `a ++ b`.
    pub fn write(&mut self, bytes: &[u8]) {
        self.len = self.len.wrapping_add(bytes.len() as u32);
        let mut rest = bytes;
        while self.tail_len > 0 {
            let Some((&b, more)) = rest.split_first() else { return };
            self.tail |= u32::from(b) << (8 * u32::from(self.tail_len));
            self.tail_len += 1;
            rest = more;
            if self.tail_len == 4 {
                self.mix_block(self.tail);
                self.tail = 0;
                self.tail_len = 0;
            }
        }
        let mut chunks = rest.chunks_exact(4);
        for chunk in &mut chunks {
            self.mix_block(u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]));
        }
        for (i, &b) in chunks.remainder().iter().enumerate() {
            self.tail |= u32::from(b) << (8 * i);
        }
        self.tail_len = chunks.remainder().len() as u8;
    }

    fn mix_block(&mut self, block: u32) {
        self.h ^= scramble(block);
        self.h = self.h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }

    /// The 32-bit hash of everything written so far.
    pub fn finish(&self) -> u32 {
        let mut h = self.h;
        if self.tail_len > 0 {
            h ^= scramble(self.tail);
        }
        h ^= self.len;
        h ^= h >> 16;
        h = h.wrapping_mul(0x85eb_ca6b);
        h ^= h >> 13;
        h = h.wrapping_mul(0xc2b2_ae35);
        h ^ (h >> 16)
    }
}

fn scramble(k: u32) -> u32 {
    k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2)
}

/// MurmurHash3 x86_32 (seed 0) of the concatenation of `parts`.
pub fn murmur3(parts: &[&[u8]]) -> u32 {
    let mut hasher = Murmur3::new();
    for part in parts {
        hasher.write(part);
    }
    hasher.finish()
}

/// Maps a hash onto `[0, total_weight)`, flagd's v2 bucket.
pub fn bucket_of(hash: u32, total_weight: u64) -> u64 {
    (u64::from(hash) * total_weight) >> 32
}

/// The bucket of `flag_key + value` within `total_weight`.
pub fn bucket(flag_key: &str, value: &str, total_weight: u64) -> u64 {
    bucket_after(Murmur3::of(flag_key.as_bytes()), value, total_weight)
}

/// The bucket of `value` after `prefix`, a hasher already fed the flag key: a compiled
/// flag keeps that state, so a rollout hashes only the bucketing value.
pub fn bucket_after(prefix: Murmur3, value: &str, total_weight: u64) -> u64 {
    let mut hasher = prefix;
    hasher.write(value.as_bytes());
    bucket_of(hasher.finish(), total_weight)
}

/// Index of the first weight whose cumulative end lies above `bucket`; `None` when the
/// bucket lies past the sum (only possible when all weights are zero).
pub fn pick<I>(bucket: u64, weights: I) -> Option<usize>
where
    I: IntoIterator<Item = u64>,
{
    let mut end = 0u64;
    for (i, w) in weights.into_iter().enumerate() {
        end += w;
        if bucket < end {
            return Some(i);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_reference_vectors() {
        // Published MurmurHash3 x86_32 vectors with seed 0.
        assert_eq!(murmur3(&[b""]), 0);
        assert_eq!(murmur3(&[b"hello"]), 0x248b_fa47);
        assert_eq!(murmur3(&[b"The quick brown fox jumps over the lazy dog"]), 0x2e4f_f723);
    }

    #[test]
    fn pieces_hash_like_the_whole() {
        let whole = b"fractional-flagjack and more bytes";
        for split in 0..whole.len() {
            for split2 in split..whole.len() {
                let (a, rest) = whole.split_at(split);
                let (b, c) = rest.split_at(split2 - split);
                assert_eq!(murmur3(&[a, b, c]), murmur3(&[whole]), "split {split}/{split2}");
            }
        }
    }

    #[test]
    fn flagd_fractional_vectors() {
        let names = ["clubs", "diamonds", "hearts", "spades"];
        let pick_for = |value: &str| {
            let b = bucket("", value, 100);
            names[pick(b, [25, 25, 25, 25]).unwrap_or(0)]
        };
        assert_eq!(pick_for("fractional-flagjack"), "hearts");
        assert_eq!(pick_for("fractional-flagqueen"), "spades");
    }
}
