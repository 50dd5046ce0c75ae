//! Which vector instructions the pixel kernels use: detected at run time, so one build
//! runs everywhere and uses AVX2 (or AVX-512) where the CPU has it. Each kernel is plain
//! Rust written so the compiler vectorises it, compiled once per instruction set behind
//! `#[target_feature]`; the portable build is the same code, and tests hold every variant
//! to the same picture.

/// The row kernels, fastest first.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Simd {
    /// The best this CPU has.
    #[default]
    Best,
    /// 16-wide: a node per register (x86-64 with AVX-512F).
    Avx512,
    /// 8-wide with fused multiply-add (x86-64 since 2013).
    Avx2,
    /// Plain Rust the compiler vectorises (SSE2 baseline, NEON).
    Portable,
}

impl Simd {
    /// The requested kernel if this CPU runs it, else the next one down.
    pub fn available(self) -> Simd {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            let avx2 = has!("avx2") && has!("fma");
            if matches!(self, Simd::Best | Simd::Avx512) && avx2 && has!("avx512f") {
                return Simd::Avx512;
            }
            if matches!(self, Simd::Best | Simd::Avx512 | Simd::Avx2) && avx2 {
                return Simd::Avx2;
            }
        }
        Simd::Portable
    }
}

/// Runs `$kernel(args…)`, an `#[inline(always)]` function, compiled for the best
/// instruction set `$simd` allows on this CPU: AVX-512, AVX2 with FMA, or the baseline.
/// One body, three builds, without each kernel repeating the `#[target_feature]` wrappers.
/// The arguments are named variables in scope, given with their types:
/// `dispatch!(simd, plain(row: &mut [f32], gain: f32))`.
macro_rules! dispatch {
    ($simd:expr, $($kernel:ident)::+ ( $($arg:ident : $ty:ty),* $(,)? ) $(-> $ret:ty)?) => {{
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
            $($kernel)::+($($arg),*)
        }
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
            $($kernel)::+($($arg),*)
        }
        match $crate::simd::Simd::available($simd) {
            // SAFETY: `Simd::available` detected the features on this CPU.
            #[cfg(target_arch = "x86_64")]
            $crate::simd::Simd::Avx512 => unsafe { wide($($arg),*) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            $crate::simd::Simd::Avx2 => unsafe { avx2($($arg),*) },
            _ => $($kernel)::+($($arg),*),
        }
    }};
}
pub(crate) use dispatch;
