--[[ A Lua 5.1 stand-in for the parts of the Lightroom Classic SDK the Luminary plug-in
uses, strict where Lightroom is strict:

  * catalog writes (addPhoto, createKeyword, setRawMetadata, addKeyword) outside
    catalog:withWriteAccessDo raise, as in Lightroom;
  * LrTasks.execute returns only the exit status — no stdout;
  * LrTasks tasks are cooperative: execute, sleep and yield let other tasks run, so the
    plug-in's progress polling and cancel really happen while luminary runs.

Everything the plug-in does is recorded in SDK.* for the test to check. ]]

SDK = {
  prefs = {},
  messages = {},
  dialogs = {},
  added = {},
  progress = {},
  captions = {},
  logs = {},
  writeAccess = false,
  dialogAnswer = "ok",
  cancelAfterProgress = nil, -- cancel once this many progress updates were seen
  tasks = {},
  tmp = os.getenv("LR_TEST_TMP") or "/tmp",
}
-- LR_TEST_WINDOWS=1: the plug-in believes it runs on Windows, and LrTasks.execute hands its
-- command line to an emulation of `cmd.exe /c` (see windowsCommand below) instead of sh.
SDK.windows = os.getenv("LR_TEST_WINDOWS") == "1"
-- The variables cmd.exe would expand in the emulation: %USERNAME% and the like.
SDK.winEnv = { USERNAME = "lrtester", OS = "Windows_NT", TEMP = "C:\\Users\\lrtester\\AppData\\Local\\Temp",
  SYSTEMROOT = "C:\\Windows", DATE = "03.12.2026" }
SDK.commandLines = {}
WIN_ENV = SDK.windows
MAC_ENV = false

local function strict(what)
  if not SDK.writeAccess then
    error(what .. " called outside catalog:withWriteAccessDo", 2)
  end
end

local function sh_quote(s)
  return "'" .. string.gsub(s, "'", "'\\''") .. "'"
end

local function realSleep(seconds)
  os.execute("sleep " .. seconds)
end

---------------------------------------------------------------------------------------------
local LrTasks = {}

