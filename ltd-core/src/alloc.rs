//! The one checked-size allocation helper. Every buffer whose size comes from a caller's value is
//! allocated through it, so an impossible size is a typed error naming the bytes it would need,
//! never an abort: `Vec::try_reserve_exact` catches capacity overflow and allocator refusal, and a
//! cap at this machine's memory (RAM plus swap, or the cgroup limit) catches the sizes an
//! overcommitting OS would grant and then kill the process for when the pages are touched.

use std::sync::OnceLock;

use crate::{CoreError, Result};

/// The largest allocation this process can ever hold, in bytes: RAM plus swap (Linux
/// `/proc/meminfo`), lowered to the cgroup v2 memory limit when one is set; `isize::MAX` where
/// neither can be read.
///
/// ```
/// let limit = ltd_core::memory_limit_bytes();
/// assert!(limit > 0 && limit <= isize::MAX as u128);
/// ```
pub fn memory_limit_bytes() -> u128 {
    static LIMIT: OnceLock<u128> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        let address_space = isize::MAX as u128;
        let machine = read_meminfo().unwrap_or(address_space);
        let cgroup = read_cgroup_limit().unwrap_or(address_space);
        machine.min(cgroup).min(address_space)
    })
}

/// `MemTotal + SwapTotal` from `/proc/meminfo`, in bytes.
fn read_meminfo() -> Option<u128> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u128> {
        let line = text.lines().find(|line| line.starts_with(name))?;
        let kib: u128 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    };
    Some(field("MemTotal:")? + field("SwapTotal:").unwrap_or(0))
}

/// The cgroup v2 `memory.max` of this process, when it is a number (not `max`).
fn read_cgroup_limit() -> Option<u128> {
    let text = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok()?;
    text.trim().parse().ok()
}

/// Checks that `elements` values of `element_size` bytes can be allocated, and returns the
/// element count as `usize`. The count is a `u128` so a caller can pass a product of sizes
/// without overflowing first.
///
/// # Errors
/// [`CoreError::AllocationFailed`] naming `what` and the bytes needed, when they exceed
/// [`memory_limit_bytes`].
///
/// ```
/// use ltd_core::{CoreError, check_allocation};
/// assert_eq!(check_allocation("scratch", 1000, 4)?, 1000);
/// let err = check_allocation("scratch", 1 << 60, 4).unwrap_err();
/// assert!(matches!(err, CoreError::AllocationFailed { bytes, .. } if bytes == 1u128 << 62));
/// # Ok::<(), CoreError>(())
/// ```
pub fn check_allocation(what: &'static str, elements: u128, element_size: usize) -> Result<usize> {
    let bytes = elements.saturating_mul(element_size as u128);
    let limit = memory_limit_bytes();
    if bytes > limit {
        return Err(CoreError::AllocationFailed {
            what,
            bytes,
            reason: format!("more than this machine's memory ({limit} bytes)"),
        });
    }
    // bytes <= limit <= isize::MAX, so the count fits in usize.
    usize::try_from(elements).map_err(|_| CoreError::SizeOverflow { what })
}

/// Reserves room for `additional` more elements in `vec`, or a typed error (see
/// [`check_allocation`]).
///
/// ```
/// let mut v: Vec<u32> = Vec::new();
/// ltd_core::try_reserve(&mut v, "keys", 16)?;
/// assert!(v.capacity() >= 16);
/// assert!(ltd_core::try_reserve(&mut v, "keys", usize::MAX / 2).is_err());
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
pub fn try_reserve<T>(vec: &mut Vec<T>, what: &'static str, additional: usize) -> Result<()> {
    let total = vec.len() as u128 + additional as u128;
    check_allocation(what, total, size_of::<T>())?;
    vec.try_reserve_exact(additional)
        .map_err(|error| CoreError::AllocationFailed {
            what,
            bytes: total * size_of::<T>() as u128,
            reason: error.to_string(),
        })
}

/// An empty `Vec` with room for `capacity` elements, or a typed error (see
/// [`check_allocation`]).
///
/// ```
/// let v: Vec<f32> = ltd_core::try_with_capacity("rows", 8)?;
/// assert!(v.capacity() >= 8 && v.is_empty());
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
pub fn try_with_capacity<T>(what: &'static str, capacity: usize) -> Result<Vec<T>> {
    let mut vec = Vec::new();
    try_reserve(&mut vec, what, capacity)?;
    Ok(vec)
}

/// A `Vec` of `len` copies of `value`, or a typed error (see [`check_allocation`]).
///
/// ```
/// use ltd_core::{CoreError, try_vec};
/// assert_eq!(try_vec("mask", 3, 7u8)?, vec![7, 7, 7]);
/// assert!(matches!(
///     try_vec("mask", usize::MAX, 0u64),
///     Err(CoreError::AllocationFailed { .. })
/// ));
/// # Ok::<(), CoreError>(())
/// ```
pub fn try_vec<T: Clone>(what: &'static str, len: usize, value: T) -> Result<Vec<T>> {
    let mut vec = try_with_capacity(what, len)?;
    vec.resize(len, value);
    Ok(vec)
}

/// A zero tensor of the given shape, its size checked first (outputs of ops whose inputs may be
/// broadcast views, so far larger than any buffer the caller holds).
pub(crate) fn hidden_zeros<T: crate::CpuElement>(
    what: &'static str,
    order: crate::HiddenOrder,
    batch: usize,
    seq: usize,
    channels: usize,
) -> Result<crate::HiddenTensor<T>> {
    let elements = (batch as u128 * seq as u128).saturating_mul(channels as u128);
    check_allocation(what, elements, size_of::<T>())?;
    crate::HiddenTensor::zeros(order, batch, seq, channels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_below_the_address_space() {
        let limit = memory_limit_bytes();
        assert!(limit >= 1 << 20, "{limit}");
        assert!(limit <= isize::MAX as u128);
    }

    #[test]
    fn impossible_sizes_are_errors_naming_the_bytes() {
        let err = try_vec("table", usize::MAX, 0u32).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("table needs 73786976294838206460 bytes"),
            "{message}"
        );
        let err = check_allocation("product", u128::MAX, 8).unwrap_err();
        assert!(matches!(
            err,
            CoreError::AllocationFailed {
                bytes: u128::MAX,
                ..
            }
        ));
        let limit = memory_limit_bytes();
        assert!(check_allocation("just over", limit + 1, 1).is_err());
    }

    #[test]
    fn zero_sized_types_never_fail() {
        let units: Vec<()> = try_with_capacity("units", usize::MAX).unwrap();
        assert!(units.capacity() >= 1 << 40);
    }
}
