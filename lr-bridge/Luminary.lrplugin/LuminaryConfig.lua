--[[ Where the luminary binary is. `luminary install lightroom` records its absolute path
here; the plug-in preference "luminary binary" overrides it. ]]
return {
  INSTALLED_BINARY = "@LUMINARY_BINARY@",
  -- Oldest daemon/CLI this plug-in works with.
  MIN_VERSION = "0.1.0",
}
