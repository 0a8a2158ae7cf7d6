//! What the CUDA engine keeps on the device between calls, and how it stages uploads: the
//! policy, free of CUDA, so that the CPU test suite checks it.
//!
//! GraNd's initialisations, the informativeness points and a selection sweep call the engine
//! again and again on one bundle. Uploading its features on every call would cost more than the
//! linear head's kernel, so the engine keeps the chunks it uploaded ([`ResidentCache`]), keyed by
//! the bundle's instance number and the rollouts a chunk holds ([`ChunkKey`]), and evicts the
//! least recently used chunk when a new one needs the room. A chunk that is not resident goes up
//! through two pinned staging buffers in turn ([`stage_pieces`]): the host fills one while the
//! device copies the other.

use std::ops::Range;

/// Which rollouts of which bundle a device-resident chunk holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkKey {
    /// [`crate::data::features::FeatureBundle::instance`]: never shared by two bundles of one
    /// process, and a bundle's rows never change, so a key never names stale rows.
    bundle: u64,
    /// The chunk's rollout ids in order, as maximal runs of consecutive ids (one run for a
    /// whole bundle, however large).
    runs: Vec<Range<usize>>,
}

impl ChunkKey {
    /// The key of the chunk holding rollouts `ids` (in that order) of bundle `instance`.
    pub fn new(instance: u64, ids: impl IntoIterator<Item = usize>) -> Self {
        ChunkKey {
            bundle: instance,
            runs: runs_of(ids),
        }
    }

    /// The chunk's rollout ids as maximal runs of consecutive ids, in order: the row ranges an
    /// upload reads.
    pub fn runs(&self) -> &[Range<usize>] {
        &self.runs
    }
}

/// Maximal runs of consecutive values, in order: `[3, 4, 5, 9, 10, 2]` → `[3..6, 9..11, 2..3]`.
pub fn runs_of(values: impl IntoIterator<Item = usize>) -> Vec<Range<usize>> {
    let mut runs: Vec<Range<usize>> = Vec::new();
    for v in values {
        match runs.last_mut() {
            Some(r) if r.end == v => r.end += 1,
            _ => runs.push(v..v + 1),
        }
    }
    runs
}

/// Counters of a [`ResidentCache`], for tests and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Chunks found resident.
    pub hits: u64,
    /// Chunks that had to be uploaded.
    pub misses: u64,
    /// Bytes uploaded for misses.
    pub uploaded_bytes: u64,
    /// Bytes dropped to make room.
    pub evicted_bytes: u64,
}

struct Entry<V> {
    key: ChunkKey,
    value: V,
    bytes: usize,
    last_used: u64,
}

/// Device-resident chunks by key, at most `limit` bytes in all, least recently used evicted
/// first. Values are handles (`Arc`s): a chunk evicted while a caller still holds its handle
/// stays allocated until that caller drops it.
pub struct ResidentCache<V> {
    limit: usize,
    entries: Vec<Entry<V>>,
    clock: u64,
    stats: CacheStats,
}

impl<V: Clone> ResidentCache<V> {
    /// An empty cache holding at most `limit` bytes (0 keeps nothing).
    pub fn new(limit: usize) -> Self {
        ResidentCache {
            limit,
            entries: Vec::new(),
            clock: 0,
            stats: CacheStats::default(),
        }
    }

    /// Changes the byte limit; entries over it go at the next [`ResidentCache::reserve`].
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// The resident chunk `key`, counted as a hit, or `None`.
    pub fn get(&mut self, key: &ChunkKey) -> Option<V> {
        self.clock += 1;
        let now = self.clock;
        let e = self.entries.iter_mut().find(|e| &e.key == key)?;
        e.last_used = now;
        self.stats.hits += 1;
        Some(e.value.clone())
    }

