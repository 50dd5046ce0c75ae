--[[ Luminary for Lightroom Classic: AI presets, results stacked above the originals. ]]
return {
  LrSdkVersion = 10.0,
  LrSdkMinimumVersion = 6.0,
  LrToolkitIdentifier = "photo.luminary.lightroom",
  LrPluginName = "Luminary",
  LrPluginInfoUrl = "https://github.com/luminary-photo/luminary",
  LrLibraryMenuItems = {
    { title = "Enhance with Luminary...", file = "EnhanceMenuItem.lua", enabledWhen = "photosSelected" },
  },
  LrExportServiceProvider = {
    { title = "Luminary", file = "ExportServiceProvider.lua" },
  },
  LrPluginInfoProvider = "PluginInfoProvider.lua",
  VERSION = { major = 0, minor = 1, revision = 0 },
}
