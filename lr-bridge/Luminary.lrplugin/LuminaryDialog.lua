--[[ The enhance dialog: preset (with its description), intensity starting at the preset's
default, the preset's parameters built from its JSON Schema, engine, source and format.
Choices are remembered in the plug-in's preferences. ]]

local LrBinding = import "LrBinding"
local LrDialogs = import "LrDialogs"
local LrFunctionContext = import "LrFunctionContext"
local LrPrefs = import "LrPrefs"
local LrView = import "LrView"

local Dialog = {}

local ENGINES = { "local", "gemini", "openai", "fal", "replicate", "comfyui" }

local function paramKey(presetId, name)
  return "param_" .. string.gsub(presetId, "%W", "_") .. "_" .. name
end

local function sortedKeys(t)
  local keys = {}
  for k in pairs(t or {}) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

--- Controls for one preset's parameters, shown only while that preset is chosen.
local function paramsView(f, props, preset)
  local rows = { spacing = f:control_spacing() }
  local schema = preset.params_schema or {}
  for _, name in ipairs(sortedKeys(schema.properties)) do
    local s = schema.properties[name]
    local key = paramKey(preset.id, name)
    local label = f:static_text { title = (s.title or name) .. ":", width_in_chars = 16 }
    if s.type == "number" or s.type == "integer" then
      rows[#rows + 1] = f:row {
        label,
        f:slider { value = LrView.bind(key), min = s.minimum or 0, max = s.maximum or 1, width_in_chars = 20,
                   integral = s.type == "integer" },
        f:edit_field { value = LrView.bind(key), width_in_digits = 5, precision = 2 },
      }
    elseif s.type == "boolean" then
      rows[#rows + 1] = f:checkbox { title = s.title or name, value = LrView.bind(key) }
    elseif s.type == "string" and s.enum then
      local items = {}
      for _, v in ipairs(s.enum) do items[#items + 1] = { title = v, value = v } end
      rows[#rows + 1] = f:row { label, f:popup_menu { items = items, value = LrView.bind(key) } }
    end
  end
  rows.visible = LrView.bind { key = "preset", transform = function(v) return v == preset.id end }
  return f:column(rows)
end

--- Shows the dialog; returns the chosen settings, or nil when cancelled. With `selection`
--- (the paths of the selected photos, the first one previewed), the dialog shows the live
--- preview, the preset strip and the selection's cost (`LuminaryPreview`).
function Dialog.run(presets, title, actionVerb, selection)
  local prefs = LrPrefs.prefsForPlugin()
  local settings = nil
  LrFunctionContext.callWithContext("Luminary dialog", function(context)
    local f = LrView.osFactory()
    local props = LrBinding.makePropertyTable(context)
    local byId = {}
    local items = {}
    for _, p in ipairs(presets) do
      byId[p.id] = p
      -- Presets that only an AI engine can do (virtual staging) say so in the list.
      local ai = p.ai_only and " \226\128\148 AI engine only" or ""
      items[#items + 1] = { title = p.name .. ai .. " (" .. p.id .. ")", value = p.id }
      for _, name in ipairs(sortedKeys((p.params_schema or {}).properties)) do
        local key = paramKey(p.id, name)
        local saved = prefs[key]
        if saved == nil then saved = p.params_schema.properties[name].default end
        props[key] = saved
      end
    end
    props.preset = (prefs.preset and byId[prefs.preset]) and prefs.preset or (presets[1] and presets[1].id)
    local function defaults()
      local p = byId[props.preset]
      if p then
        props.description = p.description or ""
        props.intensity = (prefs.intensities or {})[p.id] or p.default_intensity or 0.8
      end
    end
    defaults()
    props:addObserver("preset", defaults)
    props.engine = prefs.engine or "local"
    props.source = prefs.source or "original"
    props.format = prefs.format or "tiff"
    props.sameLook = false
    props.lookFile = ""
    props.prompt = ""

    local paramKeys = {}
    for _, p in ipairs(presets) do
      for _, name in ipairs(sortedKeys((p.params_schema or {}).properties)) do
        paramKeys[#paramKeys + 1] = paramKey(p.id, name)
      end
    end
    local function currentParams()
      local p = byId[props.preset]
      local params = {}
      for _, name in ipairs(sortedKeys(((p or {}).params_schema or {}).properties)) do
        params[name] = props[paramKey(p.id, name)]
      end
      return params
    end
    local previewView, startPreview = nil, nil
    if selection and selection[1] then
      local Preview = require "LuminaryPreview"
      previewView, startPreview = Preview.view(f, props, { photo = selection[1], paths = selection, presets = presets,
        params = currentParams, paramKeys = paramKeys })
    end

    local engineItems = {}
    for _, e in ipairs(ENGINES) do engineItems[#engineItems + 1] = { title = e, value = e } end
    local paramViews = {}
    for _, p in ipairs(presets) do paramViews[#paramViews + 1] = paramsView(f, props, p) end

    local contents = f:column {
      bind_to_object = props,
      spacing = f:control_spacing(),
      f:row { f:static_text { title = "Preset:", width_in_chars = 16 },
              f:popup_menu { items = items, value = LrView.bind("preset") } },
      f:static_text { title = LrView.bind("description"), height_in_lines = 2, width_in_chars = 50 },
      f:row { f:static_text { title = "Intensity:", width_in_chars = 16 },
              f:slider { value = LrView.bind("intensity"), min = 0, max = 1, width_in_chars = 20 },
              f:edit_field { value = LrView.bind("intensity"), width_in_digits = 5, precision = 2 } },
      f:group_box { title = "Parameters", fill_horizontal = 1, f:column(paramViews) },
      f:row { f:static_text { title = "Or your own words:", width_in_chars = 16 },
              f:edit_field { value = LrView.bind("prompt"), width_in_chars = 40, height_in_lines = 2,
                             tooltip = "A free-text edit on an AI engine, e.g. \"remove the power lines\"; the preset is then not used" } },
      f:row { f:static_text { title = "Engine:", width_in_chars = 16 },
              f:popup_menu { items = engineItems, value = LrView.bind("engine") } },
      f:row { f:static_text { title = "Source:", width_in_chars = 16 },
              f:popup_menu { value = LrView.bind("source"), items = {
                { title = "Original RAW", value = "original" },
                { title = "As edited in Lightroom", value = "edited" } } } },
      f:row { f:static_text { title = "Output:", width_in_chars = 16 },
              f:popup_menu { value = LrView.bind("format"), items = {
                { title = "16-bit TIFF", value = "tiff" }, { title = "JPEG", value = "jpeg" },
                { title = "16-bit PNG", value = "png" } } } },
      f:group_box { title = "Same look for the whole shoot", fill_horizontal = 1,
        f:checkbox { title = "Same look for all selected photos (one engine call, on the most selected photo)",
                     value = LrView.bind("sameLook"),
                     enabled = LrView.bind { key = "lookFile", transform = function(v) return v == nil or v == "" end } },
        f:row { f:static_text { title = "Or apply a saved look:", width_in_chars = 16 },
                f:edit_field { value = LrView.bind("lookFile"), width_in_chars = 30 },
                f:push_button { title = "Choose…", action = function()
                  local chosen = LrDialogs.runOpenPanel { title = "A Luminary look", canChooseFiles = true,
                    canChooseDirectories = false, allowsMultipleSelection = false, fileTypes = { "look" } }
                  if chosen and chosen[1] then props.lookFile = chosen[1] end
                end } },
        f:static_text { title = "A saved look needs no engine: the preset and engine above are not used.",
                        visible = LrView.bind { key = "lookFile", transform = function(v) return v ~= nil and v ~= "" end } } },
    }
    if previewView then
      contents = f:row { bind_to_object = props, spacing = f:dialog_spacing(), contents, previewView }
      startPreview()
    end
    local answer = LrDialogs.presentModalDialog { title = title or "Enhance with Luminary", contents = contents,
                                                   actionVerb = actionVerb or "Enhance" }
    props.previewClosed = true
    if answer ~= "ok" then return end
    local p = byId[props.preset]
    local params = currentParams()
    for name, v in pairs(params) do prefs[paramKey(p.id, name)] = v end
    local intensities = prefs.intensities or {}
    intensities[p.id] = props.intensity
    prefs.intensities = intensities
    prefs.preset, prefs.engine, prefs.source, prefs.format = p.id, props.engine, props.source, props.format
    local look = props.lookFile ~= nil and props.lookFile ~= "" and props.lookFile or nil
    settings = { preset = p.id, intensity = props.intensity, engine = props.engine, params = params,
                 source = props.source, format = props.format, look = look, prompt = props.prompt,
                 sameLook = (not look) and props.sameLook and selection ~= nil and #selection > 1 or false }
  end)
  return settings
end

return Dialog
