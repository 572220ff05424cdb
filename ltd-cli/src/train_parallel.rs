//! `ltd train` over several GPUs: one process per GPU, started by the user (or a launcher such
//! as a shell loop, `torchrun`-style schedulers or Slurm), meeting through an NCCL id file.
//!
//! ```text
//! for r in 0 1; do ltd train --device cuda --world-size 2 --rank $r --nccl-id-file /tmp/job.id & done; wait
//! ```
//!
//! Rank `r` uses GPU `r`; rank 0 writes the id file, reports and checkpoints. Without the
//! `train-nccl` feature only a world of one without `--nccl-id-file` is accepted.

use std::io::Write;
use std::path::PathBuf;

use candle_core::Device;
use clap::Args;
use ltd_train::{DataParallel, GradientReducer, SingleProcess, Trainer};

use crate::error::{CliError, Result};

/// The data-parallel flags of `ltd train`.
#[derive(Debug, Args, Default)]
pub struct ParallelArgs {
    /// Processes (GPUs) of a data-parallel job; train_batch_size (--batch) is the global batch
    /// and each rank runs batch / world-size rows of it (needs the train-nccl build).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub world_size: usize,
    /// This process's rank in the job (0 reports and checkpoints); it uses GPU RANK.
    #[arg(long, default_value_t = 0, value_name = "RANK")]
    pub rank: usize,
    /// Where the job's ranks meet: rank 0 creates this file (it must not exist), the others wait
    /// for it. Required with --world-size above 1.
    #[arg(long, value_name = "FILE")]
    pub nccl_id_file: Option<PathBuf>,
    /// Seconds the other ranks wait for rank 0's id file.
    #[arg(long, default_value_t = 300, value_name = "S")]
    pub nccl_timeout: u64,
}

impl ParallelArgs {
    /// This process's place, checked.
    pub fn place(&self) -> Result<DataParallel> {
        Ok(DataParallel::new(self.rank, self.world_size)?)
    }
}

/// The job this process belongs to: how each run gets its gradient all-reduce.
pub struct Job {
    place: DataParallel,
    #[cfg(feature = "train-nccl")]
    nccl: Option<ltd_train::NcclReducer>,
}

impl Job {
    /// Joins the job of `args`. A world of one needs nothing; given `--nccl-id-file` it still
    /// goes through NCCL (a one-GPU check of the NCCL path against the plain run).
    ///
    /// # Errors
    /// A world above 1 without the `train-nccl` build, without `--nccl-id-file` or on the CPU;
    /// NCCL errors.
    pub fn join(args: &ParallelArgs, place: DataParallel, device: &Device) -> Result<Job> {
        if place.world_size() == 1 && args.nccl_id_file.is_none() {
            return Ok(Job {
                place,
                #[cfg(feature = "train-nccl")]
                nccl: None,
            });
        }
        let Some(path) = &args.nccl_id_file else {
            return Err(CliError::usage(format!(
                "--world-size {}: needs --nccl-id-file FILE (where the ranks meet)",
                place.world_size()
            )));
        };
        if !device.is_cuda() {
            return Err(CliError::usage(format!(
                "--world-size {} with --nccl-id-file: NCCL runs on GPUs; expected --device cuda",
                place.world_size()
            )));
        }
        Job::join_nccl(args, place, device, path)
    }

    #[cfg(feature = "train-nccl")]
    fn join_nccl(
        args: &ParallelArgs,
        place: DataParallel,
        device: &Device,
        path: &std::path::Path,
    ) -> Result<Job> {
        use ltd_train::{NcclId, NcclReducer};
        if place.is_leader() {
            NcclId::create()?.write_new(path)?;
        }
        let timeout = std::time::Duration::from_secs(args.nccl_timeout);
        let id = NcclId::wait_for(path, timeout)?;
        let reducer = NcclReducer::new(device, place, id)?;
        Ok(Job {
            place,
            nccl: Some(reducer),
        })
    }

    #[cfg(not(feature = "train-nccl"))]
    fn join_nccl(
        _: &ParallelArgs,
        place: DataParallel,
        _: &Device,
        _: &std::path::Path,
    ) -> Result<Job> {
        Err(CliError::usage(format!(
            "--world-size {}: this ltd was built without NCCL; rebuild with --features train-nccl",
            place.world_size()
        )))
    }

    /// This process's place.
    pub fn place(&self) -> DataParallel {
        self.place
    }

    /// `run` as this process's rank of the job.
    pub fn attach(&self, run: Trainer) -> Result<Trainer> {
        let reducer: Box<dyn GradientReducer> = match self.reducer() {
            Some(r) => r,
            None => Box::new(SingleProcess),
        };
        Ok(run.with_data_parallel(reducer)?)
    }

    #[cfg(feature = "train-nccl")]
    fn reducer(&self) -> Option<Box<dyn GradientReducer>> {
        self.nccl
            .clone()
            .map(|r| Box::new(r) as Box<dyn GradientReducer>)
    }

    #[cfg(not(feature = "train-nccl"))]
    fn reducer(&self) -> Option<Box<dyn GradientReducer>> {
        None
    }

    /// One line about the job, when it goes through NCCL.
    pub fn describe(&self, out: &mut impl Write) -> Result<()> {
        if self.reducer().is_some() {
            writeln!(
                out,
                "data-parallel: {} ranks (NCCL), one GPU each; gradients averaged every step",
                self.place.world_size()
            )?;
        }
        Ok(())
    }
}
