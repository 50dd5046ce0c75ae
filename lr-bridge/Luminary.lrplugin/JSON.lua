--[[ A small JSON decoder (Lua 5.1): the luminary CLI's result and progress lines, and
`luminary presets --json`. ]]
local JSON = {}

local function skip(s, i)
  local _, e = string.find(s, "^[ \n\r\t]*", i)
  return e + 1
end

local decode_value

local escapes = { b = "\b", f = "\f", n = "\n", r = "\r", t = "\t", ['"'] = '"', ["\\"] = "\\", ["/"] = "/" }

local function utf8_char(code)
  if code < 0x80 then return string.char(code) end
  if code < 0x800 then return string.char(0xC0 + math.floor(code / 64), 0x80 + code % 64) end
  return string.char(0xE0 + math.floor(code / 4096), 0x80 + math.floor(code / 64) % 64, 0x80 + code % 64)
end

local function decode_string(s, i)
  local out, j = {}, i + 1
  while true do
    local c = string.sub(s, j, j)
    if c == "" then error("unterminated string in JSON") end
    if c == '"' then return table.concat(out), j + 1 end
    if c == "\\" then
      local n = string.sub(s, j + 1, j + 1)
      if escapes[n] then
        out[#out + 1] = escapes[n]
        j = j + 2
      elseif n == "u" then
        out[#out + 1] = utf8_char(tonumber(string.sub(s, j + 2, j + 5), 16))
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
  local c = string.sub(s, i, i)
  if c == "{" then
    local obj = {}
    i = skip(s, i + 1)
    if string.sub(s, i, i) == "}" then return obj, i + 1 end
    while true do
      local key
      key, i = decode_string(s, skip(s, i))
      i = skip(s, i)
      if string.sub(s, i, i) ~= ":" then error("expected ':' in JSON") end
      obj[key], i = decode_value(s, i + 1)
      i = skip(s, i)
      local d = string.sub(s, i, i)
      if d == "}" then return obj, i + 1 end
      if d ~= "," then error("expected ',' in JSON object") end
      i = i + 1
    end
  elseif c == "[" then
    local arr = {}
    i = skip(s, i + 1)
    if string.sub(s, i, i) == "]" then return arr, i + 1 end
    while true do
      arr[#arr + 1], i = decode_value(s, i)
      i = skip(s, i)
      local d = string.sub(s, i, i)
      if d == "]" then return arr, i + 1 end
      if d ~= "," then error("expected ',' in JSON array") end
      i = i + 1
    end
  elseif c == '"' then
    return decode_string(s, i)
  elseif string.sub(s, i, i + 3) == "true" then
    return true, i + 4
  elseif string.sub(s, i, i + 4) == "false" then
    return false, i + 5
  elseif string.sub(s, i, i + 3) == "null" then
    return nil, i + 4
  end
  local num = string.match(s, "^-?%d+%.?%d*[eE]?[-+]?%d*", i)
  if not num or num == "" then error("unexpected character in JSON at " .. i) end
  return tonumber(num), i + #num
end

function JSON.decode(s)
  return (decode_value(s, 1))
end

--- Decodes every non-empty line of `text` that is a JSON object.
function JSON.lines(text)
  local out = {}
  for line in string.gmatch(text or "", "[^\n]+") do
    local ok, v = pcall(JSON.decode, line)
    if ok and type(v) == "table" then out[#out + 1] = v end
  end
  return out
end

return JSON
