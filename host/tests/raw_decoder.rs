//! RAWs decoded in a `luminary decode-runner` child: a decoder that aborts, crashes, hangs or
//! answers nonsense fails only its job, with a clear error naming the file; a good RAW
//! decodes to exactly what an in-process decode gives.
#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use luminary::config::Limits;
use luminary::error::{Cancel, ErrorCode};
use luminary::ingest::{ingest_with, RawDecoding};

fn luminary() -> RawDecoding {
    RawDecoding::Process(PathBuf::from(env!("CARGO_BIN_EXE_luminary")))
}

fn in_process() -> RawDecoding {
    RawDecoding::InProcess { budget: None }
}

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// A fuzz input as a file: its first byte chose the extension, the rest is the file.
fn fuzz_input(dir: &Path, rel: &str, name: &str) -> PathBuf {
    let bytes = std::fs::read(repo(rel)).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, &bytes[1..]).unwrap();
    path
}

/// Found by the ingest fuzzer: a QuickTake 150 header ("qktn") whose size fields claim a
/// 65535×65535 image. rawler's `radc::decompress` allocates that (8 GB) before reading a
/// pixel; in the daemon's process the failed (or, with overcommit, the succeeding)
/// allocation would have taken every job down.
#[test]
fn regression_a_quicktake_header_claiming_8_gb_fails_only_its_job_as_too_large() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["crafted.dng", "crafted.qtk"] {
        let path = fuzz_input(
            dir.path(),
            "fuzz/regressions/ingest-qtk-radc-size-oom.bin",
            name,
        );
        let t = Instant::now();
        let err = ingest_with(&path, &Limits::default(), &luminary(), &Cancel::default())
            .err()
            .expect("must be refused");
        assert_eq!(err.code, ErrorCode::TooLarge, "{err:?}");
        assert!(err.message.contains(name), "{}", err.message);
        assert!(
            err.message
                .contains("more memory than the RAW decoder may use")
                && err.message.contains("limits.decode_memory_mb"),
            "{}",
            err.message
        );
        println!("{name}: {} ({:?})", err.message, t.elapsed());
    }
    // With a tighter limit it is refused the same way.
    let limits = Limits {
        decode_memory_mb: 1024,
        ..Limits::default()
    };
    let path = dir.path().join("crafted.dng");
    let err = ingest_with(&path, &limits, &luminary(), &Cancel::default())
        .err()
        .unwrap();
    assert_eq!(err.code, ErrorCode::TooLarge, "{err:?}");
    assert!(err.message.contains("(1024 MB"), "{}", err.message);
}

/// Found by the ingest fuzzer: a JPEG whose damaged APP1 segment makes rawler's JFIF
/// parser loop forever. Under a RAW's name it is refused before any decoder runs (if it
/// were not, the decoder process would be stopped at its deadline).
#[test]
fn regression_a_jpeg_under_a_raw_name_is_refused_before_rawlers_jfif_parser_can_hang() {
    let dir = tempfile::tempdir().unwrap();
    let path = fuzz_input(
        dir.path(),
        "fuzz/regressions/ingest-jfif-app1-hang.bin",
        "IMG_1.dng",
    );
    let limits = Limits {
        decode_timeout_s: 10.0,
        ..Limits::default()
    };
    let t = Instant::now();
    let err = ingest_with(&path, &limits, &luminary(), &Cancel::default())
        .err()
        .unwrap();
    assert_eq!(err.code, ErrorCode::UnsupportedFormat, "{err:?}");
    assert!(err.message.contains("IMG_1.dng"), "{}", err.message);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

/// Ingests `path` in this process (as the fuzzer does: rawler runs here, with no deadline
/// but this one) and gives the error it must end in, within `secs`.
fn refused_in_process_within(path: PathBuf, secs: u64) -> luminary::error::JobError {
    in_process_within(path, secs)
        .err()
        .expect("must be refused")
}

/// What ingesting `path` in this process gives, within `secs` (or the test fails).
fn in_process_within(
    path: PathBuf,
    secs: u64,
) -> Result<luminary::ingest::Ingested, luminary::error::JobError> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(ingest_with(
            &path,
            &Limits::default(),
            &in_process(),
            &Cancel::default(),
        ));
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .expect("the decoder did not finish")
}

