--[[ The dialog's live preview, for the first selected photo: before and after side by side
(`luminary preview` into files the dialog's pictures are bound to), a strip of every preset
on the photo (offline engine, free) to choose one by its look, and a line with the cost of
the whole selection (`luminary estimate`).

The after picture follows the preset, its parameters, the engine and the intensity, after a
short quiet time so that dragging the slider never queues a pile of runs. On a paid engine
nothing is sent on a change: a button says what the preview costs ("Preview with gemini,
$0.04") and only a click sends it; after that, other intensities of the same edit are free
(the daemon keeps the answer) and follow the slider again. The final enhance reuses that
answer: the engine is paid once for the preview and the photo together. ]]

local LrFileUtils = import "LrFileUtils"
local LrPathUtils = import "LrPathUtils"
local LrTasks = import "LrTasks"
local LrView = import "LrView"

local Core = require "LuminaryCore"

local Preview = {}

--- Long edge of the before and after pictures, and of the strip's thumbnails.
Preview.SIZE = 640
Preview.THUMB = 160
--- Ticks (of 0.1 s) with no change before a run: the debounce.
local QUIET_TICKS = 3

local function dollars(v)
  if v == nil then return "?" end
  local s = string.format("$%.3f", v)
  return (string.gsub(s, "(%.%d%d)0$", "%1"))
end

--- The selection's cost in one line: "9 of 12 photos will call gemini, about $0.35; 3 cached".
function Preview.summary(e)
  if not e then return "" end
  if not e.paid then return string.format("%d photo(s) on the offline engine: free", e.photos or 0) end
  if e.sends_full_photo then
    return string.format("Sends the whole full-resolution photo to %s: %d tile(s), about %s at most",
      tostring(e.engine), e.calls or 0, dollars(e.cost_usd))
  end
  local s = string.format("%d of %d photo(s) will call %s, about %s", e.calls or 0, e.photos or 0,
    tostring(e.engine), dollars(e.cost_usd))
  if (e.cached or 0) > 0 then s = s .. string.format("; %d cached", e.cached) end
  if e.budget and e.budget.remaining_usd then
    s = s .. "; " .. dollars(e.budget.remaining_usd) .. " left in the budget"
  end
  if e.budget and e.budget.message then s = s .. "\n" .. e.budget.message end
  return s
end

--- The preview's views, for the dialog; `opts` = {photo = path of the first selected photo,
--- paths = every selected photo's path, presets = the daemon's presets,
--- params = function() -> the chosen preset's parameters, paramKeys = property names of
--- every parameter}. Returns the view and `start`, to call once the dialog is about to
--- show (it starts the background task; setting props.previewClosed ends it).
function Preview.view(f, props, opts)
  props.beforeFile, props.afterFile = nil, nil
  props.previewNote = "Preparing the preview…"
  props.costLine = ""
  props.paidButtonTitle = "Preview"
  props.paidButtonEnabled = false
  local state = { gen = 1, done = 0, quiet = 0, approved = {}, n = 0, estimateKey = nil, price = nil,
                  firstCached = false }
  local function touch()
    state.gen = state.gen + 1
    state.quiet = 0
  end
  for _, key in ipairs({ "preset", "intensity", "engine", "prompt" }) do props:addObserver(key, touch) end
  for _, key in ipairs(opts.paramKeys or {}) do props:addObserver(key, touch) end
  -- The same look for all: only the previewed (most selected) photo goes to the engine.
  props:addObserver("sameLook", function()
    state.estimateKey = nil
    touch()
  end)

  -- A free-text edit is the preset `prompt` with the words as its one parameter.
  local function words() return Core.promptOf(props.prompt) end
  local function paramWords(args)
    if words() then
      args[#args + 1] = "--param"
      args[#args + 1] = "prompt=" .. words()
      return args
    end
    local params = opts.params() or {}
    local keys = {}
    for k in pairs(params) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do
      args[#args + 1] = "--param"
      args[#args + 1] = k .. "=" .. tostring(params[k])
    end
    return args
  end
  local function editKey()
    local a = paramWords({ Core.presetOf(props), tostring(props.engine) })
    return table.concat(a, "|")
  end

  local strip = { spacing = f:control_spacing() }
  local row = nil
  for i, p in ipairs(opts.presets or {}) do
    if (i - 1) % 5 == 0 then
      row = { spacing = f:control_spacing() }
      strip[#strip + 1] = row
    end
    row[#row + 1] = f:column {
      f:picture { value = LrView.bind("thumb_" .. p.id), width = Preview.THUMB, height = Preview.THUMB * 2 / 3 },
      f:push_button { title = p.name, width = Preview.THUMB, action = function() props.preset = p.id end },
    }
  end
  for i = 1, #strip do strip[i] = f:row(strip[i]) end

  local view = f:column {
    spacing = f:control_spacing(),
    f:row {
      f:column { f:static_text { title = "Before" },
                 f:picture { value = LrView.bind("beforeFile"), width = Preview.SIZE / 2, height = Preview.SIZE / 3 } },
      f:column { f:static_text { title = "After" },
                 f:picture { value = LrView.bind("afterFile"), width = Preview.SIZE / 2, height = Preview.SIZE / 3 } },
    },
    f:row {
      f:static_text { title = LrView.bind("previewNote"), width_in_chars = 40 },
      f:push_button { title = LrView.bind("paidButtonTitle"), enabled = LrView.bind("paidButtonEnabled"),
                      action = function()
                        state.approved[editKey()] = true
                        props.paidButtonEnabled = false
                        touch()
                      end },
    },
    f:static_text { title = LrView.bind("costLine"), height_in_lines = 2, width_in_chars = 60 },
    f:group_box { title = "Every preset on this photo", fill_horizontal = 1, f:column(strip) },
  }

  local dir = Core.tempPath("preview")
  local function start()
    LrTasks.startAsyncTask(function()
      LrFileUtils.createAllDirectories(dir)
      -- Before: the photo as Luminary renders it (intensity 0 is the base exactly).
      local before = LrPathUtils.child(dir, "before.jpg")
      local _, lines = Core.runForResult({ "preview", opts.photo, "--preset", Core.presetOf(props), "--engine",
        "local", "--intensity", "0", "--size", tostring(Preview.SIZE), "--out", before })
      local r = lines[#lines]
      if r and r.ok then props.beforeFile = before
      elseif r then props.previewNote = tostring(r.message) end
      -- The strip: every preset at once, on the offline engine (the photo is decoded once).
      local thumbs = LrPathUtils.child(dir, "presets")
      local _, all = Core.runForResult({ "preview", opts.photo, "--all-presets", "--out-dir", thumbs,
        "--size", tostring(Preview.THUMB) })
      for _, t in ipairs(all) do
        if t.ok and t.preset then props["thumb_" .. t.preset] = t.output end
      end
      while not props.previewClosed do
        state.quiet = state.quiet + 1
        if state.gen ~= state.done and state.quiet >= QUIET_TICKS then
          local gen = state.gen
          Preview.update(props, opts, state, dir, paramWords, editKey)
          state.done = gen
        end
        LrTasks.sleep(0.1)
      end
      -- The dialog closed: its pictures go, file by file, then their folders.
      for _, t in ipairs(all) do
        if t.output and LrFileUtils.exists(t.output) then LrFileUtils.delete(t.output) end
      end
      for _, file in ipairs({ before, props.afterFile }) do
        if file and LrFileUtils.exists(file) then LrFileUtils.delete(file) end
      end
      LrFileUtils.delete(thumbs)
      LrFileUtils.delete(dir)
    end)
  end
  return view, start
end

--- The selection's cost line, for the edit `key` (also whether the first photo's edit is
--- cached, and its price).
local function estimate(props, opts, state, paramWords, key)
  state.estimateKey = key
  local list = Core.tempPath("selection.txt")
  local fh = io.open(list, "wb")
  local paths = props.sameLook and { opts.photo } or opts.paths or { opts.photo }
  for _, p in ipairs(paths) do fh:write(p, "\n") end
  fh:close()
  local _, lines = Core.runForResult(paramWords({ "estimate", "--files-from", list, "--preset",
    Core.presetOf(props), "--engine", tostring(props.engine) }))
  LrFileUtils.delete(list)
  local e = lines[#lines]
  if e and e.type ~= "result" then
    props.costLine = Preview.summary(e)
    if props.sameLook and opts.paths and #opts.paths > 1 then
      props.costLine = props.costLine .. string.format("; the same look then goes to all %d photos at no cost", #opts.paths)
    end
    local first = e.items and e.items[1]
    state.firstCached = first and first.cached or false
    state.price = first and not first.cached and first.price or 0
  else
    props.costLine = e and tostring(e.message) or ""
    state.firstCached, state.price = false, nil
  end
end

--- One round: the selection's estimate when the edit changed, then the after picture (or,
--- on a paid engine not yet clicked for this edit, the button that says what it costs).
function Preview.update(props, opts, state, dir, paramWords, editKey)
  local key = editKey()
  local paid = props.engine ~= "local"
  if state.estimateKey ~= key then estimate(props, opts, state, paramWords, key) end
  if paid and not state.approved[key] and not state.firstCached then
    props.paidButtonTitle = "Preview with " .. tostring(props.engine) .. ", " .. dollars(state.price)
    props.paidButtonEnabled = true
    props.previewNote = "A preview on " .. tostring(props.engine) .. " is paid: click to send it"
    return
  end
  props.paidButtonEnabled = false
  state.n = state.n + 1
  local out = LrPathUtils.child(dir, string.format("after-%d.jpg", state.n))
  local _, lines = Core.runForResult(paramWords({ "preview", opts.photo, "--preset", Core.presetOf(props),
    "--engine", tostring(props.engine), "--intensity", string.format("%.3f", props.intensity or 0),
    "--size", tostring(Preview.SIZE), "--out", out }))
  local r = lines[#lines]
  if r and r.ok then
    local old = props.afterFile
    props.previewNote = string.format("%s, %s%s", tostring(r.engine), r.cached and "cached, " or "",
      (r.cost or 0) > 0 and ("paid " .. dollars(r.cost)) or "free")
    -- A new file each time: Lightroom's picture shows a new path, not a rewritten file.
    props.afterFile = out
    if old and LrFileUtils.exists(old) then LrFileUtils.delete(old) end
    state.approved[key] = true
    -- A paid answer is now cached: the selection's cost changed.
    if (r.cost or 0) > 0 then estimate(props, opts, state, paramWords, key) end
  else
    props.previewNote = r and (tostring(r.message) .. " [" .. tostring(r.code) .. "]") or "no preview"
  end
end

return Preview
