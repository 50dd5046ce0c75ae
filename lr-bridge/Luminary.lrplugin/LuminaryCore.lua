--[[ The bridge's work: run the luminary CLI, follow its progress, put results into the
catalog as new photos stacked above their originals.

Lightroom's Lua cannot open sockets and LrTasks.execute returns only the exit status, so
the CLI writes its progress and result lines to files named on its command line, and a
cancel request is a file the CLI watches for. ]]

local LrDialogs = import "LrDialogs"
local LrFileUtils = import "LrFileUtils"
local LrLogger = import "LrLogger"
local LrPathUtils = import "LrPathUtils"
local LrPrefs = import "LrPrefs"
local LrTasks = import "LrTasks"

local JSON = require "JSON"
local Config = require "LuminaryConfig"

local log = LrLogger("Luminary")
log:enable("logfile")

local Core = {}

local WIN = WIN_ENV == true

---------------------------------------------------------------------------------------------
-- Finding and running the binary.

function Core.defaultBinary()
  if string.sub(Config.INSTALLED_BINARY, 1, 1) ~= "@" then return Config.INSTALLED_BINARY end
  if WIN then return "C:\\Program Files\\Luminary\\luminary.exe" end
  if MAC_ENV then return "/usr/local/bin/luminary" end
  return "/usr/local/bin/luminary"
end

function Core.binary()
  local prefs = LrPrefs.prefsForPlugin()
  if prefs.binary and prefs.binary ~= "" then return prefs.binary end
  return Core.defaultBinary()
end