/// Found by the ingest fuzzer (it failed CI as a 30 s timeout): a CR3 whose nested box
/// claims a size smaller than its own header. rawler's box loops seek to each box's end,
/// which was its start, and read the same box again forever. Patched in
/// `vendor/rawler` (`BoxHeader::parse` refuses such sizes), so the file is refused at once
/// in-process too, where the fuzzer runs rawler and nothing else would stop it (the
/// daemon's decoder process would have been killed at its deadline, two minutes later).
#[test]
fn regression_a_cr3_box_shorter_than_its_header_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = fuzz_input(
        dir.path(),
        "fuzz/regressions/ingest-cr3-zero-size-box-hang.bin",
        "IMG_0001.CR3",
    );
    let err = refused_in_process_within(path, 20);
    // rawler takes a box structure it cannot parse for "not a CR3" and tries its other
    // decoders, so the file ends as one no decoder recognises.
    assert_eq!(err.code, ErrorCode::UnsupportedFormat, "{err:?}");
    assert!(err.message.contains("IMG_0001.CR3"), "{}", err.message);
}

/// A 152-byte CRW whose CIFF directory holds 12 entries that each name the directory's
/// own range as a sub-directory. rawler bounded only the depth (10), so it built 12^9
/// copies; patched in `vendor/rawler` with a budget of directories and entries per file.
#[test]
fn regression_a_crw_directory_nested_into_itself_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = fuzz_input(
        dir.path(),
        "fuzz/regressions/ingest-crw-ciff-self-nesting-hang.bin",
        "CRW_0001.CRW",
    );
    let err = refused_in_process_within(path, 20);
    assert!(
        matches!(
            err.code,
            ErrorCode::CorruptInput | ErrorCode::UnsupportedFormat
        ),
        "{err:?}"
    );
    assert!(err.message.contains("CRW_0001.CRW"), "{}", err.message);
}

/// An MRW whose first block claims a length of nearly 4 GB. rawler stepped to the next
/// block by `(len + 8) as usize` in `u32`, which wraps to 0: a release build (no overflow
/// checks) stayed on that block forever, and this test's build stopped with "attempt to
/// add with overflow" as the file's error. Patched in `vendor/rawler`; now the walk ends
/// and the file is refused for what it is.
#[test]
fn an_mrw_block_length_near_4_gb_neither_loops_nor_overflows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("PICT0001.MRW");
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"\0MRM");
    bytes.extend_from_slice(&100u32.to_be_bytes()); // blocks up to offset 108
    bytes.extend_from_slice(b"\0AAA"); // a block rawler does not know
    bytes.extend_from_slice(&0xFFFF_FFF8u32.to_be_bytes());
    bytes.resize(160, 0);
    std::fs::write(&path, &bytes).unwrap();
    let err = refused_in_process_within(path, 20);
    assert!(
        err.message.contains("PICT0001.MRW") && !err.message.contains("overflow"),
        "{err:?}"
    );
}

/// A DNG whose first IFD names itself as the next one. rawler follows a chain of IFDs
/// until a zero pointer, collecting a copy of each, so it would go round until the
/// decoder's memory limit stopped it, reported as a file "too large". The structure check
/// sees the loop first and says what is wrong, before any decoder runs.
#[test]
fn a_tiff_whose_ifd_chain_loops_is_refused_as_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let path = fuzz_input(dir.path(), "fuzz/corpus/ingest/dng", "looped.dng");
    let mut bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[..4], b"II*\0", "the seed is a little-endian DNG");
    let ifd0 = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    let count = u16::from_le_bytes([bytes[ifd0], bytes[ifd0 + 1]]) as usize;
    let next = ifd0 + 2 + 12 * count;
    assert_eq!(
        &bytes[next..next + 4],
        &[0; 4],
        "the seed has one IFD in its chain"
    );
    bytes[next..next + 4].copy_from_slice(&(ifd0 as u32).to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    for how in [in_process(), luminary()] {
        let t = Instant::now();
        let err = ingest_with(&path, &Limits::default(), &how, &Cancel::default())
            .err()
            .expect("must be refused");
        assert_eq!(err.code, ErrorCode::CorruptInput, "{err:?}");
        assert!(
            err.message.contains("looped.dng")
                && err
                    .message
                    .contains(&format!("loops back to the IFD at offset {ifd0}")),
            "{}",
            err.message
        );
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }
}