    /// Before uploading a chunk of `bytes`: evicts the least recently used entries until it fits
    /// beside the rest, and counts the miss. Returns whether the chunk may then be kept (a chunk
    /// larger than the limit is not, and everything else goes to give it the room).
    pub fn reserve(&mut self, bytes: usize) -> bool {
        self.stats.misses += 1;
        self.stats.uploaded_bytes += bytes as u64;
        let keep = bytes <= self.limit;
        let target = if keep { self.limit - bytes } else { 0 };
        while self.held_bytes() > target {
            let oldest = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(i, _)| i)
                .expect("held bytes > 0 means an entry");
            let gone = self.entries.swap_remove(oldest);
            self.stats.evicted_bytes += gone.bytes as u64;
        }
        keep
    }

    /// Keeps `value` under `key` (after a [`ResidentCache::reserve`] that said yes), replacing an
    /// entry with the same key.
    pub fn insert(&mut self, key: ChunkKey, value: V, bytes: usize) {
        self.clock += 1;
        self.entries.retain(|e| e.key != key);
        self.entries.push(Entry {
            key,
            value,
            bytes,
            last_used: self.clock,
        });
    }

    /// Bytes held now.
    pub fn held_bytes(&self) -> usize {
        self.entries.iter().map(|e| e.bytes).sum()
    }

    /// Drops every entry (the counters stay).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// The counters so far.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }
}

/// One staging buffer's worth of an upload: element range `dst` of the device array, filled
/// from the source element ranges `parts` in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagePiece {
    /// Where the piece lands in the device array.
    pub dst: Range<usize>,
    /// Source element ranges, concatenated in order to make the piece.
    pub parts: Vec<Range<usize>>,
}

/// Splits the upload of source element ranges `runs` (concatenated in order on the device) into
/// pieces of at most `capacity` elements: a run may span pieces, a piece may hold several runs.
pub fn stage_pieces(runs: &[Range<usize>], capacity: usize) -> Vec<StagePiece> {
    assert!(capacity > 0, "a staging buffer holds at least one element");
    let mut pieces = Vec::new();
    let mut current = StagePiece {
        dst: 0..0,
        parts: Vec::new(),
    };
    for run in runs {
        let mut from = run.start;
        while from < run.end {
            let room = capacity - current.dst.len();
            let to = run.end.min(from + room);
            current.parts.push(from..to);
            current.dst.end += to - from;
            from = to;
            if current.dst.len() == capacity {
                let next = current.dst.end;
                pieces.push(std::mem::replace(
                    &mut current,
                    StagePiece {
                        dst: next..next,
                        parts: Vec::new(),
                    },
                ));
            }
        }
    }
    if !current.dst.is_empty() {
        pieces.push(current);
    }
    pieces
}

/// Elements per copy job when a piece is filled: small enough that one long run still splits
/// over every thread, large enough that a job outweighs its scheduling.
const FILL_SLAB: usize = 1 << 18;

