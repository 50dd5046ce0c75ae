--[[ File > Plug-in Manager > Luminary: the path to the luminary program. ]]

local LrPrefs = import "LrPrefs"
local LrView = import "LrView"

local Core = require "LuminaryCore"

return {
  sectionsForTopOfDialog = function(f, propertyTable)
    local prefs = LrPrefs.prefsForPlugin()
    propertyTable.binary = prefs.binary or ""
    propertyTable:addObserver("binary", function() prefs.binary = propertyTable.binary end)
    return {
      {
        title = "Luminary",
        f:row {
          f:static_text { title = "luminary program:" },
          f:edit_field { value = LrView.bind("binary"), width_in_chars = 40,
                         placeholder_string = Core.defaultBinary() },
        },
        f:static_text { title = "Empty: " .. Core.defaultBinary() },
      },
    }
  end,
}
