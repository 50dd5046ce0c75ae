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

/// `lo[i] = table[idx[i]]` and `hi[i] = table[idx[i] + 1]`: the table reads of a block's
/// linear interpolation. In a vectorised loop the compiler reads such a table one lane at
/// a time (it extracts every index, then inserts every value), which made table lookups
/// half of a kernel's time; with AVX2 these are two gathers per eight values. Same
/// values either way. Panics if an index is outside the table.
#[inline(always)]
pub fn gather_pairs<const N: usize>(
    simd: Simd,
    table: &[f32],
    idx: &[i32; N],
    lo: &mut [f32; N],
    hi: &mut [f32; N],
) {
    check_indices(table.len() - 1, idx);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = simd;
    #[cfg(target_arch = "x86_64")]
    if N % 8 == 0 && simd.available() != Simd::Portable {
        // SAFETY: `available` found AVX2; every index and index + 1 is inside `table`.
        unsafe { avx2::gather(table.as_ptr(), idx, lo) };
        // SAFETY: as above, one entry further.
        unsafe { avx2::gather(table.as_ptr().add(1), idx, hi) };
        return;
    }
    for i in 0..N {
        lo[i] = table[idx[i] as usize];
        hi[i] = table[idx[i] as usize + 1];
    }
}

/// `out[i] = table[idx[i]]`, as [`gather_pairs`] for one read per value.
#[inline(always)]
pub fn gather<const N: usize>(simd: Simd, table: &[f32], idx: &[i32; N], out: &mut [f32; N]) {
    check_indices(table.len(), idx);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = simd;
    #[cfg(target_arch = "x86_64")]
    if N % 8 == 0 && simd.available() != Simd::Portable {
        // SAFETY: `available` found AVX2; every index is inside `table`.
        unsafe { avx2::gather(table.as_ptr(), idx, out) };
        return;
    }
    for i in 0..N {
        out[i] = table[idx[i] as usize];
    }
}

/// Every index in `0..len` (a vectorised min/max, far cheaper than the reads).
#[inline(always)]
fn check_indices<const N: usize>(len: usize, idx: &[i32; N]) {
    let (mut min, mut max) = (i32::MAX, i32::MIN);
    for &i in idx {
        min = min.min(i);
        max = max.max(i);
    }
    assert!(
        N == 0 || (min >= 0 && (max as usize) < len),
        "table index out of range"
    );
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// `out[i] = *base.add(idx[i])`, eight at a time.
    ///
    /// # Safety
    /// AVX2 is present, `N` is a multiple of 8 and every `base.add(idx[i])` is readable.
    #[target_feature(enable = "avx2")]
    pub unsafe fn gather<const N: usize>(base: *const f32, idx: &[i32; N], out: &mut [f32; N]) {
        for k in (0..N).step_by(8) {
            // SAFETY: `k + 8 <= N`; the reads are the caller's promise.
            unsafe {
                let i = _mm256_loadu_si256(idx.as_ptr().add(k) as *const __m256i);
                let v = _mm256_i32gather_ps::<4>(base, i);
                _mm256_storeu_ps(out.as_mut_ptr().add(k), v);
            }
        }
    }
}