/// Fills `dst` with the elements `parts` of `src`, concatenated in order, on rayon's threads:
/// staging memory is filled at the speed of several cores rather than one.
pub fn fill_piece<T: Copy + Send + Sync>(dst: &mut [T], src: &[T], parts: &[Range<usize>]) {
    use rayon::prelude::*;
    let total: usize = parts.iter().map(|r| r.len()).sum();
    assert_eq!(dst.len(), total, "the piece's length is its parts' total");
    let mut jobs: Vec<(&mut [T], &[T])> = Vec::new();
    let mut rest = dst;
    for r in parts {
        let (head, tail) = rest.split_at_mut(r.len());
        rest = tail;
        jobs.extend(
            head.chunks_mut(FILL_SLAB)
                .zip(src[r.clone()].chunks(FILL_SLAB)),
        );
    }
    jobs.into_par_iter().for_each(|(d, s)| d.copy_from_slice(s));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_group_consecutive_ids_in_order() {
        assert_eq!(
            runs_of([3, 4, 5, 9, 10, 2]),
            vec![3..6, 9..11, 2..3],
            "a step back starts a new run"
        );
        assert_eq!(runs_of(0..565_096), vec![0..565_096]);
        assert!(runs_of([]).is_empty());
        assert_eq!(
            runs_of([7, 7]),
            vec![7..8, 7..8],
            "a repeat is not consecutive"
        );
    }

    #[test]
    fn keys_tell_bundles_and_rollout_sets_apart() {
        let a = ChunkKey::new(1, 0..10);
        assert_eq!(a, ChunkKey::new(1, (0..10).collect::<Vec<_>>()));
        assert_eq!(a.runs().len(), 1);
        assert_eq!(a.runs()[0], 0..10);
        // The upload reads the key's runs as its row ranges, in the chunk's order.
        assert_eq!(
            ChunkKey::new(1, [3, 4, 5, 9, 10, 2]).runs(),
            &[3..6, 9..11, 2..3]
        );
        assert_ne!(a, ChunkKey::new(2, 0..10), "another bundle");
        assert_ne!(a, ChunkKey::new(1, 0..11), "another rollout set");
        assert_ne!(
            ChunkKey::new(1, [0, 2, 1]),
            ChunkKey::new(1, [0, 1, 2]),
            "another order lays the rows out differently"
        );
    }

    #[test]
    fn the_cache_hits_evicts_least_recently_used_and_respects_its_limit() {
        let mut c: ResidentCache<&str> = ResidentCache::new(100);
        let (ka, kb, kc) = (
            ChunkKey::new(1, 0..5),
            ChunkKey::new(1, 5..9),
            ChunkKey::new(2, 0..5),
        );
        assert_eq!(c.get(&ka), None);
        assert!(c.reserve(60));
        c.insert(ka.clone(), "a", 60);
        assert!(c.reserve(30));
        c.insert(kb.clone(), "b", 30);
        assert_eq!(c.held_bytes(), 90);
        // Touch a, so b is now the least recently used.
        assert_eq!(c.get(&ka), Some("a"));
        assert!(c.reserve(40), "fits once b goes");
        c.insert(kc.clone(), "c", 40);
        assert_eq!(c.get(&kb), None, "b was evicted");
        assert_eq!(c.get(&ka), Some("a"));
        assert_eq!(c.held_bytes(), 100);
        assert_eq!(
            c.stats(),
            CacheStats {
                hits: 2,
                misses: 3,
                uploaded_bytes: 130,
                evicted_bytes: 30
            }
        );
        // Larger than the limit: not kept, and everything goes to make room for it.
        assert!(!c.reserve(101));
        assert_eq!(c.held_bytes(), 0);
        // A lowered limit applies at the next reservation.
        assert!(c.reserve(10));
        c.insert(ka.clone(), "a", 10);
        c.set_limit(15);
        assert!(c.reserve(10));
        assert_eq!(c.held_bytes(), 0, "10 + 10 > 15: the old entry goes");
        // A zero limit keeps nothing.
        let mut none: ResidentCache<u8> = ResidentCache::new(0);
        assert!(!none.reserve(1));
        assert!(none.reserve(0));
    }

    #[test]
    fn pieces_cover_the_runs_in_order_within_capacity() {
        let runs = vec![10..25, 3..4, 40..40, 50..58, 0..2];
        let want: Vec<usize> = runs.iter().flat_map(|r| r.clone()).collect();
        for capacity in [1, 2, 7, 8, 26, 1000] {
            let pieces = stage_pieces(&runs, capacity);
            let mut got = Vec::new();
            let mut next = 0;
            for p in &pieces {
                assert_eq!(p.dst.start, next, "capacity {capacity}: contiguous");
                assert!(!p.dst.is_empty() && p.dst.len() <= capacity);
                assert_eq!(p.parts.iter().map(|r| r.len()).sum::<usize>(), p.dst.len());
                assert!(p.parts.iter().all(|r| !r.is_empty()));
                got.extend(p.parts.iter().flat_map(|r| r.clone()));
                next = p.dst.end;
            }
            assert_eq!(got, want, "capacity {capacity}");
            assert_eq!(pieces.len(), want.len().div_ceil(capacity));
        }
        // Filling every piece reproduces the gathered elements.
        let src: Vec<u32> = (0..60).map(|v| v * 3 + 1).collect();
        let pieces = stage_pieces(&runs, 7);
        let mut device = vec![0u32; want.len()];
        for p in &pieces {
            let mut buf = vec![u32::MAX; p.dst.len()];
            fill_piece(&mut buf, &src, &p.parts);
            device[p.dst.clone()].copy_from_slice(&buf);
        }
        assert_eq!(device, want.iter().map(|&i| src[i]).collect::<Vec<_>>());
        assert!(stage_pieces(&[], 4).is_empty());
        assert!(stage_pieces(std::slice::from_ref(&(5..5)), 4).is_empty());
    }
}
