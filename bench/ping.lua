-- wrk script: POST a ~200-byte body to ping URLs read from $PATHS_FILE, round robin.
local paths = {}
local counter = 0
local body = string.rep("x", 160) .. " exit 0: processed 42 items"

function init(args)
  for line in io.lines(os.getenv("PATHS_FILE")) do
    paths[#paths + 1] = line
  end
  counter = math.random(#paths)
end

function request()
  counter = counter + 1
  return wrk.format("POST", paths[(counter % #paths) + 1], nil, body)
end