/// The real DNG seed with `extra(file_length)` appended (2-aligned) and named as IFD0's next
/// IFD: `extra` gets the offset it will sit at and returns its bytes.
fn dng_with_chained(dir: &Path, name: &str, extra: impl Fn(u32) -> Vec<u8>) -> PathBuf {
    let path = fuzz_input(dir, "fuzz/corpus/ingest/dng", name);
    let mut bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[..4], b"II*\0", "the seed is a little-endian DNG");
    let ifd0 = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    let count = u16::from_le_bytes([bytes[ifd0], bytes[ifd0 + 1]]) as usize;
    let next = ifd0 + 2 + 12 * count;
    assert_eq!(&bytes[next..next + 4], &[0; 4], "the seed has one IFD");
    bytes.resize(bytes.len().next_multiple_of(2), 0);
    let at = bytes.len() as u32;
    bytes[next..next + 4].copy_from_slice(&at.to_le_bytes());
    bytes.extend_from_slice(&extra(at));
    std::fs::write(&path, &bytes).unwrap();
    path
}

/// One little-endian IFD entry.
fn entry(tag: u16, typ: u16, count: u32, value: u32) -> Vec<u8> {
    [
        &tag.to_le_bytes()[..],
        &typ.to_le_bytes(),
        &count.to_le_bytes(),
        &value.to_le_bytes(),
    ]
    .concat()
}

/// A DNG whose chain holds an IFD of 4097 entries. rawler reads at most 4096 and took the
/// next-IFD pointer from where it stopped, inside the table: here the last entry's first
/// bytes, which name that IFD again, so it parsed it forever. The structure check reads
/// the real pointer (zero) and lets the file through. Patched in `vendor/rawler`: the
/// pointer is read after the whole table, so the photo decodes, at once.
#[test]
fn a_dng_with_an_ifd_of_over_4096_entries_in_its_chain_decodes_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dng_with_chained(dir.path(), "long-ifd.dng", |at| {
        let mut ifd = 4097u16.to_le_bytes().to_vec();
        for _ in 0..4096 {
            ifd.extend(entry(0xFDE8, 3, 1, 0)); // a private SHORT, inline
        }
        // The 4097th entry starts with this IFD's own offset: tag and type, read as a
        // pointer by a parse that stopped one entry early.
        ifd.extend(entry(at as u16, (at >> 16) as u16, 0, 0));
        ifd.extend(0u32.to_le_bytes()); // the real next-IFD pointer: the chain ends
        ifd
    });
    let photo = in_process_within(path, 20).expect("the photo decodes");
    assert_eq!((photo.image.width, photo.image.height), (76, 50));
}

/// A DNG whose chain holds an IFD with a SubIFDs list naming one heavy IFD (4096 entries of
/// 64 KB each) 5000 times. The structure check reads each offset once; rawler parsed every
/// one, 1.3 TB of copying from a 77 KB file. Patched in `vendor/rawler`: each sub-IFD
/// offset is parsed once, and a tag names at most 64.
#[test]
fn a_sub_ifd_named_thousands_of_times_is_parsed_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dng_with_chained(dir.path(), "subifds.dng", |at| {
        const NAMED: u32 = 5000;
        // The chained IFD (one entry, SubIFDs), then the offsets, then the heavy IFD.
        let list = at + 2 + 12 + 4;
        let heavy = list + 4 * NAMED;
        let mut bytes = 1u16.to_le_bytes().to_vec();
        bytes.extend(entry(0x014A, 4, NAMED, list));
        bytes.extend(0u32.to_le_bytes());
        for _ in 0..NAMED {
            bytes.extend(heavy.to_le_bytes());
        }
        bytes.extend(4096u16.to_le_bytes());
        for _ in 0..4096 {
            bytes.extend(entry(0xFDE8, 1, 64 << 10, 0)); // 64 KB of BYTEs from the start
        }
        bytes.extend(0u32.to_le_bytes());
        bytes
    });
    assert!(std::fs::metadata(&path).unwrap().len() > 64 << 10);
    let photo = in_process_within(path, 20).expect("the photo decodes");
    assert_eq!((photo.image.width, photo.image.height), (76, 50));
}

/// A Panasonic RW2 (TIFF with magic 85, which the structure check does not walk) whose IFD
/// names itself as the next one: rawler collected copies of it until memory ran out.
/// Patched in `vendor/rawler`: a chain that comes back to an IFD it holds is refused.
#[test]
fn an_rw2_whose_ifd_chain_loops_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("P1000001.RW2");
    let mut bytes = b"IIU\0".to_vec();
    bytes.extend(8u32.to_le_bytes());
    bytes.extend(1u16.to_le_bytes());
    bytes.extend(entry(0x0100, 3, 1, 1));
    bytes.extend(8u32.to_le_bytes()); // next IFD: itself
    std::fs::write(&path, &bytes).unwrap();
    let err = refused_in_process_within(path, 20);
    // rawler takes a TIFF it cannot parse for "not this format" and tries the others, so
    // the loop's own words do not reach the message; what counts is that it ends.
    assert!(err.message.contains("P1000001.RW2"), "{err:?}");
}

