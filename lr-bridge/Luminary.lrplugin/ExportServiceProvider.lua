--[[ The "Luminary" export service: Lightroom renders the photos (16-bit ProPhoto TIFF),
Luminary enhances each rendering, and the result is added to the catalog stacked above the
source photo, in the source photo's folder. ]]

local LrPathUtils = import "LrPathUtils"
local LrFileUtils = import "LrFileUtils"
local LrTasks = import "LrTasks"
local LrView = import "LrView"

local Core = require "LuminaryCore"

local provider = {}

provider.hideSections = { "exportLocation", "fileNaming", "video", "watermarking" }
provider.allowFileFormats = { "TIFF" }
provider.allowColorSpaces = { "ProPhotoRGB", "AdobeRGB", "sRGB" }
provider.canExportVideo = false
provider.exportPresetFields = {
  { key = "luminary_preset", default = "auto" },
  { key = "luminary_intensity", default = 0.8 },
  { key = "luminary_engine", default = "local" },
}

function provider.sectionsForTopOfDialog(f, propertyTable)
  -- Running luminary needs a task; the menu fills in when the answer arrives.
  propertyTable.luminary_preset_items = { { title = propertyTable.luminary_preset, value = propertyTable.luminary_preset } }
  propertyTable.luminary_status = "Loading presets..."
  LrTasks.startAsyncTask(function()
    local ok, presets = LrTasks.pcall(Core.presets)
    if ok then
      local items = {}
      for _, p in ipairs(presets) do items[#items + 1] = { title = p.name .. " (" .. p.id .. ")", value = p.id } end
      propertyTable.luminary_preset_items = items
      propertyTable.luminary_status = ""
    else
      propertyTable.luminary_status = tostring(presets)
    end
  end)
  return {
    {
      title = "Luminary",
      synopsis = LrView.bind("luminary_preset"),
      f:row { f:static_text { title = "Preset:" },
              f:popup_menu { items = LrView.bind("luminary_preset_items"), value = LrView.bind("luminary_preset") } },
      f:row { f:static_text { title = "Intensity:" },
              f:slider { value = LrView.bind("luminary_intensity"), min = 0, max = 1 },
              f:edit_field { value = LrView.bind("luminary_intensity"), width_in_digits = 5, precision = 2 } },
      f:row { f:static_text { title = "Engine:" }, f:edit_field { value = LrView.bind("luminary_engine") } },
      f:static_text { title = LrView.bind("luminary_status"), width_in_chars = 50 },
    },
  }
end

function provider.processRenderedPhotos(functionContext, exportContext)
  local session = exportContext.exportSession
  local props = exportContext.propertyTable
  local catalog = session.catalog or (import "LrApplication").activeCatalog()
  local n = session:countRenditions()
  local scope = exportContext:configureProgress { title = "Luminary: " .. props.luminary_preset }
  local report = { imported = {}, failed = {}, skipped = {}, cancelled = false }
  local settings = { preset = props.luminary_preset, intensity = props.luminary_intensity, engine = props.luminary_engine,
                     params = {}, format = "tiff" }
  -- Lightroom renders every photo first; then one run of luminary enhances them all
  -- (one console window on Windows, not one per photo).
  local entries = {}
  for _, rendition in exportContext:renditions { stopIfCanceled = true } do
    local photo = rendition.photo
    local name = photo:getFormattedMetadata("fileName") or "?"
    local success, pathOrMessage = rendition:waitForRender()
    if not success then
      report.failed[#report.failed + 1] = name .. ": " .. tostring(pathOrMessage)
    else
      local original = photo:getRawMetadata("path")
      local base = LrPathUtils.removeExtension(LrPathUtils.leafName(original))
      entries[#entries + 1] = { photo = photo, name = name, file = pathOrMessage,
                                out = Core.outputFor(LrPathUtils.parent(original), base, settings) }
    end
    if scope:isCanceled() then report.cancelled = true break end
  end
  -- An upscale sends each whole rendering out: asked first, with its cost.
  if #entries > 0 and not report.cancelled then
    local ok, presets = LrTasks.pcall(Core.presets)
    if ok and Core.kindOf(presets, settings.preset) == "upscale" then
      local files = {}
      for _, e in ipairs(entries) do files[#files + 1] = e.file end
      if not Core.confirmFullPhoto(files, settings) then report.cancelled = true end
    end
  end
  if #entries > 0 and not report.cancelled then
    local m, fractions = #entries, {}
    local status, results, cancelled = Core.runBatch(entries, settings, function(i, progress)
      if i then
        fractions[i] = progress.fraction or 0
        local done = 0
        for _, v in pairs(fractions) do done = done + v end
        scope:setPortionComplete(done, m)
        return true
      end
      return not scope:isCanceled()
    end)
    report.cancelled = cancelled
    if not cancelled then
      for i, entry in ipairs(entries) do Core.collect(catalog, report, entry, results[i], status, settings) end
    end
  end
  for _, e in ipairs(entries) do
    if LrFileUtils.exists(e.file) then LrFileUtils.delete(e.file) end
  end
  if #report.failed > 0 or report.cancelled then Core.summarize(report) end
end

return provider
