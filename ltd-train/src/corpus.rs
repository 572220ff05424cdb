//! The training text: the embedded public-domain corpus or a user's UTF-8 file, cut into
//! windows, split into train and validation, and served in a seeded order that depends only on
//! the seed and the step (so a resumed run sees the same batches).

use std::path::Path;

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use crate::error::{Result, TrainError};

/// Ambrose Bierce's *The Devil's Dictionary* (1911, public domain), from Debian's `dict-devil`
/// package; `ltd-train/data/README.md` says how it was extracted.
///
/// ```
/// assert!(ltd_train::EMBEDDED_CORPUS.contains("ABASEMENT"));
/// ```
pub const EMBEDDED_CORPUS: &str = include_str!("../data/devils-dictionary.txt");

/// A UTF-8 text to train on, as bytes (the model is byte-level: vocabulary 256).
///
/// ```
/// let corpus = ltd_train::Corpus::embedded();
/// assert_eq!(corpus.source_name(), "embedded corpus");
/// assert!(corpus.bytes().len() > 300_000);
/// ```
#[derive(Debug, Clone)]
pub struct Corpus {
    source_name: String,
    bytes: Vec<u8>,
}

impl Corpus {
    /// The embedded corpus ([`EMBEDDED_CORPUS`]).
    ///
    /// ```
    /// assert!(!ltd_train::Corpus::embedded().bytes().is_empty());
    /// ```
    pub fn embedded() -> Self {
        Corpus {
            source_name: "embedded corpus".to_owned(),
            bytes: EMBEDDED_CORPUS.as_bytes().to_vec(),
        }
    }

    /// A corpus from text in memory; `source_name` prefixes error messages.
    ///
    /// # Errors
    /// [`TrainError::Data`] when `text` is empty.
    ///
    /// ```
    /// assert!(ltd_train::Corpus::from_text("t", "").is_err());
    /// assert_eq!(ltd_train::Corpus::from_text("t", "abc")?.bytes(), b"abc");
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn from_text(source_name: &str, text: &str) -> Result<Self> {
        if text.is_empty() {
            return Err(TrainError::Data {
                source_name: source_name.to_owned(),
                message: "the text is empty; expected UTF-8 text to train on".to_owned(),
            });
        }
        Ok(Corpus {
            source_name: source_name.to_owned(),
            bytes: text.as_bytes().to_vec(),
        })
    }

