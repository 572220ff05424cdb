//! The gradient all-reduce through NCCL (cudarc's bindings), on candle's CUDA stream, so the
//! collective is ordered after the backward kernels and before the optimizer's with no host sync.
//!
//! Ranks meet through an [`NcclId`]: rank 0 creates it and writes it to a file, the others read
//! the file (`ltd train --nccl-id-file`, README "Multiple GPUs").

use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use candle_core::backend::BackendStorage;
use candle_core::{CudaStorage, CustomOp1, Device, Layout, Shape, Tensor};
use cudarc::nccl::{Comm, Id, ReduceOp};

use super::{DataParallel, GradientReducer};
use crate::error::{Result, TrainError};

/// Bytes of an NCCL unique id.
const ID_BYTES: usize = 128;

fn nccl_error(what: &str, e: impl std::fmt::Debug) -> TrainError {
    TrainError::Parallel {
        message: format!("{what}: NCCL error {e:?}"),
    }
}

/// The rendezvous of one job: the id rank 0 creates and every rank passes to
/// [`NcclReducer::new`].
///
/// ```no_run
/// use ltd_train::NcclId;
/// let path = std::path::Path::new("/tmp/job.nccl-id");
/// NcclId::create()?.write_new(path)?; // on rank 0
/// let id = NcclId::wait_for(path, std::time::Duration::from_secs(60))?; // on every rank
/// # Ok::<(), ltd_train::TrainError>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct NcclId(Id);

impl NcclId {
    /// A fresh id (loads libnccl).
    ///
    /// # Errors
    /// [`TrainError::Parallel`] when NCCL cannot make one.
    pub fn create() -> Result<Self> {
        Id::new()
            .map(NcclId)
            .map_err(|e| nccl_error("ncclGetUniqueId", e))
    }

    /// Writes the id to `path`, which must not exist yet (a stale file of an earlier job would
    /// hand its id to this job's other ranks); written atomically.
    ///
    /// # Errors
    /// [`TrainError::Parallel`] when `path` exists; [`TrainError::Io`] when it cannot be written.
    pub fn write_new(&self, path: &Path) -> Result<()> {
        if path.exists() {
            return Err(TrainError::Parallel {
                message: format!(
                    "--nccl-id-file {}: exists (left by an earlier job?); expected a path that rank 0 creates, remove it first",
                    path.display()
                ),
            });
        }
        let bytes: Vec<u8> = self.0.internal().iter().map(|&c| c as u8).collect();
        crate::write_atomic(path, &bytes)
    }

    /// Reads the id from `path`, waiting up to `timeout` for rank 0 to write it.
    ///
    /// # Errors
    /// [`TrainError::Parallel`] after `timeout`, or for a file that is not an id.
    pub fn wait_for(path: &Path, timeout: Duration) -> Result<Self> {
        let start = Instant::now();
        while !path.exists() {
            if start.elapsed() > timeout {
                return Err(TrainError::Parallel {
                    message: format!(
                        "--nccl-id-file {}: rank 0 did not write it within {} s",
                        path.display(),
                        timeout.as_secs()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
        let internal: [u8; ID_BYTES] =
            bytes
                .as_slice()
                .try_into()
                .map_err(|_| TrainError::Parallel {
                    message: format!(
                        "--nccl-id-file {}: {} bytes; expected an NCCL id of {ID_BYTES} bytes",
                        path.display(),
                        bytes.len()
                    ),
                })?;
        Ok(NcclId(Id::uninit(internal.map(|b| b as core::ffi::c_char))))
    }
}

/// The mean over ranks through `ncclAllReduce(ncclSum)` on candle's stream of this rank's GPU,
/// then one scale by 1 / world size.
/// Cloning shares the communicator (several runs of one job, one after the other).
///
/// ```no_run
/// use candle_core::Device;
/// use ltd_train::{DataParallel, NcclId, NcclReducer};
/// let place = DataParallel::new(0, 1)?;
/// let device = Device::new_cuda(0)?;
/// let reducer = NcclReducer::new(&device, place, NcclId::create()?)?;
/// # Ok::<(), ltd_train::TrainError>(())
/// ```
#[derive(Debug, Clone)]
pub struct NcclReducer {
    comm: Rc<Comm>,
    place: DataParallel,
}

impl NcclReducer {
    /// Joins the job `id` as `place` on `device` (blocks until every rank has joined).
    ///
    /// # Errors
    /// [`TrainError::Parallel`] for a CPU device or an NCCL error (for example two ranks on one
    /// GPU: NCCL wants one GPU per rank).
    pub fn new(device: &Device, place: DataParallel, id: NcclId) -> Result<Self> {
        let Device::Cuda(cuda) = device else {
            return Err(TrainError::Parallel {
                message: "NCCL needs a CUDA device (--device cuda); got the CPU".to_owned(),
            });
        };
        let comm = Comm::from_rank(cuda.cuda_stream(), place.rank(), place.world_size(), id.0)
            .map_err(|e| {
                nccl_error(
                    &format!(
                        "ncclCommInitRank (rank {} of {})",
                        place.rank(),
                        place.world_size()
                    ),
                    e,
                )
            })?;
        Ok(NcclReducer {
            comm: Rc::new(comm),
            place,
        })
    }
}

impl GradientReducer for NcclReducer {
    fn place(&self) -> DataParallel {
        self.place
    }

    fn all_reduce_mean(&mut self, values: &Tensor) -> Result<Tensor> {
        // A sum, then one scale: with `ncclAvg`, a world of one returned the buffer's last
        // element (the loss) as 0 on the H100 (benches/runs/2026-12-06-wheel-and-nccl-h100).
        let sum = values.apply_op1_no_bwd(&AllReduceSum { comm: &self.comm })?;
        let world = self.place.world_size();
        if world == 1 {
            return Ok(sum);
        }
        Ok(sum.affine(1.0 / world as f64, 0.0)?)
    }
}

/// The all-reduce as a candle op, so it runs on the tensor's storage and returns a new tensor.
struct AllReduceSum<'a> {
    comm: &'a Comm,
}

impl CustomOp1 for AllReduceSum<'_> {
    fn name(&self) -> &'static str {
        "nccl-all-reduce-sum"
    }

    fn cpu_fwd(
        &self,
        _: &candle_core::CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, Shape)> {
        candle_core::bail!("NCCL all-reduce: the gradients are on the CPU; expected a CUDA device")
    }

    fn cuda_fwd(
        &self,
        storage: &CudaStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("NCCL all-reduce: expected a contiguous buffer");
        };
        let device = storage.device().clone();
        let src = storage.as_cuda_slice::<f32>()?.slice(start..end);
        let mut dst = device
            .cuda_stream()
            .alloc_zeros::<f32>(end - start)
            .map_err(|e| candle_core::Error::Cuda(Box::new(e)))?;
        self.comm
            .all_reduce(&src, &mut dst, &ReduceOp::Sum)
            .map_err(|e| candle_core::Error::Msg(format!("ncclAllReduce: {e:?}")))?;
        Ok((
            CudaStorage::wrap_cuda_slice(dst, device),
            layout.shape().clone(),
        ))
    }
}
