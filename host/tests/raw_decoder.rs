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
        .err()
        .expect("must be refused")
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
    assert!(n >= 7, "only {n} regression inputs found");
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