    /// Reads a UTF-8 text file.
    ///
    /// # Errors
    /// [`TrainError::Data`] when `path` is a directory, is empty or is not valid UTF-8 (the
    /// message gives the offset of the first bad byte); [`TrainError::Io`] when it cannot be read.
    ///
    /// ```
    /// let err = ltd_train::Corpus::from_file(std::path::Path::new(".")).unwrap_err();
    /// assert!(err.to_string().contains("is a directory"));
    /// ```
    pub fn from_file(path: &Path) -> Result<Self> {
        let source_name = path.display().to_string();
        let data_error = |message: String| TrainError::Data {
            source_name: source_name.clone(),
            message,
        };
        if path.is_dir() {
            return Err(data_error(
                "is a directory; expected a UTF-8 text file".to_owned(),
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
        if bytes.is_empty() {
            return Err(data_error(
                "the file is empty; expected UTF-8 text to train on".to_owned(),
            ));
        }
        if let Err(e) = std::str::from_utf8(&bytes) {
            return Err(data_error(format!(
                "not valid UTF-8 (first invalid byte at offset {}); expected UTF-8 text",
                e.valid_up_to()
            )));
        }
        Ok(Corpus { source_name, bytes })
    }

    /// Where the text came from: the file name or `embedded corpus`.
    ///
    /// ```
    /// assert_eq!(ltd_train::Corpus::from_text("notes", "x")?.source_name(), "notes");
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// The text's bytes (the token ids).
    ///
    /// ```
    /// assert_eq!(ltd_train::Corpus::from_text("t", "hi")?.bytes(), b"hi");
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// One batch of token ids, `[batch, seq_len]` row-major: `targets` is `inputs` shifted by one.
///
/// ```
/// let data = ltd_train::Dataset::new(&ltd_train::Corpus::embedded(), 16, 0.1, 7)?;
/// let batch = data.train_batch(0, 2);
/// assert_eq!(batch.inputs.len(), 2 * 16);
/// assert_eq!(batch.inputs[1..16], batch.targets[0..15]);
/// # Ok::<(), ltd_train::TrainError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBatch {
    /// Input ids.
    pub inputs: Vec<u32>,
    /// The next token of each input.
    pub targets: Vec<u32>,
    /// Rows.
    pub batch: usize,
    /// Columns.
    pub seq_len: usize,
}

/// The corpus cut into non-overlapping windows of `seq_len + 1` bytes, split into train and
/// validation windows by a seeded shuffle, and served in a seeded order.
///
/// - Split: the windows are shuffled with the seed; the first `ceil(val_fraction · n)` (at
///   least 1) are validation windows, the rest training windows.
/// - Order: sample `i` of the run (`i = step · batch + row`) is training window
///   `perm_e[i mod n_train]` with epoch `e = i / n_train` and `perm_e` a shuffle seeded by the
///   seed and `e`. So a batch depends only on (seed, step, batch), never on earlier calls.
///
/// ```
/// use ltd_train::{Corpus, Dataset};
/// let data = Dataset::new(&Corpus::embedded(), 64, 0.1, 1)?;
/// assert_eq!(data.train_batch(5, 4), data.train_batch(5, 4));
/// assert_ne!(data.train_batch(5, 4), data.train_batch(6, 4));
/// # Ok::<(), ltd_train::TrainError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Dataset {
    bytes: Vec<u8>,
    seq_len: usize,
    seed: u64,
    train: Vec<usize>,
    val: Vec<usize>,
}

/// Seeds a ChaCha8 generator from the run seed, a purpose tag and a counter, so every use of
/// randomness has its own stream.
pub(crate) fn seeded_rng(seed: u64, tag: u64, counter: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&tag.to_le_bytes());
    key[16..24].copy_from_slice(&counter.to_le_bytes());
    ChaCha8Rng::from_seed(key)
}

/// A uniform integer in `[0, n)` (`n > 0`), by 128-bit multiply (bias below 2^-40 for our sizes).
pub(crate) fn below(rng: &mut ChaCha8Rng, n: usize) -> usize {
    ((u128::from(rng.next_u64()) * n as u128) >> 64) as usize
}

fn shuffle(items: &mut [usize], rng: &mut ChaCha8Rng) {
    for i in (1..items.len()).rev() {
        let j = below(rng, i + 1);
        items.swap(i, j);
    }
}

const TAG_SPLIT: u64 = 0x0053_504c_4954; // "SPLIT"
const TAG_ORDER: u64 = 0x004f_5244_4552; // "ORDER"

impl Dataset {
    /// Cuts `corpus` into windows of `seq_len + 1` bytes and splits them (see the type).
    ///
    /// # Errors
    /// [`TrainError::Config`] for `seq_len == 0` or a `val_fraction` outside `(0, 1)`;
    /// [`TrainError::Data`] when the text gives fewer than two windows (one to train on, one to
    /// validate).
    ///
    /// ```
    /// use ltd_train::{Corpus, Dataset};
    /// let short = Corpus::from_text("t", "only a few bytes")?;
    /// let err = Dataset::new(&short, 64, 0.1, 0).unwrap_err();
    /// assert!(err.to_string().contains("need at least 2"));
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn new(corpus: &Corpus, seq_len: usize, val_fraction: f64, seed: u64) -> Result<Self> {
        let config_error = |message: String| TrainError::Config {
            source_name: "arguments".to_owned(),
            message,
        };
        if seq_len == 0 {
            return Err(config_error(
                "--seq-len: 0; expected a positive length".to_owned(),
            ));
        }
        if !(val_fraction > 0.0 && val_fraction < 1.0) {
            return Err(config_error(format!(
                "--val-fraction: {val_fraction}; expected a fraction strictly between 0 and 1"
            )));
        }
        let windows = corpus.bytes().len() / (seq_len + 1);
        if windows < 2 {
            return Err(TrainError::Data {
                source_name: corpus.source_name().to_owned(),
                message: format!(
                    "{} bytes give {windows} window(s) of seq_len + 1 = {} bytes; need at least 2 \
                     (one to train on, one to validate): use a longer text or a smaller --seq-len",
                    corpus.bytes().len(),
                    seq_len + 1
                ),
            });
        }
        let mut order: Vec<usize> = (0..windows).collect();
        shuffle(&mut order, &mut seeded_rng(seed, TAG_SPLIT, 0));
        let n_val = ((windows as f64 * val_fraction).ceil() as usize).clamp(1, windows - 1);
        let val = order[..n_val].to_vec();
        let mut train = order[n_val..].to_vec();
        train.sort_unstable();
        Ok(Dataset {
            bytes: corpus.bytes()[..windows * (seq_len + 1)].to_vec(),
            seq_len,
            seed,
            train,
            val,
        })
    }

