//! What every [`CudaDevice`](super::CudaDevice) on one CUDA context shares: the device's
//! properties and the loaded kernel modules, entry points, shared-memory limits and occupancy
//! answers. One per context (looked up by the driver's context handle), so two handles on the
//! same context (ours, or a framework's stream given to `CudaDevice::from_stream`) load each
//! kernel image once. It lives as long as the process: a framework that makes a short-lived
//! handle per op call (as `ltd-candle` does on candle's stream) must not reload the images,
//! re-read the device's properties and re-raise the shared-memory limits on every call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use cudarc::driver::sys::CUdevice_attribute;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule};

use super::driver_err;
use crate::Result;

/// (module, function, threads per block, dynamic shared-memory bytes).
pub(super) type OccupancyKey = (&'static str, &'static str, u32, usize);

/// Per-context state shared by every handle on the context.
pub(super) struct ContextShared {
    /// Keeps the context alive while any handle (and so any loaded module) uses it.
    pub(super) ctx: Arc<CudaContext>,
    pub(super) name: String,
    pub(super) compute_capability: (i32, i32),
    pub(super) sm_count: usize,
    pub(super) max_dynamic_shared_bytes: usize,
    pub(super) modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    /// Entry points already looked up, so a launch costs no driver call to find its kernel.
    pub(super) functions: Mutex<HashMap<(&'static str, &'static str), CudaFunction>>,
    /// The dynamic shared-memory limit already raised per entry point (bytes).
    pub(super) shared_limits: Mutex<HashMap<(&'static str, &'static str), usize>>,
    /// Resident blocks per multiprocessor already asked of the driver.
    pub(super) occupancy: Mutex<HashMap<OccupancyKey, usize>>,
}

/// Locks a cache, ignoring poisoning (the maps hold plain handles, valid after any panic).
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The per-context states, by the driver's context handle.
fn registry() -> &'static Mutex<HashMap<usize, Arc<ContextShared>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<usize, Arc<ContextShared>>>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(HashMap::new()))
}

impl ContextShared {
    /// The shared state of `ctx`: the one made by an earlier handle on this context, else a
    /// new one (reading the device's properties).
    pub(super) fn of(ctx: &Arc<CudaContext>) -> Result<Arc<ContextShared>> {
        // The handle identifies the context: an entry holds its context, so the handle cannot
        // be reused by another context.
        let key = ctx.cu_ctx() as usize;
        let mut map = lock(registry());
        if let Some(found) = map.get(&key) {
            return Ok(found.clone());
        }
        let built = Arc::new(ContextShared::new(ctx)?);
        map.insert(key, built.clone());
        Ok(built)
    }

    fn new(ctx: &Arc<CudaContext>) -> Result<ContextShared> {
        let name = ctx.name().map_err(driver_err("reading the device name"))?;
        let compute_capability = ctx
            .compute_capability()
            .map_err(driver_err("reading the compute capability"))?;
        let optin = ctx
            .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)
            .map_err(driver_err("reading the shared-memory limit"))?;
        let sm_count = ctx
            .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(driver_err("reading the multiprocessor count"))?;
        Ok(ContextShared {
            ctx: ctx.clone(),
            name,
            compute_capability,
            sm_count: usize::try_from(sm_count).unwrap_or(1).max(1),
            // Leave room for the kernels' static shared memory (a few KB).
            max_dynamic_shared_bytes: usize::try_from(optin).unwrap_or(0).saturating_sub(8 * 1024),
            modules: Mutex::new(HashMap::new()),
            functions: Mutex::new(HashMap::new()),
            shared_limits: Mutex::new(HashMap::new()),
            occupancy: Mutex::new(HashMap::new()),
        })
    }
}

/// Whether the NVIDIA driver library can be loaded. cudarc's own check exists only when it loads
/// the driver at run time; when another crate (candle) makes it link the driver, the library
/// is already loaded once the program runs, and this check says so too.
pub(super) fn driver_library_present() -> bool {
    const NAMES: &[&str] = if cfg!(windows) {
        &["nvcuda.dll"]
    } else {
        &["libcuda.so.1", "libcuda.so"]
    };
    NAMES.iter().any(|name| {
        // SAFETY: loading the NVIDIA driver library runs only its own initialisers, which the
        // first driver call would run anyway; no function of it is called here, and the handle
        // is dropped at once.
        unsafe { libloading::Library::new(*name) }.is_ok()
    })
}
