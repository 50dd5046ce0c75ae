//! Photo metadata: what is read from the source and what goes into the output.
//!
//! EXIF is read with `kamadak-exif` from every TIFF-based file (DNG, most RAWs, TIFF), JPEG
//! and PNG, falling back to rawler's parsed metadata for RAW containers it cannot walk
//! (CR3, RAF…). Outputs carry the photographer-facing fields (camera, lens, date,
//! exposure, GPS, author) with orientation normalised to 1, plus an XMP packet recording
//! what Luminary did — which is also how bridges recognise Luminary results.

use std::io::BufReader;
use std::path::Path;

use exif::{Context, Field, In, Rational, SRational, Tag, Value};

/// Metadata taken from the source photo.
#[derive(Clone, Debug, Default)]
pub struct SourceMeta {
    /// EXIF fields worth carrying over (primary image only).
    pub fields: Vec<Field>,
    /// Orientation the pixels were stored in (1–8); pixels are made upright at ingest.
    pub orientation: u16,
}

impl SourceMeta {
    /// A text field, for facts and tests.
    pub fn text(&self, tag: Tag) -> Option<String> {
        self.fields
            .iter()
            .find(|f| f.tag == tag)
            .and_then(|f| match &f.value {
                Value::Ascii(v) => v
                    .first()
                    .map(|s| String::from_utf8_lossy(s).trim().to_string()),
                _ => None,
            })
    }
}

/// TIFF-context tags copied from the primary IFD. Everything structural (sizes, strips,
/// compression, DNG calibration) describes the *source* pixels and must not be copied.
const TIFF_TAGS_KEPT: [Tag; 6] = [
    Tag::Make,
    Tag::Model,
    Tag::Artist,
    Tag::Copyright,
    Tag::ImageDescription,
    Tag::DateTime,
];

/// EXIF tags that describe the source encoding rather than the photo.
fn exif_tag_dropped(tag: Tag) -> bool {
    matches!(
        tag,
        Tag::MakerNote
            | Tag::PixelXDimension
            | Tag::PixelYDimension
            | Tag::ColorSpace
            | Tag::ComponentsConfiguration
            | Tag::CompressedBitsPerPixel
            | Tag::InteropIFDPointer
    )
}

/// Reads what EXIF the file has. Missing or broken EXIF is not an error: many files have
/// none, and the photo matters more than its tags.
pub fn read_exif(path: &Path) -> SourceMeta {
    let Ok(file) = std::fs::File::open(path) else {
        return SourceMeta::default();
    };
    let Ok(exif) = exif::Reader::new().read_from_container(&mut BufReader::new(file)) else {
        return SourceMeta::default();
    };
    let orientation = exif
        .get_field(Tag::Orientation, In::PRIMARY)
        .and_then(|f| f.value.get_uint(0))
        .map(|v| v as u16)
        .unwrap_or(1);
    let fields = exif
        .fields()
        .filter(|f| f.ifd_num == In::PRIMARY)
        .filter(|f| match f.tag.context() {
            Context::Tiff => TIFF_TAGS_KEPT.contains(&f.tag),
            Context::Exif => !exif_tag_dropped(f.tag) && value_len(&f.value) <= 64 * 1024,
            Context::Gps => true,
            _ => false,
        })
        .cloned()
        .collect();
    SourceMeta {
        fields,
        orientation,
    }
}

fn value_len(v: &Value) -> usize {
    match v {
        Value::Undefined(b, _) | Value::Byte(b) => b.len(),
        Value::Ascii(v) => v.iter().map(Vec::len).sum(),
        _ => 0,
    }
}

fn ascii(tag: Tag, s: &str) -> Field {
    Field {
        tag,
        ifd_num: In::PRIMARY,
        value: Value::Ascii(vec![s.as_bytes().to_vec()]),
    }
}

fn conv_r(r: &rawler::formats::tiff::Rational) -> Rational {
    Rational {
        num: r.n,
        denom: r.d,
    }
}

