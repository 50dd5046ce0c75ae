--[[ Library > Plug-in Extras > Enhance with Luminary...: enhance the selected photos. ]]

local LrApplication = import "LrApplication"
local LrDialogs = import "LrDialogs"
local LrFunctionContext = import "LrFunctionContext"
local LrProgressScope = import "LrProgressScope"
local LrTasks = import "LrTasks"

local Core = require "LuminaryCore"
local Dialog = require "LuminaryDialog"

LrTasks.startAsyncTask(function()
  LrFunctionContext.callWithContext("Enhance with Luminary", function(context)
    local catalog = LrApplication.activeCatalog()
    local photos = catalog:getTargetPhotos()
    if #photos == 0 then
      LrDialogs.message("Luminary", "Select the photos to enhance first.", "info")
      return
    end
    local ok, presetsOrError = LrTasks.pcall(function()
      Core.checkVersion()
      return Core.presets()
    end)
    if not ok then
      LrDialogs.message("Luminary", tostring(presetsOrError), "critical")
      return
    end
    -- The photos the preview and the cost line are about: what will be enhanced.
    -- The most selected photo first: it is previewed, and with the same look for all it
    -- is the reference.
    local todo = Core.partition(photos)
    local target = catalog:getTargetPhoto()
    local selection = {}
    for _, photo in ipairs(todo) do
      if photo == target then table.insert(selection, 1, photo:getRawMetadata("path"))
      else selection[#selection + 1] = photo:getRawMetadata("path") end
    end
    local settings = Dialog.run(presetsOrError, nil, nil, selection)
    if not settings then return end
    if Core.kindOf(presetsOrError, settings.preset) == "upscale"
      and not Core.confirmFullPhoto(selection, settings) then
      return
    end
    settings.reference = target
    local scope = LrProgressScope { title = "Luminary: " .. settings.preset, functionContext = context }
    scope:setCancelable(true)
    local report = Core.enhance(catalog, photos, settings, scope)
    scope:done()
    Core.summarize(report)
  end)
end)
