//! Output file names. In Lightroom's stack and darktable's group the name is what the
//! photographer sees, so the original's stem is kept exactly as written — spaces, dots,
//! unicode, punctuation — and `--out` is honoured as given. Only what the file system
//! cannot hold is replaced with `_`: `/` and NUL everywhere, and on Windows also
//! `<>:"\|?*`, control characters and reserved device names (`CON`, `COM1`, …, with or
//! without an extension). A trailing dot or space, which Windows also drops, cannot
//! occur: every output name ends in its extension.
//!
//! Preset ids and parameter values that go into names are another matter: they come from
//! plugins, so [`component`] keeps only letters, digits, `-` and `_`.

/// The longest stem kept, in bytes: with `-luminary-<preset>`, a `-N` and the extension,
/// a name stays within the 255 bytes (Linux) or UTF-16 units (Windows, macOS) of a name.
pub const MAX_STEM_BYTES: usize = 160;

/// `stem` as a file system of this platform can hold it.
pub fn keep_stem(stem: &str) -> String {
    keep_stem_for(stem, cfg!(windows))
}

/// `stem` as a file system can hold it; `windows` adds Windows' rules (tested on every
/// platform, since a bridge on Windows depends on them).
pub fn keep_stem_for(stem: &str, windows: bool) -> String {
    let forbidden = |c: char| {
        c == '/'
            || c == '\0'
            || (windows && (matches!(c, '<' | '>' | ':' | '"' | '\\' | '|' | '?' | '*') || c < ' '))
    };
    let mut out = String::with_capacity(stem.len());
    for c in stem.chars() {
        if out.len() + c.len_utf8() > MAX_STEM_BYTES {
            break;
        }
        out.push(if forbidden(c) { '_' } else { c });
    }
    if out.is_empty() {
        return "_".into();
    }
    if windows && is_reserved_on_windows(&out) {
        // `CON.tif` would open the console; `CON_.tif` is a file.
        let base = out.find('.').unwrap_or(out.len());
        out.insert(base, '_');
    }
    out
}

/// Windows' reserved device names, which stay reserved with any extension and with
/// trailing spaces before it (`con .tif`, `LPT1.final.tif`).
fn is_reserved_on_windows(name: &str) -> bool {
    let base = name.split('.').next().unwrap_or("").trim_end_matches(' ');
    let upper = base.to_ascii_uppercase();
    matches!(
        upper.as_str(),
        "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$"
    ) || (upper.len() == 4
        && (upper.starts_with("COM") || upper.starts_with("LPT"))
        && upper[3..].chars().all(|c| c.is_ascii_digit()))
        || ["COM", "LPT"].iter().any(|p| {
            base.len() > 3
                && base[..3].eq_ignore_ascii_case(p)
                && matches!(&base[3..], "¹" | "²" | "³")
        })
}

/// A preset id or parameter value as part of a name: letters, digits, `-` and `_` only,
/// so a plugin can never introduce a separator or a `..`.
pub fn component(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if cleaned.is_empty() {
        "_".into()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_are_kept_as_written() {
        for windows in [false, true] {
            for stem in [
                "Braut & Bräutigam 2024.05.01 (1)",
                "IMG_0042.edit.v2",
                "final 0.5 (v2)",
                "Ålesund — 夜景 #3 [HDR] 100% ^!",
                "photo.",
                " leading space",
            ] {
                assert_eq!(keep_stem_for(stem, windows), stem, "windows: {windows}");
            }
        }
    }

    #[test]
    fn only_what_the_file_system_cannot_hold_is_replaced() {
        assert_eq!(keep_stem_for("a/b\0c", false), "a_b_c");
        assert_eq!(
            keep_stem_for(r#"a<b>c:d"e\f|g?h*i"#, false),
            r#"a<b>c:d"e\f|g?h*i"#
        );
        assert_eq!(
            keep_stem_for(r#"a<b>c:d"e\f|g?h*i"#, true),
            "a_b_c_d_e_f_g_h_i"
        );
        assert_eq!(keep_stem_for("tab\there", true), "tab_here");
        assert_eq!(keep_stem_for("", false), "_");
    }

    #[test]
    fn windows_device_names_get_an_underscore() {
        for (stem, kept) in [
            ("CON", "CON_"),
            ("con", "con_"),
            ("nul.final", "nul_.final"),
            ("COM1", "COM1_"),
            ("lpt9", "lpt9_"),
            ("COM¹", "COM¹_"),
            ("CON ", "CON _"),
        ] {
            assert_eq!(keep_stem_for(stem, true), kept);
            assert_eq!(keep_stem_for(stem, false), stem);
        }
        for fine in ["CONCERT", "COM10", "console", "CON-luminary-auto", "LPT"] {
            assert_eq!(keep_stem_for(fine, true), fine);
        }
    }

    #[test]
    fn long_stems_are_cut_at_a_character_boundary() {
        let long = "ü".repeat(200);
        let kept = keep_stem_for(&long, false);
        assert!(kept.len() <= MAX_STEM_BYTES);
        assert!(long.starts_with(&kept));
        assert_eq!(kept.chars().count(), MAX_STEM_BYTES / 2);
    }

    #[test]
    fn components_stay_safe() {
        assert_eq!(component("../../etc/passwd"), "______etc_passwd");
        assert_eq!(component("warm-film"), "warm-film");
        assert_eq!(component(""), "_");
    }
}
