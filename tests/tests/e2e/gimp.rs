//! The GIMP 3 bridge in real GIMP 3 (Debian 13's, in a chroot built by
//! `scripts/gimp-chroot`): the plug-in is installed with `luminary install gimp`, called
//! non-interactively by its procedure name, and its layer is compared with the daemon's own
//! output for the same photo.

use std::path::{Path, PathBuf};
use std::process::Command;

use luminary_tests::daemon::luminary_bin;
use serde_json::Value;

use super::fixtures;

fn gimp_root() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/gimp-chroot");
    let out = Command::new("bash").arg(script).output().expect("bash");
    assert!(
        out.status.success(),
        "scripts/gimp-chroot failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// A private folder inside the chroot, removed at the end (nothing is mounted into the
/// chroot, so removing it is always safe).
struct Inside {
    root: PathBuf,
    name: String,
}

impl Inside {
    fn host(&self) -> PathBuf {
        self.root.join(&self.name)
    }
    fn path(&self, rel: &str) -> String {
        format!("/{}/{rel}", self.name)
    }
    /// Runs a command in the chroot with a clean environment and our XDG folders.
    fn run(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        let mut cmd = Command::new("chroot");
        cmd.arg(&self.root).args([
            "/usr/bin/env",
            "-i",
            "HOME=/root",
            "PATH=/usr/bin:/bin",
            "LANG=C.UTF-8",
        ]);
        for (k, rel) in [
            ("XDG_CONFIG_HOME", "cfg"),
            ("XDG_DATA_HOME", "data"),
            ("XDG_CACHE_HOME", "cache"),
            ("XDG_RUNTIME_DIR", "run"),
            ("GIMP3_DIRECTORY", "gimpcfg"),
        ] {
            cmd.arg(format!("{k}={}", self.path(rel)));
        }
        cmd.args(args);
        if let Some(input) = stdin {
            let mut child = cmd
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
            return child.wait_with_output().unwrap();
        }
        cmd.output().unwrap()
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        let bin = self.path("bin/luminary");
        let _ = self.run(&[&bin, "stop"], None);
        let _ = std::fs::remove_dir_all(self.host());
    }
}

/// A test's own folder in the GIMP chroot with the luminary binary and first-party plugins,
/// the plug-in installed with `luminary install gimp`, and the photo at `work/photo.tif`.
fn gimp_with_plugin(tag: &str, photo: &Path) -> (Inside, String) {
    let root = gimp_root();
    let inside = Inside {
        root,
        name: format!("luminary-test-{tag}-{}", std::process::id()),
    };
    let host = inside.host();
    for d in ["bin", "cfg", "data", "cache", "run", "gimpcfg", "work"] {
        std::fs::create_dir_all(host.join(d)).unwrap();
    }
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(host.join("run"), std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    // The luminary binary and first-party plugins must exist inside the chroot.
    let target = luminary_bin().parent().unwrap().to_path_buf();
    std::fs::copy(luminary_bin(), host.join("bin/luminary")).unwrap();
    for e in std::fs::read_dir(&target).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with("libluminary_") && n.ends_with(".so") {
            std::fs::copy(e.path(), host.join("bin").join(&n)).unwrap();
        }
    }
    std::fs::copy(photo, host.join("work/photo.tif")).unwrap();
    let bin = inside.path("bin/luminary");
    let out = inside.run(
        &[
            &bin,
            "install",
            "gimp",
            "--dest",
            &inside.path("gimpcfg/plug-ins"),
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plugin = host.join("gimpcfg/plug-ins/luminary/luminary.py");
    assert!(std::fs::read_to_string(&plugin)
        .unwrap()
        .contains(&format!("INSTALLED_BINARY = \"{bin}\"")));
    (inside, bin)
}

/// Runs `batch` (Python) in GIMP 3 without a display; it writes its findings as JSON to
/// `work/result.json`, returned with GIMP's output.
fn run_gimp_batch(inside: &Inside, batch: &str) -> (Value, String) {
    let out = inside.run(
        &[
            "timeout",
            "-s",
            "KILL",
            "300",
            "gimp-console-3.0",
            "-i",
            "-n",
            "--batch-interpreter=python-fu-eval",
            "-b",
            "-",
            "--quit",
        ],
        Some(batch),
    );
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let res: Value = serde_json::from_slice(
        &std::fs::read(inside.host().join("work/result.json")).unwrap_or_default(),
    )
    .unwrap_or_else(|_| {
        panic!(
            "GIMP batch did not finish (rc {:?}):\n{log}",
            out.status.code()
        )
    });
    (res, log)
}

#[test]
fn gimp_3_adds_the_result_as_a_layer_above_at_full_precision() {
    let f = fixtures();
    let (inside, bin) = gimp_with_plugin("layer", &f.tiff16);
    let host = inside.host();

    // What the daemon makes of the same photo, for comparison.
    let direct = inside.path("work/direct.tif");
    let out = inside.run(
        &[
            &bin,
            "enhance",
            &inside.path("work/photo.tif"),
            "--preset",
            "warm-film",
            "--intensity",
            "0.7",
            "--out",
            &direct,
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let batch = format!(
        r#"
import json
import gi
gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gimp, Gio, Gegl
res = {{}}
img = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path("{photo}"))
src = img.get_layers()[0]
w, h = src.get_width(), src.get_height()
rect = Gegl.Rectangle.new(0, 0, w, h)
before = src.get_buffer().get(rect, 1.0, "R'G'B' u16", Gegl.AbyssPolicy.CLAMP)
precision = img.get_precision()
proc = Gimp.get_pdb().lookup_procedure("python-fu-luminary-enhance")
assert proc is not None, "plug-in not registered"
def call(preset):
    config = proc.create_config()
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    config.set_property("image", img)
    config.set_core_object_array("drawables", [src])
    config.set_property("preset", preset)
    config.set_property("intensity", 0.7)
    config.set_property("engine", "local")
    return proc.run(config)
r = call("warm-film")
res["status"] = int(r.index(0))
res["success"] = int(r.index(0)) == int(Gimp.PDBStatusType.SUCCESS)
res["message"] = r.index(1) if r.length() > 1 else ""
layers = img.get_layers()
res["names"] = [l.get_name() for l in layers]
res["source_below"] = len(layers) > 1 and layers[1].get_id() == src.get_id()
res["precision_kept"] = img.get_precision() == precision
res["source_unchanged"] = src.get_buffer().get(rect, 1.0, "R'G'B' u16", Gegl.AbyssPolicy.CLAMP) == before
if len(layers) > 1:
    new = layers[0]
    out = Gimp.Image.new_with_precision(w, h, img.get_base_type(), img.get_precision())
    out.set_color_profile(img.get_color_profile())
    copy = Gimp.Layer.new_from_drawable(new, out)
    out.insert_layer(copy, None, 0)
    Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, out, Gio.File.new_for_path("{layer}"), None)
    out.delete()
# With a selection, the new layer is masked to it.
img.select_rectangle(Gimp.ChannelOps.REPLACE, 100, 100, 400, 300)
r2 = call("moody")
# Inserted directly above the source, so below the first result.
above_src = img.get_layers()[1]
res["masked"] = int(r2.index(0)) == int(Gimp.PDBStatusType.SUCCESS) and above_src.get_mask() is not None
res["masked_name"] = above_src.get_name()
Gimp.Selection.none(img)
# A preset GIMP's choice does not list is refused by the procedure's config itself.
probe = proc.create_config()
try:
    probe.set_property("preset", "no-such-preset")
except Exception:
    pass
res["unknown_preset_refused"] = probe.get_property("preset") != "no-such-preset"
# A failure of Luminary itself (an AI engine without its key) is GIMP's error message.
config = proc.create_config()
config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
config.set_property("image", img)
config.set_core_object_array("drawables", [src])
config.set_property("preset", "warm-film")
config.set_property("engine", "gemini")
bad = proc.run(config)
res["bad_status"] = int(bad.index(0))
res["bad_message"] = bad.index(1) if bad.length() > 1 else ""
res["layers_after_error"] = len(img.get_layers())
res["execution_error"] = int(Gimp.PDBStatusType.EXECUTION_ERROR)
json.dump(res, open("{result}", "w"))
img.delete()
"#,
        photo = inside.path("work/photo.tif"),
        layer = inside.path("work/layer.tif"),
        result = inside.path("work/result.json"),
    );
    let (res, log) = run_gimp_batch(&inside, &batch);
    assert_eq!(res["success"], true, "{res}\n{log}");
    assert_eq!(res["names"][0], "Luminary — warm-film", "{res}");
    assert_eq!(
        res["source_below"], true,
        "new layer is not directly above the source: {res}"
    );
    assert_eq!(res["precision_kept"], true);
    assert_eq!(res["source_unchanged"], true, "the source layer changed");
    assert_eq!(res["unknown_preset_refused"], true, "{res}");
    assert_eq!(
        res["bad_status"], res["execution_error"],
        "an engine without its key must fail the procedure: {res}"
    );
    let msg = res["bad_message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("engine_auth") && msg.contains("GEMINI_API_KEY"),
        "{msg}"
    );
    assert_eq!(res["masked"], true, "no selection mask: {res}");
    assert_eq!(res["masked_name"], "Luminary — moody");
    assert_eq!(
        res["layers_after_error"], 3,
        "a failed call must not add a layer"
    );

    // The layer's pixels are the daemon's output for the same photo, within rounding.
    let layer = image::open(host.join("work/layer.tif"))
        .unwrap()
        .into_rgb16();
    let want = image::open(host.join("work/direct.tif"))
        .unwrap()
        .into_rgb16();
    assert_eq!(layer.dimensions(), want.dimensions());
    let diffs: Vec<i32> = layer
        .iter()
        .zip(want.iter())
        .map(|(a, b)| (*a as i32 - *b as i32).abs())
        .collect();
    let mean = diffs.iter().map(|&d| d as f64).sum::<f64>() / diffs.len() as f64;
    let max = *diffs.iter().max().unwrap();
    println!("GIMP layer vs daemon output: mean {mean:.2}, max {max} (16-bit codes)");
    assert!(
        max <= 2,
        "GIMP layer differs from the daemon's output: mean {mean:.1}, max {max} (16-bit codes)"
    );
    let orig = image::open(host.join("work/photo.tif"))
        .unwrap()
        .into_rgb16();
    let changed = orig
        .iter()
        .zip(layer.iter())
        .map(|(a, b)| (*a as i32 - *b as i32).abs() as f64)
        .sum::<f64>()
        / diffs.len() as f64;
    assert!(
        changed > 500.0,
        "the layer does not show the preset (mean change {changed:.0} codes)"
    );
}

/// #17 point 3: on Windows the plug-in runs luminary.exe from an argument list (no shell,
/// so cmd.exe's quoting never applies to photo paths) and with no console window (GIMP has
/// no console; without CREATE_NO_WINDOW each run would open one). GIMP for Windows cannot
/// run here, so the plug-in's module is loaded by a plain Python with GIMP's introspection
/// stubbed, on a pretended Windows.
#[test]
fn on_windows_the_plugin_runs_luminary_from_an_argument_list_without_a_console() {
    let plugin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../gimp-bridge/luminary/luminary.py");
    let script = format!(
        r#"
import importlib.util, subprocess, sys, types
class PlugIn:
    __gtype__ = None
gi = types.ModuleType("gi")
gi.require_version = lambda *a: None
repo = types.ModuleType("gi.repository")
repo.Gimp = types.SimpleNamespace(PlugIn=PlugIn, main=lambda *a: None)
repo.GLib = repo.GObject = repo.Gio = types.SimpleNamespace()
sys.modules["gi"], sys.modules["gi.repository"] = gi, repo
spec = importlib.util.spec_from_file_location("luminary_plugin", {plugin:?})
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
sys.platform = "win32"
seen = []
class Recorder:
    def __init__(self, args, **kw):
        seen.append((args, kw))
        raise OSError("recorded")
subprocess.Popen = Recorder
subprocess.run = lambda args, **kw: Recorder(args, **kw)
path = r"C:\Users\Ω\Hochzeit 100%USERNAME% & Co ^ (1)!\Braut.tif"
try:
    mod.run_luminary(["enhance", path, "--preset", "warm-film"], lambda f, s: None)
except OSError:
    pass
mod.list_presets()
assert len(seen) == 2, seen
for args, kw in seen:
    assert isinstance(args, list), args
    assert not kw.get("shell"), kw
    assert kw.get("creationflags") == 0x08000000, kw
    assert "preexec_fn" not in kw, kw
assert path in seen[0][0], seen[0][0]
print("OK")
"#,
        plugin = plugin.to_string_lossy()
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && text.contains("OK"), "{text}");
}

/// #16 point 6, in real GIMP 3: the preset and the engine are choices (names, with each
/// preset's description), each preset's parameters are arguments of their own type; the
/// dialog's live preview is a temporary layer that follows the settings, and closing it
/// leaves the image as it was — no layer, the undo history untouched — so OK gives the
/// same pixels as a run without preview.
#[test]
fn gimp_3_chooses_presets_by_name_with_their_parameters_and_previews_on_the_canvas() {
    let f = fixtures();
    let (inside, _bin) = gimp_with_plugin("preview", &f.tiff16);
    let batch = format!(
        r#"
import importlib.util, json
import gi
gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gimp, Gio, Gegl
res = {{}}
proc = Gimp.get_pdb().lookup_procedure("python-fu-luminary-enhance")
specs = {{a.get_name(): a for a in proc.get_arguments()}}
choice = Gimp.param_spec_choice_get_choice(specs["preset"])
res["presets"] = choice.list_nicks()
res["bw_label"] = choice.get_label("bw-classic")
res["bw_help"] = choice.get_help("bw-classic")
res["engines"] = Gimp.param_spec_choice_get_choice(specs["engine"]).list_nicks()
res["filter_choices"] = Gimp.param_spec_choice_get_choice(specs["bw-classic-filter"]).list_nicks()
res["grain_type"] = specs["bw-classic-grain"].value_type.name
# The dialog's "Preview" is an auxiliary argument: not in the PDB signature scripts call.
res["preview_not_in_signature"] = "preview" not in specs

img = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path("{photo}"))
src = img.get_layers()[0]
w, h = src.get_width(), src.get_height()
rect = Gegl.Rectangle.new(0, 0, w, h)
def pixels(layer):
    return layer.get_buffer().get(rect, 1.0, "R'G'B' u16", Gegl.AbyssPolicy.CLAMP)

def run(preset, params):
    config = proc.create_config()
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    config.set_property("image", img)
    config.set_core_object_array("drawables", [src])
    config.set_property("preset", preset)
    config.set_property("intensity", 1.0)
    for k, v in params.items():
        config.set_property(k, v)
    r = proc.run(config)
    assert int(r.index(0)) == int(Gimp.PDBStatusType.SUCCESS), r.index(1)
    new = img.get_layers()[0]
    data = pixels(new)
    img.remove_layer(new)
    return data

# A parameter changes the result: a yellow filter is not a red one.
red = run("bw-classic", {{"bw-classic-filter": "red"}})
yellow = run("bw-classic", {{"bw-classic-filter": "yellow"}})
res["param_changes_result"] = red != yellow

# The plug-in's live preview, driven as the dialog drives it.
spec = importlib.util.spec_from_file_location("luminary_plugin", "{plugin}")
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
names_before = [l.get_name() for l in img.get_layers()]
img.clean_all()
undo_before = img.undo_is_enabled()
live = mod.LivePreview(img, src)
live.show({{"preset": "warm-film", "intensity": 1.0, "engine": "local", "params": []}})
layers = img.get_layers()
res["preview_name"] = layers[0].get_name()
res["preview_size"] = [layers[0].get_width(), layers[0].get_height()]
res["preview_above_source"] = layers[1].get_id() == src.get_id()
strong = pixels(layers[0])
live.show({{"preset": "warm-film", "intensity": 0.2, "engine": "local", "params": []}})
res["one_preview_layer"] = [l.get_name() for l in img.get_layers()].count("Luminary preview") == 1
res["follows_intensity"] = pixels(img.get_layers()[0]) != strong
res["source_untouched"] = pixels(src) == src.get_buffer().get(rect, 1.0, "R'G'B' u16", Gegl.AbyssPolicy.CLAMP)
live.close()
res["layers_after_close"] = [l.get_name() for l in img.get_layers()] == names_before
res["undo_enabled_after_close"] = img.undo_is_enabled() == undo_before
# Nothing went into the undo history: the image is as clean as before the preview.
res["clean_after_close"] = not img.is_dirty()
# OK after a preview: the same pixels as a run without one.
after_preview = run("warm-film", {{}})
plain = run("warm-film", {{}})
res["same_pixels"] = after_preview == plain
json.dump(res, open("{result}", "w"))
img.delete()
"#,
        photo = inside.path("work/photo.tif"),
        plugin = inside.path("gimpcfg/plug-ins/luminary/luminary.py"),
        result = inside.path("work/result.json"),
    );
    let (res, log) = run_gimp_batch(&inside, &batch);
    let presets: Vec<&str> = res["presets"]
        .as_array()
        .unwrap_or_else(|| panic!("{res}\n{log}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for id in ["auto", "warm-film", "bw-classic", "virtual-twilight"] {
        assert!(presets.contains(&id), "{id} not offered: {presets:?}");
    }
    assert_eq!(presets.len(), 24, "{presets:?}");
    assert_eq!(res["bw_label"], "Classic black & white", "{res}");
    assert!(
        res["bw_help"]
            .as_str()
            .unwrap_or_default()
            .contains("silver-gelatin"),
        "{res}"
    );
    assert_eq!(
        res["engines"],
        serde_json::json!(["local", "gemini", "openai", "fal", "replicate", "comfyui"])
    );
    assert_eq!(
        res["filter_choices"],
        serde_json::json!(["none", "yellow", "red", "green"])
    );
    assert_eq!(res["grain_type"], "gdouble", "{res}");
    assert_eq!(res["preview_not_in_signature"], true, "{res}");
    assert_eq!(res["param_changes_result"], true, "{res}");
    assert_eq!(res["preview_name"], "Luminary preview", "{res}\n{log}");
    assert_eq!(res["preview_above_source"], true, "{res}");
    assert_eq!(res["one_preview_layer"], true, "{res}");
    assert_eq!(res["follows_intensity"], true, "{res}");
    assert_eq!(res["source_untouched"], true, "{res}");
    assert_eq!(res["layers_after_close"], true, "{res}");
    assert_eq!(res["undo_enabled_after_close"], true, "{res}");
    assert_eq!(
        res["clean_after_close"], true,
        "the preview left an undo step: {res}"
    );
    assert_eq!(res["same_pixels"], true, "{res}");
    let (w, h) = {
        let img = image::open(&f.tiff16).unwrap();
        (img.width(), img.height())
    };
    assert_eq!(res["preview_size"], serde_json::json!([w, h]), "{res}");
}

/// Issue #18 in real GIMP 3: "Same look for all open images" learns the look on this image
/// and gives every open image's selected layer a new layer with it, in one run; a saved
/// `.look` chosen as the procedure's file argument is applied with no engine.
#[test]
fn gimp_3_gives_every_open_image_the_same_look_and_applies_a_saved_one() {
    let f = fixtures();
    let (inside, bin) = gimp_with_plugin("looks", &f.tiff16);
    std::fs::copy(&f.tiff8, inside.host().join("work/second.tif")).unwrap();
    let look = inside.path("work/shoot.look");
    let out = inside.run(
        &[
            &bin,
            "look",
            "learn",
            &inside.path("work/photo.tif"),
            "--preset",
            "golden-hour",
            "--out",
            &look,
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let batch = format!(
        r#"
import json
import gi
gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gimp, Gio, Gegl
res = {{}}
proc = Gimp.get_pdb().lookup_procedure("python-fu-luminary-enhance")
a = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path("{photo}"))
b = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path("{second}"))
def pixels(layer):
    rect = Gegl.Rectangle.new(0, 0, layer.get_width(), layer.get_height())
    return layer.get_buffer().get(rect, 1.0, "R'G'B' u16", Gegl.AbyssPolicy.CLAMP)
src_a, src_b = a.get_layers()[0], b.get_layers()[0]
config = proc.create_config()
config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
config.set_property("image", a)
config.set_core_object_array("drawables", [src_a])
config.set_property("preset", "warm-film")
config.set_property("intensity", 1.0)
config.set_property("same-look-open-images", True)
r = proc.run(config)
res["same_status"] = int(r.index(0)) == int(Gimp.PDBStatusType.SUCCESS)
res["same_message"] = r.index(1) if r.length() > 1 and not res["same_status"] else ""
res["a_layers"] = [l.get_name() for l in a.get_layers()]
res["b_layers"] = [l.get_name() for l in b.get_layers()]
res["b_changed"] = len(b.get_layers()) > 1 and pixels(b.get_layers()[0]) != pixels(src_b)
# The saved look, on b alone.
config = proc.create_config()
config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
config.set_property("image", b)
config.set_core_object_array("drawables", [src_b])
config.set_property("intensity", 1.0)
config.set_property("look-file", Gio.File.new_for_path("{look}"))
r = proc.run(config)
res["look_status"] = int(r.index(0)) == int(Gimp.PDBStatusType.SUCCESS)
res["look_message"] = r.index(1) if r.length() > 1 and not res["look_status"] else ""
res["b_after_look"] = [l.get_name() for l in b.get_layers()]
# Own words on the offline engine: refused, clearly, and nothing added.
config = proc.create_config()
config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
config.set_property("image", b)
config.set_core_object_array("drawables", [src_b])
config.set_property("prompt", "remove the power lines")
config.set_property("engine", "local")
r = proc.run(config)
res["prompt_local_message"] = r.index(1) if r.length() > 1 else ""
# On gemini without a key: the free-text edit reached the engine, which asks for its key.
config.set_property("engine", "gemini")
r = proc.run(config)
res["prompt_gemini_message"] = r.index(1) if r.length() > 1 else ""
res["b_after_prompts"] = len(b.get_layers())
json.dump(res, open("{result}", "w"))
a.delete()
b.delete()
"#,
        photo = inside.path("work/photo.tif"),
        second = inside.path("work/second.tif"),
        look = look,
        result = inside.path("work/result.json"),
    );
    let (res, log) = run_gimp_batch(&inside, &batch);
    assert_eq!(res["same_status"], true, "{res}\n{log}");
    assert_eq!(res["a_layers"][0], "Luminary — warm-film", "{res}");
    assert_eq!(res["b_layers"][0], "Luminary — warm-film", "{res}");
    assert_eq!(res["b_changed"], true, "{res}");
    assert!(
        log.contains("same look for all — no engine call for 2 images"),
        "the summary: {log}"
    );
    assert_eq!(res["look_status"], true, "{res}\n{log}");
    // Directly above the layer it was made from (the source, below the first result).
    assert_eq!(res["b_after_look"][1], "Luminary — look shoot", "{res}");
    let m = res["prompt_local_message"].as_str().unwrap_or_default();
    assert!(m.contains("needs an AI engine"), "{res}");
    let m = res["prompt_gemini_message"].as_str().unwrap_or_default();
    assert!(m.contains("GEMINI_API_KEY"), "{res}");
    assert_eq!(
        res["b_after_prompts"], 3,
        "a refused edit adds no layer: {res}"
    );
}

/// #21 point 3: a cut-out arrives in GIMP as a new layer whose layer mask is the refined
/// matte (the layer itself the opaque photo), through a mock of fal's BiRefNet.
#[test]
fn gimp_3_gets_a_cutout_as_a_layer_with_its_matte_as_layer_mask() {
    use luminary_engines::mock::{MockKind, MockServer};
    let studio = super::engines::cutouts::studio();
    let mock = MockServer::start(MockKind::Fal, vec![]);
    mock.set_matte(super::engines::cutouts::truth_image(studio));
    let (inside, _bin) = gimp_with_plugin("cutout", &studio.tif);
    use_fal_mock(&inside, &mock);
    let batch = format!(
        r#"
import json
import gi
gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gimp, Gio, Gegl
res = {{}}
img = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path("{photo}"))
src = img.get_layers()[0]
w, h = src.get_width(), src.get_height()
proc = Gimp.get_pdb().lookup_procedure("python-fu-luminary-enhance")
config = proc.create_config()
config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
config.set_property("image", img)
config.set_core_object_array("drawables", [src])
config.set_property("preset", "remove-background")
config.set_property("intensity", 1.0)
config.set_property("engine", "fal")
r = proc.run(config)
res["success"] = int(r.index(0)) == int(Gimp.PDBStatusType.SUCCESS)
res["message"] = r.index(1) if r.length() > 1 else ""
layers = img.get_layers()
res["names"] = [l.get_name() for l in layers]
new = layers[0]
mask = new.get_mask()
res["has_mask"] = mask is not None
if mask is not None:
    def mean(drawable, x, y, size):
        buf = drawable.get_buffer().get(Gegl.Rectangle.new(x, y, size, size), 1.0, "Y float", Gegl.AbyssPolicy.CLAMP)
        import struct
        vals = struct.unpack("%df" % (size * size), bytes(buf))
        return sum(vals) / len(vals)
    res["mask_centre"] = mean(mask, w // 2 - 20, h // 2 - 20, 40)
    res["mask_corner"] = mean(mask, 10, 10, 40)
    # The layer itself is opaque: its alpha went into the mask.
    abuf = new.get_buffer().get(Gegl.Rectangle.new(10, 10, 40, 40), 1.0, "RGBA float", Gegl.AbyssPolicy.CLAMP)
    import struct
    vals = struct.unpack("%df" % (40 * 40 * 4), bytes(abuf))
    res["layer_alpha_corner"] = min(vals[3::4])
json.dump(res, open("{result}", "w"))
img.delete()
"#,
        photo = inside.path("work/photo.tif"),
        result = inside.path("work/result.json"),
    );
    let (res, log) = run_gimp_batch(&inside, &batch);
    assert_eq!(res["success"], true, "{res}\n{log}");
    assert_eq!(res["names"][0], "Luminary — remove-background", "{res}");
    assert_eq!(res["has_mask"], true, "no layer mask: {res}");
    assert!(res["mask_centre"].as_f64().unwrap() > 0.99, "{res}");
    assert!(res["mask_corner"].as_f64().unwrap() < 0.01, "{res}");
    assert!(res["layer_alpha_corner"].as_f64().unwrap() > 0.99, "{res}");
    assert_eq!(mock.requests_to("POST", "/fal-ai/birefnet/v2").len(), 1);
}

/// #21 point 4 in GIMP 3: an upscale says it sends the whole image (tiles, cost) before the
/// first tile goes — in a script as GIMP's message; at the dialog it asks — and its result
/// arrives as a layer twice the size.
#[test]
fn gimp_3_says_an_upscale_sends_the_whole_image_and_adds_it_as_a_layer() {
    use luminary_engines::mock::{MockKind, MockServer};
    let f = fixtures();
    let mock = MockServer::start(MockKind::Fal, vec![]);
    let (inside, _bin) = gimp_with_plugin("upscale", &f.tiff8);
    use_fal_mock(&inside, &mock);
    let batch = format!(
        r#"
import json
import gi
gi.require_version("Gimp", "3.0")
from gi.repository import Gimp, Gio
res = {{}}
img = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path("{photo}"))
src = img.get_layers()[0]
res["source"] = [src.get_width(), src.get_height()]
proc = Gimp.get_pdb().lookup_procedure("python-fu-luminary-enhance")
config = proc.create_config()
config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
config.set_property("image", img)
config.set_core_object_array("drawables", [src])
config.set_property("preset", "upscale")
config.set_property("intensity", 1.0)
config.set_property("engine", "fal")
r = proc.run(config)
res["success"] = int(r.index(0)) == int(Gimp.PDBStatusType.SUCCESS)
res["message"] = r.index(1) if r.length() > 1 else ""
new = img.get_layers()[0]
res["name"] = new.get_name()
res["size"] = [new.get_width(), new.get_height()]
json.dump(res, open("{result}", "w"))
img.delete()
"#,
        photo = inside.path("work/photo.tif"),
        result = inside.path("work/result.json"),
    );
    let (res, log) = run_gimp_batch(&inside, &batch);
    assert_eq!(res["success"], true, "{res}\n{log}");
    assert_eq!(res["name"], "Luminary — upscale", "{res}");
    let (w, h) = (
        res["source"][0].as_u64().unwrap(),
        res["source"][1].as_u64().unwrap(),
    );
    assert_eq!(res["size"], serde_json::json!([2 * w, 2 * h]), "{res}");
    assert!(
        log.contains("sends the whole full-resolution image")
            && log.contains("tile(s) for 1 image(s)"),
        "the notice is not in GIMP's messages:\n{log}"
    );
    assert_eq!(
        mock.requests_to("POST", "/fal-ai/esrgan").len(),
        luminary::pipeline::upscale::tile_count(w as usize, h as usize)
    );
}

/// #19 in GIMP 3: a result the daemon adds a note to (an AI answer torn in two, which
/// could not be lined up with the image) still arrives as a layer, and the note is GIMP's
/// message, naming the image (a script's image has no file: GIMP names it "[Untitled]").
#[test]
fn gimp_3_shows_a_results_note_as_a_message() {
    use luminary_engines::mock::{Fault, MockKind, MockServer};
    let f = fixtures();
    let mock = MockServer::start(MockKind::Gemini, vec![Fault::Torn]);
    let (inside, _bin) = gimp_with_plugin("note", &f.tiff8);
    use_mock(&inside, &mock, "gemini");
    let batch = format!(
        r#"
import json
import gi
gi.require_version("Gimp", "3.0")
from gi.repository import Gimp, Gio
res = {{}}
img = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path("{photo}"))
src = img.get_layers()[0]
proc = Gimp.get_pdb().lookup_procedure("python-fu-luminary-enhance")
config = proc.create_config()
config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
config.set_property("image", img)
config.set_core_object_array("drawables", [src])
config.set_property("preset", "warm-film")
config.set_property("intensity", 0.8)
config.set_property("engine", "gemini")
r = proc.run(config)
res["success"] = int(r.index(0)) == int(Gimp.PDBStatusType.SUCCESS)
res["message"] = r.index(1) if r.length() > 1 else ""
res["name"] = img.get_layers()[0].get_name()
json.dump(res, open("{result}", "w"))
img.delete()
"#,
        photo = inside.path("work/photo.tif"),
        result = inside.path("work/result.json"),
    );
    let (res, log) = run_gimp_batch(&inside, &batch);
    assert_eq!(res["success"], true, "{res}\n{log}");
    assert_eq!(res["name"], "Luminary — warm-film", "{res}");
    assert!(
        log.contains("Luminary: [Untitled]: the engine's picture could not be lined up"),
        "the note is not in GIMP's messages:\n{log}"
    );
    assert_eq!(mock.billed(), 1);
}

/// The chroot's Luminary talks to `mock` as fal, its key in a private config file (GIMP
/// starts the daemon, so an environment variable would not reach it).
fn use_fal_mock(inside: &Inside, mock: &luminary_engines::mock::MockServer) {
    use_mock(inside, mock, "fal")
}

/// The chroot's Luminary talks to `mock` as `engine`, its key in a private config file.
fn use_mock(inside: &Inside, mock: &luminary_engines::mock::MockServer, engine: &str) {
    use std::os::unix::fs::PermissionsExt;
    let cfg = inside.host().join("cfg/luminary");
    std::fs::create_dir_all(&cfg).unwrap();
    let config = cfg.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[engines.{engine}]\nbase_url = \"{}\"\napi_key = \"{}\"\nconnect_timeout_s = 2\n",
            mock.base_url,
            luminary_engines::mock::TEST_KEY
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
}