    /// Sequence length of every window.
    ///
    /// ```
    /// let data = ltd_train::Dataset::new(&ltd_train::Corpus::embedded(), 32, 0.1, 0)?;
    /// assert_eq!(data.seq_len(), 32);
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// Number of training windows.
    ///
    /// ```
    /// let data = ltd_train::Dataset::new(&ltd_train::Corpus::embedded(), 32, 0.5, 0)?;
    /// assert!(data.train_windows() > 1000);
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn train_windows(&self) -> usize {
        self.train.len()
    }

    /// Number of validation windows.
    ///
    /// ```
    /// let data = ltd_train::Dataset::new(&ltd_train::Corpus::embedded(), 32, 0.1, 0)?;
    /// assert!(data.val_windows() >= 1);
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn val_windows(&self) -> usize {
        self.val.len()
    }

    fn fill(&self, windows: impl Iterator<Item = usize>, batch: usize) -> TokenBatch {
        let s = self.seq_len;
        let mut inputs = Vec::with_capacity(batch * s);
        let mut targets = Vec::with_capacity(batch * s);
        for w in windows {
            let bytes = &self.bytes[w * (s + 1)..(w + 1) * (s + 1)];
            inputs.extend(bytes[..s].iter().map(|&b| u32::from(b)));
            targets.extend(bytes[1..].iter().map(|&b| u32::from(b)));
        }
        TokenBatch {
            inputs,
            targets,
            batch,
            seq_len: s,
        }
    }

    /// The training batch of `step` (see the type for the order).
    ///
    /// ```
    /// let data = ltd_train::Dataset::new(&ltd_train::Corpus::embedded(), 8, 0.1, 3)?;
    /// assert_eq!(data.train_batch(0, 3).batch, 3);
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn train_batch(&self, step: u64, batch: usize) -> TokenBatch {
        self.train_rows(step, batch, 0, batch)
    }

    /// This rank's shard of the training batch of `step`: rows `rank * b .. (rank + 1) * b` of
    /// [`train_batch(step, global_batch)`](Self::train_batch), `b = global_batch / world size`.
    /// The shards of all ranks, in rank order, are the one-process batch.
    ///
    /// # Errors
    /// [`TrainError::Parallel`] when the world size does not divide `global_batch`.
    ///
    /// ```
    /// use ltd_train::{Corpus, DataParallel, Dataset};
    /// let data = Dataset::new(&Corpus::embedded(), 8, 0.1, 3)?;
    /// let whole = data.train_batch(5, 4);
    /// let second = data.train_shard(5, 4, DataParallel::new(1, 2)?)?;
    /// assert_eq!(second.batch, 2);
    /// assert_eq!(second.inputs, whole.inputs[2 * 8..]);
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn train_shard(
        &self,
        step: u64,
        global_batch: usize,
        place: crate::DataParallel,
    ) -> Result<TokenBatch> {
        let rows = place.per_rank_batch(global_batch)?;
        Ok(self.train_rows(step, global_batch, place.rank() * rows, rows))
    }