/// A Phase One IIQ whose makernote directory holds 65535 string entries, each naming the
/// whole 16 MB file: rawler copied the file once per entry (1 TB). Patched in
/// `vendor/rawler`: the directory must fit in the file, and its strings together may copy
/// it at most four times, so the file is refused at once.
#[test]
fn an_iiq_makernote_naming_the_whole_file_thousands_of_times_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("P0000001.IIQ");
    const LEN: usize = 16 << 20;
    let mut bytes = vec![0u8; LEN];
    let put = |b: &mut Vec<u8>, at: usize, v: &[u8]| b[at..at + v.len()].copy_from_slice(v);
    // TIFF header and IFD0 (Make, Model) at 0x40; strings at 0x80.
    put(&mut bytes, 0, b"II*\0");
    put(&mut bytes, 4, &0x40u32.to_le_bytes());
    let mut ifd0 = 2u16.to_le_bytes().to_vec();
    ifd0.extend(entry(0x010F, 2, 14, 0x80));
    ifd0.extend(entry(0x0110, 2, 5, 0x90));
    ifd0.extend(0u32.to_le_bytes());
    put(&mut bytes, 0x40, &ifd0);
    put(&mut bytes, 0x80, b"Phase One A/S\0");
    put(&mut bytes, 0x90, b"H 25\0");
    // The makernote starts at 8; at 16 its directory's offset (from 8): 0x100.
    put(&mut bytes, 16, &0x100u32.to_le_bytes());
    let at = 8 + 0x100;
    put(&mut bytes, at, &65535u32.to_le_bytes());
    for k in 0..65535usize {
        // tag, type 1 (a string), byte count: the file less the makernote's 8, from 0.
        let e = [0x0999u32, 1, (LEN - 8) as u32, 0];
        let e: Vec<u8> = e.iter().flat_map(|v| v.to_le_bytes()).collect();
        put(&mut bytes, at + 8 + 16 * k, &e);
    }
    std::fs::write(&path, &bytes).unwrap();
    let err = refused_in_process_within(path, 20);
    assert!(
        err.message.contains("P0000001.IIQ") && err.message.contains("IIQ makernote"),
        "{err:?}"
    );
}

#[test]
fn every_fuzz_regression_input_fails_cleanly_through_the_decoder_process() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    for e in std::fs::read_dir(repo("fuzz/regressions"))
        .unwrap()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("ingest-") {
            continue;
        }
        let path = fuzz_input(
            dir.path(),
            &format!("fuzz/regressions/{name}"),
            "crafted.dng",
        );
        let err = ingest_with(&path, &Limits::default(), &luminary(), &Cancel::default())
            .err()
            .unwrap_or_else(|| panic!("{name} must be refused"));
        assert!(
            matches!(
                err.code,
                ErrorCode::CorruptInput | ErrorCode::TooLarge | ErrorCode::UnsupportedFormat
            ),
            "{name}: {err:?}"
        );
        assert!(
            err.message.contains("crafted.dng"),
            "{name}: {}",
            err.message
        );
        n += 1;
    }
    assert!(n >= 8, "only {n} regression inputs found");
}

#[test]
fn a_dng_decodes_bit_identically_in_the_decoder_process_and_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let path = fuzz_input(dir.path(), "fuzz/corpus/ingest/dng", "seed.dng");
    let a = ingest_with(&path, &Limits::default(), &in_process(), &Cancel::default()).unwrap();
    let b = ingest_with(&path, &Limits::default(), &luminary(), &Cancel::default()).unwrap();
    assert!(a.is_raw && b.is_raw);
    assert_eq!(
        (a.image.width, a.image.height),
        (b.image.width, b.image.height)
    );
    assert!(a
        .image
        .data
        .iter()
        .map(|v| v.to_bits())
        .eq(b.image.data.iter().map(|v| v.to_bits())));
    assert_eq!(a.meta.orientation, b.meta.orientation);
    assert_eq!(
        format!("{:?}", a.meta.fields),
        format!("{:?}", b.meta.fields)
    );
}

