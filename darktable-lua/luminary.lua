--[[
  luminary.lua — AI presets from Luminary, inside darktable

  Adds to the lighttable a "Luminary" panel (preset, intensity, the preset's parameters,
  engine, source, Enhance), an export target "Luminary" and a shortcut. The enhanced photo is
  imported next to the original, grouped with it (the original stays group leader), with
  its tags, rating and colour labels and a tag "luminary|<preset>".

  darktable's Lua has no sockets, so this script runs the `luminary` command-line client,
  which talks to (and if needed starts) the Luminary daemon.

  Other scripts and tests can call it directly:

    local images = require("luminary").enhance(dt.gui.action_images,
                     { preset = "warm-film", intensity = 0.7, engine = "local" })

  Install: `luminary install darktable` (copies this file into darktable's lua folder,
  records the luminary binary's path, adds `require "luminary"` to luarc once).

  Works with darktable 4.2 (Lua API 9) and later.
]]

local dt = require "darktable"

local MODULE = "luminary"

-- The absolute path of the luminary binary that installed this script (desktop apps and the
-- macOS Dock do not get the shell's PATH). `luminary install darktable` fills it in; the
-- "luminary binary" preference overrides it.
local INSTALLED_BINARY = "@LUMINARY_BINARY@"

-- API check, the lua-scripts way when its helpers are installed, else directly.
local has_du, du = pcall(require, "lib/dtutils")
if has_du and type(du) == "table" and du.check_min_api_version then
  du.check_min_api_version("7.0.0", MODULE)
elseif (dt.configuration.api_version_major or 0) < 7 then
  error("luminary.lua needs darktable's Lua API 7.0.0 or later")
end

-- Translatable strings.
local gettext = dt.gettext
if gettext and gettext.bindtextdomain then
  gettext.bindtextdomain(MODULE, dt.configuration.config_dir .. "/lua/locale/")
end
local function _(msgid)
  if gettext and gettext.dgettext then
    return gettext.dgettext(MODULE, msgid)
  end
  return msgid
end

local PS = dt.configuration.running_os == "windows" and "\\" or "/"

local script_data = {}
script_data.metadata = {
  name = "luminary",
  purpose = _("enhance photos with AI presets from Luminary"),
  author = "Luminary",
  help = "https://github.com/luminary-photo/luminary",
}
script_data.destroy = nil
script_data.destroy_method = "hide"
script_data.restart = nil
script_data.show = nil

local L = {}

---------------------------------------------------------------------------------------------
-- A small JSON decoder: the CLI's --json output is all this script reads.

local json = {}

local function skip(s, i)
  local _, e = s:find("^[ \n\r\t]*", i)
  return e + 1
end

local decode_value

local function decode_string(s, i)
  local out, j = {}, i + 1
  while true do
    local c = s:sub(j, j)
    if c == "" then error("unterminated string in JSON") end
    if c == '"' then return table.concat(out), j + 1 end
    if c == "\\" then
      local n = s:sub(j + 1, j + 1)
      local map = { b = "\b", f = "\f", n = "\n", r = "\r", t = "\t", ['"'] = '"', ["\\"] = "\\", ["/"] = "/" }
      if map[n] then
        out[#out + 1] = map[n]
        j = j + 2
      elseif n == "u" then
        local code = tonumber(s:sub(j + 2, j + 5), 16)
        if utf8 and utf8.char then out[#out + 1] = utf8.char(code) else out[#out + 1] = "?" end
        j = j + 6
      else
        error("bad escape in JSON")
      end
    else
      out[#out + 1] = c
      j = j + 1
    end
  end
end

decode_value = function(s, i)
  i = skip(s, i)
  local c = s:sub(i, i)
  if c == "{" then
    local obj = {}
    i = skip(s, i + 1)
    if s:sub(i, i) == "}" then return obj, i + 1 end
    while true do
      local key
      key, i = decode_string(s, skip(s, i))
      i = skip(s, i)
      if s:sub(i, i) ~= ":" then error("expected ':' in JSON") end
      obj[key], i = decode_value(s, i + 1)
      i = skip(s, i)
      local d = s:sub(i, i)
      if d == "}" then return obj, i + 1 end
      if d ~= "," then error("expected ',' in JSON object") end
      i = i + 1
    end
  elseif c == "[" then
    local arr = {}
    i = skip(s, i + 1)
    if s:sub(i, i) == "]" then return arr, i + 1 end
    while true do
      arr[#arr + 1], i = decode_value(s, i)
      i = skip(s, i)
      local d = s:sub(i, i)
      if d == "]" then return arr, i + 1 end
      if d ~= "," then error("expected ',' in JSON array") end
      i = i + 1
    end
  elseif c == '"' then
    return decode_string(s, i)
  elseif s:sub(i, i + 3) == "true" then
    return true, i + 4
  elseif s:sub(i, i + 4) == "false" then
    return false, i + 5
  elseif s:sub(i, i + 3) == "null" then
    return nil, i + 4
  else
    local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", i)
    if not num or num == "" then error("unexpected character in JSON at " .. i) end
    return tonumber(num), i + #num
  end
end

function json.decode(s)
  local v = decode_value(s, 1)
  return v
end
L.json = json

---------------------------------------------------------------------------------------------
-- Running the luminary CLI.

dt.preferences.register(MODULE, "binary", "file", _("Luminary: luminary binary"),
  _("path of the luminary program (empty: the one that installed this script)"), "")

function L.binary()
  local pref = dt.preferences.read(MODULE, "binary", "file")
  if pref and pref ~= "" then return pref end
  if INSTALLED_BINARY:sub(1, 1) ~= "@" then return INSTALLED_BINARY end
  return "luminary"
end

-- One argument of a command line. On Windows io.popen runs the line through `cmd.exe /c`
-- and the program splits it by CommandLineToArgvW's rules: quotes keep spaces and
-- & | < > ^ ( ) ! as plain text; %NAME% is expanded even inside quotes, so each % leaves
-- them escaped with a caret ("^%"); backslashes before the closing quote are doubled. No
-- Windows path holds a double quote, and none can pass cmd.exe safely.
local WINDOWS = dt.configuration.running_os == "windows"
local function quote(s)
  s = tostring(s)
  if not WINDOWS then return "'" .. s:gsub("'", "'\\''") .. "'" end
  if s:find('"', 1, true) then error(_("cannot pass a double quote to luminary on Windows: ") .. s, 0) end
  s = s:gsub("(\\+)$", "%1%1")
  return '"' .. s:gsub("%%", '"^%%"') .. '"'
end

-- The line io.popen runs: on Windows in one more pair of quotes, which `cmd.exe /c` removes
-- (without them it strips the program's own quotes), and within cmd.exe's 8,191 characters.
local function command_line(line)
  if not WINDOWS then return line end
  line = '"' .. line .. '"'
  if #line > 8191 then
    error(string.format(_("the command for luminary is %d characters long, over cmd.exe's limit of 8,191"), #line), 0)
  end
  return line
end

local function file_exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

-- Runs `luminary ARGS --json`, calling on_line(decoded) for each JSON line as it arrives.
-- Returns false when on_line asked to stop (the pipe is closed: the CLI exits on its next
-- write and the daemon cancels its job).
local function run_json(args, on_line)
  local cmd = quote(L.binary())
  for _, a in ipairs(args) do cmd = cmd .. " " .. quote(a) end
  cmd = command_line(cmd .. " --json 2>&1")
  local pipe = io.popen(cmd, "r")
  if not pipe then error(_("cannot run luminary: ") .. L.binary()) end
  local completed = true
  for line in pipe:lines() do
    local ok, value = pcall(json.decode, line)
    if ok and type(value) == "table" then
      if on_line(value) == false then
        completed = false
        break
      end
    else
      on_line({ type = "text", text = line })
    end
  end
  pipe:close()
  return completed
end

-- The presets the daemon offers (cached until refresh).
local presets_cache = nil
function L.presets(refresh)
  if presets_cache and not refresh then return presets_cache end
  local list, text = nil, {}
  run_json({ "presets" }, function(v)
    if v.presets then list = v.presets elseif v.text then text[#text + 1] = v.text end
  end)
  if not list then
    error(_("could not list Luminary presets: ") .. table.concat(text, " "))
  end
  presets_cache = list
  return list
end

local function preset_by_id(id)
  for _, p in ipairs(L.presets()) do
    if p.id == id then return p end
  end
  return nil
end

---------------------------------------------------------------------------------------------
-- Enhancing.

local function copy_metadata(from, to, preset)
  for _, tag in ipairs(dt.tags.get_tags(from)) do
    if not tag.name:find("^darktable|") then dt.tags.attach(tag, to) end
  end
  dt.tags.attach(dt.tags.create("luminary|" .. preset), to)
  to.rating = from.rating
  for _, label in ipairs({ "red", "yellow", "green", "blue", "purple" }) do
    to[label] = from[label]
  end
end

-- The file to send: the original, or darktable's current edit as a 16-bit TIFF.
local function source_file(image, source, tmpdir)
  if source == "edited" then
    local fmt = dt.new_format("tiff")
    fmt.bpp = 16
    local out = tmpdir .. PS .. image.filename:gsub("%.[^.]*$", "") .. "-darktable.tif"
    fmt:write_image(image, out)
    if not file_exists(out) then error(_("darktable could not export ") .. image.filename) end
    return out, true
  end
  return image.path .. PS .. image.filename, false
end

local function base_name(filename)
  return (filename:gsub("%.[^.]*$", ""))
end

local function sanitize(s)
  return (tostring(s):gsub("[^%w%-_]", "_"))
end

local function tmp_dir()
  return os.getenv("TMPDIR") or (dt.configuration.running_os == "windows" and os.getenv("TEMP")) or "/tmp"
end

-- Imports the result `output` of `image`, grouped with it and with its tags, rating and
-- labels; returns the imported image or raises.
local function import_result(image, output, preset)
  -- Importing a file that does not exist kills darktable: check first.
  if not output or not file_exists(output) then
    error(_("Luminary reported an output that does not exist: ") .. tostring(output), 0)
  end
  local imported = dt.database.import(output)
  if not imported then error(_("darktable could not import ") .. output, 0) end
  local leader = image.group_leader or image
  imported:group_with(leader)
  leader:make_group_leader()
  copy_metadata(image, imported, preset)
  return imported
end

local list_counter = 0

--- Enhances `images` with `opts` {preset, intensity, engine, params, source = "raw"|"edited"}
--- in ONE run of luminary: the photos go in a list file (`--files-from`, a TAB before each
--- output), not on the command line, which cmd.exe cuts at 8,191 characters; on Windows
--- each io.popen also opens a console window, so a selection is one window, not one per
--- photo. Returns the imported images. Per-image errors are shown and logged; raises when
--- no image could be enhanced, with the reasons.
--- `opts.same_look`: one engine call for the whole selection — the look is learned on the
--- first image (the one acted on) and applied to all; `opts.look`: a saved `.look` file,
--- applied with no engine (the preset and engine are then not used). With either, the
--- fourth value returned is the run's summary {photos, engine_calls, cost, look}. The fifth
--- is the results' notes ("file: note"), also shown with the count of photos enhanced.
function L.enhance(images, opts)
  opts = opts or {}
  if opts.look and opts.look ~= "" then
    if not file_exists(opts.look) then error(_("the look file does not exist: ") .. opts.look, 0) end
  elseif not opts.preset or opts.preset == "" then
    error(_("no preset chosen"))
  end
  local label = opts.preset
  if opts.look and opts.look ~= "" then
    label = base_name(opts.look:match("([^/\\]+)$") or opts.look)
  end
  local list = {}
  for _, img in pairs(images or {}) do list[#list + 1] = img end
  if #list == 0 then error(_("no images selected")) end
  local imported, errors, notes = {}, {}, {}
  local function failed(image, why)
    local msg = image.filename .. ": " .. tostring(why)
    errors[#errors + 1] = msg
    dt.print(_("Luminary: ") .. msg)
    dt.print_error("luminary: " .. msg)
  end
  -- The file for each image (darktable's rendering when asked) and where its result goes.
  local entries, tmpdir = {}, tmp_dir()
  for _, image in ipairs(list) do
    local ok, src, temporary = pcall(source_file, image, opts.source, tmpdir)
    if ok then
      entries[#entries + 1] = { image = image, src = src, temporary = temporary,
        out = image.path .. PS .. base_name(image.filename) .. "-luminary-" .. sanitize(label) .. ".tif" }
    else
      failed(image, src)
    end
  end
  local results, messages, cancelled, job, summary = {}, {}, false, nil, nil
  if #entries > 0 then
    list_counter = list_counter + 1
    local list_file = string.format("%s%sluminary-%d-%d-photos.txt", tmpdir, PS, os.time(), list_counter)
    local f = assert(io.open(list_file, "wb"))
    for _, e in ipairs(entries) do f:write(e.src, "\t", e.out, "\n") end
    f:close()
    local args = { "enhance", "--files-from", list_file }
    if opts.look and opts.look ~= "" then
      args[#args + 1] = "--look"; args[#args + 1] = opts.look
      if opts.intensity then args[#args + 1] = "--intensity"; args[#args + 1] = string.format("%.3f", opts.intensity) end
    else
      args[#args + 1] = "--preset"; args[#args + 1] = opts.preset
      if opts.same_look and #entries > 1 then args[#args + 1] = "--same-look" end
      if opts.intensity then args[#args + 1] = "--intensity"; args[#args + 1] = string.format("%.3f", opts.intensity) end
      if opts.engine and opts.engine ~= "" then args[#args + 1] = "--engine"; args[#args + 1] = opts.engine end
      for k, v in pairs(opts.params or {}) do
        args[#args + 1] = "--param"
        args[#args + 1] = k .. "=" .. tostring(v)
      end
    end
    local fractions = {}
    local completed = run_json(args, function(v)
      if v.type == "progress" then
        -- The progress job is created once work really starts: creating and ending one
        -- within milliseconds (a request refused at once) can crash darktable 4.2.
        if not job and v.stage ~= "queued" and dt.gui and dt.gui.create_job then
          job = dt.gui.create_job(_("Luminary: ") .. label, true, function() cancelled = true end)
        end
        fractions[tonumber(v.index) or 1] = v.fraction or 0
        if job then
          local done = 0
          for _, x in pairs(fractions) do done = done + x end
          job.percent = done / #entries
        end
      elseif v.type == "result" then
        results[tonumber(v.index) or 0] = v
      elseif v.type == "summary" then
        summary = v
      elseif v.text then
        messages[#messages + 1] = v.text
      end
      return not cancelled
    end)
    os.remove(list_file)
    if not completed then cancelled = true end
  end
  for i, e in ipairs(entries) do
    if e.temporary then os.remove(e.src) end
    local result = results[i]
    if cancelled then
      -- Nothing of a cancelled run is imported.
    elseif not result then
      failed(e.image, table.concat(messages, " "))
    elseif not result.ok then
      failed(e.image, (result.message or "?") .. " [" .. (result.code or "error") .. "]")
    else
      local ok, res = pcall(import_result, e.image, result.output, label)
      if ok then imported[#imported + 1] = res else failed(e.image, res) end
      -- How the result was made, where the photographer should know (e.g. an AI answer
      -- that could not be lined up with the photo).
      for _, note in ipairs(type(result.notes) == "table" and result.notes or {}) do
        notes[#notes + 1] = e.image.filename .. ": " .. tostring(note)
        dt.print_log("Luminary: " .. notes[#notes])
      end
    end
  end
  if job then job.valid = false end
  if cancelled then errors[#errors + 1] = _("cancelled") end
  if #imported == 0 and #errors > 0 then
    error(table.concat(errors, "\n"), 0)
  end
  if #imported > 0 then
    local text = string.format(_("Luminary: %d of %d photos enhanced"), #imported, #list)
    if #notes > 0 then text = text .. "\n" .. table.concat(notes, "\n") end
    dt.print(text)
  end
  if summary then
    -- "1 engine call ($0.040) for 48 photos": what the same look for all cost.
    local calls = tonumber(summary.engine_calls) or 0
    local what = calls == 0 and _("no engine call") or string.format(_("%d engine call%s ($%.3f)"), calls,
      calls == 1 and "" or "s", tonumber(summary.cost) or 0)
    summary.text = string.format(_("Luminary: same look for all — %s for %d photos; the look is saved as %s"),
      what, tonumber(summary.photos) or #list, tostring(summary.look))
    dt.print(summary.text)
  end
  return imported, errors, cancelled, summary, notes
end

local function dollars(v)
  local s = string.format("$%.3f", v or 0)
  return (s:gsub("(%.%d%d)0$", "%1"))
end

--- What enhancing `images` with `opts` would cost: `luminary estimate` (nothing is called
--- or decoded). Returns its table: engine, paid, photos, cached, calls, cost_usd, budget,
--- confirm_above_usd, items.
function L.estimate(images, opts)
  local list = {}
  for _, img in pairs(images or {}) do list[#list + 1] = img end
  if #list == 0 then error(_("no images selected")) end
  -- The same look for all: only the first image goes to the engine.
  if opts.same_look then list = { list[1] } end
  list_counter = list_counter + 1
  local list_file = string.format("%s%sluminary-%d-%d-estimate.txt", tmp_dir(), PS, os.time(), list_counter)
  local f = assert(io.open(list_file, "wb"))
  for _, img in ipairs(list) do f:write(img.path, PS, img.filename, "\n") end
  f:close()
  local args = { "estimate", "--files-from", list_file, "--preset", opts.preset }
  if opts.engine and opts.engine ~= "" then args[#args + 1] = "--engine"; args[#args + 1] = opts.engine end
  for k, v in pairs(opts.params or {}) do
    args[#args + 1] = "--param"
    args[#args + 1] = k .. "=" .. tostring(v)
  end
  local estimate, messages = nil, {}
  run_json(args, function(v)
    if v.items then estimate = v elseif v.text then messages[#messages + 1] = v.text end
  end)
  os.remove(list_file)
  -- Never an empty message: the cost line is where the photographer looks.
  if not estimate then
    error(#messages > 0 and table.concat(messages, " ") or _("no estimate: luminary estimate gave no answer"), 0)
  end
  return estimate
end

--- The estimate in one line: "9 of 12 photos will call gemini, about $0.35; 3 cached".
function L.estimate_text(e)
  if not e.paid then return string.format(_("%d photo(s) on the offline engine: free"), e.photos) end
  if e.sends_full_photo then
    return string.format(_("upscaling sends the whole full-resolution photo to %s: %d tile(s) for %d photo(s), about %s at most"),
      e.engine, e.calls, e.photos, dollars(e.cost_usd))
  end
  local s = string.format(_("%d of %d photo(s) will call %s, about %s"), e.calls, e.photos, e.engine, dollars(e.cost_usd))
  if (e.cached or 0) > 0 then s = s .. string.format(_("; %d cached"), e.cached) end
  if e.budget and e.budget.remaining_usd then s = s .. "; " .. dollars(e.budget.remaining_usd) .. _(" left in the budget") end
  return s
end

--- Every preset on `image` (offline engine, each at its default intensity), as one labelled
--- sheet beside the photo (`<name>-luminary-presets.jpg`), imported and grouped with it so
--- it can be looked at full screen. Returns the imported sheet.
function L.compare_presets(image)
  local sheet = image.path .. PS .. base_name(image.filename) .. "-luminary-presets.jpg"
  local messages, written = {}, nil
  local cmd = quote(L.binary()) .. " presets --sheet " .. quote(sheet) .. " " .. quote(image.path .. PS .. image.filename)
  local pipe = io.popen(command_line(cmd .. " 2>&1"), "r")
  if not pipe then error(_("cannot run luminary: ") .. L.binary()) end
  for line in pipe:lines() do
    if line:find("luminary%-presets") and file_exists(line) then written = line else messages[#messages + 1] = line end
  end
  pipe:close()
  if not written then error(table.concat(messages, " "), 0) end
  local imported = dt.database.import(written)
  if not imported then error(_("darktable could not import ") .. written, 0) end
  imported:group_with(image.group_leader or image)
  dt.tags.attach(dt.tags.create("luminary|preset sheet"), imported)
  return imported
end

---------------------------------------------------------------------------------------------
-- User interface: lighttable panel, export target, shortcut.

local ENGINES = { "local", "gemini", "openai", "fal", "replicate", "comfyui" }
local ui = { param_widgets = {} }

local function current_preset()
  local ok, list = pcall(L.presets)
  if not ok or not ui.preset or not ui.preset.selected or ui.preset.selected < 1 then return nil end
  return list[ui.preset.selected]
end

-- The panel's choices as options for L.enhance.
function L.panel_options()
  local p = current_preset()
  if not p then error(_("no Luminary preset available")) end
  local params = {}
  for name, w in pairs(ui.param_widgets[p.id] or {}) do
    if w.value_of then params[name] = w.value_of() end
  end
  -- Own words: the built-in free-text edit `prompt`, the words its one parameter (a double
  -- quote, which cmd.exe cannot pass, becomes a single one).
  local words = ui.prompt and ui.prompt.text or ""
  words = words:gsub("^%s+", ""):gsub("%s+$", ""):gsub('"', "'")
  local preset_id = p.id
  if words ~= "" then
    preset_id = "prompt"
    params = { prompt = words }
  end
  return {
    preset = preset_id,
    intensity = ui.intensity and ui.intensity.value or p.default_intensity,
    engine = ui.engine and ENGINES[ui.engine.selected] or "local",
    source = (ui.source and ui.source.selected == 2) and "edited" or "raw",
    params = params,
    same_look = ui.same_look and ui.same_look.value or false,
    look = ui.look_file and ui.look_file.text ~= "" and ui.look_file.text or nil,
  }
end

-- A slider whose range is set before its value. Constructor tables are applied in Lua's
-- table order, which varies between runs: a value set before its range is clamped to the
-- default range.
local function slider(label, tooltip, lo, hi, value, digits)
  local w = dt.new_widget("slider") { label = label, tooltip = tooltip or "" }
  w.hard_min, w.hard_max = lo, hi
  w.soft_min, w.soft_max = lo, hi
  if digits then w.digits = digits end
  w.value = value
  return w
end

local function param_widgets(p)
  local box_items, table_of = {}, {}
  local props = (p.params_schema or {}).properties or {}
  local names = {}
  for name in pairs(props) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local s = props[name]
    local label = s.title or name
    if s.type == "number" or s.type == "integer" then
      local w = slider(label, s.description, s.minimum or 0, s.maximum or 1, s.default or s.minimum or 0)
      table_of[name] = { value_of = function() return w.value end }
      box_items[#box_items + 1] = w
    elseif s.type == "boolean" then
      local w = dt.new_widget("check_button") { label = label, value = s.default and true or false, tooltip = s.description or "" }
      table_of[name] = { value_of = function() return w.value and "true" or "false" end }
      box_items[#box_items + 1] = w
    elseif s.type == "string" and s.enum then
      local w = dt.new_widget("combobox") { label = label, tooltip = s.description or "" }
      local selected = 1
      for i, v in ipairs(s.enum) do
        w[i] = v
        if v == s.default then selected = i end
      end
      w.selected = selected
      table_of[name] = { value_of = function() return s.enum[w.selected] end }
      box_items[#box_items + 1] = w
    end
  end
  if #box_items == 0 then box_items[1] = dt.new_widget("label") { label = _("no parameters") } end
  ui.param_widgets[p.id] = table_of
  box_items.orientation = "vertical"
  return dt.new_widget("box")(box_items)
end

local function build_panel()
  local ok, list = pcall(L.presets)
  if not ok then
    return dt.new_widget("box") {
      orientation = "vertical",
      dt.new_widget("label") { label = _("Luminary is not available:") },
      dt.new_widget("label") { label = tostring(list) },
    }
  end
  ui.description = dt.new_widget("label") { label = "", ellipsize = "end" }
  ui.intensity = slider(_("intensity"), _("0 keeps the original, 1 applies the full preset"), 0, 1, 0.8, 2)
  local pages = {}
  for _, p in ipairs(list) do
    pages[#pages + 1] = param_widgets(p)
  end
  ui.params = dt.new_widget("stack") { table.unpack(pages) }
  ui.preset = dt.new_widget("combobox") {
    label = _("preset"),
    tooltip = _("Luminary preset"),
    changed_callback = function(w)
      local p = list[w.selected]
      if p then
        ui.description.label = p.description or ""
        ui.intensity.value = p.default_intensity or 0.8
        ui.params.active = w.selected
        dt.preferences.write(MODULE, "preset", "string", p.id)
      end
    end,
  }
  local last = dt.preferences.read(MODULE, "preset", "string")
  local chosen = 1
  for i, p in ipairs(list) do
    -- presets that only an AI engine can do (virtual staging) say so in the list
    ui.preset[i] = p.name .. (p.ai_only and " \u{2014} AI engine only" or "") .. " (" .. p.id .. ")"
    if p.id == last then chosen = i end
  end
  ui.engine = dt.new_widget("combobox") {
    label = _("engine"),
    changed_callback = function() pcall(L.update_cost, dt.gui.action_images) end,
    table.unpack(ENGINES),
  }
  ui.engine.selected = 1
  ui.source = dt.new_widget("combobox") { label = _("source"), _("original RAW"), _("darktable's current edit") }
  ui.source.selected = 1
  ui.same_look = dt.new_widget("check_button") {
    label = _("same look for all selected"),
    tooltip = _("one engine call for the whole selection: the look is learned on the first image and applied to all"),
    value = false,
    clicked_callback = function() pcall(L.update_cost, dt.gui.action_images) end,
  }
  ui.prompt = dt.new_widget("entry") {
    placeholder = _("or your own words, e.g. remove the power lines (AI engine)"),
    tooltip = _("a free-text edit on the chosen AI engine; the preset is then not used"),
    text = "",
  }
  ui.look_file = dt.new_widget("entry") {
    placeholder = _("or a saved look file (.look): no engine"),
    tooltip = _("apply a look saved by 'same look for all' or 'luminary look learn'; the preset and engine are then not used"),
    text = "",
  }
  -- The selection's cost on a paid engine; and before a batch above the configured
  -- threshold, one more click (darktable's Lua has no question dialog): the first click
  -- says what it costs, a second click on the same selection and settings spends it.
  ui.cost = dt.new_widget("label") { label = "", ellipsize = "end" }
  ui.armed = nil
  ui.button = dt.new_widget("button") {
    label = _("enhance"),
    tooltip = _("enhance the selected images; results are grouped with the originals"),
    clicked_callback = function()
      local ok2, err = pcall(L.panel_enhance, dt.gui.action_images)
      if not ok2 then dt.print(_("Luminary: ") .. tostring(err)) end
    end,
  }
  ui.compare = dt.new_widget("button") {
    label = _("compare presets"),
    tooltip = _("every preset on the selected photo, as one sheet grouped with it (press W to see it full screen)"),
    clicked_callback = function()
      local image = (dt.gui.action_images or {})[1]
      if not image then dt.print(_("Luminary: select a photo first")) return end
      local ok2, res = pcall(L.compare_presets, image)
      if ok2 then
        dt.gui.selection({ res })
        dt.print(_("Luminary: the preset sheet is selected; press W to see it full screen"))
      else
        dt.print(_("Luminary: ") .. tostring(res))
      end
    end,
  }
  ui.preset.selected = chosen
  local p = list[chosen]
  if p then
    ui.description.label = p.description or ""
    ui.intensity.value = p.default_intensity or 0.8
    ui.params.active = chosen
  end
  return dt.new_widget("box") {
    orientation = "vertical",
    ui.preset, ui.description, ui.intensity, ui.params, ui.prompt, ui.engine, ui.source, ui.same_look, ui.look_file,
    ui.cost, ui.button, ui.compare,
  }
end

--- A key for "the same selection and settings", for the second click.
local function batch_key(images, opts)
  local ids = {}
  for _, img in pairs(images or {}) do ids[#ids + 1] = tostring(img.id) end
  table.sort(ids)
  return table.concat(ids, ",") .. "|" .. tostring(opts.preset) .. "|" .. tostring(opts.engine) .. "|" .. tostring(opts.same_look)
end

--- Shows the selection's cost in the panel (paid engines; empty for the offline one).
function L.update_cost(images)
  if not ui.cost then return nil end
  local opts = L.panel_options()
  if opts.look then
    ui.cost.label = _("a saved look: no engine, no cost")
    return nil
  end
  if opts.engine == "local" or not images or #images == 0 then
    ui.cost.label = ""
    return nil
  end
  local ok, e = pcall(L.estimate, images, opts)
  local text = ok and L.estimate_text(e) or tostring(e)
  if ok and opts.same_look and #images > 1 then
    text = text .. string.format(_("; the same look then goes to all %d photos at no cost"), #images)
  end
  ui.cost.label = text
  return ok and e or nil
end

--- The panel's enhance: on a paid engine, a batch estimated above `confirm_above_usd`
--- runs on the second click only. Returns the imported images (nil when it only asked).
function L.panel_enhance(images)
  local opts = L.panel_options()
  if opts.engine ~= "local" and not opts.look then
    local e = L.update_cost(images)
    local key = batch_key(images, opts)
    -- An upscale sends the whole photo out: always said first, and run on the second click.
    if e and (e.cost_usd > (e.confirm_above_usd or 0) or e.sends_full_photo) and ui.armed ~= key then
      ui.armed = key
      ui.cost.label = L.estimate_text(e) .. string.format(_(" — click enhance again to spend about %s"), dollars(e.cost_usd))
      dt.print(ui.cost.label)
      return nil
    end
  end
  ui.armed = nil
  local res = L.enhance(images, opts)
  L.update_cost(images)
  return res
end
L.ui = ui

-- Export target: darktable renders, Luminary enhances that rendering with the panel's
-- preset, the result is imported beside the original.
local function store(storage, image, format, filename, number, total, high_quality, extra_data)
  local opts = L.panel_options()
  local ok, err = pcall(function()
    local out = image.path .. PS .. base_name(image.filename) .. "-luminary-" .. sanitize(opts.preset) .. ".tif"
    local args = { "enhance", filename, "--preset", opts.preset, "--out", out,
                   "--intensity", string.format("%.3f", opts.intensity), "--engine", opts.engine }
    for k, v in pairs(opts.params) do args[#args + 1] = "--param"; args[#args + 1] = k .. "=" .. tostring(v) end
    local result = nil
    run_json(args, function(v) if v.type == "result" then result = v end end)
    if not result or not result.ok then error(result and result.message or _("no answer from luminary"), 0) end
    import_result(image, result.output, opts.preset)
  end)
  os.remove(filename)
  if not ok then dt.print(_("Luminary: ") .. image.filename .. ": " .. tostring(err)) end
end

local function install()
  if dt.configuration.has_gui and not L.panel_installed then
    dt.register_lib(MODULE, _("Luminary"), true, false,
      { [dt.gui.views.lighttable] = { "DT_UI_CONTAINER_PANEL_RIGHT_CENTER", 100 } },
      build_panel(), nil, nil)
    L.panel_installed = true
  end
  dt.register_storage(MODULE, _("Luminary"), store, nil, nil, nil, nil)
  if dt.configuration.has_gui then
    dt.register_event(MODULE, "shortcut", function(event, shortcut)
      local ok, err = pcall(L.panel_enhance, dt.gui.action_images)
      if not ok then dt.print(_("Luminary: ") .. tostring(err)) end
    end, _("enhance with Luminary"))
    -- The cost line follows the selection (paid engines only: nothing runs otherwise).
    pcall(dt.register_event, MODULE .. "_selection", "selection-changed", function()
      pcall(L.update_cost, dt.gui.action_images)
    end)
  end
end

local function destroy()
  dt.destroy_storage(MODULE)
  if dt.configuration.has_gui then
    dt.destroy_event(MODULE, "shortcut")
    pcall(dt.destroy_event, MODULE .. "_selection", "selection-changed")
    if dt.gui.libs[MODULE] then dt.gui.libs[MODULE].visible = false end
  end
end

local function restart()
  dt.register_storage(MODULE, _("Luminary"), store, nil, nil, nil, nil)
  if dt.configuration.has_gui then
    dt.register_event(MODULE, "shortcut", function()
      pcall(L.panel_enhance, dt.gui.action_images)
    end, _("enhance with Luminary"))
    if dt.gui.libs[MODULE] then dt.gui.libs[MODULE].visible = true end
  end
end

install()

script_data.destroy = destroy
script_data.restart = restart
script_data.show = restart

-- `require("luminary")` gives both the script manager's data and the API.
for k, v in pairs(L) do script_data[k] = v end
return script_data