/// Builds EXIF fields from rawler's metadata, for RAW containers kamadak-exif cannot read.
pub fn from_rawler(md: &rawler::decoders::RawMetadata) -> Vec<Field> {
    let e = &md.exif;
    let mut out = vec![ascii(Tag::Make, &md.make), ascii(Tag::Model, &md.model)];
    let mut push = |tag: Tag, value: Value| {
        out.push(Field {
            tag,
            ifd_num: In::PRIMARY,
            value,
        })
    };
    if let Some(v) = &e.date_time_original {
        push(
            Tag::DateTimeOriginal,
            Value::Ascii(vec![v.clone().into_bytes()]),
        );
    }
    if let Some(v) = &e.create_date {
        push(
            Tag::DateTimeDigitized,
            Value::Ascii(vec![v.clone().into_bytes()]),
        );
    }
    if let Some(v) = &e.exposure_time {
        push(Tag::ExposureTime, Value::Rational(vec![conv_r(v)]));
    }
    if let Some(v) = &e.fnumber {
        push(Tag::FNumber, Value::Rational(vec![conv_r(v)]));
    }
    if let Some(v) = e.iso_speed_ratings {
        push(Tag::PhotographicSensitivity, Value::Short(vec![v]));
    }
    if let Some(v) = &e.focal_length {
        push(Tag::FocalLength, Value::Rational(vec![conv_r(v)]));
    }
    if let Some(v) = &e.exposure_bias {
        push(
            Tag::ExposureBiasValue,
            Value::SRational(vec![SRational {
                num: v.n,
                denom: v.d,
            }]),
        );
    }
    if let Some(v) = &e.lens_make {
        push(Tag::LensMake, Value::Ascii(vec![v.clone().into_bytes()]));
    }
    if let Some(v) = &e.lens_model {
        push(Tag::LensModel, Value::Ascii(vec![v.clone().into_bytes()]));
    }
    if let Some(v) = &e.artist {
        push(Tag::Artist, Value::Ascii(vec![v.clone().into_bytes()]));
    }
    if let Some(v) = &e.copyright {
        push(Tag::Copyright, Value::Ascii(vec![v.clone().into_bytes()]));
    }
    if let Some(g) = &e.gps {
        if let (Some(r), Some(v)) = (&g.gps_latitude_ref, &g.gps_latitude) {
            push(
                Tag::GPSLatitudeRef,
                Value::Ascii(vec![r.clone().into_bytes()]),
            );
            push(
                Tag::GPSLatitude,
                Value::Rational(v.iter().map(conv_r).collect()),
            );
        }
        if let (Some(r), Some(v)) = (&g.gps_longitude_ref, &g.gps_longitude) {
            push(
                Tag::GPSLongitudeRef,
                Value::Ascii(vec![r.clone().into_bytes()]),
            );
            push(
                Tag::GPSLongitude,
                Value::Rational(v.iter().map(conv_r).collect()),
            );
        }
        if let Some(v) = &g.gps_altitude {
            push(Tag::GPSAltitude, Value::Rational(vec![conv_r(v)]));
        }
    }
    out
}

/// What Luminary did, written into the output's XMP.
#[derive(Clone, Debug)]
pub struct Provenance {
    /// Preset id.
    pub preset: String,
    /// Plugin id that provided it.
    pub plugin: String,
    /// Blend intensity.
    pub intensity: f32,
    /// Engine name.
    pub engine: String,
    /// Engine model.
    pub model: String,
    /// Source file name (not the full path: outputs travel).
    pub source_name: String,
    /// For a learned look: its file name and what it was learned from
    /// ("shoot.look: warm-film on gemini from IMG_0001.dng").
    pub look: Option<String>,
    /// For a free-text edit: the user's words.
    pub prompt: Option<String>,
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The XMP namespace of Luminary's provenance fields.
pub const XMP_NS: &str = "https://luminary.photo/xmp/1.0/";

/// An XMP packet with Luminary's provenance and the creator tool.
pub fn xmp_packet(p: &Provenance) -> String {
    format!(
        r#"<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:luminary="{ns}"
    xmp:CreatorTool="Luminary {version}"
    luminary:Preset="{preset}"
    luminary:Plugin="{plugin}"
    luminary:Intensity="{intensity:.3}"
    luminary:Engine="{engine}"
    luminary:Model="{model}"
    luminary:Version="{version}"
    luminary:Source="{source}"{look}{prompt}/>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>"#,
        ns = XMP_NS,
        version = env!("CARGO_PKG_VERSION"),
        preset = xml_escape(&p.preset),
        plugin = xml_escape(&p.plugin),
        intensity = p.intensity,
        engine = xml_escape(&p.engine),
        model = xml_escape(&p.model),
        source = xml_escape(&p.source_name),
        prompt = p
            .prompt
            .as_ref()
            .map(|t| format!("\n    luminary:Prompt=\"{}\"", xml_escape(t)))
            .unwrap_or_default(),
        look = p
            .look
            .as_ref()
            .map(|l| format!("\n    luminary:Look=\"{}\"", xml_escape(l)))
            .unwrap_or_default(),
    )
}

/// Output EXIF fields: the source's, with orientation normalised and software set.
pub fn output_fields(src: &SourceMeta, width: u32, height: u32) -> Vec<Field> {
    let mut fields: Vec<Field> = src
        .fields
        .iter()
        .filter(|f| f.tag != Tag::Orientation)
        .cloned()
        .collect();
    fields.push(Field {
        tag: Tag::Orientation,
        ifd_num: In::PRIMARY,
        value: Value::Short(vec![1]),
    });
    fields.push(ascii(
        Tag::Software,
        concat!("Luminary ", env!("CARGO_PKG_VERSION")),
    ));
    fields.push(Field {
        tag: Tag::PixelXDimension,
        ifd_num: In::PRIMARY,
        value: Value::Long(vec![width]),
    });
    fields.push(Field {
        tag: Tag::PixelYDimension,
        ifd_num: In::PRIMARY,
        value: Value::Long(vec![height]),
    });
    fields.push(Field {
        tag: Tag::ExifVersion,
        ifd_num: In::PRIMARY,
        value: Value::Undefined(b"0232".to_vec(), 0),
    });
    // A later duplicate of a tag would make the writer emit an invalid IFD.
    let mut seen = std::collections::HashSet::new();
    fields.retain(|f| seen.insert(f.tag));
    fields
}

/// A TIFF-structured EXIF blob (what JPEG APP1 and PNG eXIf carry).
pub fn exif_blob(fields: &[Field]) -> Vec<u8> {
    let mut w = exif::experimental::Writer::new();
    for f in fields {
        w.push_field(f);
    }
    let mut buf = std::io::Cursor::new(Vec::new());
    match w.write(&mut buf, true) {
        Ok(()) => buf.into_inner(),
        Err(_) => Vec::new(),
    }
}
