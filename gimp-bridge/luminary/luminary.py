#!/usr/bin/env python3
# -*- coding: utf-8 -*-
"""Luminary for GIMP 3: Filters > Enhance > Luminary.

Sends the active layer, at the image's full precision and with its colour profile, to the
Luminary daemon through the `luminary` command-line client, and inserts the enhanced result
as a new layer "Luminary — <preset>" directly above it, in one undo group. With a selection,
the new layer is masked to it.

The procedure `python-fu-luminary-enhance` takes `preset` (a choice of the presets, by
name with their description), `intensity` (0..1), `engine` (a choice) and each preset's
parameters as `<preset>-<parameter>` arguments (the dialog makes only the chosen preset's
ones editable), so it also runs non-interactively and from scripts. In the dialog, "Preview"
shows the result on the canvas in a temporary layer that follows the settings; Cancel leaves
the image as it was (no layer, no undo step) and OK makes the same pixels as a run without
preview. Install with `luminary install gimp`, which records the absolute path of the
luminary binary (GIMP started from a desktop menu or the Dock does not get the shell's PATH);
GIMP reads the presets when the plug-in file changes, so install again after adding preset
plugins.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import Gimp, GLib, GObject, Gio  # noqa: E402

PROC = "python-fu-luminary-enhance"
INSTALLED_BINARY = "@LUMINARY_BINARY@"
ENGINES = ("local", "gemini", "openai", "fal", "replicate", "comfyui")
ENGINE_LABELS = {
    "local": ("Offline (built in, free)", "Luminary's own engine: no key, no network, no cost"),
    "gemini": ("Google Gemini", "needs GEMINI_API_KEY; paid per image"),
    "openai": ("OpenAI", "needs OPENAI_API_KEY; paid per image"),
    "fal": ("fal", "needs FAL_KEY; paid per image"),
    "replicate": ("Replicate", "needs REPLICATE_API_TOKEN; paid per image"),
    "comfyui": ("ComfyUI (your server)", "a ComfyUI server set up in config.toml"),
}
PREVIEW_LAYER = "Luminary preview"


def param_arg(preset_id, name):
    """The procedure argument of a preset's parameter: GIMP's argument names are letters,
    digits and dashes."""
    return ("%s-%s" % (preset_id, name)).replace("_", "-").lower()


def add_param_argument(procedure, preset, name, schema):
    """One preset parameter as a procedure argument of its JSON Schema type; returns its
    name, or None for a type GIMP's dialog cannot edit."""
    arg = param_arg(preset["id"], name)
    label = "%s: %s" % (preset.get("name", preset["id"]), schema.get("title", name))
    blurb = schema.get("description", "") or label
    flags = GObject.ParamFlags.READWRITE
    kind = schema.get("type")
    default = schema.get("default")
    if kind == "number":
        lo, hi = float(schema.get("minimum", 0.0)), float(schema.get("maximum", 1.0))
        procedure.add_double_argument(arg, label, blurb, lo, hi, float(default if default is not None else lo), flags)
    elif kind == "integer":
        lo, hi = int(schema.get("minimum", 0)), int(schema.get("maximum", 100))
        procedure.add_int_argument(arg, label, blurb, lo, hi, int(default if default is not None else lo), flags)
    elif kind == "boolean":
        procedure.add_boolean_argument(arg, label, blurb, bool(default), flags)
    elif kind == "string" and schema.get("enum"):
        choice = Gimp.Choice.new()
        for i, v in enumerate(schema["enum"]):
            choice.add(str(v), i, str(v), "")
        procedure.add_choice_argument(arg, label, blurb, choice, str(default or schema["enum"][0]), flags)
    elif kind == "string":
        procedure.add_string_argument(arg, label, blurb, str(default or ""), flags)
    else:
        return None
    return arg


def chosen_params(config, presets, preset_id):
    """The chosen preset's parameters from the procedure's config, as `--param` words."""
    words = []
    for p in presets:
        if p["id"] != preset_id:
            continue
        for name in sorted(((p.get("params_schema") or {}).get("properties") or {})):
            arg = param_arg(p["id"], name)
            if config.find_property(arg) is None:
                continue
            value = config.get_property(arg)
            if isinstance(value, bool):
                value = "true" if value else "false"
            words += ["--param", "%s=%s" % (name, value)]
    return words