function LrTasks.startAsyncTask(fn)
  local co = coroutine.create(fn)
  SDK.tasks[#SDK.tasks + 1] = co
  local ok, err = coroutine.resume(co)
  if not ok then error(err, 0) end
end

local function yieldOrSleep(seconds)
  if coroutine.running() then coroutine.yield() else realSleep(seconds) end
end

function LrTasks.sleep(seconds)
  yieldOrSleep(seconds)
end

function LrTasks.yield()
  yieldOrSleep(0.01)
end

--[[ What `cmd.exe /c LINE` makes of LINE, as a POSIX shell command (or nil and the reason
cmd.exe would fail), by cmd.exe's documented parsing:
  1. /c with a line that starts with a quote: the first and the last quote are removed;
  2. lines over 8,191 characters are refused ("The command line is too long.");
  3. %NAME% is replaced by the variable's value, inside quotes too; an undefined name is
     left as written (command-line context);
  4. outside quotes, ^ escapes the next character and is removed; & | < are command
     operators, > starts a redirection; inside quotes all of these are plain text;
  5. the program splits what is left into arguments by CommandLineToArgvW's rules
     (2n backslashes and a quote: n backslashes and a quote toggle; 2n+1: n and a
     literal quote; other backslashes are literal). ]]
local function windowsCommand(line)
  if string.sub(line, 1, 1) == '"' then
    local last = string.find(line, '"[^"]*$', 2)
    if last then line = string.sub(line, 2, last - 1) .. string.sub(line, last + 1) end
  end
  if #line > 8191 then return nil, "The command line is too long." end
  local expanded, i = {}, 1
  while i <= #line do
    local c = string.sub(line, i, i)
    local close = c == "%" and string.find(line, "%", i + 1, true)
    local value = close and SDK.winEnv[string.upper(string.sub(line, i + 1, close - 1))]
    if value then
      expanded[#expanded + 1] = value
      i = close + 1
    else
      expanded[#expanded + 1] = c
      i = i + 1
    end
  end
  line = table.concat(expanded)
  -- Step 4: what the program gets, and the redirections.
  local program, quoted, redirect = {}, false, nil
  i = 1
  while i <= #line do
    local c = string.sub(line, i, i)
    if c == '"' then
      quoted = not quoted
      program[#program + 1] = c
    elseif quoted then
      program[#program + 1] = c
    elseif c == "^" then
      program[#program + 1] = string.sub(line, i + 1, i + 1)
      i = i + 1
    elseif c == "&" or c == "|" or c == "<" then
      return nil, "cmd.exe would read " .. c .. " as a command operator in: " .. line
    elseif c == ">" then
      redirect = string.sub(line, i + 1)
      -- A `2` just before `>` belongs to the redirection, not to the program.
      if program[#program] == "2" and string.find(table.concat(program), "%s2$") then
        program[#program] = nil
        redirect = "2>" .. redirect
      end
      break
    else
      program[#program + 1] = c
    end
    i = i + 1
  end
  local args, cur, inArg = {}, {}, false
  local text = table.concat(program)
  quoted, i = false, 1
  while i <= #text do
    local c = string.sub(text, i, i)
    if c == "\\" then
      local j = i
      while string.sub(text, j, j) == "\\" do j = j + 1 end
      local n = j - i
      if string.sub(text, j, j) == '"' then
        cur[#cur + 1] = string.rep("\\", math.floor(n / 2))
        if n % 2 == 1 then cur[#cur + 1] = '"' else quoted = not quoted end
        i = j + 1
      else
        cur[#cur + 1] = string.rep("\\", n)
        i = j
      end
      inArg = true
    elseif c == '"' then
      quoted = not quoted
      inArg = true
      i = i + 1
    elseif (c == " " or c == "\t") and not quoted then
      if inArg then args[#args + 1] = table.concat(cur) end
      cur, inArg = {}, false
      i = i + 1
    else
      cur[#cur + 1] = c
      inArg = true
      i = i + 1
    end
  end
  if inArg then args[#args + 1] = table.concat(cur) end
  local posix = {}
  for _, a in ipairs(args) do posix[#posix + 1] = sh_quote(a) end
  local cmd = table.concat(posix, " ")
  if redirect then
    -- `> "file"` or `> "file" 2>&1`: the target, unquoted by the same rules.
    local both = string.find(redirect, "2>&1", 1, true)
    local target = string.gsub(string.gsub(redirect, "2>&1", ""), '^%s*>?%s*', "")
    target = string.gsub(string.gsub(target, '"', ""), "%s+$", "")
    cmd = cmd .. " > " .. sh_quote(target) .. (both and " 2>&1" or "")
  end
  return cmd
end
SDK.windowsCommand = windowsCommand

local execCounter = 0
function LrTasks.execute(cmd)
  execCounter = execCounter + 1
  SDK.commandLines[#SDK.commandLines + 1] = cmd
  if SDK.windows then
    local posix, why = windowsCommand(cmd)
    if not posix then
      SDK.cmdErrors = SDK.cmdErrors or {}
      SDK.cmdErrors[#SDK.cmdErrors + 1] = why
      return 1
    end
    cmd = posix
  end
  local status = SDK.tmp .. "/exec-" .. execCounter .. ".status"
  os.remove(status)
  -- Run in the background so other tasks go on; only the exit status comes back.
  os.execute("(sh -c " .. sh_quote(cmd) .. " >/dev/null 2>&1; echo $? > " .. sh_quote(status .. ".part") ..
    "; mv " .. sh_quote(status .. ".part") .. " " .. sh_quote(status) .. ") &")
  while true do
    local f = io.open(status, "r")
    if f then
      local code = tonumber(f:read("*l"))
      f:close()
      os.remove(status)
      return code
    end
    yieldOrSleep(0.05)
  end
end

--- Lightroom's yield-safe pcall: Lua 5.1's own pcall cannot be yielded across, so the
--- function runs in a coroutine of its own and its yields are passed outward.
function LrTasks.pcall(fn, ...)
  local args = { ... }
  local n = select("#", ...)
  local co = coroutine.create(function() return fn(unpack(args, 1, n)) end)
  local res = { coroutine.resume(co) }
  while true do
    if not res[1] then return false, res[2] end
    if coroutine.status(co) == "dead" then return true, unpack(res, 2) end
    coroutine.yield()
    res = { coroutine.resume(co) }
  end
end

--- Runs every task until all have finished (the stand-in's event loop).
function SDK.drain()
  local guard = 0
  while true do
    local alive = false
    for _, co in ipairs(SDK.tasks) do
      if coroutine.status(co) == "suspended" then
        alive = true
        local ok, err = coroutine.resume(co)
        if not ok then error(err, 0) end
      end
    end
    if not alive then return end
    realSleep(0.02)
    guard = guard + 1
    if guard > 30000 then error("tasks did not finish") end
  end
end

---------------------------------------------------------------------------------------------
local LrPathUtils = {}
function LrPathUtils.child(a, b) return a .. "/" .. b end
function LrPathUtils.parent(p) return string.match(p, "^(.*)/[^/]*$") end
function LrPathUtils.leafName(p) return string.match(p, "([^/]*)$") end
function LrPathUtils.removeExtension(p) return (string.gsub(p, "%.[^./]*$", "")) end
function LrPathUtils.getStandardFilePath(which)
  assert(which == "temp", "only the temp folder is stood in")
  return SDK.tmp
end

local LrFileUtils = {}
function LrFileUtils.exists(p)
  local f = p and io.open(p, "rb")
  if f then f:close() return "file" end
  return false
end
function LrFileUtils.delete(p) return os.remove(p) end
function LrFileUtils.readFile(p)
  local f = io.open(p, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end
function LrFileUtils.createAllDirectories(p) os.execute("mkdir -p " .. sh_quote(p)) return true end

local function LrLogger(name)
  local logger = {}
  function logger:enable() end
  for _, level in ipairs({ "trace", "info", "warn", "error", "debug" }) do
    logger[level] = function(_, msg) SDK.logs[#SDK.logs + 1] = level .. ": " .. tostring(msg) end
  end
  return logger
end

local LrPrefs = {}
function LrPrefs.prefsForPlugin() return SDK.prefs end

local LrDialogs = {}
function LrDialogs.message(title, text, kind)
  SDK.messages[#SDK.messages + 1] = { title = title, text = text, kind = kind }
end
--- A yes/no question: recorded in `SDK.confirms`, answered with `SDK.confirmAnswer`
--- ("ok" unless a scenario says otherwise), as Lightroom's `LrDialogs.confirm` does.
function LrDialogs.confirm(message, info, actionVerb, cancelVerb, otherVerb)
  SDK.confirms = SDK.confirms or {}
  SDK.confirms[#SDK.confirms + 1] = { message = message, info = info, action = actionVerb, cancel = cancelVerb }
  return SDK.confirmAnswer or "ok"
end
--- The open panel: records its arguments and answers `SDK.openPanelAnswer` (a list of
--- paths, or nil for Cancel).
function LrDialogs.runOpenPanel(args)
  SDK.openPanels = SDK.openPanels or {}
  SDK.openPanels[#SDK.openPanels + 1] = args
  return SDK.openPanelAnswer
end
--- A modal dialog. With `SDK.user` set (a function of the dialog's arguments and its
--- property table), the dialog stays open while that "user" acts — changing properties,
--- pressing buttons, waiting with LrTasks.sleep — and every other task (the plug-in's
--- background work) runs meanwhile, as in Lightroom; then it closes with `dialogAnswer`.
function LrDialogs.presentModalDialog(args)
  SDK.dialogs[#SDK.dialogs + 1] = args
  if SDK.user then
    local props = args.contents and args.contents.props and args.contents.props.bind_to_object
    local user = coroutine.create(function() SDK.user(args, props) end)
    local me = coroutine.running()
    local guard = 0
    while coroutine.status(user) ~= "dead" do
      local ok, err = coroutine.resume(user)
      if not ok then error("the dialog's user script failed: " .. tostring(err), 0) end
      for _, co in ipairs(SDK.tasks) do
        if co ~= me and coroutine.status(co) == "suspended" then
          local ok2, err2 = coroutine.resume(co)
          if not ok2 then error(err2, 0) end
        end
      end
      realSleep(0.02)
      guard = guard + 1
      if guard > 30000 then error("the dialog stayed open too long") end
    end
  end
  return SDK.dialogAnswer
end

--- Every view of `kind` in a dialog's contents (depth first), e.g. "push_button".
function SDK.findViews(contents, kind, found)
  found = found or {}
  if type(contents) ~= "table" then return found end
  if contents.kind == kind then found[#found + 1] = contents end
  for k, v in pairs(contents) do
    if k ~= "bind_to_object" and type(v) == "table" then SDK.findViews(v, kind, found) end
  end
  return found
end

local LrFunctionContext = {}
function LrFunctionContext.callWithContext(name, fn, ...)
  return fn({ name = name }, ...)
end

local LrBinding = {}
function LrBinding.makePropertyTable(context)
  local values, observers = {}, {}
  local t = {}
  function t:addObserver(key, fn)
    observers[key] = observers[key] or {}
    table.insert(observers[key], fn)
  end
  return setmetatable(t, {
    __index = values,
    __newindex = function(_, k, v)
      values[k] = v
      for _, fn in ipairs(observers[k] or {}) do fn(t, k, v) end
    end,
  })
end

local LrView = {}
function LrView.bind(x) return { bind = x } end
function LrView.osFactory()
  return setmetatable({ control_spacing = function() return 8 end, dialog_spacing = function() return 12 end }, {
    __index = function(_, kind)
      return function(_, props) return { kind = kind, props = props or {} } end
    end,
  })
end

local LrProgressScope = function(args)
  local scope = { title = args.title, canceled = false }
  function scope:setCancelable() end
  function scope:setPortionComplete(done, total)
    SDK.progress[#SDK.progress + 1] = { done = done, total = total }
    if SDK.cancelAfterProgress and #SDK.progress >= SDK.cancelAfterProgress then self.canceled = true end
  end
  function scope:setCaption(c) SDK.captions[#SDK.captions + 1] = c end
  function scope:isCanceled() return self.canceled end
  function scope:done() self.finished = true end
  SDK.scope = scope
  return scope
end

---------------------------------------------------------------------------------------------
-- Catalog and photos.

local Photo = {}
Photo.__index = Photo

function SDK.photo(t)
  t.keywords = t.keywords or {}
  t.rating = t.rating or 0
  return setmetatable(t, Photo)
end

function Photo:getRawMetadata(key)
  if key == "path" then return self.path end
  if key == "isVirtualCopy" then return self.virtual or false end
  if key == "rating" then return self.rating end
  if key == "colorNameForLabel" then return self.label or "none" end
  if key == "keywords" then return self.keywords end
  error("getRawMetadata: unknown key " .. tostring(key))
end

function Photo:getFormattedMetadata(key)
  if key == "fileName" then return string.match(self.path, "([^/]*)$") end
  if key == "title" then return self.title or "" end
  if key == "caption" then return self.caption or "" end
  error("getFormattedMetadata: unknown key " .. tostring(key))
end

function Photo:setRawMetadata(key, value)
  strict("photo:setRawMetadata")
  if key == "colorNameForLabel" then self.label = value else self[key] = value end
end

function Photo:addKeyword(kw)
  strict("photo:addKeyword")
  table.insert(self.keywords, kw)
end

local catalog = { photos = {}, selected = {} }
function catalog:getTargetPhotos() return self.selected end
--- The active ("most selected") photo: `SDK.catalog.target`, else the first selected.
function catalog:getTargetPhoto() return self.target or self.selected[1] end
function catalog:withWriteAccessDo(name, fn)
  if SDK.writeAccess then error("nested withWriteAccessDo") end
  SDK.writeAccess = true
  local ok, err = pcall(fn)
  SDK.writeAccess = false
  if not ok then error(err, 0) end
end
function catalog:addPhoto(path, stackWith, position)
  strict("catalog:addPhoto")
  assert(LrFileUtils.exists(path), "addPhoto: " .. path .. " does not exist")
  local photo = SDK.photo { path = path }
  SDK.added[#SDK.added + 1] = { photo = photo, path = path, stack = stackWith, position = position }
  return photo
end
function catalog:createKeyword(name, synonyms, includeOnExport, parent, returnExisting)
  strict("catalog:createKeyword")
  return { name = name, parent = parent, path = (parent and (parent.path .. " > ") or "") .. name }
end
SDK.catalog = catalog

local LrApplication = {}
function LrApplication.activeCatalog() return catalog end

--- Lightroom's rendering of a photo: here, the original file under a .tif name in the
--- requested folder (Luminary reads TIFF-based RAWs saved as .tif).
local function LrExportSession(args)
  local session = { args = args }
  SDK.exportSessions = (SDK.exportSessions or 0) + 1
  function session:renditions()
    local i = 0
    return function()
      i = i + 1
      local photo = args.photosToExport[i]
      if not photo then return nil end
      local s = args.exportSettings
      assert(s.LR_format == "TIFF" and s.LR_export_bitDepth == 16 and s.LR_export_colorSpace == "ProPhotoRGB")
      local rendition = { photo = photo }
      function rendition:waitForRender()
        local name = string.gsub(string.match(photo.path, "([^/]*)$"), "%.[^.]*$", "") .. ".tif"
        local dest = s.LR_export_destinationPathPrefix .. "/" .. name
        os.execute("cp " .. sh_quote(photo.path) .. " " .. sh_quote(dest))
        return true, dest
      end
      return i, rendition
    end
  end
  return session
end

local modules = {
  LrTasks = LrTasks, LrPathUtils = LrPathUtils, LrFileUtils = LrFileUtils, LrLogger = LrLogger,
  LrPrefs = LrPrefs, LrDialogs = LrDialogs, LrFunctionContext = LrFunctionContext, LrBinding = LrBinding,
  LrView = LrView, LrProgressScope = LrProgressScope, LrApplication = LrApplication,
  LrExportSession = LrExportSession,
}

function import(name)
  local m = modules[name]
  if m == nil then error("the stand-in SDK has no " .. name) end
  return m
end

--- Loads the plug-in folder the way Lightroom does: `require` finds its files.
function SDK.load(pluginDir)
  SDK.pluginDir = pluginDir
  package.path = pluginDir .. "/?.lua;" .. package.path
  SDK.info = dofile(pluginDir .. "/Info.lua")
end

--- Runs the Library menu item's file, then the task loop.
function SDK.runMenuItem()
  dofile(SDK.pluginDir .. "/" .. SDK.info.LrLibraryMenuItems[1].file)
  SDK.drain()
end

--- Runs an export through the plug-in's export service provider.
function SDK.runExport(photos, propertyTable)
  local provider = dofile(SDK.pluginDir .. "/" .. SDK.info.LrExportServiceProvider[1].file)
  LrTasks.startAsyncTask(function()
    local exportContext = {
      propertyTable = propertyTable,
      exportSession = { catalog = catalog, countRenditions = function() return #photos end },
    }
    function exportContext:configureProgress(args) return LrProgressScope(args) end
    function exportContext:renditions()
      local dir = SDK.tmp .. "/export"
      os.execute("mkdir -p " .. sh_quote(dir))
      return LrExportSession({ photosToExport = photos, exportSettings = {
        LR_format = "TIFF", LR_export_bitDepth = 16, LR_export_colorSpace = "ProPhotoRGB",
        LR_export_destinationPathPrefix = dir } }):renditions()
    end
    provider.processRenderedPhotos({}, exportContext)
  end)
  SDK.drain()
end

--- Test helper: fail with a message (exit status 1).
function SDK.check(cond, msg)
  if not cond then
    io.stderr:write("CHECK FAILED: " .. tostring(msg) .. "\n")
    os.exit(1)
  end
end
