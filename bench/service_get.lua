-- wrk: GET /v1/items/{id} over random ids (the token comes in through the environment).
local token = os.getenv("STEWARD_BENCH_TOKEN")
math.randomseed(os.time())
request = function()
  local id = math.random(1, 10000)
  return wrk.format("GET", "/v1/items/" .. id, { ["Authorization"] = "Bearer " .. token })
end