def luminary_binary():
    override = os.environ.get("LUMINARY_BINARY")
    if override:
        return override
    if not INSTALLED_BINARY.startswith("@"):
        return INSTALLED_BINARY
    return shutil.which("luminary") or "luminary"


# CREATE_NO_WINDOW: luminary.exe is a console program, and GIMP has no console, so without
# this flag Windows opens a console window for every run.
CREATE_NO_WINDOW = 0x08000000


def popen_options():
    """How GIMP starts luminary: an argument list, never a shell (so no quoting rules of
    cmd.exe or sh apply to photo paths); on Windows with no console window; on Linux ended
    with GIMP."""
    if sys.platform == "win32":
        return {"creationflags": CREATE_NO_WINDOW}
    if sys.platform.startswith("linux"):
        return {"preexec_fn": _die_with_parent}
    return {}


def list_presets():
    """The daemon's presets, or [] when Luminary cannot be reached."""
    try:
        options = popen_options()
        options.pop("preexec_fn", None)
        out = subprocess.run([luminary_binary(), "presets", "--json"], capture_output=True, text=True, timeout=60,
                             **options)
        return json.loads(out.stdout).get("presets", []) if out.returncode == 0 else []
    except (OSError, ValueError, subprocess.SubprocessError):
        return []


def output_space(image):
    """The Luminary colour space matching the image's profile (sRGB otherwise)."""
    profile = image.get_color_profile()
    label = (profile.get_label() if profile else "") or ""
    label = label.lower()
    if "display p3" in label or "display-p3" in label:
        return "display-p3"
    if "adobe" in label:
        return "adobe-rgb"
    if "prophoto" in label or "romm" in label:
        return "prophoto"
    return "srgb"


def error(procedure, message):
    return procedure.new_return_values(
        Gimp.PDBStatusType.EXECUTION_ERROR, GLib.Error.new_literal(Gimp.PlugIn.error_quark(), message, 0)
    )


def export_layer(image, layer, path):
    """Writes `layer` alone to a TIFF at the image's precision, with the image's profile."""
    w, h = layer.get_width(), layer.get_height()
    tmp = Gimp.Image.new_with_precision(w, h, image.get_base_type(), image.get_precision())
    try:
        profile = image.get_color_profile()
        if profile:
            tmp.set_color_profile(profile)
        copy = Gimp.Layer.new_from_drawable(layer, tmp)
        tmp.insert_layer(copy, None, 0)
        copy.set_offsets(0, 0)
        if copy.has_alpha():
            # Luminary works on opaque photographs; flatten keeps the colour values.
            tmp.flatten()
        Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, tmp, Gio.File.new_for_path(path), None)
    finally:
        tmp.delete()


