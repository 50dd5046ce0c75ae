//! The Lightroom Classic plug-in's own code (menu action and export service), run by Lua 5.1
//! against a strict stand-in of the Lightroom SDK (`tests/lr/sdk.lua`) and a real daemon.

use std::path::{Path, PathBuf};
use std::process::Command;

use luminary_tests::daemon::Env;

use super::{copy_into, fixtures};

fn lr_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("lr")
}

/// Installs the plug-in with `luminary install lightroom`, then runs `scenario` (Lua, after
/// the SDK stand-in and the plug-in are loaded). Returns the plug-in folder.
fn run_scenario(env: &Env, scenario: &str) -> (String, PathBuf) {
    run_scenario_as(env, scenario, false)
}

/// [`run_scenario`], with the plug-in on Windows when `windows` is set: `WIN_ENV`, and
/// every LrTasks.execute parsed as `cmd.exe /c` would (the stand-in's Windows mode).
fn run_scenario_as(env: &Env, scenario: &str, windows: bool) -> (String, PathBuf) {
    run_scenario_with(env, scenario, windows, &[])
}

/// [`run_scenario_as`] with more environment variables for the plug-in's commands (and
/// so the daemon they start), e.g. a provider's key.
fn run_scenario_with(
    env: &Env,
    scenario: &str,
    windows: bool,
    vars: &[(&str, &str)],
) -> (String, PathBuf) {
    let modules = env.root.path().join("Modules");
    let out = env.run(&["install", "lightroom", "--dest", modules.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plugin = modules.join("Luminary.lrplugin");
    let tmp = env.root.path().join("lrtmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let script = env.root.path().join("scenario.lua");
    std::fs::write(
        &script,
        format!(
            "dofile({sdk:?})\nSDK.load({plugin:?})\n{scenario}\nprint('SCENARIO OK')\n",
            sdk = lr_dir().join("sdk.lua").to_string_lossy(),
            plugin = plugin.to_string_lossy()
        ),
    )
    .unwrap();
    let mut cmd = Command::new("lua5.1");
    cmd.arg(&script)
        .env("LR_TEST_TMP", &tmp)
        .env("LR_TEST_WINDOWS", if windows { "1" } else { "0" })
        .current_dir(&env.work);
    for (k, v) in env.cmd().get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    cmd.envs(vars.iter().copied());
    let out = cmd
        .output()
        .expect("lua5.1 is installed (.ci/run installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("SCENARIO OK"),
        "scenario failed:\n{text}\ndaemon log:\n{}",
        env.daemon_log()
    );
    // No temporary result, progress or cancel files left behind.
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != "export")
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
    (text, plugin)
}

#[test]
fn every_lua_file_of_the_plugin_is_lua_5_1() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../lr-bridge/Luminary.lrplugin");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "lua") {
            let out = Command::new("luac5.1")
                .arg("-p")
                .arg(e.path())
                .output()
                .expect("luac5.1");
            assert!(
                out.status.success(),
                "{}: {}",
                e.path().display(),
                String::from_utf8_lossy(&out.stderr)
            );
            n += 1;
        }
    }
    assert!(n >= 7, "only {n} Lua files");
}