/// Fake decoders (shell scripts standing in for `luminary`) exercise the daemon's side:
/// deadline, cancellation, crashes, an out-of-memory abort and nonsense answers.
#[test]
fn a_decoder_that_hangs_crashes_aborts_or_answers_nonsense_fails_only_its_job() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let photo = d.join("IMG_0001.cr2");
    std::fs::write(&photo, b"not really a RAW").unwrap();
    let pid_file = d.join("pid");
    let script = |name: &str, body: &str| -> RawDecoding {
        use std::os::unix::fs::PermissionsExt;
        let p = d.join(name);
        std::fs::write(
            &p,
            format!("#!/bin/sh\necho $$ > '{}'\n{body}\n", pid_file.display()),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        RawDecoding::Process(p)
    };
    let hang = script("hang", "exec sleep 30");
    let segv = script("segv", "kill -SEGV $$");
    let oom = script(
        "oom",
        "echo 'memory allocation of 8589934592 bytes failed' >&2\nkill -ABRT $$",
    );
    let nonsense = script("nonsense", "echo 'hello'");
    let lying = script(
        "lying",
        concat!(
            r#"echo '{"decoded":{"width":100,"height":100,"orientation":1,"layout":{"kind":"rgb"},"#,
            r#""float":false,"levels":{"black":[0,0,0],"repeat":[1,1],"origin":[0,0],"delta_h":[],"#,
            r#""delta_v":[],"white":[65535]},"active":[0,0,100,100],"crop":[0,0,100,100],"#,
            r#""colour":{"origin":"a lie","calibrations":[],"analog_balance":null,"#,
            r#""as_shot_neutral":null,"as_shot_white_xy":null},"baseline_exposure":0.0,"#,
            r#""opcodes":{"list1":[],"list2":[],"list3":[]},"notes":[]}}'"#
        ),
    );
    let silent = script("silent", "exit 3");
    let gone = |pid_file: &Path| {
        let pid = std::fs::read_to_string(pid_file).unwrap();
        !Path::new(&format!("/proc/{}", pid.trim())).exists()
    };

    // Deadline.
    let limits = Limits {
        decode_timeout_s: 0.3,
        ..Limits::default()
    };
    let t = Instant::now();
    let err = ingest_with(&photo, &limits, &hang, &Cancel::default())
        .err()
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(err.code, ErrorCode::CorruptInput, "{err:?}");
    assert!(
        err.message.contains("IMG_0001.cr2")
            && err.message.contains("did not finish within")
            && err.message.contains("decode_timeout_s"),
        "{}",
        err.message
    );
    assert!(gone(&pid_file), "the decoder outlived its deadline");

    // Cancellation stops the decoder.
    let cancel: Cancel = Arc::new(AtomicBool::new(false));
    let c = cancel.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        c.store(true, Ordering::SeqCst);
    });
    let t = Instant::now();
    let err = ingest_with(&photo, &Limits::default(), &hang, &cancel)
        .err()
        .unwrap();
    assert_eq!(err.code, ErrorCode::Cancelled, "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(gone(&pid_file), "the decoder outlived its cancelled job");

    // A crash.
    let err = ingest_with(&photo, &Limits::default(), &segv, &Cancel::default())
        .err()
        .unwrap();
    assert_eq!(err.code, ErrorCode::CorruptInput, "{err:?}");
    assert!(
        err.message.contains("IMG_0001.cr2") && err.message.contains("SIGSEGV"),
        "{}",
        err.message
    );

    // Out of memory: the runtime's last words make it `too_large`.
    let err = ingest_with(&photo, &Limits::default(), &oom, &Cancel::default())
        .err()
        .unwrap();
    assert_eq!(err.code, ErrorCode::TooLarge, "{err:?}");
    assert!(
        err.message.contains("IMG_0001.cr2") && err.message.contains("8192 MB more at once"),
        "{}",
        err.message
    );

    // Nonsense, a header the shared memory does not back, silence.
    for (how, words) in [
        (&nonsense, "unreadable answer"),
        (&lying, "inconsistent data"),
        (&silent, "exited with status 3"),
    ] {
        let err = ingest_with(&photo, &Limits::default(), how, &Cancel::default())
            .err()
            .unwrap();
        assert_eq!(err.code, ErrorCode::CorruptInput, "{err:?}");
        assert!(
            err.message.contains("IMG_0001.cr2") && err.message.contains(words),
            "{}",
            err.message
        );
    }
}