def _die_with_parent():
    """Linux: the luminary client gets SIGTERM if GIMP stops this plug-in (Cancel), so its
    connection closes and the daemon cancels the job instead of finishing it for nobody."""
    try:
        import ctypes
        import signal
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_luminary(args, on_progress, lines=None):
    """Runs `luminary enhance … --json`; returns the (last) result object (raises on
    failure). `lines`, when given, collects every result and summary line."""
    proc = subprocess.Popen([luminary_binary()] + args + ["--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **popen_options())
    result = None
    try:
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("type") == "progress":
                on_progress(float(event.get("fraction", 0.0)), event.get("stage", ""))
            elif event.get("type") == "result":
                result = event
            if lines is not None and event.get("type") in ("result", "summary"):
                lines.append(event)
        proc.wait()
    except BaseException:
        # GIMP cancelled us (or we failed): stopping the client cancels the daemon's job.
        proc.kill()
        proc.wait()
        raise
    if result is None:
        raise RuntimeError((proc.stderr.read() or "luminary gave no result").strip())
    if not result.get("ok"):
        raise RuntimeError("%s [%s]" % (result.get("message", "failed"), result.get("code", "error")))
    return result


def full_photo_notice(sources, preset, engine, params):
    """What an upscale sends and costs (`luminary estimate`), in one sentence, or None when
    the preset sends only a preview."""
    proc = subprocess.run([luminary_binary(), "estimate"] + list(sources) + ["--preset", preset, "--engine", engine]
                          + list(params) + ["--json"], capture_output=True, text=True, **popen_options())
    try:
        e = json.loads(proc.stdout)
    except ValueError:
        raise RuntimeError((proc.stderr or "luminary estimate failed").strip())
    if not e.get("sends_full_photo"):
        return None
    return ("Upscaling sends the whole full-resolution image, not a small preview, to %s: %d tile(s) for %d image(s), "
            "about $%.3f at most." % (e.get("engine"), int(e.get("calls", 0)), int(e.get("photos", 0)),
                                       float(e.get("cost_usd", 0))))


def confirm(text):
    """A yes/no question in GIMP's interface; True to go on."""
    gi.require_version("Gtk", "3.0")
    from gi.repository import Gtk
    dialog = Gtk.MessageDialog(message_type=Gtk.MessageType.QUESTION, buttons=Gtk.ButtonsType.OK_CANCEL,
                               text="Send the full image to be upscaled?")
    dialog.format_secondary_text(text)
    answer = dialog.run()
    dialog.destroy()
    return answer == Gtk.ResponseType.OK


def settings_of(config, presets):
    """The chosen preset, intensity, engine and the preset's parameters (`--param` words).
    Own words make it the built-in free-text edit `prompt`, the words its one parameter."""
    preset = config.get_property("preset")
    words = (config.get_property("prompt") or "").strip()
    if words:
        return {
            "preset": "prompt",
            "intensity": config.get_property("intensity"),
            "engine": config.get_property("engine") or "local",
            "params": ["--param", "prompt=" + words],
        }
    return {
        "preset": preset,
        "intensity": config.get_property("intensity"),
        "engine": config.get_property("engine") or "local",
        "params": chosen_params(config, presets, preset),
    }


class LivePreview:
    """The dialog's preview on the canvas: a temporary layer "Luminary preview" above the
    layer, made by `luminary preview` at up to 2048 pixels and scaled to the layer, updated
    a moment after the settings stop changing. The image's undo history is frozen while it
    exists, so Cancel leaves no layer and no undo step behind."""

    def __init__(self, image, layer):
        self.image, self.layer = image, layer
        self.work = None
        self.source = None
        self.shown = None
        self.pending = None
        self.timer = None
        self.frozen = False
        self.n = 0
        self.last_error = None
        # GIMP marks an image changed when a layer comes and goes, even with its undo
        # history frozen: an image that was clean is made clean again on close.
        self.was_clean = not image.is_dirty()

    def schedule(self, settings, delay_ms=250):
        """Shows `settings` once no new change came for `delay_ms` (a slider drag makes
        one preview, not one per step)."""
        self.pending = settings
        if self.timer is not None:
            GLib.source_remove(self.timer)
        self.timer = GLib.timeout_add(delay_ms, self._fire)

    def _fire(self):
        self.timer = None
        if self.pending is not None:
            settings, self.pending = self.pending, None
            try:
                self.show(settings)
            except Exception as e:  # noqa: BLE001 - shown in the status, the dialog goes on
                self.last_error = str(e)
                Gimp.message("Luminary preview: %s" % e)
        return False

    def show(self, settings):
        """Makes (or replaces) the preview layer for `settings` now."""
        if self.work is None:
            self.work = tempfile.mkdtemp(prefix="luminary-gimp-preview-")
            self.source = os.path.join(self.work, "layer.tif")
            export_layer(self.image, self.layer, self.source)
        self.n += 1
        out = os.path.join(self.work, "preview-%d.png" % self.n)
        w, h = self.layer.get_width(), self.layer.get_height()
        size = max(64, min(2048, max(w, h)))
        run_luminary(["preview", self.source, "--preset", settings["preset"], "--intensity",
                      "%.4f" % settings["intensity"], "--engine", settings["engine"], "--size", str(size),
                      "--out", out] + settings["params"], lambda f, s: None)
        if not self.frozen:
            self.image.undo_freeze()
            self.frozen = True
        new = Gimp.file_load_layer(Gimp.RunMode.NONINTERACTIVE, self.image, Gio.File.new_for_path(out))
        # The old preview goes first: GIMP would name a second layer "… #1".
        if self.shown is not None:
            self.image.remove_layer(self.shown)
            self.shown = None
        self.image.insert_layer(new, self.layer.get_parent(), self.image.get_item_position(self.layer))
        new.set_name(PREVIEW_LAYER)
        if new.get_width() != w or new.get_height() != h:
            new.scale(w, h, False)
        _, x, y = self.layer.get_offsets()
        new.set_offsets(x, y)
        self.shown = new
        os.remove(out)
        Gimp.displays_flush()

    def clear(self):
        """Removes the preview layer (the preview was switched off)."""
        if self.timer is not None:
            GLib.source_remove(self.timer)
            self.timer = None
        self.pending = None
        if self.shown is not None:
            self.image.remove_layer(self.shown)
            self.shown = None
            Gimp.displays_flush()

    def close(self):
        """The dialog closed: no preview layer, the undo history as it was, no files."""
        self.clear()
        if self.frozen:
            self.image.undo_thaw()
            self.frozen = False
            if self.was_clean:
                self.image.clean_all()
        if self.work is not None:
            shutil.rmtree(self.work, ignore_errors=True)
            self.work = None


class Luminary(Gimp.PlugIn):
    def do_query_procedures(self):
        return [PROC]

    def do_set_i18n(self, name):
        return False

    def do_create_procedure(self, name):
        procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, self.run, None)
        procedure.set_image_types("RGB*, GRAY*")
        procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
        procedure.set_menu_label("_Luminary...")
        procedure.add_menu_path("<Image>/Filters/Enhance")
        presets = list_presets()
        self.presets = presets
        available = ", ".join("%s (%s, intensity %.2f)" % (p["id"], p.get("name", ""), p.get("default_intensity", 0.8))
                              for p in presets) or "run `luminary presets` to list them"
        procedure.set_documentation(
            "Enhance the active layer with a Luminary AI preset",
            "Sends the active layer at full precision to Luminary and adds the result as a new layer above it, "
            "masked to the selection if there is one. Presets: " + available,
            name,
        )
        procedure.set_attribution("Luminary", "Luminary", "2026")
        choice = Gimp.Choice.new()
        for i, p in enumerate(presets):
            # Presets only an AI engine can do (virtual staging) say so in the list.
            label = p.get("name", p["id"]) + (" \u2014 AI engine only" if p.get("ai_only") else "")
            choice.add(p["id"], i, label, p.get("description", ""))
        if not presets:
            # Luminary could not be asked: the built-in preset at least.
            choice.add("auto", 0, "Auto", "Luminary's automatic enhancement")
        ids = [p["id"] for p in presets]
        default = "auto" if not ids or "auto" in ids else ids[0]
        procedure.add_choice_argument("preset", "_Preset", "The Luminary preset", choice, default,
                                      GObject.ParamFlags.READWRITE)
        procedure.add_double_argument("intensity", "_Intensity", "0 keeps the original, 1 applies the full preset",
                                      0.0, 1.0, 0.8, GObject.ParamFlags.READWRITE)
        engines = Gimp.Choice.new()
        for i, e in enumerate(ENGINES):
            label, help_text = ENGINE_LABELS[e]
            engines.add(e, i, label, help_text)
        procedure.add_choice_argument("engine", "_Engine", "Where the preset runs", engines, "local",
                                      GObject.ParamFlags.READWRITE)
        for p in presets:
            for name, schema in sorted(((p.get("params_schema") or {}).get("properties") or {}).items()):
                add_param_argument(procedure, p, name, schema)
        procedure.add_string_argument("prompt", "Your own _words",
                                      "A free-text edit on an AI engine (e.g. \"remove the power lines\"); "
                                      "the preset is then not used", "", GObject.ParamFlags.READWRITE)
        procedure.add_file_argument("look-file", "Saved _look",
                                    "Apply a look saved by Luminary (.look) instead of the preset: no engine is "
                                    "called, the preset and engine are not used",
                                    Gimp.FileChooserAction.OPEN, True, None, GObject.ParamFlags.READWRITE)
        procedure.add_boolean_argument("same-look-open-images", "_Same look for all open images",
                                       "One engine call: the look is learned on this image and applied to the "
                                       "selected layer of every open image, each getting a new layer",
                                       False, GObject.ParamFlags.READWRITE)
        procedure.add_boolean_aux_argument("preview", "Pre_view", "Show the result on the canvas while the dialog is open",
                                           False, GObject.ParamFlags.READWRITE)
        return procedure

    def run(self, procedure, run_mode, image, drawables, config, data):
        if len(drawables) != 1 or not isinstance(drawables[0], Gimp.Layer):
            return error(procedure, "Luminary works on one layer: select a single layer")
        layer = drawables[0]
        presets = getattr(self, "presets", None) or list_presets()
        if run_mode == Gimp.RunMode.INTERACTIVE:
            gi.require_version("GimpUi", "3.0")
            from gi.repository import GimpUi
            GimpUi.init("luminary")
            dialog = GimpUi.ProcedureDialog.new(procedure, config, "Luminary")
            params = [param_arg(p["id"], n) for p in presets
                      for n in sorted(((p.get("params_schema") or {}).get("properties") or {}))
                      if config.find_property(param_arg(p["id"], n)) is not None]
            dialog.fill(["preset", "intensity", "engine"] + params + ["prompt", "same-look-open-images", "look-file",
                                                                      "preview"])
            for p in presets:
                for n in ((p.get("params_schema") or {}).get("properties") or {}):
                    arg = param_arg(p["id"], n)
                    if config.find_property(arg) is None:
                        continue
                    try:
                        # Editable only while its preset is chosen (cosmetic: a GIMP without
                        # it shows every parameter editable).
                        values = Gimp.ValueArray.new(1)
                        values.append(GObject.Value(GObject.TYPE_STRING, p["id"]))
                        dialog.set_sensitive_if_in(arg, None, "preset", values, True)
                    except Exception:  # noqa: BLE001
                        pass
            live = LivePreview(image, layer)

            def changed(cfg, _pspec):
                if cfg.get_property("preview"):
                    live.schedule(settings_of(cfg, presets))
                else:
                    live.clear()

            config.connect("notify", changed)
            accepted = dialog.run()
            # Whatever the answer: the preview layer goes, and the image is as before.
            live.close()
            dialog.destroy()
            if not accepted:
                return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
        settings = settings_of(config, presets)
        preset, intensity, engine = settings["preset"], settings["intensity"], settings["engine"]
        if engine not in ENGINES:
            return error(procedure, "unknown engine '%s'; use one of %s" % (engine, ", ".join(ENGINES)))
        look_file = config.get_property("look-file")
        look = look_file.get_path() if look_file is not None else None
        if look and not os.path.isfile(look):
            return error(procedure, "Luminary: the look file %s does not exist" % look)
        # This image's layer first: with the same look for all, it is the reference.
        targets = [(image, layer)]
        if config.get_property("same-look-open-images"):
            for other in Gimp.get_images():
                if other.get_id() == image.get_id():
                    continue
                chosen = [d for d in other.get_selected_layers() if isinstance(d, Gimp.Layer)] or other.get_layers()
                if chosen:
                    targets.append((other, chosen[0]))
        label = ("look %s" % os.path.splitext(os.path.basename(look))[0]) if look else preset

        work = tempfile.mkdtemp(prefix="luminary-gimp-")
        try:
            Gimp.progress_init("Luminary: %s" % label)
            entries = []
            for i, (img, lay) in enumerate(targets):
                source = os.path.join(work, "layer-%d.tif" % i)
                export_layer(img, lay, source)
                entries.append((img, lay, source, os.path.join(work, "enhanced-%d.tif" % i)))
            # An upscale sends the whole image out: said before the first tile goes, and
            # asked when a person is at the dialog.
            kind = next((p.get("kind") for p in presets if p.get("id") == preset), None)
            if kind == "upscale" and not look:
                notice = full_photo_notice([e[2] for e in entries], preset, engine, settings["params"])
                if notice and run_mode == Gimp.RunMode.INTERACTIVE:
                    if not confirm(notice):
                        Gimp.progress_end()
                        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
                elif notice:
                    Gimp.message("Luminary: " + notice)
            listing = os.path.join(work, "photos.txt")
            with open(listing, "w", encoding="utf-8") as fh:
                for _img, _lay, source, out in entries:
                    fh.write("%s\t%s\n" % (source, out))
            args = ["enhance", "--files-from", listing, "--intensity", "%.4f" % intensity, "--format", "tiff",
                    "--color-space", output_space(image)]
            if look:
                args += ["--look", look]
            else:
                args += ["--preset", preset, "--engine", engine] + settings["params"]
                if len(entries) > 1:
                    args.append("--same-look")
            lines = []
            run_luminary(args, lambda f, stage: (Gimp.progress_set_text("Luminary: %s" % stage),
                                                 Gimp.progress_update(f)), lines)
            results = {int(r.get("index", 0)): r for r in lines if r.get("type") == "result"}
            failed = []
            for i, (img, lay, _source, _out) in enumerate(entries):
                r = results.get(i + 1)
                if r is None or not r.get("ok"):
                    failed.append("%s: %s" % (image_label(img), (r or {}).get("message", "no result")))
                    continue
                if not os.path.exists(r["output"]):
                    failed.append("%s: Luminary reported %s, which does not exist" % (image_label(img), r["output"]))
                    continue
                add_result_layer(img, lay, r["output"], "Luminary — %s" % label)
                # How the result was made, where the user should know (e.g. an AI answer that
                # could not be lined up with the image).
                for note in r.get("notes") or []:
                    Gimp.message("Luminary: %s: %s" % (image_label(img), note))
            summary = next((r for r in lines if r.get("type") == "summary"), None)
            if summary:
                calls = int(summary.get("engine_calls", 0))
                Gimp.message("Luminary: same look for all — %s for %d images; the look is saved as %s" % (
                    "%d engine call%s ($%.3f)" % (calls, "" if calls == 1 else "s", float(summary.get("cost", 0)))
                    if calls else "no engine call", int(summary.get("photos", len(entries))), summary.get("look")))
            Gimp.progress_end()
            Gimp.displays_flush()
            if failed:
                return error(procedure, "Luminary: " + "; ".join(failed))
            return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())
        except Exception as e:  # noqa: BLE001 - every failure becomes GIMP's error message
            return error(procedure, "Luminary: %s" % e)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def image_label(image):
    """The image's file name, as the user knows it (GIMP's name for an image without a file
    is "[Untitled]", which is used then)."""
    f = image.get_file()
    return f.get_basename() if f is not None else image.get_name()


def add_result_layer(image, layer, output, name):
    """The result as a new layer above `layer`, at its offsets, masked to the selection if
    there is one; one undo step. A cut-out (a result with alpha) gets its matte as a layer
    mask instead, so the subject's edges can be painted on; the layer itself is the photo."""
    has_selection = not Gimp.Selection.is_empty(image)
    new = Gimp.file_load_layer(Gimp.RunMode.NONINTERACTIVE, image, Gio.File.new_for_path(output))
    new.set_name(name)
    image.undo_group_start()
    inserted = False
    try:
        image.insert_layer(new, layer.get_parent(), image.get_item_position(layer))
        inserted = True
        _, x, y = layer.get_offsets()
        new.set_offsets(x, y)
        if new.has_alpha():
            new.add_mask(new.create_mask(Gimp.AddMaskType.ALPHA_TRANSFER))
        elif has_selection:
            new.add_mask(new.create_mask(Gimp.AddMaskType.SELECTION))
    except Exception:
        if inserted:
            image.remove_layer(new)
        raise
    finally:
        image.undo_group_end()


if __name__ == "__main__":
    Gimp.main(Luminary.__gtype__, sys.argv)
