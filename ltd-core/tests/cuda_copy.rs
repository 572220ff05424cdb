//! The strided-copy kernel against the CPU copy (feature `cuda`), and opening a CUDA device on a
//! machine without one. The `gpu_*` cases fail without a device (skip them by name there).
#![cfg(feature = "cuda")]

mod gpu_support;

use gpu_support::{cases, gpu};
use half::{bf16, f16};
use ltd_core::{
    CoreError, CudaDevice, Element, StridedLayout2d, copy_strided_2d, copy_strided_2d_cuda,
};
use proptest::prelude::*;

#[test]
fn opening_cuda_returns_a_result_never_panics() {
    match CudaDevice::new(0) {
        Ok(dev) => {
            let s = dev.to_string();
            assert!(s.starts_with("cuda:0 ("), "{s}");
        }
        Err(e) => {
            assert!(
                matches!(
                    e,
                    CoreError::NoCudaDriver
                        | CoreError::InvalidSize { .. }
                        | CoreError::Cuda { .. }
                ),
                "unexpected error kind: {e:?}"
            );
        }
    }
    // An ordinal no machine has is always an error, with or without a driver.
    let e = CudaDevice::new(4096).unwrap_err();
    assert!(
        matches!(
            e,
            CoreError::NoCudaDriver | CoreError::InvalidSize { .. } | CoreError::Cuda { .. }
        ),
        "{e:?}"
    );
}

#[test]
fn no_driver_on_a_machine_without_nvidia_devices() {
    // On CI and the dev machine there is no /dev/nvidia0 and no libcuda: the error must be the
    // typed NoCudaDriver (or, if a stray libcuda exists, a driver error), never a panic.
    if std::path::Path::new("/dev/nvidiactl").exists() {
        eprintln!("skipping: this machine has an NVIDIA device");
        return;
    }
    let e = CudaDevice::new(0).unwrap_err();
    assert!(
        matches!(e, CoreError::NoCudaDriver | CoreError::Cuda { .. }),
        "{e:?}"
    );
}

fn check_copy<T: Element + cudarc::driver::DeviceRepr>(
    dev: &CudaDevice,
    src_host: &[T],
    layout: StridedLayout2d,
    poison: T,
) {
    let expected = copy_strided_2d(src_host, layout).expect("valid layout");
    let src = dev.upload(src_host).unwrap();
    // One extra element past the end must stay untouched.
    let n = layout.rows * layout.cols;
    let mut dst = dev.upload(&vec![poison; n + 1]).unwrap();
    copy_strided_2d_cuda(dev, &src, layout, &mut dst).unwrap();
    let got = dev.download(&dst).unwrap();
    assert_eq!(&got[..n], &expected[..], "layout {layout:?}");
    assert_eq!(got[n], poison, "wrote past the end");
}

fn layouts() -> impl Strategy<Value = (StridedLayout2d, usize)> {
    (1usize..40, 1usize..70, 0usize..5, 1usize..4, any::<bool>()).prop_map(
        |(rows, cols, pad, cs, transposed)| {
            let l = if transposed {
                // Column-major source: rows are 1 apart, columns `rows + pad` apart.
                StridedLayout2d {
                    rows,
                    cols,
                    row_stride: 1,
                    col_stride: rows + pad,
                }
            } else {
                StridedLayout2d {
                    rows,
                    cols,
                    row_stride: cols * cs + pad,
                    col_stride: cs,
                }
            };
            (l, l.min_buffer_len())
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(48)))]
    #[test]
    fn gpu_copy_matches_cpu_all_dtypes((layout, len) in layouts(), seed in any::<u32>()) {
        let dev = gpu();
        let vals: Vec<f32> = (0..len).map(|i| ((i as u32).wrapping_mul(2654435761) ^ seed) as f32 / 1e6).collect();
        // Data is non-negative; the poison (-7777) can never be a correct output.
        check_copy(&dev, &vals, layout, -7777.0);
        let h: Vec<f16> = vals.iter().map(|&v| f16::from_f32(v)).collect();
        check_copy(&dev, &h, layout, f16::from_f32(-7777.0));
        let b: Vec<bf16> = vals.iter().map(|&v| bf16::from_f32(v)).collect();
        check_copy(&dev, &b, layout, bf16::from_f32(-7777.0));
    }
}

#[test]
fn gpu_copy_rejects_bad_buffers() {
    let dev = gpu();
    let src = dev.upload(&[0.0f32; 5]).unwrap();
    let mut dst = dev.upload(&[0.0f32; 6]).unwrap();
    let l = StridedLayout2d::contiguous(2, 3);
    assert!(matches!(
        copy_strided_2d_cuda(&dev, &src, l, &mut dst),
        Err(CoreError::BufferTooSmall { what: "source", .. })
    ));
    let src = dev.upload(&[0.0f32; 6]).unwrap();
    let mut small = dev.upload(&[0.0f32; 5]).unwrap();
    assert!(matches!(
        copy_strided_2d_cuda(&dev, &src, l, &mut small),
        Err(CoreError::BufferTooSmall {
            what: "destination",
            ..
        })
    ));
}

#[test]
fn gpu_copy_large_grid() {
    // More elements than one grid pass covers (grid-stride loop), f16.
    let dev = gpu();
    let rows = 3000;
    let cols = 1000;
    let l = StridedLayout2d {
        rows,
        cols,
        row_stride: 1,
        col_stride: rows,
    };
    // Bit patterns below 0x7c00 are finite non-negative halves, so `==` compares bits.
    let host: Vec<f16> = (0..rows * cols)
        .map(|i| f16::from_bits((i % 30_011) as u16))
        .collect();
    check_copy(&dev, &host, l, f16::from_f32(-7777.0));
}