#[test]
fn menu_action_stacks_results_above_originals_with_their_metadata_and_skips_what_it_should() {
    let f = fixtures();
    let env = Env::new();
    let tif = copy_into(&env, &f.tiff8);
    let raw = copy_into(&env, &f.dng_grbg_12);
    // An earlier Luminary result in the catalog must not be enhanced again.
    let prior = env.run(&[
        "enhance",
        tif.to_str().unwrap(),
        "--preset",
        "moody",
        "--format",
        "jpeg",
    ]);
    assert!(prior.status.success());
    let prior_path = env.work.join("scan8-luminary-moody.jpg");
    let scenario = format!(
        r#"
local A = SDK.photo {{ path = {tif:?}, rating = 3, label = "red", title = "Dunes", caption = "Evening light",
                       keywords = {{ "client > smith" }} }}
local B = SDK.photo {{ path = {raw:?}, rating = 5 }}
local V = SDK.photo {{ path = {tif:?}, virtual = true }}
local R = SDK.photo {{ path = {prior:?} }}
SDK.catalog.selected = {{ A, V, B, R }}
SDK.prefs.preset = "warm-film"
SDK.prefs.intensities = {{ ["warm-film"] = 0.6 }}
SDK.prefs.engine = "local"
SDK.prefs.source = "edited"
SDK.prefs.format = "tiff"
SDK.runMenuItem()

-- The dialog offered the daemon's presets, the chosen one's parameters, and remembered choices.
local dialog = SDK.dialogs[1]
SDK.check(dialog ~= nil, "no dialog shown")
local found = false
local staging = nil
local function walk(v)
  if type(v) ~= "table" then return end
  if v.kind == "popup_menu" then
    for _, item in ipairs(v.props.items or {{}}) do
      if item.value == "warm-film" then found = true end
      if item.value == "virtual-staging" then staging = item.title end
    end
  end
  for _, c in pairs(v) do walk(c) end
end
walk(dialog.contents)
SDK.check(found, "warm-film not offered in the dialog")
SDK.check(staging and string.find(staging, "AI engine only", 1, true), "virtual staging not marked AI-only: " .. tostring(staging))
SDK.check(SDK.prefs.preset == "warm-film" and SDK.prefs.intensities["warm-film"] == 0.6, "choices not remembered")

-- Two results, each stacked above its own original, inside write access.
SDK.check(#SDK.added == 2, "added " .. #SDK.added .. " photos")
SDK.check(SDK.added[1].stack == A and SDK.added[1].position == "above", "first result not stacked above A")
SDK.check(SDK.added[2].stack == B and SDK.added[2].position == "above", "second result not stacked above B")
SDK.check(SDK.exportSessions == 2, "'As edited' should render through LrExportSession")
local a = SDK.added[1].photo
SDK.check(a.rating == 3 and a.label == "red" and a.title == "Dunes" and a.caption == "Evening light", "metadata not copied")
local kws = {{}}
for _, k in ipairs(a.keywords) do kws[#kws + 1] = type(k) == "table" and k.path or k end
local kwtext = table.concat(kws, ";")
SDK.check(string.find(kwtext, "client > smith", 1, true), "keywords not copied: " .. kwtext)
SDK.check(string.find(kwtext, "Luminary > warm-film", 1, true), "no Luminary keyword: " .. kwtext)
SDK.check(SDK.added[2].photo.rating == 5, "rating of B not copied")

-- Progress: captions name photo i of N and the stage; the bar only moves forward.
local captions = table.concat(SDK.captions, "\n")
SDK.check(string.find(captions, "Photo 1 of 2", 1, true) and string.find(captions, "Photo 2 of 2", 1, true), captions)
SDK.check(string.find(captions, "engine", 1, true) or string.find(captions, "encode", 1, true), "no stage in captions: " .. captions)
local last = -1
for _, p in ipairs(SDK.progress) do
  SDK.check(p.done >= last, "progress went backwards")
  last = p.done
end
SDK.check(SDK.scope.finished, "progress scope not closed")

-- One summary, naming what was skipped and why.
local summary = SDK.messages[#SDK.messages].text
SDK.check(string.find(summary, "2 photo(s) enhanced", 1, true), summary)
SDK.check(string.find(summary, "virtual copy", 1, true) and string.find(summary, "already a Luminary result", 1, true), summary)

-- Both photos in one run of luminary (one console window on Windows), through a list file.
local runs = 0
for _, l in ipairs(SDK.commandLines) do
  if string.find(l, "enhance", 1, true) then
    runs = runs + 1
    SDK.check(string.find(l, "--files-from", 1, true), "photos on the command line: " .. l)
  end
end
SDK.check(runs == 1, runs .. " runs of luminary enhance for one selection")
"#,
        tif = tif.to_string_lossy(),
        raw = raw.to_string_lossy(),
        prior = prior_path.to_string_lossy()
    );
    run_scenario(&env, &scenario);
    assert!(env.work.join("scan8-luminary-warm-film.tif").exists());
    assert!(env.work.join("DSC_1234-luminary-warm-film.tif").exists());
}

#[test]
fn failures_are_summarised_in_one_dialog_and_cancel_stops_the_batch() {
    let f = fixtures();
    let env = Env::new();
    let tif = copy_into(&env, &f.tiff8);
    let raw = copy_into(&env, &f.dng_grbg_12);
    let before: Vec<_> = std::fs::read_dir(&env.work)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    let scenario = format!(
        r#"
local A = SDK.photo {{ path = {tif:?} }}
local B = SDK.photo {{ path = {raw:?} }}
SDK.catalog.selected = {{ A, B }}
SDK.prefs.preset = "auto"
SDK.prefs.engine = "gemini"
SDK.runMenuItem()
SDK.check(#SDK.added == 0, "nothing should be added")
local m = SDK.messages[#SDK.messages]
SDK.check(m.kind == "critical", "failures must be shown as an error")
SDK.check(string.find(m.text, "scan8.tif: engine_auth", 1, true), m.text)
SDK.check(string.find(m.text, "DSC_1234.dng: engine_auth", 1, true), m.text)

-- Cancel while the first photo is being enhanced: it stops, and so does the rest.
SDK.messages, SDK.progress, SDK.captions = {{}}, {{}}, {{}}
SDK.catalog.selected = {{ B, A }}
SDK.prefs.engine = "local"
SDK.prefs.source = "original"
SDK.cancelAfterProgress = 2
SDK.runMenuItem()
SDK.check(#SDK.added == 0, "cancelled batch added photos")
local text = SDK.messages[#SDK.messages].text
SDK.check(string.find(text, "Cancelled", 1, true), text)

-- A wrong path to luminary: one clear message saying where to set it, no dialog.
SDK.messages, SDK.dialogs, SDK.cancelAfterProgress = {{}}, {{}}, nil
SDK.prefs.binary = "/nonexistent/luminary"
SDK.runMenuItem()
local missing = SDK.messages[#SDK.messages]
SDK.check(missing and missing.kind == "critical", "no error for a missing binary")
SDK.check(string.find(missing.text, "/nonexistent/luminary", 1, true) and string.find(missing.text, "Plug-in Manager", 1, true), missing.text)
SDK.check(#SDK.dialogs == 0, "the dialog must not open without Luminary")
SDK.prefs.binary = nil
"#,
        tif = tif.to_string_lossy(),
        raw = raw.to_string_lossy()
    );
    run_scenario(&env, &scenario);
    // The cancelled job left nothing behind.
    let mut after: Vec<_> = std::fs::read_dir(&env.work)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    after.sort();
    let mut before = before;
    before.sort();
    assert_eq!(before, after, "files appeared in the photo folder");
    // And the daemon cancels the job it was running (within a moment of the client leaving).
    let mut running = serde_json::Value::Null;
    for _ in 0..100 {
        let st: serde_json::Value =
            serde_json::from_slice(&env.run(&["status", "--json", "--no-spawn"]).stdout).unwrap();
        running = st["jobs_running"].clone();
        if running == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(running, 0, "the cancelled job kept running");
}

#[test]
fn export_service_enhances_renderings_and_stacks_them_above_the_source() {
    let f = fixtures();
    let env = Env::new();
    let tif = copy_into(&env, &f.tiff16);
    let scenario = format!(
        r#"
local A = SDK.photo {{ path = {tif:?}, rating = 2 }}
SDK.runExport({{ A }}, {{ luminary_preset = "portra-400", luminary_intensity = 0.5, luminary_engine = "local" }})
SDK.check(#SDK.added == 1, "added " .. #SDK.added)
SDK.check(SDK.added[1].stack == A and SDK.added[1].position == "above", "not stacked above the source")
SDK.check(SDK.added[1].photo.rating == 2, "rating not copied")
SDK.check(#SDK.messages == 0, "no dialog expected on success")
"#,
        tif = tif.to_string_lossy()
    );
    run_scenario(&env, &scenario);
    assert!(env.work.join("scan16-luminary-portra-400.tif").exists());
}

/// On Windows LrTasks.execute runs each command through `cmd.exe /c`, which expands
/// %NAME% even inside quotes, treats & ^ < > | as operators outside them and strips the
/// line's first and last quote. A wedding folder with all of that in its name reaches
/// luminary as written, and the result lands beside the original under the original's
/// stem.
#[test]
fn under_windows_the_commands_survive_cmd_exe_with_any_folder_name() {
    let f = fixtures();
    let env = Env::new();
    let dir = env.work.join("Hochzeit 100%USERNAME% & Co ^ (1)! Ωmega");
    std::fs::create_dir_all(&dir).unwrap();
    let photo = dir.join("Braut & Bräutigam 50%DATE%.tif");
    std::fs::copy(&f.tiff8, &photo).unwrap();
    // The photos go to luminary in a list file; the program's own path is on the command
    // line, so it lives in such a folder too.
    let tools = env.work.join("Tools 100%USERNAME% & Co ^ (2)!");
    std::fs::create_dir_all(&tools).unwrap();
    let binary = tools.join("luminary");
    std::os::unix::fs::symlink(luminary_tests::daemon::luminary_bin(), &binary).unwrap();
    let scenario = format!(
        r#"
-- The emulation is cmd.exe's, not the plug-in's own rules read back: naive quoting of the
-- same folder is expanded and split by it.
SDK.check(SDK.windowsCommand('""/bin/echo" "100%USERNAME%""') == "'/bin/echo' '100lrtester'",
  "the cmd.exe emulation does not expand %USERNAME%")
SDK.check(SDK.windowsCommand('/bin/echo "a" & "b"') == nil, "an & outside quotes should split the command")

local A = SDK.photo {{ path = {photo:?}, rating = 4 }}
SDK.catalog.selected = {{ A }}
SDK.prefs.binary = {binary:?}
SDK.prefs.preset = "warm-film"
SDK.prefs.intensities = {{ ["warm-film"] = 0.5 }}
SDK.prefs.engine = "local"
SDK.prefs.source = "raw"
SDK.prefs.format = "tiff"
SDK.runMenuItem()
SDK.check(SDK.cmdErrors == nil, "cmd.exe would fail: " .. table.concat(SDK.cmdErrors or {{}}, "\n"))
SDK.check(#SDK.added == 1, "added " .. #SDK.added .. " photos: " .. SDK.messages[#SDK.messages].text)
SDK.check(SDK.added[1].stack == A, "the result is not stacked with its original")
local lines = table.concat(SDK.commandLines, "\n")
SDK.check(string.find(lines, '"^%"', 1, true), "no % was escaped: " .. lines)
SDK.check(string.find(lines, "--files-from", 1, true), "the photos were not passed in a list: " .. lines)
"#,
        binary = binary.to_string_lossy()
    );
    run_scenario_as(&env, &scenario, true);
    let out = dir.join("Braut & Bräutigam 50%DATE%-luminary-warm-film.tif");
    assert!(
        out.exists(),
        "no result beside the original: {:?}",
        std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect::<Vec<_>>()
    );
}

/// #19 in Lightroom: a result the daemon adds a note to (here an AI answer torn in two,
/// which could not be lined up with the photo) is still imported, and the summary names
/// the photo and says what happened.
#[test]
fn a_result_note_reaches_the_summary() {
    use luminary_engines::mock::{Fault, MockKind, MockServer, TEST_KEY};
    let f = fixtures();
    let env = Env::new();
    let mock = MockServer::start(MockKind::Gemini, vec![Fault::Torn]);
    env.write_config(&format!(
        "[engines.gemini]\nbase_url = \"{}\"\nconnect_timeout_s = 2\n",
        mock.base_url
    ));
    let tif = copy_into(&env, &f.tiff8);
    let scenario = format!(
        r#"
local A = SDK.photo {{ path = {tif:?} }}
SDK.catalog.selected = {{ A }}
SDK.prefs.preset = "warm-film"
SDK.prefs.engine = "gemini"
SDK.prefs.source = "original"
SDK.dialogAnswer = "ok"
SDK.runMenuItem()
SDK.check(#SDK.added == 1, "added " .. #SDK.added .. ": " .. tostring((SDK.messages[#SDK.messages] or {{}}).text))
local m = SDK.messages[#SDK.messages]
SDK.check(m.kind == "info", "a note is not a failure: " .. m.kind)
SDK.check(string.find(m.text, "Notes:\n  scan8.tif: the engine's picture could not be lined up", 1, true), m.text)
"#,
        tif = tif.to_string_lossy()
    );
    run_scenario_with(&env, &scenario, false, &[("GEMINI_API_KEY", TEST_KEY)]);
    assert_eq!(mock.billed(), 1);
}

/// #16 point 5: the dialog shows before and after of the first selected photo, following
/// the intensity (the picture's file changes); every preset on the photo in a strip; the
/// selection's cost; on Gemini nothing is sent on a slider move, only on the button's click,
/// and that one call serves the preview and the final render together.
#[test]
fn the_dialog_previews_before_it_enhances_and_the_engine_is_paid_once_for_both() {
    use luminary_engines::mock::{MockKind, MockServer, TEST_KEY};
    let f = fixtures();
    let env = Env::new();
    let mock = MockServer::start(MockKind::Gemini, vec![]);
    env.write_config(&format!(
        "[engines.gemini]\nbase_url = \"{}\"\nprice_per_image = 0.04\nconnect_timeout_s = 2\n",
        mock.base_url
    ));
    let raw = copy_into(&env, &f.dng_grbg_12);
    let tif = copy_into(&env, &f.tiff8);
    let scenario = format!(
        r#"
local A = SDK.photo {{ path = {raw:?} }}
local B = SDK.photo {{ path = {tif:?} }}
SDK.catalog.selected = {{ A, B }}
SDK.prefs.preset = "warm-film"
SDK.prefs.intensities = {{ ["warm-film"] = 0.8 }}
SDK.prefs.engine = "local"
SDK.prefs.source = "original"
SDK.prefs.format = "tiff"
local LrTasks = import "LrTasks"
local function read(p) local fh = assert(io.open(p, "rb")) local s = fh:read("*a") fh:close() return s end
SDK.user = function(args, props)
  local function waitFor(cond, what)
    for _ = 1, 1200 do if cond() then return end LrTasks.sleep(0.1) end
    SDK.check(false, "timed out waiting for " .. what .. "; note: " .. tostring(props.previewNote))
  end
  waitFor(function() return props.beforeFile and props.afterFile end, "before and after")
  waitFor(function() return props["thumb_warm-film"] and props["thumb_bw-classic"] end, "the preset strip")
  SDK.check(#SDK.findViews(args.contents, "picture") >= 22, "no strip of presets")
  SDK.check(string.find(props.costLine, "2 photo(s) on the offline engine: free", 1, true), props.costLine)
  -- The after picture follows the intensity: a new file, other pixels.
  local first, bytes = props.afterFile, read(props.afterFile)
  props.intensity = 0.2
  waitFor(function() return props.afterFile ~= first end, "the preview at intensity 0.2")
  SDK.check(read(props.afterFile) ~= bytes, "the preview did not change with the intensity")
  SDK.check(read(props.beforeFile) ~= read(props.afterFile), "before and after are the same")
  -- A preset chosen by its thumbnail: the dialog switches to it and previews it.
  local shown = props.afterFile
  for _, b in ipairs(SDK.findViews(args.contents, "push_button")) do
    if b.props.title == "Classic black & white" then b.props.action() end
  end
  SDK.check(props.preset == "bw-classic", "the thumbnail's button did not choose its preset")
  waitFor(function() return props.afterFile ~= shown end, "the preview of the chosen preset")
  -- Gemini: the selection's cost, and nothing sent on a change until the click.
  props.preset = "warm-film"
  props.engine = "gemini"
  waitFor(function() return props.paidButtonEnabled end, "the paid preview's button")
  SDK.check(string.find(props.paidButtonTitle, "Preview with gemini, $0.04", 1, true), props.paidButtonTitle)
  SDK.check(string.find(props.costLine, "2 of 2 photo(s) will call gemini, about $0.08", 1, true), props.costLine)
  local unpaid = props.afterFile
  props.intensity = 0.6
  LrTasks.sleep(1.0)
  SDK.check(props.afterFile == unpaid, "a slider move sent a paid preview")
  for _, b in ipairs(SDK.findViews(args.contents, "push_button")) do
    if type(b.props.title) == "table" and b.props.title.bind == "paidButtonTitle" then b.props.action() end
  end
  waitFor(function() return props.afterFile ~= unpaid end, "the paid preview")
  SDK.check(string.find(props.previewNote, "paid $0.04", 1, true), props.previewNote)
  waitFor(function() return string.find(props.costLine, "1 of 2 photo(s) will call gemini", 1, true) end,
    "the cost line after the paid preview")
  SDK.check(string.find(props.costLine, "1 cached", 1, true), props.costLine)
  -- Another intensity of the paid edit: free, and it follows the slider again.
  local paid = props.afterFile
  props.intensity = 0.9
  waitFor(function() return props.afterFile ~= paid end, "a free new intensity")
  SDK.check(string.find(props.previewNote, "cached", 1, true), props.previewNote)
end
SDK.dialogAnswer = "ok"
SDK.runMenuItem()
SDK.check(#SDK.added == 2, "added " .. #SDK.added .. ": " .. tostring((SDK.messages[#SDK.messages] or {{}}).text))
"#,
        raw = raw.to_string_lossy(),
        tif = tif.to_string_lossy()
    );
    run_scenario_with(&env, &scenario, false, &[("GEMINI_API_KEY", TEST_KEY)]);
    // One call for A (its preview and its full-resolution file), one for B.
    assert_eq!(
        mock.billed(),
        2,
        "the preview's answer was not reused by the enhance"
    );
    assert!(env.work.join("DSC_1234-luminary-warm-film.tif").exists());
    // The dialog's files are gone.
    let left = std::fs::read_dir(env.root.path().join("lrtmp"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != "export")
        .count();
    assert_eq!(left, 0);
}

/// Issue #18 in Lightroom: "Same look for all selected photos" sends only the most selected
/// photo to the engine (the cost line says so before anything is paid), gives every photo
/// the look in one run, and the summary says "1 engine call … for 3 photos"; a saved look
/// chosen in the dialog is applied with no engine at all.
#[test]
fn same_look_for_all_selected_makes_one_engine_call_and_a_saved_look_none() {
    use luminary_engines::mock::{MockKind, MockServer, TEST_KEY};
    let f = fixtures();
    let env = Env::new();
    let mock = MockServer::start(MockKind::Gemini, vec![]);
    env.write_config(&format!(
        "[engines.gemini]\nbase_url = \"{}\"\nprice_per_image = 0.04\nconnect_timeout_s = 2\n",
        mock.base_url
    ));
    let raw = copy_into(&env, &f.dng_grbg_12);
    let tif = copy_into(&env, &f.tiff8);
    let jpg = copy_into(&env, &f.jpeg_rot);
    let scenario = format!(
        r#"
local A = SDK.photo {{ path = {raw:?} }}
local B = SDK.photo {{ path = {tif:?} }}
local C = SDK.photo {{ path = {jpg:?} }}
SDK.catalog.selected = {{ A, B, C }}
SDK.catalog.target = B
SDK.prefs.preset = "warm-film"
SDK.prefs.engine = "gemini"
SDK.prefs.source = "original"
SDK.prefs.format = "jpeg"
local LrTasks = import "LrTasks"
SDK.user = function(args, props)
  local function waitFor(cond, what)
    for _ = 1, 1200 do if cond() then return end LrTasks.sleep(0.1) end
    SDK.check(false, "timed out waiting for " .. what .. "; cost line: " .. tostring(props.costLine))
  end
  waitFor(function() return string.find(props.costLine, "3 of 3 photo(s) will call gemini", 1, true) end, "the selection's cost")
  props.sameLook = true
  waitFor(function() return string.find(props.costLine, "1 of 1 photo(s) will call gemini", 1, true) end,
    "the cost of the same look for all")
  SDK.check(string.find(props.costLine, "the same look then goes to all 3 photos at no cost", 1, true), props.costLine)
end
SDK.dialogAnswer = "ok"
SDK.runMenuItem()
SDK.check(#SDK.added == 3, "added " .. #SDK.added .. ": " .. tostring((SDK.messages[#SDK.messages] or {{}}).text))
local summary = SDK.messages[#SDK.messages].text
SDK.check(string.find(summary, "Same look for all: 1 engine call ($0.040) for 3 photos", 1, true), summary)
local enhanceRuns = 0
for _, l in ipairs(SDK.commandLines) do
  if string.find(l, "'enhance'", 1, true) then
    enhanceRuns = enhanceRuns + 1
    SDK.check(string.find(l, "--same-look", 1, true), "not the same look: " .. l)
  end
end
SDK.check(enhanceRuns == 1, enhanceRuns .. " runs")
-- Own words instead of the preset: the free-text edit on gemini, one call for C.
SDK.added, SDK.messages, SDK.commandLines = {{}}, {{}}, {{}}
SDK.catalog.selected = {{ C }}
SDK.catalog.target = C
SDK.user = function(args, props)
  props.prompt = "  make the sky stormy  "
  props.intensity = 1
end
SDK.runMenuItem()
SDK.check(#SDK.added == 1, "prompt: added " .. #SDK.added .. ": " .. tostring((SDK.messages[#SDK.messages] or {{}}).text))
local prompted = false
for _, l in ipairs(SDK.commandLines) do
  if string.find(l, "'enhance'", 1, true) then
    prompted = string.find(l, "'prompt=make the sky stormy'", 1, true) and string.find(l, "'--preset' 'prompt'", 1, true)
  end
end
SDK.check(prompted, "the enhance did not carry the words: " .. table.concat(SDK.commandLines, "\n"))
-- The look was kept: apply it again from the dialog, to A alone, with no engine.
local look = string.match(summary, "The look is saved as (.-%.look)")
SDK.check(look ~= nil, "no look named in: " .. summary)
SDK.added, SDK.messages, SDK.commandLines = {{}}, {{}}, {{}}
SDK.catalog.selected = {{ A }}
SDK.catalog.target = A
SDK.openPanelAnswer = {{ look }}
SDK.user = function(args, props)
  for _, b in ipairs(SDK.findViews(args.contents, "push_button")) do
    if b.props.title == "Choose…" then b.props.action() end
  end
  SDK.check(props.lookFile == look, "the chosen look is not in the dialog")
  props.intensity = 1
end
SDK.runMenuItem()
SDK.check(#SDK.added == 1, "saved look: added " .. #SDK.added .. ": " .. tostring((SDK.messages[#SDK.messages] or {{}}).text))
for _, l in ipairs(SDK.commandLines) do
  if string.find(l, "'enhance'", 1, true) then
    SDK.check(string.find(l, "--look", 1, true) and not string.find(l, "--engine", 1, true), l)
  end
end
"#,
        raw = raw.to_string_lossy(),
        tif = tif.to_string_lossy(),
        jpg = jpg.to_string_lossy()
    );
    let (text, _) = run_scenario_with(&env, &scenario, false, &[("GEMINI_API_KEY", TEST_KEY)]);
    // One call for the same look, one for the free-text edit.
    assert_eq!(mock.billed(), 2, "{text}");
    assert!(env.work.join("phone-luminary-prompt.jpg").exists());
    for stem in ["DSC_1234", "scan8", "phone"] {
        assert!(
            env.work
                .join(format!("{stem}-luminary-warm-film.jpg"))
                .exists(),
            "{stem}: {:?}",
            std::fs::read_dir(&env.work)
                .unwrap()
                .flatten()
                .map(|e| e.file_name())
                .collect::<Vec<_>>()
        );
    }
    // The saved look (named for its preset) beside the first result, never over it.
    assert!(
        env.work.join("DSC_1234-luminary-warm-film-2.jpg").exists(),
        "the saved look's result"
    );
}

/// #21 point 4: an upscale sends the whole photo out, so Lightroom asks first, saying so
/// and what it costs; "Cancel" sends nothing, "Upscale" runs it.
#[test]
fn an_upscale_is_confirmed_with_its_cost_before_any_tile_is_sent() {
    use luminary_engines::mock::{MockKind, MockServer, TEST_KEY};
    let f = fixtures();
    let env = Env::new();
    let mock = MockServer::start(MockKind::Fal, vec![]);
    env.write_config(&format!(
        "[engines.fal]\nbase_url = \"{}\"\nconnect_timeout_s = 2\n",
        mock.base_url
    ));
    let tif = copy_into(&env, &f.tiff8);
    let scenario = format!(
        r#"
local A = SDK.photo {{ path = {tif:?} }}
SDK.catalog.selected = {{ A }}
SDK.prefs.preset = "upscale"
SDK.prefs.engine = "fal"
SDK.prefs.source = "original"
SDK.prefs.format = "tiff"
SDK.confirmAnswer = "cancel"
SDK.runMenuItem()
SDK.check(SDK.confirms and #SDK.confirms == 1, "no question before the upscale")
local info = SDK.confirms[1].info
SDK.check(string.find(info, "whole full-resolution photo", 1, true), info)
SDK.check(string.find(info, "tile(s) for 1 photo(s), about $", 1, true), info)
SDK.check(#SDK.added == 0, "cancelled, yet something was imported")
SDK.confirmAnswer = "ok"
SDK.runMenuItem()
SDK.check(#SDK.added == 1, "the upscale was not imported: " .. #SDK.added)
"#
    );
    let before = mock.requests().len();
    run_scenario_with(&env, &scenario, false, &[("FAL_KEY", TEST_KEY)]);
    let tiles = mock.requests_to("POST", "/fal-ai/esrgan").len();
    assert!(tiles > 0, "no tile sent after the confirmation");
    // Nothing but the tiles of the one confirmed run.
    let (w, h) = image::image_dimensions(&f.tiff8).unwrap();
    assert_eq!(
        tiles,
        luminary::pipeline::upscale::tile_count(w as usize, h as usize),
        "{before} requests before"
    );
}
