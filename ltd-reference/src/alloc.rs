//! The oracle's own checked-size allocation (this crate depends on no other `ltd` crate): a
//! buffer sized from the caller's dimensions is a [`RefError::AllocationTooLarge`] when it could
//! never fit this machine's memory, never an abort.

use std::sync::OnceLock;

use crate::error::{RefError, Result};

/// RAM plus swap from `/proc/meminfo`, or `isize::MAX` where it cannot be read.
fn memory_limit_bytes() -> u128 {
    static LIMIT: OnceLock<u128> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        let address_space = isize::MAX as u128;
        let Ok(text) = std::fs::read_to_string("/proc/meminfo") else {
            return address_space;
        };
        let kib = |name: &str| -> u128 {
            text.lines()
                .find(|line| line.starts_with(name))
                .and_then(|line| line.split_whitespace().nth(1)?.parse().ok())
                .unwrap_or(0)
        };
        match kib("MemTotal:") {
            0 => address_space,
            total => ((total + kib("SwapTotal:")) * 1024).min(address_space),
        }
    })
}

/// Checks that `elements` values of `element_size` bytes could be allocated, or
/// [`RefError::AllocationTooLarge`] naming `what` and the bytes.
pub(crate) fn check_alloc(what: &'static str, elements: u128, element_size: usize) -> Result<()> {
    let bytes = elements.saturating_mul(element_size as u128);
    if bytes > memory_limit_bytes() {
        return Err(RefError::AllocationTooLarge { what, bytes });
    }
    Ok(())
}

/// A `Vec` of `len` copies of `value` (`len` as a product in `u128`, so callers need not
/// overflow first), or [`RefError::AllocationTooLarge`] naming `what` and the bytes.
pub(crate) fn try_vec<T: Clone>(what: &'static str, len: u128, value: T) -> Result<Vec<T>> {
    let bytes = len.saturating_mul(size_of::<T>() as u128);
    let too_large = || RefError::AllocationTooLarge { what, bytes };
    if bytes > memory_limit_bytes() {
        return Err(too_large());
    }
    let len = usize::try_from(len).map_err(|_| too_large())?;
    let mut vec = Vec::new();
    vec.try_reserve_exact(len).map_err(|_| too_large())?;
    vec.resize(len, value);
    Ok(vec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impossible_sizes_are_errors() {
        assert!(matches!(
            try_vec("x", u128::MAX, 0u8),
            Err(RefError::AllocationTooLarge {
                bytes: u128::MAX,
                ..
            })
        ));
        assert!(try_vec("x", 1 << 60, 0.0f64).is_err());
        assert_eq!(try_vec("x", 3, 1u8).unwrap(), vec![1, 1, 1]);
    }
}