    /// Rows `first_row..first_row + rows` of the `global_batch`-row batch of `step`.
    fn train_rows(
        &self,
        step: u64,
        global_batch: usize,
        first_row: usize,
        rows: usize,
    ) -> TokenBatch {
        let n = self.train.len() as u64;
        let first = step
            .saturating_mul(global_batch as u64)
            .saturating_add(first_row as u64);
        let mut epoch_perm: Option<(u64, Vec<usize>)> = None;
        let mut windows = Vec::with_capacity(rows);
        for i in first..first.saturating_add(rows as u64) {
            let epoch = i / n;
            if epoch_perm.as_ref().is_none_or(|(e, _)| *e != epoch) {
                let mut perm = self.train.clone();
                shuffle(&mut perm, &mut seeded_rng(self.seed, TAG_ORDER, epoch));
                epoch_perm = Some((epoch, perm));
            }
            if let Some((_, perm)) = &epoch_perm {
                windows.push(perm[(i % n) as usize]);
            }
        }
        self.fill(windows.into_iter(), rows)
    }

    /// A 64-bit FNV-1a hash of the windows' bytes (checkpoints use it to refuse another text).
    ///
    /// ```
    /// use ltd_train::{Corpus, Dataset};
    /// let a = Dataset::new(&Corpus::embedded(), 64, 0.1, 0)?;
    /// let b = Dataset::new(&Corpus::from_text("t", &"xy".repeat(500))?, 64, 0.1, 0)?;
    /// assert_ne!(a.fingerprint(), b.fingerprint());
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn fingerprint(&self) -> u64 {
        crate::fsutil::fnv64(&self.bytes)
    }

    /// The first `count` validation windows (all of them when `count` is 0 or larger than the
    /// split) in batches of at most `batch` rows; the same windows every call.
    ///
    /// ```
    /// let data = ltd_train::Dataset::new(&ltd_train::Corpus::embedded(), 64, 0.1, 0)?;
    /// let batches = data.val_batches(10, 4);
    /// assert_eq!(batches.iter().map(|b| b.batch).collect::<Vec<_>>(), [4, 4, 2]);
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn val_batches(&self, count: usize, batch: usize) -> Vec<TokenBatch> {
        let count = if count == 0 {
            self.val.len()
        } else {
            count.min(self.val.len())
        };
        self.val[..count]
            .chunks(batch.max(1))
            .map(|chunk| self.fill(chunk.iter().copied(), chunk.len()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_disjoint_and_complete() {
        let data = Dataset::new(&Corpus::embedded(), 100, 0.1, 9).unwrap();
        let mut all: Vec<usize> = data.train.iter().chain(&data.val).copied().collect();
        all.sort_unstable();
        let n = EMBEDDED_CORPUS.len() / 101;
        assert_eq!(all, (0..n).collect::<Vec<_>>());
        assert_eq!(data.val.len(), (n as f64 * 0.1).ceil() as usize);
    }

    #[test]
    fn one_epoch_visits_every_training_window_once() {
        let data = Dataset::new(&Corpus::embedded(), 1000, 0.1, 2).unwrap();
        let n = data.train_windows();
        let mut seen = vec![0u32; data.bytes.len() / 1001];
        for i in 0..n as u64 {
            let batch = data.train_batch(i, 1);
            let w = data
                .train
                .iter()
                .find(|&&w| {
                    data.bytes[w * 1001] as u32 == batch.inputs[0]
                        && data.bytes[w * 1001..w * 1001 + 1000]
                            .iter()
                            .map(|&b| b as u32)
                            .eq(batch.inputs.iter().copied())
                })
                .copied()
                .unwrap();
            seen[w] += 1;
        }
        assert!(data.train.iter().all(|&w| seen[w] == 1));
    }

    #[test]
    fn seeds_change_split_and_order() {
        let a = Dataset::new(&Corpus::embedded(), 64, 0.1, 1).unwrap();
        let b = Dataset::new(&Corpus::embedded(), 64, 0.1, 2).unwrap();
        assert_ne!(a.val, b.val);
        assert_ne!(a.train_batch(0, 4), b.train_batch(0, 4));
    }
}
