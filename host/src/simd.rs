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
    if N.is_multiple_of(8) && simd.available() != Simd::Portable {
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
    if N.is_multiple_of(8) && simd.available() != Simd::Portable {
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

/// Interleaved RGB `src` into one array per channel (`src` may hold fewer than `N`
/// pixels; the rest of `px` is left as it is). The compiler builds the plain loop as one
/// scalar load and store per sample, which was about a tenth of a block kernel's time;
/// with AVX2 a whole block goes through in blends and permutes of eight pixels. Same
/// values either way.
#[inline(always)]
pub fn split_rgb<const N: usize>(simd: Simd, src: &[f32], px: &mut [[f32; N]; 3]) {
    #[cfg(target_arch = "x86_64")]
    if N.is_multiple_of(8) && src.len() == 3 * N && simd.available() != Simd::Portable {
        // SAFETY: `available` found AVX2; `src` holds exactly `N` pixels.
        unsafe { avx2::split(src, px) };
        return;
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = simd;
    for (i, p) in src.chunks_exact(3).take(N).enumerate() {
        px[0][i] = p[0];
        px[1][i] = p[1];
        px[2][i] = p[2];
    }
}

/// The inverse of [`split_rgb`]: channel arrays back into interleaved `dst` (which may
/// hold fewer than `N` pixels).
#[inline(always)]
pub fn merge_rgb<const N: usize>(simd: Simd, px: &[[f32; N]; 3], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if N.is_multiple_of(8) && dst.len() == 3 * N && simd.available() != Simd::Portable {
        // SAFETY: `available` found AVX2; `dst` holds exactly `N` pixels.
        unsafe { avx2::merge(px, dst) };
        return;
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = simd;
    for (i, p) in dst.chunks_exact_mut(3).take(N).enumerate() {
        p[0] = px[0][i];
        p[1] = px[1][i];
        p[2] = px[2][i];
    }
}

/// `dst.copy_from_slice(src)` with non-temporal stores where the CPU has AVX2 (the
/// samples before `dst`'s first 32-byte boundary and after its last whole vector with plain
/// stores): a full-size output written once and not read back in the same pass is not read
/// into the cache first, a third less memory traffic. Call [`stream_fence`] before another
/// thread reads what was written. Not for a buffer read again at once: the offline pass
/// streaming its rows into a plugin's shared memory was measured slower (cinestill's recipe
/// 68–74 → 71–79 ms on 12 MP), the plugin then reading them back from memory, not cache.
pub fn stream_copy(simd: Simd, src: &[f32], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len());
    #[cfg(target_arch = "x86_64")]
    if simd.available() != Simd::Portable {
        // Samples up to the first 32-byte boundary, then whole vectors, then the rest.
        let head = ((32 - dst.as_ptr() as usize % 32) % 32 / 4).min(dst.len());
        let body = (dst.len() - head) / 8 * 8;
        let (d_head, rest) = dst.split_at_mut(head);
        let (d_body, d_tail) = rest.split_at_mut(body);
        let (s_head, rest) = src.split_at(head);
        let (s_body, s_tail) = rest.split_at(body);
        d_head.copy_from_slice(s_head);
        // SAFETY: `available` found AVX2; `d_body` starts on a 32-byte boundary (a float
        // is 4-byte aligned, so `head` samples reach it) and is whole vectors long.
        unsafe { avx2::stream_copy(s_body, d_body) };
        d_tail.copy_from_slice(s_tail);
        return;
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = simd;
    dst.copy_from_slice(src);
}

/// Orders [`stream_copy`]'s stores before what follows (a no-op without them).
pub fn stream_fence(simd: Simd) {
    #[cfg(target_arch = "x86_64")]
    if simd.available() != Simd::Portable {
        // SAFETY: SSE is part of x86-64.
        unsafe { std::arch::x86_64::_mm_sfence() };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = simd;
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// # Safety
    /// AVX2 is present; `dst` is 32-byte aligned, as long as `src` and a multiple of 8.
    #[target_feature(enable = "avx2")]
    pub unsafe fn stream_copy(src: &[f32], dst: &mut [f32]) {
        for k in (0..dst.len()).step_by(8) {
            // SAFETY: `k + 8 <= len`; `dst.add(k)` is 32-byte aligned.
            unsafe {
                let v = _mm256_loadu_ps(src.as_ptr().add(k));
                _mm256_stream_ps(dst.as_mut_ptr().add(k), v);
            }
        }
    }

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

    // Eight pixels are three registers: a = r0 g0 b0 r1 g1 b1 r2 g2, b = b2 r3 g3 b3 r4 g4
    // b4 r5, c = g5 b5 r6 g6 b6 r7 g7 b7. Each channel's eight samples sit in eight
    // different lanes across a, b and c, so two blends gather them into one register
    // (out of order) and one permute puts them in order; merging runs that backwards.

    /// Per channel, where sample i of its blended register sits.
    const ORDER: [[i32; 8]; 3] = [
        [0, 3, 6, 1, 4, 7, 2, 5],
        [1, 4, 7, 2, 5, 0, 3, 6],
        [2, 5, 0, 3, 6, 1, 4, 7],
    ];
    /// Where lane k of a blended channel register comes from (the inverse of `ORDER`).
    const SCATTER: [[i32; 8]; 3] = [
        [0, 3, 6, 1, 4, 7, 2, 5],
        [5, 0, 3, 6, 1, 4, 7, 2],
        [2, 5, 0, 3, 6, 1, 4, 7],
    ];

    #[inline(always)]
    unsafe fn lanes(v: [i32; 8]) -> __m256i {
        // SAFETY: reads eight i32 from a local array.
        unsafe { _mm256_loadu_si256(v.as_ptr() as *const __m256i) }
    }

    /// [`super::split_rgb`] of exactly `N` pixels.
    ///
    /// # Safety
    /// AVX2 is present, `N` is a multiple of 8 and `src.len() == 3 * N`.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub unsafe fn split<const N: usize>(src: &[f32], px: &mut [[f32; N]; 3]) {
        debug_assert!(N.is_multiple_of(8) && src.len() == 3 * N);
        // SAFETY: plain loads of local arrays.
        let order = unsafe { [lanes(ORDER[0]), lanes(ORDER[1]), lanes(ORDER[2])] };
        for k in (0..N).step_by(8) {
            // SAFETY: `3 * (k + 8) <= src.len()` and `k + 8 <= N`.
            unsafe {
                let p = src.as_ptr().add(3 * k);
                let (a, b, c) = (
                    _mm256_loadu_ps(p),
                    _mm256_loadu_ps(p.add(8)),
                    _mm256_loadu_ps(p.add(16)),
                );
                let r = _mm256_blend_ps::<0b0010_0100>(_mm256_blend_ps::<0b1001_0010>(a, b), c);
                let g = _mm256_blend_ps::<0b0100_1001>(_mm256_blend_ps::<0b0010_0100>(a, b), c);
                let bl = _mm256_blend_ps::<0b1001_0010>(_mm256_blend_ps::<0b0100_1001>(a, b), c);
                _mm256_storeu_ps(
                    px[0].as_mut_ptr().add(k),
                    _mm256_permutevar8x32_ps(r, order[0]),
                );
                _mm256_storeu_ps(
                    px[1].as_mut_ptr().add(k),
                    _mm256_permutevar8x32_ps(g, order[1]),
                );
                _mm256_storeu_ps(
                    px[2].as_mut_ptr().add(k),
                    _mm256_permutevar8x32_ps(bl, order[2]),
                );
            }
        }
    }

    /// [`super::merge_rgb`] of exactly `N` pixels.
    ///
    /// # Safety
    /// AVX2 is present, `N` is a multiple of 8 and `dst.len() == 3 * N`.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub unsafe fn merge<const N: usize>(px: &[[f32; N]; 3], dst: &mut [f32]) {
        debug_assert!(N.is_multiple_of(8) && dst.len() == 3 * N);
        // SAFETY: plain loads of local arrays.
        let scatter = unsafe { [lanes(SCATTER[0]), lanes(SCATTER[1]), lanes(SCATTER[2])] };
        for k in (0..N).step_by(8) {
            // SAFETY: `k + 8 <= N` and `3 * (k + 8) <= dst.len()`.
            unsafe {
                let r =
                    _mm256_permutevar8x32_ps(_mm256_loadu_ps(px[0].as_ptr().add(k)), scatter[0]);
                let g =
                    _mm256_permutevar8x32_ps(_mm256_loadu_ps(px[1].as_ptr().add(k)), scatter[1]);
                let bl =
                    _mm256_permutevar8x32_ps(_mm256_loadu_ps(px[2].as_ptr().add(k)), scatter[2]);
                // Lanes of a: r g b r g b r g; of b: b r g b r g b r; of c: g b r g b r g b.
                let a = _mm256_blend_ps::<0b0010_0100>(_mm256_blend_ps::<0b1001_0010>(r, g), bl);
                let b = _mm256_blend_ps::<0b0100_1001>(_mm256_blend_ps::<0b0010_0100>(r, g), bl);
                let c = _mm256_blend_ps::<0b1001_0010>(_mm256_blend_ps::<0b0100_1001>(r, g), bl);
                let p = dst.as_mut_ptr().add(3 * k);
                _mm256_storeu_ps(p, a);
                _mm256_storeu_ps(p.add(8), b);
                _mm256_storeu_ps(p.add(16), c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The streamed copy writes what a plain copy writes, aligned or not, whole vectors or
    /// not, shorter than one vector, with every instruction set.
    #[test]
    fn a_streamed_copy_is_a_copy() {
        let src: Vec<f32> = (0..4099).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut room = vec![0f32; src.len() + 16];
        let aligned = (0..8)
            .find(|k| (room[*k..].as_ptr() as usize).is_multiple_of(32))
            .unwrap();
        for simd in [Simd::Best, Simd::Avx2, Simd::Portable] {
            let cases = [
                (aligned, 4096),
                (aligned, 4099),
                (aligned + 1, 4096),
                (aligned + 3, 4093),
                (aligned + 7, 5),
                (aligned + 1, 0),
            ];
            for (at, len) in cases {
                room.fill(-1.0);
                stream_copy(simd, &src[..len], &mut room[at..at + len]);
                stream_fence(simd);
                assert_eq!(&room[at..at + len], &src[..len], "{simd:?} at {at}, {len}");
                assert!(room[..at]
                    .iter()
                    .chain(&room[at + len..])
                    .all(|v| *v == -1.0));
            }
        }
    }

    /// Every kernel splits a real photo's rows into the same channel arrays as the plain
    /// loop and merges them back to the same bytes, for whole and partial blocks.
    #[test]
    fn every_kernel_splits_and_merges_pixels_like_the_plain_loop() {
        let photo = crate::image::test_photo().to_rgb32f().into_raw();
        for simd in [Simd::Avx512, Simd::Avx2, Simd::Portable] {
            for part in photo.chunks(3 * 64).take(2000) {
                let mut want = [[-1f32; 64]; 3];
                for (i, p) in part.chunks_exact(3).enumerate() {
                    for c in 0..3 {
                        want[c][i] = p[c];
                    }
                }
                let mut got = [[-1f32; 64]; 3];
                split_rgb(simd, part, &mut got);
                assert_eq!(got, want, "{simd:?}");
                let mut back = vec![0f32; part.len()];
                merge_rgb(simd, &got, &mut back);
                assert_eq!(back, part, "{simd:?}");
            }
            // A block's last few pixels (the end of a row).
            let part = &photo[..3 * 13];
            let mut got = [[-1f32; 64]; 3];
            split_rgb(simd, part, &mut got);
            assert_eq!(got[2][12], part[38]);
            assert_eq!(got[0][13], -1.0, "past the pixels given");
            let mut back = vec![0f32; part.len()];
            merge_rgb(simd, &got, &mut back);
            assert_eq!(back, part);
        }
    }
}