--- One argument of a command line. On Windows LrTasks.execute runs the line through
--- `cmd.exe /c`, and the program then splits it by CommandLineToArgvW's rules:
---  * quotes keep spaces, & | < > ^ ( ) and ! as plain text for cmd.exe;
---  * cmd.exe expands %NAME% even inside quotes, so each % leaves the quotes and is
---    escaped with a caret (`"^%"`): a folder called `100%USERNAME%` stays as written;
---  * backslashes before a quote (a trailing one: `D:\`) are doubled, or the program
---    would read `\"` as a quote in the argument.
--- A double quote cannot be passed through cmd.exe safely, and no Windows path holds one.
local function quote(s)
  s = tostring(s)
  if not WIN then return "'" .. string.gsub(s, "'", "'\\''") .. "'" end
  if string.find(s, '"', 1, true) then
    error("cannot pass a double quote to luminary on Windows: " .. s, 0)
  end
  s = string.gsub(s, "(\\+)$", "%1%1")
  return '"' .. string.gsub(s, "%%", '"^%%"') .. '"'
end

--- The line LrTasks.execute runs: on Windows the whole line in one more pair of quotes,
--- which `cmd.exe /c` removes (without them it would strip the program's own quotes).
--- cmd.exe refuses lines over 8,191 characters; say so instead of failing silently.
local function commandLine(words)
  local line = table.concat(words, " ")
  if WIN then
    line = '"' .. line .. '"'
    if #line > 8191 then
      error("the command for luminary is " .. #line .. " characters long, over cmd.exe's limit of 8,191: "
        .. "choose shorter folder names", 0)
    end
  end
  return line
end
Core.quote, Core.commandLine = quote, commandLine

local tempCounter = 0
local function tempPath(name)
  tempCounter = tempCounter + 1
  local dir = LrPathUtils.getStandardFilePath("temp")
  return LrPathUtils.child(dir, string.format("luminary-%d-%d-%s", os.time(), tempCounter, name))
end

Core.tempPath = tempPath

--- Runs `luminary ARGS --result-file F` (preview, estimate) and returns (exit status, the
--- JSON lines it wrote there).
function Core.runForResult(args)
  local resultFile = tempPath("result.jsonl")
  local words = { quote(Core.binary()) }
  for _, a in ipairs(args) do words[#words + 1] = quote(a) end
  words[#words + 1] = "--result-file"
  words[#words + 1] = quote(resultFile)
  local status = LrTasks.execute(commandLine(words))
  local lines = JSON.lines(LrFileUtils.exists(resultFile) and LrFileUtils.readFile(resultFile) or "")
  if LrFileUtils.exists(resultFile) then LrFileUtils.delete(resultFile) end
  return status, lines
end

--- Runs `luminary ARGS` and returns (exit status, JSON lines of the result file, output
--- text). `onPoll()` is called while it runs (from a second task); when it returns false
--- the run is cancelled through the cancel file.
function Core.run(args, onPoll)
  local resultFile = tempPath("result.jsonl")
  local progressFile = tempPath("progress.jsonl")
  local cancelFile = tempPath("cancel")
  local words = { quote(Core.binary()) }
  for _, a in ipairs(args) do words[#words + 1] = quote(a) end
  for _, w in ipairs({ "--result-file", quote(resultFile), "--progress-file", quote(progressFile),
    "--cancel-file", quote(cancelFile) }) do words[#words + 1] = w end
  local cmd = commandLine(words)
  log:trace("running " .. cmd)
  local done, status = false, nil
  LrTasks.startAsyncTask(function()
    status = LrTasks.execute(cmd)
    done = true
  end)
  local cancelled = false
  while not done do
    if onPoll and not cancelled then
      local lines = JSON.lines(LrFileUtils.readFile(progressFile) or "")
      if onPoll(lines[#lines]) == false then
        cancelled = true
        local f = io.open(cancelFile, "w")
        if f then f:write("cancel") f:close() end
      end
    end
    if not done then LrTasks.sleep(0.1) end
  end
  local results = JSON.lines(LrFileUtils.exists(resultFile) and LrFileUtils.readFile(resultFile) or "")
  for _, f in ipairs({ resultFile, progressFile, cancelFile }) do
    if LrFileUtils.exists(f) then LrFileUtils.delete(f) end
  end
  return status, results, cancelled
end

--- The daemon's presets (each with id, name, description, kind, default_intensity,
--- params_schema), or raises with what to do.
function Core.presets()
  local out = tempPath("presets.json")
  local status = LrTasks.execute(commandLine({ quote(Core.binary()), "presets", "--json", ">", quote(out), "2>&1" }))
  local text = LrFileUtils.exists(out) and LrFileUtils.readFile(out) or ""
  if LrFileUtils.exists(out) then LrFileUtils.delete(out) end
  local ok, v = pcall(JSON.decode, text)
  if status ~= 0 or not ok or type(v) ~= "table" or not v.presets then
    error("Luminary is not available (" .. Core.binary() .. "). Install it, or set its path in the "
      .. "plug-in's preferences. " .. (text or ""), 0)
  end
  return v.presets
end

--- Version check through `luminary status`: raises when the binary is missing or older
--- than this plug-in needs.
function Core.checkVersion()
  local out = tempPath("status.json")
  local status = LrTasks.execute(commandLine({ quote(Core.binary()), "status", "--json", ">", quote(out) }))
  local text = LrFileUtils.exists(out) and LrFileUtils.readFile(out) or ""
  if LrFileUtils.exists(out) then LrFileUtils.delete(out) end
  local ok, v = pcall(JSON.decode, text)
  if status ~= 0 or not ok or type(v) ~= "table" or not v.version then
    error("Luminary was not found at " .. Core.binary() .. ". Set the path to the luminary program in "
      .. "File > Plug-in Manager > Luminary.", 0)
  end
  local function parts(s)
    local a, b, c = string.match(s, "(%d+)%.(%d+)%.(%d+)")
    return tonumber(a) or 0, tonumber(b) or 0, tonumber(c) or 0
  end
  local a1, b1, c1 = parts(v.version)
  local a2, b2, c2 = parts(Config.MIN_VERSION)
  if a1 < a2 or (a1 == a2 and (b1 < b2 or (b1 == b2 and c1 < c2))) then
    error("Luminary " .. v.version .. " is too old for this plug-in; install " .. Config.MIN_VERSION .. " or later.", 0)
  end
  return v.version
end

---------------------------------------------------------------------------------------------
-- Photos.

--- Whether `photo` is itself a Luminary result (by its file's XMP provenance).
function Core.isLuminaryResult(photo)
  local path = photo:getRawMetadata("path")
  local f = path and io.open(path, "rb")
  if not f then return false end
  local head = f:read(512 * 1024) or ""
  f:close()
  return string.find(head, "luminary:Preset=", 1, true) ~= nil
end

--- Splits the selection into photos to enhance and (photo, reason) pairs skipped.
function Core.partition(photos)
  local todo, skipped = {}, {}
  for _, photo in ipairs(photos) do
    local name = photo:getFormattedMetadata("fileName") or "?"
    if photo:getRawMetadata("isVirtualCopy") then
      skipped[#skipped + 1] = { photo = photo, reason = name .. ": a virtual copy (enhance its master, or use \"As edited in Lightroom\")" }
    elseif Core.isLuminaryResult(photo) then
      skipped[#skipped + 1] = { photo = photo, reason = name .. ": already a Luminary result" }
    else
      todo[#todo + 1] = photo
    end
  end
  return todo, skipped
end

--- Copies what the photographer set on the original onto the result.
local function copyMetadata(catalog, from, to, preset)
  to:setRawMetadata("rating", from:getRawMetadata("rating"))
  local label = from:getRawMetadata("colorNameForLabel")
  if label and label ~= "" and label ~= "none" then to:setRawMetadata("colorNameForLabel", label) end
  for _, field in ipairs({ "title", "caption" }) do
    local v = from:getFormattedMetadata(field)
    if v and v ~= "" then to:setRawMetadata(field, v) end
  end
  for _, kw in ipairs(from:getRawMetadata("keywords") or {}) do to:addKeyword(kw) end
  local parent = catalog:createKeyword("Luminary", {}, true, nil, true)
  to:addKeyword(catalog:createKeyword(preset, {}, true, parent, true))
end

--- Adds `output` to the catalog, stacked above `original`, with its metadata.
function Core.importResult(catalog, original, output, preset)
  local added
  catalog:withWriteAccessDo("Luminary: add " .. LrPathUtils.leafName(output), function()
    added = catalog:addPhoto(output, original, "above")
    copyMetadata(catalog, original, added, preset)
  end)
  return added
end

--- The file to send for `photo`: the original, or Lightroom's rendering of the current
--- edit as a 16-bit ProPhoto TIFF (deleted by the caller when `temporary`).
function Core.sourceFor(photo, source)
  if source ~= "edited" then return photo:getRawMetadata("path"), false end
  local LrExportSession = import "LrExportSession"
  local dir = tempPath("render")
  LrFileUtils.createAllDirectories(dir)
  local session = LrExportSession({
    photosToExport = { photo },
    exportSettings = {
      LR_format = "TIFF",
      LR_export_bitDepth = 16,
      LR_export_colorSpace = "ProPhotoRGB",
      LR_tiff_compressionMethod = "compressionMethod_None",
      LR_embeddedMetadataOption = "all",
      LR_export_destinationType = "specificFolder",
      LR_export_destinationPathPrefix = dir,
      LR_export_useSubfolder = false,
      LR_collisionHandling = "rename",
      LR_reimportExportedPhoto = false,
      LR_size_doConstrain = false,
    },
  })
  for _, rendition in session:renditions() do
    local ok, pathOrMessage = rendition:waitForRender()
    if not ok then error("Lightroom could not render " .. photo:getFormattedMetadata("fileName") .. ": " .. tostring(pathOrMessage), 0) end
    return pathOrMessage, true
  end
  error("Lightroom rendered nothing", 0)
end

--- The CLI arguments for one photo.
function Core.args(file, outDir, baseName, settings)
  local args = { "enhance", file }
  Core.addSettings(args, settings)
  if baseName then
    args[#args + 1] = "--out"
    args[#args + 1] = Core.outputFor(outDir, baseName, settings)
  else
    args[#args + 1] = "--out-dir"
    args[#args + 1] = outDir
  end
  return args
end

--- The result's file for the original `baseName` in `outDir`: beside the original, under
--- its stem (the daemon adds -2, -3… rather than replace a file).
function Core.outputFor(outDir, baseName, settings)
  local ext = ({ tiff = "tif", jpeg = "jpg", png = "png" })[settings.format or "tiff"] or "tif"
  return LrPathUtils.child(outDir, baseName .. "-luminary-" .. Core.label(settings) .. "." .. ext)
end

--- What the results are called and keyworded by: the preset, a saved look's file name,
--- or `prompt` for a free-text edit.
function Core.label(settings)
  if settings.look then return LrPathUtils.removeExtension(LrPathUtils.leafName(settings.look)) end
  if Core.promptOf(settings.prompt) then return "prompt" end
  return settings.preset
end

--- The free-text edit's words, trimmed, or nil. A double quote cannot pass cmd.exe on
--- Windows: it becomes a single one, everywhere, so the same words give the same edit.
function Core.promptOf(text)
  if type(text) ~= "string" then return nil end
  text = string.gsub(string.gsub(text, "^%s+", ""), "%s+$", "")
  if text == "" then return nil end
  return (string.gsub(text, '"', "'"))
end

--- The kind of preset `id` in the daemon's list (`look`, `content`, `cutout`, `upscale`).
function Core.kindOf(presets, id)
  for _, p in ipairs(presets or {}) do
    if p.id == id then return p.kind end
  end
  return nil
end

--- Before an upscale: it is the one preset that sends the whole full-resolution photo out
--- (in tiles), so the photographer is asked first, with what it costs. `paths` are the
--- photos; returns true to go on.
function Core.confirmFullPhoto(paths, settings)
  local list = tempPath("upscale.txt")
  local fh = io.open(list, "wb")
  for _, p in ipairs(paths) do fh:write(p, "\n") end
  fh:close()
  local args = { "estimate", "--files-from", list, "--preset", settings.preset }
  if settings.engine and settings.engine ~= "" then args[#args + 1] = "--engine"; args[#args + 1] = settings.engine end
  for k, v in pairs(settings.params or {}) do args[#args + 1] = "--param"; args[#args + 1] = k .. "=" .. tostring(v) end
  local _, lines = Core.runForResult(args)
  LrFileUtils.delete(list)
  local e = lines[#lines]
  local info
  if e and e.sends_full_photo then
    info = string.format("Upscaling sends the whole full-resolution photo, not a small preview, to %s: "
      .. "%d tile(s) for %d photo(s), about $%.3f at most.", tostring(e.engine), e.calls or 0, e.photos or 0,
      tonumber(e.cost_usd) or 0)
  elseif e and e.type == "result" and e.ok == false then
    info = tostring(e.message)
  else
    info = "Upscaling sends the whole full-resolution photo, not a small preview, to the engine."
  end
  return LrDialogs.confirm("Send the full photos to be upscaled?", info, "Upscale", "Cancel") == "ok"
end

--- The preset the daemon is asked for: `prompt` (the built-in free-text edit) when the
--- dialog has words, else the chosen preset.
function Core.presetOf(props)
  if Core.promptOf(props.prompt) then return "prompt" end
  return tostring(props.preset)
end

--- Appends `settings` {preset, intensity, engine, params, format, look, sameLook} as CLI
--- options. A saved look runs no engine: only its file, the intensity and the format go.
function Core.addSettings(args, settings)
  if settings.look then
    for _, w in ipairs({ "--look", settings.look, "--format", settings.format or "tiff" }) do args[#args + 1] = w end
    if settings.intensity then args[#args + 1] = "--intensity"; args[#args + 1] = string.format("%.3f", settings.intensity) end
    return args
  end
  if settings.sameLook then args[#args + 1] = "--same-look" end
  local words = Core.promptOf(settings.prompt)
  for _, w in ipairs({ "--preset", words and "prompt" or settings.preset, "--format", settings.format or "tiff" }) do
    args[#args + 1] = w
  end
  if words then
    -- The free-text edit: its words are its only parameter.
    args[#args + 1] = "--param"
    args[#args + 1] = "prompt=" .. words
    if settings.intensity then args[#args + 1] = "--intensity"; args[#args + 1] = string.format("%.3f", settings.intensity) end
    if settings.engine and settings.engine ~= "" then args[#args + 1] = "--engine"; args[#args + 1] = settings.engine end
    return args
  end
  if settings.intensity then args[#args + 1] = "--intensity"; args[#args + 1] = string.format("%.3f", settings.intensity) end
  if settings.engine and settings.engine ~= "" then args[#args + 1] = "--engine"; args[#args + 1] = settings.engine end
  local keys = {}
  for k in pairs(settings.params or {}) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    args[#args + 1] = "--param"
    args[#args + 1] = k .. "=" .. tostring(settings.params[k])
  end
  return args
end

--- Enhances every entry {file, out} of `entries` in ONE run of luminary: the photos go in
--- a list file (`--files-from`, a TAB before each output), not on the command line, which
--- cmd.exe cuts at 8,191 characters; and on Windows each run of a program flashes a console
--- window, so a selection of 300 photos is one window, not 300. `onProgress(i, line)` sees
--- each progress line (i: the entry's position). Returns (exit status, results by
--- position, cancelled).
function Core.runBatch(entries, settings, onProgress)
  local list = tempPath("photos.txt")
  local f = assert(io.open(list, "wb"))
  for _, e in ipairs(entries) do f:write(e.file, "\t", e.out, "\n") end
  f:close()
  local status, results, cancelled = Core.run(Core.addSettings({ "enhance", "--files-from", list }, settings),
    function(progress)
      if progress and onProgress then onProgress(tonumber(progress.index) or 1, progress) end
      if onProgress then return onProgress(nil) end
      return true
    end)
  LrFileUtils.delete(list)
  local byIndex, summary = {}, nil
  for _, r in ipairs(results) do
    local i = tonumber(r.index)
    if i then byIndex[i] = r end
    if r.type == "summary" then summary = r end
  end
  return status, byIndex, cancelled, summary
end

--- What became of one entry of a batch: imports its result stacked above the original,
--- or adds "name: reason" to `report.failed`.
function Core.collect(catalog, report, entry, result, status, settings)
  local err
  if not result then
    err = "luminary did not answer (exit status " .. tostring(status) .. ")"
  elseif not result.ok then
    err = (result.code or "error") .. ": " .. (result.message or "?")
  elseif not LrFileUtils.exists(result.output) then
    err = "the result " .. tostring(result.output) .. " is missing"
  end
  if err then
    report.failed[#report.failed + 1] = entry.name .. ": " .. err
    log:error(entry.name .. ": " .. err)
  else
    report.imported[#report.imported + 1] = Core.importResult(catalog, entry.photo, result.output, Core.label(settings))
    -- How the result was made, where the photographer should know (e.g. an AI answer that
    -- could not be lined up with the photo): shown in the summary.
    for _, note in ipairs(type(result.notes) == "table" and result.notes or {}) do
      report.notes = report.notes or {}
      report.notes[#report.notes + 1] = entry.name .. ": " .. tostring(note)
      log:warn(entry.name .. ": " .. tostring(note))
    end
  end
end

--- Enhances `photos` with `settings` {preset, intensity, engine, params, source, format},
--- reporting through `scope` (an LrProgressScope). Returns {imported = {...}, failed =
--- {"name: message", ...}, skipped = {...}, cancelled = bool}. Photos are prepared one by
--- one (Lightroom renders "as edited" ones), then enhanced in one run (`Core.runBatch`).
function Core.enhance(catalog, photos, settings, scope)
  local todo, skipped = Core.partition(photos)
  -- With the same look for all, the most selected photo is the reference: it goes first.
  if settings.sameLook and settings.reference then
    for i, photo in ipairs(todo) do
      if photo == settings.reference and i > 1 then
        table.remove(todo, i)
        table.insert(todo, 1, photo)
        break
      end
    end
  end
  local report = { imported = {}, failed = {}, skipped = {}, cancelled = false }
  for _, s in ipairs(skipped) do report.skipped[#report.skipped + 1] = s.reason end
  local n = #todo
  local entries, temporaries = {}, {}
  for i, photo in ipairs(todo) do
    if scope:isCanceled() then report.cancelled = true break end
    local name = photo:getFormattedMetadata("fileName") or "?"
    scope:setCaption(string.format("Preparing photo %d of %d", i, n))
    -- LrTasks.pcall, not pcall: rendering yields, and Lua 5.1 cannot yield across a plain
    -- pcall.
    local ok, err = LrTasks.pcall(function()
      local file, temporary = Core.sourceFor(photo, settings.source)
      if temporary then temporaries[#temporaries + 1] = file end
      local original = photo:getRawMetadata("path")
      local base = LrPathUtils.removeExtension(LrPathUtils.leafName(original))
      entries[#entries + 1] = { photo = photo, name = name, file = file,
                                out = Core.outputFor(LrPathUtils.parent(original), base, settings) }
    end)
    if not ok then
      report.failed[#report.failed + 1] = name .. ": " .. tostring(err)
      log:error(name .. ": " .. tostring(err))
    end
  end
  if #entries > 0 and not report.cancelled then
    local m = #entries
    local fractions = {}
    local status, results, cancelled, summary = Core.runBatch(entries, settings, function(i, progress)
      if i then
        fractions[i] = progress.fraction or 0
        local done = 0
        for _, v in pairs(fractions) do done = done + v end
        scope:setCaption(string.format("Photo %d of %d — %s", i, m, progress.stage or ""))
        scope:setPortionComplete(done * n / m, n)
        return true
      end
      return not scope:isCanceled()
    end)
    report.cancelled = report.cancelled or cancelled
    report.summary = summary
    if not cancelled then
      for i, entry in ipairs(entries) do Core.collect(catalog, report, entry, results[i], status, settings) end
    end
  end
  -- The renderings and the folders they were rendered into.
  for _, file in ipairs(temporaries) do
    if LrFileUtils.exists(file) then LrFileUtils.delete(file) end
    LrFileUtils.delete(LrPathUtils.parent(file))
  end
  if n > 0 then scope:setPortionComplete(n, n) end
  return report
end

--- One dialog at the end: what was done, skipped and failed — never a silent failure.
function Core.summarize(report)
  local lines = { string.format("%d photo(s) enhanced.", #report.imported) }
  local s = report.summary
  if s then
    -- "1 engine call ($0.039) for 48 photos": what the same look for all cost.
    local calls = tonumber(s.engine_calls) or 0
    local cost = calls > 0 and string.format(" ($%.3f)", tonumber(s.cost) or 0) or ""
    local what = calls == 0 and (tonumber(s.cached) or 0) > 0 and "0 engine calls (the answer was cached)"
      or string.format("%d engine call%s%s", calls, calls == 1 and "" or "s", cost)
    lines[#lines + 1] = string.format("Same look for all: %s for %d photos. The look is saved as %s.",
      what, tonumber(s.photos) or 0, tostring(s.look))
  end
  if report.cancelled then lines[#lines + 1] = "Cancelled: the remaining photos were not enhanced." end
  if report.notes and #report.notes > 0 then
    lines[#lines + 1] = "\nNotes:"
    for _, n in ipairs(report.notes) do lines[#lines + 1] = "  " .. n end
  end
  if #report.skipped > 0 then
    lines[#lines + 1] = "\nSkipped:"
    for _, s in ipairs(report.skipped) do lines[#lines + 1] = "  " .. s end
  end
  if #report.failed > 0 then
    lines[#lines + 1] = "\nFailed:"
    for _, f in ipairs(report.failed) do lines[#lines + 1] = "  " .. f end
  end
  local kind = #report.failed > 0 and "critical" or "info"
  LrDialogs.message("Luminary", table.concat(lines, "\n"), kind)
  return table.concat(lines, "\n")
end

Core.log = log
return Core
