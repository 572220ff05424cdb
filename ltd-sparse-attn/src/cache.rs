//! [`LayoutCache`]: one layout per block count, built on first use, shared between threads.

use crate::error::Result;
use crate::layout::{Layout, SparsityConfig};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Layouts of one attention instance, keyed by sequence length (more precisely by the number of
/// blocks `ceil(L / block)`, so lengths that pad to the same block count share an entry).
///
/// Each layout is built for its own length with [`SparsityConfig::make_layout_blocks`] (not
/// cropped from a maximum-length layout as upstream does; upstream-semantics.md §2.8), once, and handed out as an
/// `Arc`. The cache belongs to one instance: two attention modules with different configs never
/// share layouts (upstream's class-level cache does). Safe to share between threads.
///
/// ```
/// use ltd_sparse_attn::{FixedConfig, LayoutCache};
/// let cache = LayoutCache::new(FixedConfig::new(2).into()).unwrap();
/// let a = cache.get(160).unwrap(); // 10 blocks of 16
/// let b = cache.get(150).unwrap(); // also 10 blocks
/// assert!(std::sync::Arc::ptr_eq(&a, &b));
/// assert_eq!(a.num_blocks(), 10);
/// assert_eq!(cache.len(), 1);
/// ```
#[derive(Debug)]
pub struct LayoutCache {
    config: SparsityConfig,
    layouts: RwLock<HashMap<usize, Arc<Layout>>>,
}

impl LayoutCache {
    /// A cache for `config` (validated now).
    ///
    /// ```
    /// use ltd_sparse_attn::{DenseConfig, LayoutCache};
    /// assert!(LayoutCache::new(DenseConfig::new(0).into()).is_err());
    /// ```
    pub fn new(config: SparsityConfig) -> Result<Self> {
        config.validate()?;
        Ok(LayoutCache {
            config,
            layouts: RwLock::new(HashMap::new()),
        })
    }

    /// The config the layouts are built from.
    ///
    /// ```
    /// use ltd_sparse_attn::{DenseConfig, LayoutCache};
    /// let c = LayoutCache::new(DenseConfig::new(3).into()).unwrap();
    /// assert_eq!(c.config().num_heads(), 3);
    /// ```
    pub fn config(&self) -> &SparsityConfig {
        &self.config
    }

    /// The layout for a sequence of `seq_len` tokens, built on first use.
    ///
    /// ```
    /// use ltd_sparse_attn::{DenseConfig, LayoutCache};
    /// let c = LayoutCache::new(DenseConfig::new(1).into()).unwrap();
    /// assert_eq!(c.get(17).unwrap().num_blocks(), 2);
    /// ```
    pub fn get(&self, seq_len: usize) -> Result<Arc<Layout>> {
        let num_blocks = seq_len.div_ceil(self.config.block());
        {
            let map = self.layouts.read().unwrap_or_else(|e| e.into_inner());
            if let Some(l) = map.get(&num_blocks) {
                return Ok(Arc::clone(l));
            }
        }
        // Build outside the lock; if two threads race, the first insert wins and both get it.
        let built = Arc::new(self.config.make_layout_blocks(num_blocks)?);
        let mut map = self.layouts.write().unwrap_or_else(|e| e.into_inner());
        Ok(Arc::clone(map.entry(num_blocks).or_insert(built)))
    }

    /// Number of cached layouts.
    ///
    /// ```
    /// use ltd_sparse_attn::{DenseConfig, LayoutCache};
    /// let c = LayoutCache::new(DenseConfig::new(1).into()).unwrap();
    /// assert!(c.is_empty());
    /// ```
    pub fn len(&self) -> usize {
        self.layouts.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no layout is cached yet.
    ///
    /// ```
    /// use ltd_sparse_attn::{DenseConfig, LayoutCache};
    /// let c = LayoutCache::new(DenseConfig::new(1).into()).unwrap();
    /// c.get(32).unwrap();
    /// assert!(!c.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
