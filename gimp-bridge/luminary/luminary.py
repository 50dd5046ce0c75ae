#!/usr/bin/env python3
# -*- coding: utf-8 -*-
"""Luminary for GIMP 3: Filters > Enhance > Luminary.

Sends the active layer, at the image's full precision and with its colour profile, to the
Luminary daemon through the `luminary` command-line client, and inserts the enhanced result
as a new layer "Luminary — <preset>" directly above it, in one undo group. With a selection,
the new layer is masked to it.

The procedure `python-fu-luminary-enhance` takes `preset` (a preset id from
`luminary presets`), `intensity` (0..1) and `engine`, so it also runs non-interactively and
from scripts. Install with `luminary install gimp`, which records the absolute path of the
luminary binary (GIMP started from a desktop menu or the Dock does not get the shell's PATH).
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


def run_luminary(args, on_progress):
    """Runs `luminary enhance … --json`; returns the result object (raises on failure)."""
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
        available = ", ".join("%s (%s, intensity %.2f)" % (p["id"], p.get("name", ""), p.get("default_intensity", 0.8))
                              for p in presets) or "run `luminary presets` to list them"
        procedure.set_documentation(
            "Enhance the active layer with a Luminary AI preset",
            "Sends the active layer at full precision to Luminary and adds the result as a new layer above it, "
            "masked to the selection if there is one. Presets: " + available,
            name,
        )
        procedure.set_attribution("Luminary", "Luminary", "2026")
        procedure.add_string_argument("preset", "_Preset", "Luminary preset id (see `luminary presets`)", "auto",
                                      GObject.ParamFlags.READWRITE)
        procedure.add_double_argument("intensity", "_Intensity", "0 keeps the original, 1 applies the full preset",
                                      0.0, 1.0, 0.8, GObject.ParamFlags.READWRITE)
        procedure.add_string_argument("engine", "_Engine", "local (offline), gemini, openai, fal, replicate, comfyui",
                                      "local", GObject.ParamFlags.READWRITE)
        return procedure

    def run(self, procedure, run_mode, image, drawables, config, data):
        if len(drawables) != 1 or not isinstance(drawables[0], Gimp.Layer):
            return error(procedure, "Luminary works on one layer: select a single layer")
        layer = drawables[0]
        if run_mode == Gimp.RunMode.INTERACTIVE:
            gi.require_version("GimpUi", "3.0")
            from gi.repository import GimpUi
            GimpUi.init("luminary")
            dialog = GimpUi.ProcedureDialog.new(procedure, config, "Luminary")
            dialog.fill(None)
            if not dialog.run():
                dialog.destroy()
                return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
            dialog.destroy()
        preset = config.get_property("preset")
        intensity = config.get_property("intensity")
        engine = config.get_property("engine") or "local"
        if engine not in ENGINES:
            return error(procedure, "unknown engine '%s'; use one of %s" % (engine, ", ".join(ENGINES)))

        work = tempfile.mkdtemp(prefix="luminary-gimp-")
        try:
            source = os.path.join(work, "layer.tif")
            Gimp.progress_init("Luminary: %s" % preset)
            export_layer(image, layer, source)
            out = os.path.join(work, "enhanced.tif")
            args = ["enhance", source, "--preset", preset, "--intensity", "%.4f" % intensity, "--engine", engine,
                    "--format", "tiff", "--color-space", output_space(image), "--out", out]
            result = run_luminary(args, lambda f, stage: (Gimp.progress_set_text("Luminary: %s" % stage),
                                                          Gimp.progress_update(f)))
            output = result["output"]
            if not os.path.exists(output):
                return error(procedure, "Luminary reported %s, which does not exist" % output)

            has_selection = not Gimp.Selection.is_empty(image)
            new = Gimp.file_load_layer(Gimp.RunMode.NONINTERACTIVE, image, Gio.File.new_for_path(output))
            new.set_name("Luminary — %s" % preset)
            image.undo_group_start()
            inserted = False
            try:
                image.insert_layer(new, layer.get_parent(), image.get_item_position(layer))
                inserted = True
                _, x, y = layer.get_offsets()
                new.set_offsets(x, y)
                if has_selection:
                    new.add_mask(new.create_mask(Gimp.AddMaskType.SELECTION))
            except Exception:
                if inserted:
                    image.remove_layer(new)
                raise
            finally:
                image.undo_group_end()
            Gimp.progress_end()
            Gimp.displays_flush()
            return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())
        except Exception as e:  # noqa: BLE001 - every failure becomes GIMP's error message
            return error(procedure, "Luminary: %s" % e)
        finally:
            shutil.rmtree(work, ignore_errors=True)


Gimp.main(Luminary.__gtype__, sys.argv)
